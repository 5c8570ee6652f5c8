"""Each store on both backends: this test's SQLite file, and a fresh real redis-server."""

import pytest

from tokensvc.storage import (
    ObservedHolds,
    open_audit,
    open_console_tickets,
    open_holds,
    open_reconcile,
    open_tenants,
    open_usage,
    open_webhook_store,
)

DAY_MS = 24 * 3600 * 1000


@pytest.fixture(params=["sqlite", "redis"])
def backend_url(request, tmp_path):
    """A STORAGE_URL on each backend (Redis: a real redis-server on loopback)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/storage.sqlite3"
    return request.getfixturevalue("redis_server").url


@pytest.fixture
def holds(backend_url):
    """An empty hold store on the backend."""
    store = open_holds(backend_url, timeout=2.0)
    yield store
    store.close()


@pytest.fixture
def usage(holds):
    """The usage store beside `holds`, keeping records a day."""
    return open_usage(holds, DAY_MS)


@pytest.fixture
def webhooks(holds):
    """The webhook store beside `holds`, its tables made."""
    store = ObservedHolds(open_webhook_store(holds.store))
    store.prepare()
    yield store
    store.close()


@pytest.fixture
def tenant_store(holds):
    """The tenants' records beside `holds`."""
    store = ObservedHolds(open_tenants(holds.store))
    yield store
    store.close()


@pytest.fixture
def audit(holds):
    """The audit trail beside `holds`, keeping entries a day."""
    store = ObservedHolds(open_audit(holds.store, DAY_MS))
    yield store
    store.close()


@pytest.fixture
def console_tickets(holds):
    """The console's ticket store beside `holds`."""
    store = ObservedHolds(open_console_tickets(holds.store))
    yield store
    store.close()


@pytest.fixture
def reconcile(holds):
    """The reconciliation's store beside `holds`."""
    return open_reconcile(holds)
