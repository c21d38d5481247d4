"""Settings of the gRPC control plane, and its token file.

``grpc:`` in the beamside config maps onto :class:`GrpcConfig` (the main
config reader fills it in).  The token file (``grpc.auth.tokens_file``) is a
YAML mapping of bearer token to role::

    s3cret: operator
    an0ther: viewer
    # a name shown in the audit log instead of the token's fingerprint:
    r00t-t0ken: {role: admin, name: alice}

Roles are ordered: ``viewer`` reads, ``operator`` also garbage-collects,
purges, terminates and changes config, ``admin`` also evaluates.  Tokens are
never logged: the audit log names a token by its ``name`` or by
``token:<first 8 hex digits of its SHA-256>``.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

DEFAULT_LISTEN = ("127.0.0.1", 50051)
MIN_TOKEN_LENGTH = 8


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: object) -> Role:
        if isinstance(text, str):
            try:
                return cls[text.strip().upper()]
            except KeyError:
                pass
        raise ValueError(f"unknown role {text!r} (viewer, operator or admin)")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who makes a call: a token's name (never the token) and its role."""

    name: str
    role: Role

    def __str__(self) -> str:
        return f"{self.name} ({self.role})"


ANONYMOUS = Identity("anonymous", Role.ADMIN)  # no auth configured: loopback only


class TokenFileError(ValueError):
    """The token file cannot be read or is not a valid token -> role mapping."""


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    """``grpc:`` of the beamside config.

    Without ``tokens_file`` every caller is :data:`ANONYMOUS`: the config
    reader only allows that on a loopback ``listen`` address.  TLS needs both
    files or neither.
    """

    listen: tuple[str, int] = DEFAULT_LISTEN
    tokens_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    eval_enabled: bool = False

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("grpc.tls needs both cert_file and key_file")

    @property
    def auth_enabled(self) -> bool:
        return self.tokens_file is not None

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a ``grpc.listen`` host) only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def fingerprint(token: str) -> str:
    """How a token without a name appears in logs."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def load_tokens(path: str | Path) -> Mapping[str, Role]:
    """Read a token file: ``{token: Role}`` (see :func:`load_identities`)."""
    return MappingProxyType({t: i.role for t, i in load_identities(path).items()})


def load_identities(path: str | Path) -> Mapping[str, Identity]:
    """Read a token file: ``{token: Identity}``.

    Raises :class:`TokenFileError` naming the file and every bad entry (by
    position, never by token) when the file is unreadable, not a mapping,
    has a role that does not exist, or a token shorter than 8 characters.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenFileError(f"{source}: cannot read the token file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TokenFileError(f"{source}: not valid YAML{where}") from None
    if not isinstance(data, dict) or not data:
        raise TokenFileError(
            f"{source}: expected a mapping of token to role (a line like '<token>: operator')"
        )
    problems: list[str] = []
    tokens: dict[str, Identity] = {}
    for position, (token, value) in enumerate(data.items(), start=1):
        where = f"entry {position}"
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            problems.append(
                f"{where}: a token must be a string of at least {MIN_TOKEN_LENGTH} characters"
            )
            continue
        name = fingerprint(token)
        raw_role: object = value
        if isinstance(value, dict):
            unknown = set(value) - {"role", "name"}
            if unknown:
                problems.append(f"{where}: unknown keys {sorted(map(str, unknown))} (role, name)")
                continue
            raw_role = value.get("role")
            given = value.get("name")
            if given is not None:
                if not isinstance(given, str) or not given.strip():
                    problems.append(f"{where}: name must be a non-empty string")
                    continue
                name = given.strip()
        try:
            role = Role.parse(raw_role)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        tokens[token] = Identity(name, role)
    if problems:
        raise TokenFileError(f"{source}: " + "; ".join(problems))
    return MappingProxyType(tokens)
