"""A storage that does not forget: what a store does when it finds its data lost.

Each store keeps an epoch (a random id written once). An instance remembers the epoch it saw; a
claim that finds it gone or changed means the store lost its data while instances ran (flush,
restart without persistence, failover to an empty replica): a quarantine of one grace starts
(shared by every instance), during which a shared name with no record is refused with
`StorageRecovering` unless the caller proves its room in LiveKit (`ownership.py`).
"""

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def report_loss(where: str, grace_ms: int, on_loss: Callable[[], None] | None) -> None:
    """Say once, loudly, that the store at `where` lost its data while instances ran, and tell
    `on_loss`."""
    log.warning(
        "storage at %s lost its data while the service ran (its epoch is gone): shared "
        "names without a record go only to tenants whose room LiveKit lists, for %d s",
        where,
        grace_ms // 1000,
    )
    if on_loss is not None:
        on_loss()
