"""``python -m supervisor serve --config FILE [--host H] [--port P] [--db PATH]``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from supervisor import auth, config
from supervisor.api import create_app
from supervisor.errors import SupervisorError
from supervisor.manager import ProcessManager
from supervisor.statedb import StateDB

log = logging.getLogger("supervisor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor", description="A process supervisor with an HTTP API."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the supervisor and its HTTP API")
    serve.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="TOML config (see supervisor.example.toml)",
    )
    serve.add_argument("--host", help="bind address (default: server.host, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: server.port; 0 picks a free one)")
    serve.add_argument("--db", type=Path, help="SQLite state DB (default: server.db)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    return parser


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted sockets inherit this; without it, keep-alive answers written in two parts
    # wait ~40 ms for the client's delayed ACK (Nagle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SupervisorError(
            f"cannot listen on {host}:{port}: {exc.strerror}; "
            "pick another --port or stop what holds it"
        ) from exc
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def serve(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    server = cfg.server
    server = dataclasses.replace(
        server,
        host=args.host or server.host,
        port=server.port if args.port is None else args.port,
        db=args.db or server.db,
    )
    token = auth.resolve(server.token_file, server.db)
    if not config.is_loopback(server.host) and not token.explicit:
        raise SupervisorError(
            f"refusing to listen on non-loopback address {server.host} with a generated token;"
            " set SUPERVISOR_TOKEN or server.token_file explicitly, or bind 127.0.0.1"
        )
    db = StateDB(server.db)
    sock = _bind(server.host, server.port)
    manager = ProcessManager(dataclasses.replace(cfg, server=server), db)
    app = create_app(manager, token)
    host, port = sock.getsockname()[:2]
    log.info(
        "event=listening url=http://%s:%d db=%s token_source=%s",
        host,
        port,
        server.db,
        token.source,
    )
    uv = uvicorn.Config(
        app,
        log_level="info" if args.access_log else "warning",  # access lines log at info
        access_log=args.access_log,
        timeout_graceful_shutdown=1,
        lifespan="on",
    )
    server = uvicorn.Server(uv)
    # uvicorn re-raises the stop signal once it has shut down; under Python's default
    # handlers that killed us before the DB was closed (SIGTERM, exit -15) or ended in a
    # KeyboardInterrupt traceback (SIGINT). Routing both to the server's own handler,
    # which only records the signal, lets serve() finish and exit 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, server.handle_exit)
    server.run(sockets=[sock])
    db.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return serve(args)
    except SupervisorError as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return 2
