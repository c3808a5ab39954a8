"""The exception types the harness and its plugins raise on purpose."""


class BenchmarkError(Exception):
    """A user-facing error: bad input, a missing dataset folder, an unknown name, a NaN loss.
    The CLI turns it into a one-line message and a non-zero exit."""


class NotApplicable(BenchmarkError):
    """A defense that cannot act on this model (ANP without BatchNorm, CLP without BatchNorm
    after its convolutions): the cell is recorded as "not applicable" instead of failing the grid."""
