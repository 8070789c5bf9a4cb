"""User-facing errors: the CLI prints them on one line and exits with code 2."""


class RlcarError(Exception):
    """An error caused by user input; the CLI prints it on one line and exits with code 2."""


class InvalidArgument(RlcarError, ValueError):
    """A bad argument to a library call (an env's action, seed, options): a ValueError, as Gymnasium's
    own envs raise, and an RlcarError, so the CLI still reports it on one line with exit code 2."""


def require_at_least(name: str, value: int | None, minimum: int) -> None:
    """Reject an out-of-range number with a message that names the option; None (unset) passes."""
    if value is not None and value < minimum:
        raise InvalidArgument(f"{name} must be at least {minimum}, got {value}")
