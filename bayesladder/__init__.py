"""bayesladder: predict a large model's downstream task scores from a ladder of small models."""

__version__ = "0.1.0"
