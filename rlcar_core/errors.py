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


# The simulator counts steps, and numbers held-out tracks, in 32-bit integers inside JAX: a larger value
# would overflow there (an internal OverflowError), so options are checked against these limits first.
MAX_STEPS_LIMIT = 2**31 - 1
# Held-out track seeds are EVAL_SEED_OFFSET (a million) + the track number: a billion tracks keeps
# every seed, of every episode of an evaluation, inside 32 bits.
MAX_TRACK = 10**9


def require_at_most(name: str, value: int | None, maximum: int, why: str = "") -> None:
    """Reject a number above its limit, naming the option and the limit; None (unset) passes."""
    if value is not None and value > maximum:
        reason = f" ({why})" if why else ""
        raise InvalidArgument(f"{name} must be at most {maximum}{reason}, got {value}")


def require_steps(name: str, value: int | None) -> None:
    """A step count: at least 1, at most what JAX's 32-bit counters hold."""
    require_at_least(name, value, 1)
    require_at_most(name, value, MAX_STEPS_LIMIT, "a 32-bit step counter")


def require_track(name: str, value: int | None, count: int = 1) -> None:
    """A held-out track number (the first of `count` consecutive ones): 0 .. MAX_TRACK."""
    require_at_least(name, value, 0)
    last = MAX_TRACK - (max(count, 1) - 1)  # the last of `count` tracks is MAX_TRACK at most
    require_at_most(name, value, last, f"held-out tracks are numbered up to {MAX_TRACK}")
