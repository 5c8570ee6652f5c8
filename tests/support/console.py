"""The console seen from a test: a session opened the way a tenant's backend opens one, and the
CSRF token read off a page."""

import re
from urllib.parse import urlsplit

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def console_url(client, headers: dict) -> str:
    """The console URL a tenant's backend gets (`POST /livekit/console-sessions`)."""
    response = client.post("/livekit/console-sessions", headers=headers)
    assert response.status_code == 201, response.json
    return response.json["url"]


def enter(client, headers: dict):
    """Open a console session in the test client (its cookie kept); the entry's response."""
    url = urlsplit(console_url(client, headers))
    return client.get(f"{url.path}?{url.query}")


def csrf_of(page_html: str) -> str:
    """The CSRF token on a console page."""
    found = CSRF.search(page_html)
    assert found is not None, page_html[:2000]
    return found.group(1)
