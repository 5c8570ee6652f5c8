"""make run's LiveKit (scripts/dev-livekit, the configuration scripts/dev starts it with) keeps
development on the machine: clients are handed no outside STUN or TURN server, it listens on
loopback and on the one media address it names, and a call carries audio both ways."""

import asyncio
import os
import signal
import socket
import subprocess

import aiohttp
import pytest
from livekit import api
from livekit.protocol import rtc as rtc_pb

from support.livekit import MEDIA_IP, find_livekit_server
from support.processes import ROOT, unavailable
from tokensvc.testing.processes import find_free_port, wait_for_port

KEY, SECRET = "devkey", "development-livekit-secret-change-me"
pytestmark = pytest.mark.slow


def media_address() -> str:
    """The media address make run would name: the private network's, else this machine's
    first address besides loopback."""
    if MEDIA_IP:
        return MEDIA_IP
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout.split()
    if "inet" not in shown:
        unavailable("this machine has no address besides loopback for media")
    return shown[shown.index("inet") + 1].split("/")[0]


@pytest.fixture(scope="module")
def dev_livekit():
    """scripts/dev-livekit on free ports: (pid, media address, port)."""
    binary, reason = find_livekit_server()
    if binary is None:
        unavailable(f"the real livekit-server is not available: {reason}")
    media = media_address()
    while True:
        port = find_free_port()
        if all(_udp_free(media, port + offset) for offset in (1, 2)):
            break
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "dev-livekit"), binary, media, "127.0.0.1"],
        env={
            **os.environ,
            "LIVEKIT_PORT": str(port),
            "LIVEKIT_API_KEY": KEY,
            "LIVEKIT_API_SECRET": SECRET,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, 30, "make run's livekit-server")
        yield process.pid, media, port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def _udp_free(address: str, port: int) -> bool:
    """Whether a UDP socket can bind `address:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def token(identity: str, room: str = "dev-room") -> str:
    """A participant token for make run's LiveKit."""
    grants = api.VideoGrants(room_join=True, room=room)
    return api.AccessToken(KEY, SECRET).with_identity(identity).with_grants(grants).to_jwt()


async def _join_response(port: int) -> rtc_pb.JoinResponse:
    """Join at the signalling level (no media) and return the server's JoinResponse."""
    url = f"ws://127.0.0.1:{port}/rtc?access_token={token('probe')}&protocol=16&auto_subscribe=1"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket_:
        async for message in socket_:
            if message.type == aiohttp.WSMsgType.BINARY:
                response = rtc_pb.SignalResponse.FromString(message.data)
                if response.WhichOneof("message") == "join":
                    return response.join
    raise AssertionError("the server closed the signalling connection before joining")


def test_clients_are_handed_only_this_livekits_own_turn(dev_livekit):
    """The join response's ICE servers: one, this LiveKit's TURN (which answers STUN too) at
    the media address; no outside STUN server (LiveKit's default is Google's and Twilio's)."""
    _, media, port = dev_livekit
    joined = asyncio.run(asyncio.wait_for(_join_response(port), 20))
    urls = [url for server in joined.ice_servers for url in server.urls]
    assert urls == [f"turn:{media}:{port + 1}?transport=udp"]


def sockets_of(pid: int) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every listening TCP and every bound UDP socket of `pid`."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed since the listing (a connection): not listening
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (
        ("tcp", socket.AF_INET),
        ("tcp6", socket.AF_INET6),
        ("udp", socket.AF_INET),
        ("udp6", socket.AF_INET6),
    ):
        with open(f"/proc/{pid}/net/{table}") as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if inode not in inodes or (table.startswith("tcp") and state != "0A"):
                    continue
                address, hex_port = local.split(":")
                raw = bytes.fromhex(address)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((table[:3], socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


def test_it_listens_on_loopback_and_the_media_address_only(dev_livekit):
    """Its API on 127.0.0.1:LIVEKIT_PORT; its TURN (+1) and media (+2) on the media address,
    UDP; nothing on any other address (no ICE over TCP on every interface)."""
    pid, media, port = dev_livekit
    assert sockets_of(pid) == {
        ("tcp", "127.0.0.1", port),
        ("udp", media, port + 1),
        ("udp", media, port + 2),
    }


def test_a_call_carries_audio_both_ways(dev_livekit, call, media_network):
    """Two participants publish a microphone each and each receives the other's audio."""
    _, _, port = dev_livekit
    url = f"ws://127.0.0.1:{port}"
    call.join("alice", url, token("alice", "dev-call"))
    call.join("bob", url, token("bob", "dev-call"))
    call.publish("alice")
    call.publish("bob")
    assert call.wait_for(lambda: call.frames["alice"] > 20 and call.frames["bob"] > 20, 20)
