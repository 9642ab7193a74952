"""Calling the CLI in tests, and what every bad-input error must look like."""

from typer.testing import CliRunner

from bayesladder.cli import app

runner = CliRunner()

FIT_TASKS = ["mmlu", "hellaswag"]  # the session's shared tiny fit (conftest.tiny_fit)
TINY = ("--chains", 2, "--draws", 100, "--tune", 100)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], prog_name="bayesladder")


def assert_clean_error(result, *fragments):
    """Exit code 1, one 'error: ...' line on stderr naming the fragments, no traceback, nothing on stdout."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output
    assert result.stdout == ""
