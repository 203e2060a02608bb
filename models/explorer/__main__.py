"""``python -m models.explorer -c runs/tiny [-c other] [--host 127.0.0.1] [--port 8000]`` (also ``ta-explore``).

Loads each checkpoint (a run directory or a checkpoint file) once, binds the address, prints it, and
serves the explorer until Ctrl-C. It listens on the loopback address only unless ``--host`` says
otherwise (then with a warning: the page has no login). ``--port 0`` picks a free port.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.explorer",
                                description="A local web page that shows attention and autograd at work on "
                                            "your trained models.")
    p.add_argument("-c", "--checkpoint", action="append", required=True, metavar="PATH",
                   help="a run directory or checkpoint file (repeat for several models)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from models.explorer.app import create_app
    except ImportError as e:
        print(f"error: the explorer needs Starlette and uvicorn ({e.name} is missing): "
              "pip install -e '.[explore]'", file=sys.stderr)
        return 2
    from models.explorer.sessions import Session, SessionError, load_session

    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port} is not a port number (0 .. 65535)", file=sys.stderr)
        return 2
    sessions: list[Session] = []
    for path in args.checkpoint:
        try:
            sessions.append(load_session(path, taken=[s.name for s in sessions]))
        except SessionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.host not in LOCAL_HOSTS:
        print(f"warning: listening on {args.host}: anyone who can reach this address can use the explorer "
              "(it has no login); the default 127.0.0.1 keeps it to this machine", file=sys.stderr)
    try:
        sock = _bind(args.host, args.port)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"Transformer explorer on http://{shown}:{port}/  (models: {', '.join(s.name for s in sessions)}; "
          "Ctrl-C stops it)", flush=True)
    # On the loopback address only the loopback names may be asked for; another --host is reached by any name.
    allowed = ["127.0.0.1", "localhost", "::1", "[::1]"] if args.host in LOCAL_HOSTS else None
    server = uvicorn.Server(uvicorn.Config(create_app(sessions, allowed), log_level="warning"))
    server.run(sockets=[sock])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: the system picks a free one), handed to uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    info = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    sock = socket.socket(info[0][0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(info[0][4])
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


if __name__ == "__main__":
    sys.exit(main())
