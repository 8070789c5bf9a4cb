"""User-facing errors: the CLI prints them on one line and exits with code 2."""


class RlcarError(Exception):
    """An error caused by user input; the CLI prints it on one line and exits with code 2."""
