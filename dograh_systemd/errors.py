"""The one error type dograhctl reports as a one-line message and exit code 1."""


class DograhError(RuntimeError):
    """Something stopped a command; the message says what, in one line."""
