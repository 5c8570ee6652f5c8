"""The short soak: tenant isolation under concurrent load while rooms close and re-open."""

import io

import pytest
from soak import soak


@pytest.mark.slow
def test_short_soak_has_no_violations():
    """Ten seconds of 8 threads and 4 tenants on 3 names whose rooms close and are re-created by
    joins: contention, no violation, no 5xx."""
    out = io.StringIO()
    counts = soak(seconds=10, threads=8, tenants=4, rooms=3, out=out)
    report = out.getvalue()
    assert counts["violations"] == 0, report
    assert counts["5xx"] == 0 and counts["status transport"] == 0, report
    assert counts["tokens"] > 100 and counts["forbidden"] > 100, report
    assert counts["rooms closed"] > 20, report
    assert counts["rss_after_kib"] <= counts["rss_before_kib"] * 1.15, report
