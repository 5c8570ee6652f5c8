"""Benchmark row 6: the floor with the work no token service can skip: a bare Flask route that
verifies one HS256 bearer token, reads one SQLite row and signs one HS256 token (PyJWT and
sqlite3 as they come, no checks beyond the signature)."""

import os
import sqlite3
import tempfile
import time

import jwt
from flask import Flask, request

app = Flask(__name__)
TENANT_SECRET = os.environ.get("AUTH_JWT_SECRET", "")
LIVEKIT_SECRET = os.environ.get("LIVEKIT_API_SECRET", "")
DATABASE = os.path.join(tempfile.mkdtemp(prefix="tokensvc-floor-"), "rows.sqlite3")
connections: dict[int, sqlite3.Connection] = {}


with sqlite3.connect(DATABASE) as setup:  # once, on import (gunicorn's master), not per worker
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS holds (name TEXT PRIMARY KEY, holder TEXT)")
setup.close()


def database() -> sqlite3.Connection:
    """This process's connection to a one-table database of room holders."""
    pid = os.getpid()
    if pid not in connections:
        connections[pid] = sqlite3.connect(DATABASE, isolation_level=None, check_same_thread=False)
    return connections[pid]


@app.post("/livekit/token")
def token():
    """Verify the bearer, read the room's holder (recording it the first time), sign a token."""
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
    tenant = jwt.decode(bearer, TENANT_SECRET, algorithms=["HS256"])["sub"]
    body = request.get_json()
    db = database()
    row = db.execute("SELECT holder FROM holds WHERE name = ?", (body["room_name"],)).fetchone()
    if row is None:
        db.execute("INSERT OR IGNORE INTO holds VALUES (?, ?)", (body["room_name"], tenant))
    now = int(time.time())
    claims = {"sub": body["participant_identity"], "video": {"room": body["room_name"]},
              "nbf": now, "exp": now + 600}  # fmt: skip
    return {"token": jwt.encode(claims, LIVEKIT_SECRET, algorithm="HS256")}
