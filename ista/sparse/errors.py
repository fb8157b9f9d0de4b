"""The error of sparse recovery, in a module of its own: the LASSO and its backends both raise it."""


class SolverError(RuntimeError):
    """A recovery backend that is unavailable or failed."""
