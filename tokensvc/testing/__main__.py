"""Run the LiveKit emulator standalone: `python -m tokensvc.testing [--port 7880]`."""

import argparse
import signal
import threading

from .emulator import LiveKitEmulator


def main(argv=None) -> None:
    """Serve until interrupted, like `livekit-server --dev` (RoomService API only)."""
    parser = argparse.ArgumentParser(
        prog="python -m tokensvc.testing",
        description="LiveKit RoomService emulator, for development and tests only.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7880)
    parser.add_argument(
        "--keys", default="devkey:secret", help="API key pairs, KEY:SECRET[,KEY:SECRET]"
    )
    args = parser.parse_args(argv)
    keys = dict(pair.split(":", 1) for pair in args.keys.split(","))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LiveKitEmulator(args.host, args.port, keys) as emulator:
        print(
            f"LiveKit emulator (development and tests only, no media) on {emulator.ws_url}, "
            f"keys: {', '.join(keys)}",
            flush=True,
        )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
