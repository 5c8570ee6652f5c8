"""The service's storage seen from outside: what the embedded record holds, and how many storage
calls the app made (its own /metrics), so a test can say that a request touched neither."""

import sqlite3

from tokensvc.storage import sqlite_path


def records(storage_url: str) -> list[str]:
    """Every row of the embedded record (a sqlite:/// STORAGE_URL), as SQL statements."""
    with sqlite3.connect(sqlite_path(storage_url)) as db:
        return list(db.iterdump())


def storage_calls(client) -> float:
    """How many storage calls the service has counted so far (METRICS_ENABLED), read off
    /metrics: every operation and outcome, reads included."""
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tokensvc_storage_calls_total{")
    )


def initialise(storage_url: str) -> None:
    """Say that the storage at `storage_url` is a new deployment's (what `tokensvc storage
    init` writes): a fresh Redis is otherwise judged lost."""
    from tokensvc.storage import open_holds

    holds = open_holds(storage_url, timeout=5.0)
    try:
        holds.init_record()
    finally:
        holds.close()
