"""The configuration file (YAML), validated into small frozen classes.

Every problem is reported with the file and the key path (``targets[1].cookie_env``),
all of them at once, so ``beamside check-config`` can list everything to fix.
Unknown keys are errors.  Cookies are never part of an error message, a
``repr`` or a log line.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .agents.config import (
    BUILTIN_PLUGINS,
    LEVELS,
    MAX_TOP_QUEUES,
    UserPlugin,
    read_user_plugins,
)
from .agents.config import AgentsConfig as AgentsConfig
from .agents.config import LogsConfig as LogsConfig
from .agents.config import NotificationsConfig as NotificationsConfig
from .agents.config import PluginsConfig as PluginsConfig
from .alarms.catalogue import (
    BUILTIN,
    OPTION_KEYS,
    SETTING_KEYS,
    AlarmConfig,
    GlobalParam,
    override_problems,
)
from .alarms.config import AlertmanagerConfig as AlertmanagerConfig
from .control.config import GrpcConfig, TokenFileError, is_loopback, load_identities
from .discovery.config import DnsDiscoveryConfig as DnsDiscoveryConfig
from .discovery.config import KubernetesDiscoveryConfig as KubernetesDiscoveryConfig
from .discovery.sharding import MAX_SHARDS
from .erldist.errors import TlsConfigError
from .erldist.limits import DistLimits
from .erldist.names import NodeName, parse_node_name
from .erldist.tls import SNI_DISABLE, VERIFY_MODES, TlsConfig
from .exporter.config import MAX_DIST_PEERS, MAX_SERIES_BUDGET
from .exporter.config import MetricsConfig as MetricsConfig
from .loki.config import LokiConfig as LokiConfig

T = TypeVar("T")

DEFAULT_HTTP_LISTEN = "127.0.0.1:9568"
DEFAULT_GRPC_LISTEN = "127.0.0.1:50051"
DEFAULT_METRICS_INTERVAL = 15.0
DEFAULT_LIVE_INTERVAL = 1.0

_BYTES = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_BYTE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
}
# The levels a node's log handler knows (logger's), most severe first.
LOG_LEVELS = LEVELS
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_ATOM_TEXT = re.compile(r"^[a-z][A-Za-z0-9_@]{0,254}$")


class ConfigError(Exception):
    """One or more problems in a configuration file."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


def parse_duration(text: object) -> float:
    """``"15s"``, ``"2m"``, ``"500ms"``, ``"1h"`` -> seconds."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration like '15s' or '2m', got {text!r}")
    if isinstance(text, int | float):
        raise ValueError(f"duration {text!r} needs a unit: write '{text}s'")
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration like '15s', '2m' or '500ms', got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_bytes(text: object) -> int:
    """``"64MiB"``, ``"1GiB"``, ``"500KB"`` or a plain integer -> bytes."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"expected a size like '64MiB' or '1GiB', got {text!r}")
    match = _BYTES.match(str(text))
    if match is None:
        raise ValueError(f"expected a size like '64MiB', '500KB' or '1GiB', got {text!r}")
    return int(match.group(1)) * _BYTE_UNITS[match.group(2)]


def parse_listen(text: object) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port)."""
    if not isinstance(text, str):
        raise ValueError(f"expected 'host:port', got {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected 'host:port', got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"port in {text!r} is not a number from 0 to 65535")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class CookieSource:
    """Where a target's cookie comes from; the cookie itself is read on demand."""

    kind: Literal["file", "env", "inline"]
    reference: str = field(repr=False)

    def describe(self) -> str:
        return {"file": f"file {self.reference}", "env": f"${self.reference}"}.get(
            self.kind, "inline cookie"
        )

    def read(self) -> str:
        """The cookie; ``ValueError`` (without the cookie) if it cannot be had."""
        if self.kind == "inline":
            value = self.reference
        elif self.kind == "file":
            problem = cookie_file_problem(self.reference)
            if problem is not None:
                raise ValueError(problem)
            try:
                raw = Path(self.reference).read_bytes()
                value = raw.decode("utf-8", errors="replace").strip(_COOKIE_SPACE)
            except OSError as exc:
                raise ValueError(
                    f"cannot read cookie file {self.reference}: {exc.strerror}"
                ) from None
        else:
            value = os.environ.get(self.reference, "").strip(_COOKIE_SPACE)
            if not value:
                raise ValueError(f"environment variable {self.reference} is empty or unset")
        if not value:
            raise ValueError(f"the cookie from {self.describe()} is empty")
        problem = cookie_text_problem(value, self.describe())
        if problem is not None:
            raise ValueError(problem)
        return value


# White space around a cookie, ignored (``str.strip()`` would also drop
# characters ``erl`` refuses, such as \x1c-\x1f and non-ASCII spaces).
_COOKIE_SPACE = " \t\r\n\f\v"
_COOKIE_CHARACTERS = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL"}


def cookie_text_problem(cookie: str, where: str) -> str | None:
    """Why ``erl`` would refuse ``cookie`` (white space around it already
    stripped, as ``erl`` ignores a trailing newline): it must be one line of
    printable ASCII.  Names the first bad character by kind and position,
    never the cookie."""
    for position, char in enumerate(cookie, start=1):
        if " " <= char <= "~":
            continue
        if char in _COOKIE_CHARACTERS:
            kind = _COOKIE_CHARACTERS[char]
        elif char < " " or char == "\x7f":
            kind = f"control character {ord(char):#04x}"
        else:
            kind = "a character outside printable ASCII"
        return (
            f"the cookie from {where} must be one line of printable ASCII characters: "
            f"{kind} at character {position}"
        )
    return None


def cookie_file_problem(path: str | Path) -> str | None:
    """Why ``erl`` would refuse ``path`` as a cookie file (not a regular file,
    or readable by group or others), with the mode; None when it is fine or
    absent (reading it says so)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return f"cookie file {path} is not a regular file"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return (
            f"cookie file {path} has mode {mode:04o}: it must be readable by its owner "
            "only (chmod 400)"
        )
    return None


Discover = Literal["none", "connected", "kubernetes", "dns"]
DISCOVER_MODES: tuple[Discover, ...] = ("none", "connected", "kubernetes", "dns")


@dataclass(frozen=True, slots=True)
class Target:
    """Nodes sharing a cookie: listed (``nodes``) and/or discovered (``discover``)."""

    nodes: tuple[str, ...]
    cookie: CookieSource
    discover: Discover = "none"
    family: str | None = None
    kubernetes: KubernetesDiscoveryConfig | None = None
    dns: DnsDiscoveryConfig | None = None
    #: distribution over TLS (``-proto_dist inet_tls``); None: plain TCP
    tls: TlsConfig | None = None

    def single(self, node: str) -> Target:
        """This target's settings (cookie, family, TLS) for one node it found."""
        return Target((node,), self.cookie, "none", self.family, tls=self.tls)


@dataclass(frozen=True, slots=True)
class ShardingConfig:
    """``sharding:``: this replica is shard ``index`` (None: from the pod name) of ``count``."""

    count: int = 1
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Intervals:
    metrics: float = DEFAULT_METRICS_INTERVAL
    live: float = DEFAULT_LIVE_INTERVAL


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    endpoint: str
    interval: float = DEFAULT_METRICS_INTERVAL
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    cluster: str
    node_name: str | None
    targets: tuple[Target, ...]
    intervals: Intervals = Intervals()
    http_listen: tuple[str, int] = ("127.0.0.1", 9568)
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    otlp: OtlpConfig | None = None
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    alertmanager: AlertmanagerConfig | None = None
    logs: LogsConfig = field(default_factory=LogsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    sharding: ShardingConfig = ShardingConfig()
    loki: LokiConfig | None = None
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    distribution: DistLimits = field(default_factory=DistLimits)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    source: str = "<config>"

    @property
    def grpc_listen(self) -> tuple[str, int]:
        return self.grpc.listen

    def manager_config(self) -> ManagerConfig:
        """What the node manager is given: no more than it reads."""
        return ManagerConfig(
            self.cluster,
            self.targets,
            self.intervals,
            self.agents,
            dist_per_peer=self.metrics.dist_per_peer,
            dist_max_peers=self.metrics.dist_max_peers,
            plugins=self.plugins,
        )


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """The node manager's part of the config: which nodes (``targets``), how
    often (``intervals``), what to attach with (``agents``), and the cluster
    label its records carry."""

    cluster: str
    targets: tuple[Target, ...]
    intervals: Intervals = Intervals()
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    #: ``metrics.dist_per_peer`` / ``dist_max_peers``, sent with every collect
    dist_per_peer: bool = False
    dist_max_peers: int = 100
    #: ``plugins:``, sent with every collect of the nodes it switches off plugins on
    plugins: PluginsConfig = field(default_factory=PluginsConfig)

    def collect_options(self, node: str) -> dict[str, Any]:
        """The collect options (``beamside_agent:collect/1``) of the config for ``node``."""
        return {
            "dist_per_peer": self.dist_per_peer,
            "max_peers": self.dist_max_peers,
            **self.plugins.collect_options(node),
        }


class _Reader:
    """Walks the YAML tree, collecting problems with their key paths."""

    def __init__(self, read_cookies: bool = False) -> None:
        self.problems: list[str] = []
        #: read every cookie now, as ``run`` does when it attaches (check-config)
        self.read_cookies = read_cookies

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def mapping(self, value: object, path: str, allowed: set[str]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                hint = f" (known keys: {', '.join(sorted(allowed))})"
                self.problem(_join(path, str(key)), f"unknown key{hint}")
        return value

    def convert(
        self, mapping: Mapping[str, Any], key: str, path: str, fn: Callable[[Any], T], default: T
    ) -> T:
        if key not in mapping:
            return default
        try:
            return fn(mapping[key])
        except ValueError as exc:
            self.problem(_join(path, key), str(exc))
            return default


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _label_value(what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValueError(f"{what} must be 1-128 letters, digits, '_', '.' or '-'")
        return value

    return check


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str) -> str:
    """``${NAME}`` replaced by the environment variable (``beamside@${POD_IP}``
    in a pod); an unset or empty variable is an error, not an empty string."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name, "")
        if not found:
            raise ValueError(f"environment variable {name} (in {text!r}) is not set")
        return found

    return _ENV_REF.sub(value, text)


def _node_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a node name like app@host, got {value!r}")
    return str(parse_node_name(value))


def _own_node_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a node name like beamside@host, got {value!r}")
    return _node_name(expand_env(value))


def _positive_interval(minimum: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < minimum:
            raise ValueError(f"must be at least {minimum:g}s, got {value!r}")
        return seconds

    return check


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def _positive_int(maximum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
            raise ValueError(f"expected a whole number from 1 to {maximum}, got {value!r}")
        return value

    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _log_level(value: Any) -> str:
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return str(value)


def _module_patterns(value: Any) -> tuple[str, ...]:
    """A list of module names or globs (``rabbit_ff_*``, ``Elixir.MyApp.Gen*``)."""
    if not isinstance(value, list):
        raise ValueError("expected a list of module names or globs like 'my_gen_*'")
    patterns: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > 255:
            raise ValueError(f"expected a module name or glob (1-255 characters), got {item!r}")
        patterns.append(item.strip())
    return tuple(patterns)


_TOP_KEYS = frozenset(
    {
        "cluster",
        "node_name",
        "targets",
        "intervals",
        "http",
        "grpc",
        "otlp",
        "alarms",
        "global_config",
        "alertmanager",
        "logs",
        "notifications",
        "sharding",
        "loki",
        "agents",
        "distribution",
        "metrics",
        "plugins",
    }
)


def parse_config(data: object, source: str = "<config>", *, read_cookies: bool = False) -> Config:
    """Validate a parsed YAML document; raise :class:`ConfigError` listing every problem.

    One reader per top-level section, always called in this order: the
    problems come out in it, and ``grpc.tls`` only complains about a missing
    file when nothing before it did."""
    r = _Reader(read_cookies)
    top = r.mapping(data, "", set(_TOP_KEYS))
    if data is None or not isinstance(data, dict):
        if data is None:
            r.problem("", "the file is empty")
        raise ConfigError(source, r.problems)
    cluster = _cluster(r, top)
    node_name = r.convert(top, "node_name", "", _own_node_name, None)
    targets, known_nodes = _targets(r, top.get("targets"))
    intervals = _intervals(r, top.get("intervals"))
    http_listen = _http(r, top.get("http"))
    grpc = _grpc(r, top.get("grpc"))
    _distinct_listeners(r, http_listen, grpc)
    otlp = _otlp(r, top.get("otlp")) if top.get("otlp") is not None else None
    alarms = _alarms(r, top.get("alarms"), top.get("global_config"))
    alertmanager = (
        _alertmanager(r, top.get("alertmanager")) if top.get("alertmanager") is not None else None
    )
    logs = _logs(r, top.get("logs"), known_nodes)
    notifications = _notifications(r, top.get("notifications"))
    sharding = _sharding(r, top.get("sharding"))
    loki = _loki(r, top.get("loki")) if top.get("loki") is not None else None
    agents = _agents(r, top.get("agents"))
    distribution = _distribution(r, top.get("distribution"))
    metrics = _metrics(r, top.get("metrics"))
    plugins = _plugins(r, top.get("plugins"), known_nodes)
    if r.problems:
        raise ConfigError(source, r.problems)
    return Config(
        cluster=cluster,
        node_name=node_name,
        targets=targets,
        intervals=intervals,
        http_listen=http_listen,
        grpc=grpc,
        otlp=otlp,
        alarms=alarms,
        alertmanager=alertmanager,
        logs=logs,
        notifications=notifications,
        sharding=sharding,
        loki=loki,
        agents=agents,
        distribution=distribution,
        metrics=metrics,
        plugins=plugins,
        source=source,
    )


def _cluster(r: _Reader, top: Mapping[str, Any]) -> str:
    cluster = r.convert(top, "cluster", "", _label_value("cluster"), "")
    if "cluster" not in top:
        r.problem("cluster", "required (a short name for this cluster, used as a label)")
    return cluster


def _targets(r: _Reader, value: object) -> tuple[tuple[Target, ...], dict[str, str]]:
    """The targets, and where each listed node is (``targets[i]``), for ``logs.nodes``."""
    targets: list[Target] = []
    if not isinstance(value, list) or not value:
        r.problem("targets", "expected a non-empty list of targets")
    else:
        for i, item in enumerate(value):
            target = _target(r, item, f"targets[{i}]")
            if target is not None:
                targets.append(target)
    seen: dict[str, str] = {}
    for i, target in enumerate(targets):
        for node in target.nodes:
            if node in seen:
                r.problem(f"targets[{i}].nodes", f"{node} is already listed in {seen[node]}")
            seen[node] = f"targets[{i}]"
    return tuple(targets), seen


def _target(r: _Reader, value: object, path: str) -> Target | None:
    allowed = {
        "nodes",
        "cookie",
        "cookie_file",
        "cookie_env",
        "discover",
        "family",
        "kubernetes",
        "dns",
        "tls",
    }
    m = r.mapping(value, path, allowed)
    if not m:
        if value is not None and isinstance(value, dict):
            r.problem(path, "a target needs 'nodes' and a cookie")
        return None
    discover = m.get("discover", "none")
    if discover not in DISCOVER_MODES:
        r.problem(
            _join(path, "discover"),
            f"expected one of {', '.join(DISCOVER_MODES)}, got {discover!r}",
        )
        discover = "none"
    # Kubernetes and DNS discovery find every node themselves: no seed needed.
    seeds_needed = discover not in ("kubernetes", "dns")
    nodes: list[str] = []
    raw_nodes = m.get("nodes", None if seeds_needed else [])
    if isinstance(raw_nodes, str):
        raw_nodes = [raw_nodes]
    if not isinstance(raw_nodes, list) or (seeds_needed and not raw_nodes):
        r.problem(_join(path, "nodes"), "expected a non-empty list of node names")
    else:
        for i, item in enumerate(raw_nodes):
            try:
                nodes.append(_node_name(item))
            except ValueError as exc:
                r.problem(f"{path}.nodes[{i}]", str(exc))
    given = [k for k in ("cookie", "cookie_file", "cookie_env") if k in m]
    cookie: CookieSource | None = None
    if len(given) != 1:
        r.problem(
            path,
            "give exactly one of cookie_file, cookie_env, cookie"
            + (f" (got {', '.join(given)})" if given else ""),
        )
    else:
        key = given[0]
        ref = m[key]
        if not isinstance(ref, str) or not ref:
            # Never echo the value: it may be the cookie itself.
            r.problem(_join(path, key), "expected a non-empty string")
        else:
            kind: Literal["file", "env", "inline"] = (
                "file" if key == "cookie_file" else "env" if key == "cookie_env" else "inline"
            )
            cookie = CookieSource(kind, ref)
            if r.read_cookies:
                try:
                    cookie.read()
                except ValueError as exc:
                    r.problem(_join(path, key), str(exc))
            elif kind == "file":
                problem = cookie_file_problem(ref)
                if problem is not None:
                    r.problem(_join(path, key), problem)
    family = r.convert(m, "family", path, _label_value("family"), None)
    kubernetes = _kubernetes(r, m, path, discover)
    dns = _dns(r, m, path, discover)
    tls = _tls(r, m.get("tls"), _join(path, "tls")) if "tls" in m else None
    if cookie is None or (seeds_needed and not nodes):
        return None
    if (discover == "kubernetes" and kubernetes is None) or (discover == "dns" and dns is None):
        return None
    if "tls" in m and tls is None:
        return None
    return Target(tuple(nodes), cookie, discover, family, kubernetes, dns, tls)


_TLS_FILES = ("cacertfile", "certfile", "keyfile")


def _tls(r: _Reader, value: object, path: str) -> TlsConfig | None:
    """A target's ``tls:``: files readable, the pair loadable, the mode known."""
    m = r.mapping(value, path, {*_TLS_FILES, "verify", "server_name_indication"})
    before = len(r.problems)
    if not m:
        if len(r.problems) == before:
            r.problem(path, "expected some of: cacertfile, certfile, keyfile, verify, ...")
        return None
    files: dict[str, str] = {}
    for key in _TLS_FILES:
        if key not in m:
            continue
        raw = m[key]
        if not isinstance(raw, str) or not raw:
            r.problem(_join(path, key), "expected a file path")
            continue
        try:
            with open(raw, "rb"):
                pass
        except OSError as exc:
            r.problem(_join(path, key), f"cannot read {raw}: {exc.strerror}")
            continue
        files[key] = raw
    verify = m.get("verify", "verify_peer")
    if verify not in VERIFY_MODES:
        r.problem(_join(path, "verify"), f"expected verify_peer or verify_none, got {verify!r}")
    sni = m.get("server_name_indication")
    if sni is not None and (not isinstance(sni, str) or not sni.strip() or " " in sni):
        r.problem(
            _join(path, "server_name_indication"),
            f"expected a host name, or {SNI_DISABLE} (no SNI and no name check)",
        )
    if len(r.problems) > before:
        return None
    try:
        tls = TlsConfig(
            cacertfile=files.get("cacertfile"),
            certfile=files.get("certfile"),
            keyfile=files.get("keyfile"),
            verify=verify,
            server_name_indication=sni,
        )
        tls.context()  # the certificate, key and CA load, and the key fits
    except (ValueError, TlsConfigError) as exc:
        r.problem(path, str(exc))
        return None
    return tls


def _discovery_section(
    r: _Reader, m: Mapping[str, Any], path: str, discover: str, key: str, allowed: set[str]
) -> dict[str, Any] | None:
    """The ``kubernetes:``/``dns:`` mapping of a target, with its durations converted."""
    where = _join(path, key)
    if key not in m:
        if discover == key:
            r.problem(where, f"required with discover: {key}")
        return None
    if discover != key:
        r.problem(where, f"only used with discover: {key}")
        return None
    section = dict(r.mapping(m[key], where, allowed))
    for name in ("interval", "timeout"):
        if name in section:
            section[name] = r.convert(section, name, where, _positive_interval(0.1), None)
            if section[name] is None:
                return None
    return {k: v for k, v in section.items() if k in allowed}


def _kubernetes(
    r: _Reader, m: Mapping[str, Any], path: str, discover: str
) -> KubernetesDiscoveryConfig | None:
    allowed = {
        "namespace",
        "label_selector",
        "node_name_template",
        "interval",
        "api_url",
        "token_file",
        "ca_file",
        "timeout",
    }
    section = _discovery_section(r, m, path, discover, "kubernetes", allowed)
    if section is None:
        return None
    try:
        return KubernetesDiscoveryConfig(**section)
    except (TypeError, ValueError) as exc:
        r.problem(_join(path, "kubernetes"), str(exc))
        return None


def _dns(r: _Reader, m: Mapping[str, Any], path: str, discover: str) -> DnsDiscoveryConfig | None:
    allowed = {"name", "node_name_template", "interval", "record", "resolver", "timeout"}
    section = _discovery_section(r, m, path, discover, "dns", allowed)
    if section is None:
        return None
    try:
        return DnsDiscoveryConfig(**section)
    except (TypeError, ValueError) as exc:
        r.problem(_join(path, "dns"), str(exc))
        return None


def _intervals(r: _Reader, value: object) -> Intervals:
    m = r.mapping(value, "intervals", {"metrics", "live"})
    return Intervals(
        metrics=r.convert(m, "metrics", "intervals", _positive_interval(1.0), 15.0),
        live=r.convert(m, "live", "intervals", _positive_interval(0.1), 1.0),
    )


def _http(r: _Reader, value: object) -> tuple[str, int]:
    m = r.mapping(value, "http", {"listen"})
    return r.convert(m, "listen", "http", parse_listen, parse_listen(DEFAULT_HTTP_LISTEN))


def _grpc(r: _Reader, value: object) -> GrpcConfig:
    path = "grpc"
    m = r.mapping(value, path, {"listen", "auth", "tls", "eval_enabled"})
    listen = r.convert(m, "listen", path, parse_listen, parse_listen(DEFAULT_GRPC_LISTEN))
    am = r.mapping(m.get("auth"), _join(path, "auth"), {"tokens_file"})
    tokens_file: Path | None = None
    if "tokens_file" in am:
        raw = am["tokens_file"]
        if not isinstance(raw, str) or not raw:
            r.problem("grpc.auth.tokens_file", "expected the path of a token file")
        else:
            tokens_file = Path(raw)
            try:
                load_identities(tokens_file)
            except TokenFileError as exc:
                r.problem("grpc.auth.tokens_file", str(exc))
    elif "auth" in m:
        r.problem("grpc.auth", "expected tokens_file")
    if tokens_file is None and not is_loopback(listen[0]):
        r.problem(
            "grpc.listen",
            f"{listen[0]} is not a loopback address: without grpc.auth.tokens_file the "
            "control plane only listens on loopback (127.0.0.1, ::1)",
        )
    tm = r.mapping(m.get("tls"), _join(path, "tls"), {"cert_file", "key_file"})
    tls: dict[str, Path] = {}
    for key in ("cert_file", "key_file"):
        if key in tm:
            raw = tm[key]
            if not isinstance(raw, str) or not raw:
                r.problem(f"grpc.tls.{key}", "expected a file path")
            elif not Path(raw).is_file():
                r.problem(f"grpc.tls.{key}", f"no such file: {raw}")
            else:
                tls[key] = Path(raw)
    if "tls" in m and len(tls) != 2 and not r.problems:
        r.problem("grpc.tls", "needs both cert_file and key_file")
    eval_enabled = r.convert(m, "eval_enabled", path, _flag, False)
    return GrpcConfig(
        listen=listen,
        tokens_file=tokens_file,
        tls_cert_file=tls.get("cert_file") if len(tls) == 2 else None,
        tls_key_file=tls.get("key_file") if len(tls) == 2 else None,
        eval_enabled=eval_enabled,
    )


def _distinct_listeners(r: _Reader, http_listen: tuple[str, int], grpc: GrpcConfig) -> None:
    # Port 0 picks a free port for each: the same "address" is fine there.
    if http_listen == grpc.listen and http_listen[1] != 0:
        r.problem("grpc.listen", "same address as http.listen")


def _otlp(r: _Reader, value: object) -> OtlpConfig:
    m = r.mapping(value, "otlp", {"endpoint", "interval", "headers"})
    endpoint = m.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        r.problem("otlp.endpoint", "expected an http(s) URL of an OTLP/HTTP receiver")
    headers = m.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        r.problem("otlp.headers", "expected a mapping of header name to string value")
        headers = {}
    return OtlpConfig(
        endpoint=endpoint if isinstance(endpoint, str) else "",
        interval=r.convert(m, "interval", "otlp", _positive_interval(1.0), 15.0),
        headers=tuple(sorted(headers.items())),
    )


def _alarms(r: _Reader, alarms: object, global_config: object) -> AlarmConfig:
    """``alarms:`` (per-alarm settings) and ``global_config:`` (the
    application parameters compared across nodes)."""
    return AlarmConfig(
        overrides=_alarm_overrides(r, alarms),
        global_params=_global_params(r, global_config),
    )


def _alarm_overrides(r: _Reader, value: object) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for alarm_id, settings in r.mapping(value, "alarms", set(BUILTIN)).items():
        if alarm_id not in BUILTIN:
            continue
        path = f"alarms.{alarm_id}"
        allowed = SETTING_KEYS | OPTION_KEYS.get(alarm_id, frozenset())
        m = r.mapping(settings, path, allowed)
        checked: dict[str, Any] = {}
        for key, raw in m.items():
            if key not in allowed:
                continue
            if key in ("delay", "hold"):  # 0s: none (their default)
                checked[key] = r.convert(m, key, path, parse_duration, None)
            elif key in ("window", "age"):
                checked[key] = r.convert(m, key, path, _positive_duration, None)
            elif key == "ignore":
                checked[key] = r.convert(m, key, path, _module_patterns, None)
            elif key == "enabled":
                if isinstance(raw, bool):
                    checked[key] = raw
                else:
                    r.problem(_join(path, key), "expected true or false")
            elif isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
                checked[key] = float(raw)
            else:
                r.problem(_join(path, key), f"expected a non-negative number, got {raw!r}")
        overrides[alarm_id] = {k: v for k, v in checked.items() if v is not None}
        for key, message in override_problems(alarm_id, overrides[alarm_id]):
            r.problem(_join(path, key), message)
    return overrides


def _global_params(r: _Reader, value: object) -> tuple[GlobalParam, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        r.problem("global_config", "expected a list of {app, key[, family]}")
        return ()
    params: list[GlobalParam] = []
    for i, item in enumerate(value):
        path = f"global_config[{i}]"
        m = r.mapping(item, path, {"app", "key", "family"})
        app, key = m.get("app"), m.get("key")
        if not isinstance(app, str) or not _ATOM_TEXT.match(app):
            r.problem(_join(path, "app"), "expected an application name")
            continue
        if not isinstance(key, str) or not _ATOM_TEXT.match(key):
            r.problem(_join(path, "key"), "expected a parameter name")
            continue
        family = r.convert(m, "family", path, _label_value("family"), None)
        params.append(GlobalParam(app, key, family))
    return tuple(params)


def _alertmanager(r: _Reader, value: object) -> AlertmanagerConfig | None:
    path = "alertmanager"
    m = r.mapping(value, path, {"urls", "resend_interval", "timeout"})
    urls = m.get("urls")
    if isinstance(urls, str):
        urls = [urls]
    try:
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ValueError("urls: expected a list of Alertmanager URLs")
        return AlertmanagerConfig(
            urls=tuple(urls),
            resend_interval=r.convert(m, "resend_interval", path, _positive_interval(1.0), 60.0),
            timeout=r.convert(m, "timeout", path, _positive_interval(0.1), 5.0),
        )
    except (ValueError, TypeError) as exc:
        r.problem(path, str(exc))
        return None


def _logs(r: _Reader, value: object, known_nodes: Mapping[str, str]) -> LogsConfig:
    path = "logs"
    m = r.mapping(value, path, {"level", "nodes", "max_message_bytes", "rate_limit", "crash_grace"})
    node_levels: list[tuple[str, str]] = []
    nodes = r.mapping(m.get("nodes"), _join(path, "nodes"), set(known_nodes))
    for node, level in nodes.items():
        if node not in known_nodes:
            continue  # already reported as an unknown key
        try:
            node_levels.append((node, _log_level(level)))
        except ValueError as exc:
            r.problem(f"{path}.nodes.{node}", str(exc))

    def size(v: Any) -> int:
        n = parse_bytes(v)
        if not 256 <= n <= 1 << 20:
            raise ValueError(f"must be from 256B to 1MiB, got {v!r}")
        return n

    def grace(v: Any) -> int:
        seconds = parse_duration(v)
        if not 0 <= seconds <= 86400 or seconds != int(seconds):
            raise ValueError(f"must be whole seconds from 0s to 24h, got {v!r}")
        return int(seconds)

    return LogsConfig(
        level=r.convert(m, "level", path, _log_level, "warning"),
        node_levels=tuple(sorted(node_levels)),
        max_message_bytes=r.convert(m, "max_message_bytes", path, size, 8192),
        rate_limit=r.convert(m, "rate_limit", path, _positive_int(1_000_000), 2000),
        crash_grace=r.convert(m, "crash_grace", path, grace, 120),
    )


def _notifications(r: _Reader, value: object) -> NotificationsConfig:
    path = "notifications"
    flags = {"shell", "code", "config", "system_monitor"}
    m = r.mapping(value, path, flags | {"system_monitor_rate"})
    return NotificationsConfig(
        shell=r.convert(m, "shell", path, _flag, True),
        code=r.convert(m, "code", path, _flag, True),
        config=r.convert(m, "config", path, _flag, True),
        system_monitor=r.convert(m, "system_monitor", path, _flag, False),
        system_monitor_rate=r.convert(m, "system_monitor_rate", path, _positive_int(10_000), 10),
    )


def _sharding(r: _Reader, value: object) -> ShardingConfig:
    path = "sharding"
    m = r.mapping(value, path, {"count", "index"})
    count = r.convert(m, "count", path, _positive_int(MAX_SHARDS), 1)
    index: int | None = None
    if "index" in m:
        raw = m["index"]
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < count:
            r.problem(_join(path, "index"), f"expected 0 to {count - 1}, got {raw!r}")
        else:
            index = raw
    return ShardingConfig(count, index)


def _loki(r: _Reader, value: object) -> LokiConfig | None:
    path = "loki"
    durations = {"batch_wait", "timeout", "min_backoff", "max_backoff", "spill_after"}
    sizes = {"batch_bytes", "memory_bytes", "spool_bytes"}
    m = r.mapping(value, path, {"url", "tenant", "spool_dir", "headers"} | durations | sizes)
    settings: dict[str, Any] = {}
    url = m.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        r.problem(_join(path, "url"), "expected Loki's http(s) base URL, e.g. http://loki:3100")
        return None
    settings["url"] = url
    for key in durations:
        if key in m:
            settings[key] = r.convert(m, key, path, _positive_interval(0.01), None)
    for key in sizes:
        if key in m:
            settings[key] = r.convert(m, key, path, parse_bytes, None)
    for key in ("tenant", "spool_dir"):
        if key in m:
            if isinstance(m[key], str) and m[key]:
                settings[key] = Path(m[key]) if key == "spool_dir" else m[key]
            else:
                r.problem(_join(path, key), "expected a non-empty string")
    headers = m.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        r.problem(_join(path, "headers"), "expected a mapping of header name to string value")
    else:
        settings["headers"] = tuple(sorted(headers.items()))
    if any(v is None for v in settings.values()):
        return None  # a conversion failed: already reported
    try:
        return LokiConfig(**settings)
    except (TypeError, ValueError) as exc:
        r.problem(path, str(exc))
        return None


def _distribution(r: _Reader, value: object) -> DistLimits:
    """The memory budget of distribution connections and net_ticktime (issue 14)."""
    path = "distribution"
    sizes = {"max_frame", "max_uncompressed", "max_buffered_per_peer", "max_buffered_total"}
    m = r.mapping(value, path, sizes | {"max_inflation_ratio", "net_ticktime"})
    settings: dict[str, Any] = {}
    for key in sorted(sizes):
        if key in m:
            settings[key] = r.convert(m, key, path, _positive_bytes, None)
    if "max_inflation_ratio" in m:
        settings["max_inflation_ratio"] = r.convert(
            m, "max_inflation_ratio", path, _ratio_at_least_1, None
        )
    if "net_ticktime" in m:
        settings["net_ticktime"] = r.convert(m, "net_ticktime", path, _positive_interval(1), None)
    if any(v is None for v in settings.values()):
        return DistLimits()  # a conversion failed: already reported
    try:
        return DistLimits(**settings)
    except ValueError as exc:
        r.problem(path, str(exc))
        return DistLimits()


def _positive_bytes(value: Any) -> int:
    size = parse_bytes(value)
    if size <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return size


def _ratio_at_least_1(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise ValueError(f"expected a number of at least 1, got {value!r}")
    return float(value)


def _agents(r: _Reader, value: object) -> AgentsConfig:
    path = "agents"
    m = r.mapping(value, path, {"scheduler_wall_time", "microstate_accounting"})
    return AgentsConfig(
        scheduler_wall_time=r.convert(m, "scheduler_wall_time", path, _flag, False),
        microstate_accounting=r.convert(m, "microstate_accounting", path, _flag, False),
    )


def _metrics(r: _Reader, value: object) -> MetricsConfig:
    """Distribution metrics per node or per peer, and the plugin series budget (issue 15)."""
    path = "metrics"
    m = r.mapping(value, path, {"dist_per_peer", "dist_max_peers", "series_budget"})
    default = MetricsConfig()
    return MetricsConfig(
        dist_per_peer=r.convert(m, "dist_per_peer", path, _flag, default.dist_per_peer),
        dist_max_peers=r.convert(
            m, "dist_max_peers", path, _positive_int(MAX_DIST_PEERS), default.dist_max_peers
        ),
        series_budget=r.convert(
            m, "series_budget", path, _positive_int(MAX_SERIES_BUDGET), default.series_budget
        ),
    )


def _plugins(r: _Reader, value: object, known_nodes: Mapping[str, str]) -> PluginsConfig:
    """Built-in plugins off everywhere (``disabled``) or on listed nodes (``nodes``)."""
    path = "plugins"
    m = r.mapping(value, path, {"disabled", "nodes", "directory", "rabbitmq"})

    def names(v: Any) -> frozenset[str]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"expected a list of plugin names, got {v!r}")
        unknown = sorted(set(v) - set(BUILTIN_PLUGINS))
        if unknown:
            raise ValueError(
                f"unknown plugin {', '.join(unknown)} (known: {', '.join(BUILTIN_PLUGINS)})"
            )
        return frozenset(v)

    node_disabled: list[tuple[str, frozenset[str]]] = []
    nodes = r.mapping(m.get("nodes"), _join(path, "nodes"), set(known_nodes))
    for node, settings in nodes.items():
        if node in known_nodes:  # else already reported as an unknown key
            own = r.mapping(settings, f"{path}.nodes.{node}", {"disabled"})
            node_disabled.append(
                (node, r.convert(own, "disabled", f"{path}.nodes.{node}", names, frozenset()))
            )
    def user(v: Any) -> tuple[UserPlugin, ...]:
        if not isinstance(v, str) or not v:
            raise ValueError(f"expected the path of a directory, got {v!r}")
        return read_user_plugins(v)

    rabbitmq = r.mapping(m.get("rabbitmq"), _join(path, "rabbitmq"), {"top_queues"})
    return PluginsConfig(
        disabled=r.convert(m, "disabled", path, names, frozenset()),
        node_disabled=tuple(sorted(node_disabled)),
        user=r.convert(m, "directory", path, user, ()),
        rabbitmq_top_queues=r.convert(
            rabbitmq, "top_queues", _join(path, "rabbitmq"), _positive_int(MAX_TOP_QUEUES), 0
        ),
    )


def load_config(path: str | Path, *, read_cookies: bool = False) -> Config:
    """Read and validate a YAML config file; with ``read_cookies``
    (check-config) also every target's cookie, by the read ``run`` does when
    it attaches (the file exists, is private and readable; the variable is
    set; the cookie is one line of printable ASCII)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}not valid YAML: {problem}"]) from None
    return parse_config(data, source, read_cookies=read_cookies)


def local_node_name(config: Config) -> NodeName | None:
    return parse_node_name(config.node_name) if config.node_name else None
