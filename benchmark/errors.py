"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class BenchmarkError(Exception):
    """A user-facing error: bad input, a missing dataset folder, an unknown name, a NaN loss."""
