"""The one exception of the pipeline layer."""

__all__ = ["PipelineError"]


class PipelineError(Exception):
    """A user mistake (bad params, bad data file, no mirror): reported as one line, no traceback."""
