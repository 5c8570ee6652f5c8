"""Leaks: the log check used by every test really catches tokens and secrets."""

import logging

import pytest

from support.tokens import BODY, LIVEKIT_SECRET, assert_no_secrets


@pytest.mark.parametrize(
    "text",
    [
        "issued eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl for alice",
        f"configured with {LIVEKIT_SECRET}",
        "header was Bearer eyJhbGciOi",
    ],
)
def test_the_check_catches_a_leak(text):
    """assert_no_secrets fails on a JWT, an API secret or a bearer value."""
    with pytest.raises(AssertionError):
        assert_no_secrets(text)


def test_failure_paths_log_but_leak_nothing(client, tenants, livekit, caplog):
    """LiveKit faults produce log lines; none of them carries a token or a secret."""
    headers = tenants.headers("acme")
    livekit.faults.error = "internal"
    client.post("/livekit/token", json=BODY, headers=headers)
    livekit.faults.error = None
    livekit.faults.malformed = True
    client.post("/livekit/token", json={**BODY, "room_name": "other"}, headers=headers)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) >= 2
    for record in caplog.records:
        assert_no_secrets(record.getMessage())
