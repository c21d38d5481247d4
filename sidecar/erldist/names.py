"""Node names: ``alive@host``, long (``app@10.0.0.5``, ``app@h.example``) or short (``app@h``)."""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass

_ALIVE = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_HOST = re.compile(r"^[A-Za-z0-9_\-.:\[\]]{1,255}$")


@dataclass(frozen=True, slots=True)
class NodeName:
    alive: str
    host: str

    @property
    def is_long(self) -> bool:
        """Long names have a dot (FQDN or IPv4) or a colon (IPv6) in the host."""
        return "." in self.host or ":" in self.host

    def __str__(self) -> str:
        return f"{self.alive}@{self.host}"


def parse_node_name(text: str) -> NodeName:
    """Parse ``alive@host``; raise ``ValueError`` saying what is wrong."""
    alive, sep, host = text.partition("@")
    if not sep:
        raise ValueError(f"node name {text!r} has no '@host' part (expected name@host)")
    if not _ALIVE.match(alive):
        raise ValueError(
            f"node name {text!r}: the part before '@' must be letters, digits, '_' or '-'"
        )
    if "@" in host or not _HOST.match(host):
        raise ValueError(f"node name {text!r}: the host part {host!r} is not a valid host")
    return NodeName(alive, host)


def default_local_name(peer: NodeName, prefix: str = "beamside") -> NodeName:
    """A unique hidden-node name of the same kind (long/short) as ``peer``.

    Erlang refuses to mix long and short names on one connection, so the
    host part follows the peer: loopback for a loopback peer, the FQDN for
    other long names, the short host name for short names.
    """
    alive = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    if peer.host in ("127.0.0.1", "::1", "localhost"):
        return NodeName(alive, peer.host)
    if peer.is_long:
        fqdn = socket.getfqdn()
        return NodeName(alive, fqdn if "." in fqdn else "127.0.0.1")
    return NodeName(alive, socket.gethostname().split(".")[0])
