"""The ``switchboard`` command: serve, print the connection string, mint a token, join a call.

    switchboard serve [--host H] [--port P] [--data-dir D] [--no-demo] [--ice-address A]...
                      [--tls self-signed | --tls-cert F --tls-key F] [--no-adhoc-rooms]
                      [--database-url URL] [--chat-max-message-bytes N]
                      [--event-loop auto|uvloop|asyncio]
    switchboard connection-string [--data-dir D] [--host H] [--port P] [--https]
    switchboard token --user ID [--scopes voip,chat] [--expires-minutes M] [--data-dir D]
    switchboard join ...            (switchboard.client.cli_join)
    switchboard turn-config ...     (a coturn configuration; signalling/traversal/cli.py)
    switchboard check-connectivity --url U [--json] ...   (switchboard.client.connectivity)

``serve`` prints to stdout, in order: ``created data directory <D>`` on the first start, the
connection string on a line of its own (starting ``endpoint=``), and once the socket is
bound, ``Switchboard listening on <endpoint>`` — the line to wait for. ``--port 0`` picks a
free port, and the lines give the real one. The connection string and tokens go to stdout
only; log lines (stderr) never contain a key or a token.

Each command imports what it needs when it runs, so ``token`` does not load the media stack.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from . import tls
from .config import Config
from .datadir import DataDirError, ensure_data_dir, load_access_key
from .identity.hmac_auth import format_connection_string
from .identity.tokens import DEFAULT_EXPIRES_IN_MINUTES, TokenService
from .traversal import cli as traversal_cli

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = Path("data")
LOG_LEVELS = ("debug", "info", "warning", "error")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "join":
        return _join(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.run(args))
    except (DataDirError, OSError) as exc:  # no key, a port in use, an unknown host…
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Self-hostable real-time communication server."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server")
    _add_endpoint_arguments(serve)
    _add_data_dir_argument(serve)
    serve.add_argument("--no-demo", action="store_true", help="leave out the web demo")
    serve.add_argument(
        "--ice-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="a local IP address for ICE candidates (repeatable; default: every interface)",
    )
    traversal_cli.add_serve_arguments(serve)
    tls.add_serve_arguments(serve)
    serve.add_argument(
        "--no-adhoc-rooms",
        action="store_true",
        help="only rooms made through the rooms API can be joined",
    )
    serve.add_argument(
        "--database-url",
        default=os.environ.get("SWITCHBOARD_DATABASE_URL"),
        metavar="URL",
        help="the store: postgresql://user@host/db (asyncpg); default SQLite in the data "
        "directory (also $SWITCHBOARD_DATABASE_URL). The schema is upgraded at start.",
    )
    serve.add_argument(
        "--chat-max-message-bytes",
        type=int,
        default=28 * 1024,
        metavar="N",
        help="largest chat message content in bytes (default 28672, ACS's)",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    serve.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="uvloop (libuv: cheaper sockets and callbacks for media), asyncio (the standard "
        "library's) or auto (default: uvloop where installed)",
    )
    serve.set_defaults(run=_serve)

    conn = sub.add_parser("connection-string", help="print the connection string")
    _add_endpoint_arguments(conn)
    _add_data_dir_argument(conn)
    conn.add_argument("--https", action="store_true", help="the server listens with TLS")
    conn.set_defaults(run=_connection_string)

    token = sub.add_parser("token", help="print a user access token")
    _add_data_dir_argument(token)
    token.add_argument("--user", required=True, metavar="ID", help="the identity id (sub)")
    token.add_argument(
        "--scopes", default="voip,chat", help="comma-separated scopes (default: voip,chat)"
    )
    token.add_argument(
        "--expires-minutes",
        type=int,
        default=DEFAULT_EXPIRES_IN_MINUTES,
        metavar="M",
        help=f"lifetime in minutes, 1..1440 (default {DEFAULT_EXPIRES_IN_MINUTES})",
    )
    token.set_defaults(run=_token)

    traversal_cli.add_commands(sub)

    # Its arguments belong to switchboard.client.cli_join, parsed in _join.
    sub.add_parser("join", help="join a call from the command line", add_help=False)
    return parser


def _add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"default {DEFAULT_PORT}; 0 picks a free port",
    )


def _add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="default ./data")


def _format_connection_string(config: Config) -> str:
    return format_connection_string(
        config.endpoint, base64.b64encode(config.access_key).decode("ascii")
    )


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aioice logs every connectivity check and alembic every plugin at INFO: keep those for
    # --log-level debug.
    if logging.getLogger().level > logging.DEBUG:
        for noisy in ("aioice", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    key, created = ensure_data_dir(args.data_dir)
    if created:
        print(f"created data directory {args.data_dir} and its access key")
    ssl_context = tls.context_from_args(args)
    # Bind before printing, so that --port 0 prints the port actually used.
    family = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((args.host, args.port), family=family)
    config = Config(
        access_key=key,
        host=args.host,
        port=sock.getsockname()[1],
        data_dir=args.data_dir,
        demo=not args.no_demo,
        media=traversal_cli.media_config(args),
        traversal=traversal_cli.traversal_config(args),
        tls=ssl_context is not None,
        adhoc_rooms=not args.no_adhoc_rooms,
        database_url=args.database_url,
        chat_max_message_bytes=args.chat_max_message_bytes,
    )
    print("connection string (a secret: whoever holds it can mint tokens):")
    print(_format_connection_string(config), flush=True)
    demo = " (web demo at /)" if config.demo else ""

    def ready(*_: object) -> None:  # run_app calls this once the socket listens
        print(f"Switchboard listening on {config.endpoint}{demo}", flush=True)

    loop = new_event_loop(args.event_loop)
    logging.getLogger(__name__).info("event loop: %s", type(loop).__module__.split(".")[0])
    web.run_app(create_app(config), sock=sock, print=ready, ssl_context=ssl_context, loop=loop)
    return 0


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """A new event loop for ``serve``: ``uvloop``, ``asyncio`` or ``auto`` (uvloop when it
    can be imported, else asyncio's). Raises OSError when uvloop is asked for but missing."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise OSError("uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _connection_string(args: argparse.Namespace) -> int:
    key = load_access_key(args.data_dir)
    config = Config(access_key=key, host=args.host, port=args.port, tls=args.https)
    print(_format_connection_string(config))
    return 0


def _token(args: argparse.Namespace) -> int:
    key = load_access_key(args.data_dir)
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        token, _ = TokenService(key).mint(args.user, scopes, args.expires_minutes)
    except ValueError as exc:
        print(f"switchboard token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _join(argv: list[str]) -> int:
    from switchboard.client.cli_join import add_arguments, run

    parser = argparse.ArgumentParser(prog="switchboard join", description="Join a call.")
    add_arguments(parser)
    return int(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
