"""The ``beamside`` command.

Output into a reader that stops early (``beamside probe ... | head -1``) is
not an error: beamside stops writing, prints no traceback and exits with the
status the command had, 0 when it succeeded (not 141: the status must not
depend on whether the reader left before or after our last write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from . import __version__
from .config import ConfigError, CookieSource, ShardingConfig
from .discovery import DiscoveryError
from .discovery.sharding import ShardSpec
from .erldist.errors import (
    ConnectError,
    CookieRefused,
    DistError,
    DistTimeout,
    EpmdUnreachable,
    HandshakeError,
    HostUnresolvable,
    NodeNotRegistered,
    PeerCookieMismatch,
    TlsError,
    TlsRequired,
)
from .erldist.tls import VERIFY_MODES, TlsConfig

# Exit codes, so scripts can tell failures apart.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3  # host, EPMD, node name, port
EXIT_COOKIE = 4
EXIT_TIMEOUT = 5
EXIT_PROTOCOL = 6
EXIT_CONFIG = 7
EXIT_TLS = 8  # TLS distribution: certificates, names, TLS on one side only


class UsageError(Exception):
    pass


def _to_devnull(stream: TextIO) -> None:
    """After EPIPE on ``stream``: point its descriptor at /dev/null, so what is
    still buffered (flushed again at exit) and later writes go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def say(text: str) -> None:
    """One message to stderr; a reader gone from stderr leaves the exit status alone."""
    try:
        print(text, file=sys.stderr, flush=True)
    except BrokenPipeError:
        _to_devnull(sys.stderr)


def read_cookie(args: argparse.Namespace) -> str:
    """The cookie from --cookie, --cookie-file or --cookie-env, else
    ~/.erlang.cookie as erl does (never echoed)."""
    given = [
        source
        for source, value in (
            (CookieSource("inline", args.cookie or ""), args.cookie),
            (CookieSource("file", args.cookie_file or ""), args.cookie_file),
            (CookieSource("env", args.cookie_env or ""), args.cookie_env),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise UsageError("give only one of --cookie, --cookie-file, --cookie-env")
    source = given[0] if given else CookieSource("file", str(Path.home() / ".erlang.cookie"))
    try:
        return source.read()
    except ValueError as exc:
        hint = "" if given else " (give --cookie, --cookie-file or --cookie-env)"
        raise UsageError(f"{exc}{hint}") from None


def read_tls(args: argparse.Namespace) -> TlsConfig | None:
    """``--tls`` and the certificate flags (a target's ``tls:``), or None."""
    files = {k: getattr(args, k) for k in ("cacertfile", "certfile", "keyfile")}
    given = any(files.values()) or args.verify or args.server_name_indication
    if not (args.tls or given):
        return None
    try:
        return TlsConfig(
            **files,
            verify=args.verify or "verify_peer",
            server_name_indication=args.server_name_indication,
        )
    except ValueError as exc:
        raise UsageError(f"--tls: {exc}") from None


def _exit_code(exc: DistError) -> int:
    if isinstance(exc, TlsError | TlsRequired):
        return EXIT_TLS
    if isinstance(exc, CookieRefused | PeerCookieMismatch):
        return EXIT_COOKIE
    if isinstance(exc, DistTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, HostUnresolvable | EpmdUnreachable | NodeNotRegistered | ConnectError):
        return EXIT_UNREACHABLE
    if isinstance(exc, HandshakeError):
        return EXIT_UNREACHABLE
    return EXIT_PROTOCOL


def cmd_probe(args: argparse.Namespace) -> int:
    from .probe import probe

    cookie = read_cookie(args)
    tls = read_tls(args)
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    try:
        result = asyncio.run(probe(args.node, cookie, timeout=args.timeout, tls=tls))
    except ValueError as exc:  # a malformed node name
        raise UsageError(str(exc)) from None
    except DistError as exc:
        say(f"beamside probe: {args.node}: {exc} [{exc.metric_reason}]")
        return _exit_code(exc)
    print(result.render())
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from .config import load_config

    config = load_config(args.file, read_cookies=True)
    nodes = sum(len(t.nodes) for t in config.targets)
    print(
        f"{args.file}: ok — cluster {config.cluster!r}, {len(config.targets)} target(s), "
        f"{nodes} seed node(s), metrics every {config.intervals.metrics:g}s, "
        f"http {config.http_listen[0]}:{config.http_listen[1]}"
    )
    for i, target in enumerate(config.targets):
        print(
            f"  targets[{i}]: {', '.join(target.nodes)} "
            f"(cookie from {target.cookie.describe()}, discover {target.discover}"
            f"{', family ' + target.family if target.family else ''})"
        )
        if target.tls is not None:
            print(f"    tls: {target.tls.describe()}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .daemon import Daemon
    from .gc_policy import tune_at_start
    from .own_logging import setup_json_logging

    config = load_config(args.config)
    shard = shard_for(config.sharding, args.shard_index, args.shard_count)
    setup_json_logging()
    tune_at_start()

    async def main() -> None:
        try:
            daemon = Daemon(config, shard=shard, gc_tuning=True)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {config.http_listen[0]}:{config.http_listen[1]}: {exc.strerror}"
            ) from None
        except DiscoveryError as exc:
            raise ConfigError(config.source, [f"discovery: {exc}"]) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await daemon.run(stop)

    asyncio.run(main())
    return EXIT_OK


def shard_for(sharding: ShardingConfig, index: int | None, count: int | None) -> ShardSpec:
    """This replica's shard: the flags, then ``sharding:``, then the
    environment (``BEAMSIDE_SHARD_*``, the StatefulSet pod name)."""
    from .discovery.sharding import ShardingError, resolve_shard

    try:
        return resolve_shard(
            index if index is not None else sharding.index,
            count if count is not None else (sharding.count if sharding.count > 1 else None),
        )
    except ShardingError as exc:
        raise UsageError(str(exc)) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, main_demo

    if args.interval < 1:
        raise UsageError("--interval must be at least 1 (seconds)")
    try:
        main_demo(args.interval, args.duration, tls=args.tls)
    except DemoError as exc:
        say(f"beamside demo: {exc}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beamside",
        description="Operations sidecar for Erlang and Elixir clusters.",
        epilog="Output into a reader that stops early (| head) ends quietly, with the "
        "command's own exit status (0 when it succeeded).",
    )
    parser.add_argument("--version", action="version", version=f"beamside {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = sub.add_parser(
        "probe",
        help="connect to a node as a hidden node and print a summary",
        description=(
            "Connect to NODE as a hidden node and print its OTP release, ERTS version, "
            "uptime, process count and running applications. Exit codes: 0 ok, "
            f"{EXIT_USAGE} usage, {EXIT_UNREACHABLE} unreachable (host, EPMD, name), "
            f"{EXIT_COOKIE} cookie refused, {EXIT_TIMEOUT} timeout, "
            f"{EXIT_PROTOCOL} protocol error, {EXIT_TLS} TLS (certificates, names, TLS on "
            "one side only; the error ends with its reason); a reader that stops early "
            "(| head) changes none of them."
        ),
    )
    probe.add_argument("node", help="node name, e.g. app@10.0.0.5 or app@host")
    probe.add_argument("--cookie", help="the cookie itself (local trials only: visible in ps)")
    probe.add_argument("--cookie-file", help="file holding the cookie")
    probe.add_argument("--cookie-env", help="environment variable holding the cookie")
    probe.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    tls = probe.add_argument_group(
        "distribution over TLS (nodes run with -proto_dist inet_tls)",
        "the same settings as a target's tls: in the config file",
    )
    tls.add_argument("--tls", action="store_true", help="connect over TLS")
    tls.add_argument("--cacertfile", help="CA certificates that sign the nodes (PEM)")
    tls.add_argument("--certfile", help="our client certificate (PEM), for verify_peer nodes")
    tls.add_argument("--keyfile", help="its private key (PEM; default: in --certfile)")
    tls.add_argument(
        "--verify", choices=VERIFY_MODES, help="check the node's certificate (default verify_peer)"
    )
    tls.add_argument(
        "--server-name-indication",
        metavar="HOST",
        help="SNI and the name the certificate must carry (default: the node's host; "
        "'disable': neither)",
    )
    probe.set_defaults(func=cmd_probe)

    run = sub.add_parser(
        "run",
        help="the daemon: attach to the configured nodes and serve metrics",
        description="Run beamside with a YAML config file; JSON logs go to stderr; "
        "SIGTERM detaches cleanly from every node.",
    )
    run.add_argument("--config", required=True, help="YAML config file")
    run.add_argument(
        "--shard-index",
        type=int,
        help="this replica's shard (default: sharding.index, else the pod name's ordinal)",
    )
    run.add_argument(
        "--shard-count", type=int, help="number of replicas sharing the nodes (sharding.count)"
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check-config",
        help="validate a config file and explain what is wrong",
    )
    check.add_argument("file", help="YAML config file")
    check.set_defaults(func=cmd_check_config)

    demo = sub.add_parser(
        "demo",
        help="start a throwaway local node, attach to it and show it live",
        description=(
            "Start a throwaway Erlang node (private EPMD on a free loopback port, random "
            "cookie), attach as a hidden node, print its summary and live figures. "
            "Ctrl-C stops everything the demo started."
        ),
    )
    demo.add_argument("--interval", type=float, default=5.0, help="seconds between figures")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument(
        "--tls",
        action="store_true",
        help="run the node with TLS distribution (-proto_dist inet_tls, verify_peer + "
        "fail_if_no_peer_cert) and a throwaway CA made with openssl",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        say(f"beamside {args.command}: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        say(str(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


def main(argv: Sequence[str] | None = None) -> int:
    code = EXIT_OK
    try:
        try:
            code = _main(argv)
        finally:
            # A reader that left shows here (or in a print above), not as an
            # "Exception ignored" at interpreter exit. --help and --version
            # leave through SystemExit, flushed here too.
            sys.stdout.flush()
    except BrokenPipeError:
        _to_devnull(sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
