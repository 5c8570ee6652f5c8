"""Benchmark row 5: a bare Flask route returning a constant JSON body (the floor)."""

from flask import Flask

app = Flask(__name__)

ANSWER = {
    "token": "constant",
    "room_name": "bench",
    "participant_identity": "bench",
    "livekit_url": "ws://127.0.0.1:7880",
}


@app.post("/livekit/token")
def constant_token():
    """Answer every request with the same body."""
    return ANSWER
