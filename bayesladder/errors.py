"""The one error type users see: the CLI prints its message as a single line and exits non-zero."""


class BayesLadderError(Exception):
    """A problem with the user's input, phrased as what is wrong and how to fix it."""


class BayesLadderWarning(UserWarning):
    """Something the user should know about their input that does not stop the work (the CLI prints it)."""
