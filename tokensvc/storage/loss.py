"""A storage that does not forget: how a store proves its own continuity, and what it does when
it cannot.

Each store keeps, in itself, a continuity record: an epoch (a random id) with its birth time and
how it was born (`init`: a new deployment said so; `new`: the embedded file's first start on this
host; `upgrade`: adopted from an earlier version's record; `loss`), and what a later process
needs to judge whether acknowledged writes were lost since: on Redis its `run_id`, the keys it
had evicted and whether it ran with `appendonly yes` + `appendfsync always`; on SQLite the
identity (device, inode) of the file the record was born in, and a witness file beside it.
Every process judges from that alone, at start, every `STORAGE_CHECK_INTERVAL`, and in the same
atomic step as any claim that would give out a name with no record, so no process's memory of
an earlier epoch is needed. A loss starts (or extends) the quarantine (`recovering`), one grace
from the detection, shared by every instance: a shared name with no record is refused with
`StorageRecovering` unless the caller proves its room in LiveKit (`ownership.py`).
"""

import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Why a store is judged to have lost acknowledged writes, as the warning says it.
LOSS_REASONS = {
    "missing": "its continuity record is missing (flushed, restarted empty, evicted, or never "
    "initialised)",
    "restart": "it restarted without appendonly yes + appendfsync always (writes after its last "
    "snapshot or fsync are gone)",
    "failover": "a replica took over and STORAGE_REPLICAS is 0 (writes it had not received are "
    "gone)",
    "evicted": "it evicted keys (maxmemory-policy other than noeviction)",
    "deleted": "the file was deleted while the deployment lived (its witness is still there)",
    "replaced": "the file is not the one the record was born in (replaced or restored)",
}
#: What the start-up line adds when the record is missing: how a new deployment says so.
INIT_HINT = (
    "if this is a new deployment, run `tokensvc storage init` (or `flask storage init`) once"
)


def report_loss(where: str, reason: str, grace_ms: int, on_loss: Callable[[], None] | None) -> None:
    """Say once, loudly, that the store at `where` lost acknowledged writes (`reason`, a key of
    LOSS_REASONS), and tell `on_loss`."""
    log.warning(
        "storage at %s lost its data: %s; shared names without a record go only to tenants "
        "whose room LiveKit lists, for %d s%s",
        where,
        LOSS_REASONS.get(reason, reason),
        grace_ms // 1000,
        f"; {INIT_HINT}" if reason == "missing" else "",
    )
    if on_loss is not None:
        on_loss()


class CheckSchedule:
    """When this process's next full continuity check is due: at once in a new process (a
    forked or respawned worker included), then every `interval_s`."""

    def __init__(self) -> None:
        """Due at once."""
        self._pid: int | None = None
        self._next = 0.0

    def due(self, interval_s: float) -> bool:
        """Whether the check is due now; if so, the next one is `interval_s` away."""
        now = time.monotonic()
        if self._pid == os.getpid() and now < self._next:
            return False
        self._pid, self._next = os.getpid(), now + interval_s
        return True
