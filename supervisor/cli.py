"""``python -m supervisor serve --config FILE [--host H] [--port P] [--db PATH]``.

Owns the entry point: argument parsing, logging setup, the listening socket,
and the exit-code rule (``EXIT_CODES``). ``serve`` builds the supervisor from
``Parts``, a set of factories whose defaults are the real ones; another entry
point (the tests' broken supervisor) can pass different ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from supervisor import auth, config
from supervisor.api import create_app
from supervisor.auth import Token
from supervisor.errors import SupervisorError
from supervisor.manager import ProcessManager
from supervisor.owner import DBOwner
from supervisor.protocol import CorkedHttpTools
from supervisor.statedb import StateDB, check_file
from supervisor.stop.containment import Containment, choose
from supervisor.stop.instance import new_instance

log = logging.getLogger("supervisor")

EXIT_CODES = """exit codes:
  0  stopped cleanly (SIGTERM or Ctrl-C)
  1  a runtime failure (the app failed to start, or an unexpected error)
  2  usage or environment errors: bad arguments, an invalid config, an unusable
     state DB, a state DB another supervisor owns, a port that cannot be bound,
     containment "cgroup" where no writable cgroup v2 tree exists"""


@dataclasses.dataclass(frozen=True)
class Parts:
    """The factories ``serve`` builds a supervisor from; the defaults are the real ones."""

    load_config: Callable[[Path], config.Config] = config.load
    db: Callable[[Path], StateDB] = StateDB
    # (server.containment, instance id) -> the containment, chosen once
    containment: Callable[[str, str], Containment] = choose
    manager: Callable[[config.Config, StateDB, Containment], ProcessManager] = ProcessManager
    app: Callable[[ProcessManager, Token], FastAPI] = create_app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="A process supervisor with an HTTP API.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the supervisor and its HTTP API",
        description="Run the supervisor and its HTTP API until SIGTERM or Ctrl-C.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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


def _server_config(cfg: config.Config, args: argparse.Namespace) -> config.Config:
    """The config with ``--host``, ``--port`` and ``--db`` applied over ``[server]``."""
    server = dataclasses.replace(
        cfg.server,
        host=args.host or cfg.server.host,
        port=cfg.server.port if args.port is None else args.port,
        db=args.db or cfg.server.db,
    )
    return dataclasses.replace(cfg, server=server)


def serve(args: argparse.Namespace, parts: Parts = Parts()) -> int:
    cfg = _server_config(parts.load_config(args.config), args)
    settings = cfg.server
    # a DB we would refuse gets no lock file beside it (reading it changes nothing)
    check_file(settings.db)
    # then the lock: a second supervisor on this DB must touch nothing, not even the token
    owner = DBOwner(settings.db)
    owner.acquire()
    try:
        return _serve_owned(args, parts, cfg, owner)
    finally:
        owner.release()


def _serve_owned(args: argparse.Namespace, parts: Parts, cfg: config.Config, owner: DBOwner) -> int:
    settings = cfg.server
    token = auth.resolve(settings.token_file, settings.db)
    if not config.is_loopback(settings.host) and not token.explicit:
        raise SupervisorError(
            f"refusing to listen on non-loopback address {settings.host} with a generated token;"
            " set SUPERVISOR_TOKEN or server.token_file explicitly, or bind 127.0.0.1"
        )
    db = parts.db(settings.db)
    containment: Containment | None = None
    try:
        containment = parts.containment(settings.containment, new_instance())
        log.info(
            "event=containment mode=%s configured=%s reason=%r",
            containment.name,
            settings.containment,
            containment.reason,
        )
        sock = _bind(settings.host, settings.port)
        app = parts.app(parts.manager(cfg, db, containment), token)
        host, port = sock.getsockname()[:2]
        url = f"http://{host}:{port}"
        owner.announce(url)
        log.info(
            "event=listening url=%s db=%s token_source=%s containment=%s",
            url,
            settings.db,
            token.source,
            containment.name,
        )
        return _run(app, sock, args.access_log)
    finally:
        if containment is not None:
            containment.close()
        db.close()


def _run(app: FastAPI, sock: socket.socket, access_log: bool) -> int:
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="info" if access_log else "warning",  # access lines log at info
            access_log=access_log,
            timeout_graceful_shutdown=1,
            lifespan="on",
            http=CorkedHttpTools,  # one TCP segment per response
            loop="uvloop",
        )
    )
    # uvicorn re-raises the stop signal once it has shut down; under Python's default
    # handlers that killed us before the DB was closed (SIGTERM, exit -15) or ended in a
    # KeyboardInterrupt traceback (SIGINT). Routing both to the server's own handler,
    # which only records the signal, lets serve() finish and exit 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, server.handle_exit)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        # uvicorn exits 3 when the app's startup failed (its traceback is logged above);
        # for us that is a runtime failure
        if exc.code != STARTUP_FAILURE:
            raise
        log.error("event=startup_failed; the supervisor's start raised, see the error above")
        return 1
    return 0


def main(argv: Sequence[str] | None = None, parts: Parts = Parts()) -> int:
    """Run the CLI; the return value is the exit code (see ``EXIT_CODES``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return serve(args, parts)
    except SupervisorError as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return 2
