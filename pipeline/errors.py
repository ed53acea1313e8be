"""The one exception of the pipeline layer."""

__all__ = ["PipelineError", "first_line"]


class PipelineError(Exception):
    """A user mistake (bad params, bad data file, no mirror): reported as one line, no traceback."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none): libraries'
    multi-line messages folded into our one-line errors."""
    return (str(e).splitlines() or [type(e).__name__])[0]
