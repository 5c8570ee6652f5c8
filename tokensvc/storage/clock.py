"""The storage's clock as the stores read it.

Every deadline is decided on the storage's clock: Redis scripts read `TIME`, the embedded store
the one host's clock. `StorageClock.shift_ms` moves that clock for tests (0 in production); the
stores of one storage share one clock.
"""


class StorageClock:
    """The storage's clock as the record reads it: the storage's own, moved by `shift_ms`
    (tests move it to age holds on either backend; production leaves it at 0)."""

    def __init__(self) -> None:
        """Start unshifted."""
        self.shift_ms = 0

    def advance(self, ms: int) -> None:
        """Move the storage's clock forward by `ms`."""
        self.shift_ms += ms
