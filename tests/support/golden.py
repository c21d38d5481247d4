"""The golden collect replies: the reference for the typed node model.

``tests/vectors/replies/{otp25,otp28,elixir}.etf`` are ``collect/1`` replies
recorded from real OTP 25, OTP 28 and Elixir nodes; the ``.prom`` files beside
them are the ``/metrics`` the exporter renders from them (and from two
variants of each: ``errors``, where every other section is ``{error, _}``,
and ``shapes``, where every other section has a shape no agent sends).  These
helpers rebuild exactly those snapshots and that exposition, so a test can
compare with the committed bytes or read the typed values of a real reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from sidecar.erldist.term import Atom, decode, encode
from sidecar.exporter.vm_metrics import vm_metric_families
from sidecar.model import EXPORTER_SECTIONS, NodeSnapshot, decode_snapshot

__all__ = [
    "KINDS",
    "REPLIES",
    "RUNTIMES",
    "exposition",
    "golden_snapshot",
    "packed",
    "prom_path",
    "reply",
    "unpacked",
    "variant",
]

REPLIES: Final = Path(__file__).resolve().parent.parent / "vectors" / "replies"
RUNTIMES: Final = ("otp25", "otp28", "elixir")
#: "" is the reply as recorded
KINDS: Final = ("", "errors", "shapes")

FAMILY: Final = "golden"
CLUSTER: Final = "c"
TAKEN_AT: Final = 1.7e9
DURATION: Final = 0.012


def reply(name: str) -> dict[str, object]:
    """The recorded reply of runtime ``name`` (the map ``collect/1`` answered)."""
    term = decode(REPLIES.joinpath(f"{name}.etf").read_bytes())
    if type(term) is not dict:
        raise TypeError(f"{name}.etf is not a map: {type(term).__name__}")
    return term


def variant(reply: dict[str, object], kind: str) -> dict[str, object]:
    """``reply`` with every other top-level key (sorted) replaced.

    ``errors``: keys at an even index become ``{error, {badarg, <<"x">>}}``.
    ``shapes``: keys at an odd index become ``12345`` (index % 4 == 1) or
    ``[1, <<"two">>, three]``.  ``""``: the reply unchanged (a copy).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown variant {kind!r}")
    out = dict(reply)
    for i, key in enumerate(sorted(reply)):
        if kind == "errors" and i % 2 == 0:
            out[key] = (Atom("error"), (Atom("badarg"), b"x"))
        elif kind == "shapes" and i % 2 == 1:
            out[key] = 12345 if i % 4 == 1 else [1, b"two", Atom("three")]
    return out


def packed(reply: dict[str, object]) -> dict[str, object]:
    """``reply`` as an agent of version 12 sends it: the exporter sections
    that are maps packed in one ``term_to_binary``'d map under ``packed``."""
    inner = {Atom(k): v for k, v in reply.items() if k in EXPORTER_SECTIONS and type(v) is dict}
    out = {k: v for k, v in reply.items() if k not in inner}
    out[Atom("packed")] = encode(inner)
    return out


def unpacked(reply: dict[str, Any]) -> dict[str, Any]:
    """A collect reply of agent version 12 with its packed sections also at
    the top level, as earlier agents sent them (``packed`` left as it is)."""
    inner = reply.get("packed")
    return {**reply, **decode(inner)} if isinstance(inner, bytes) else reply


def node_name(name: str, kind: str = "") -> str:
    return f"{name}-{kind}@127.0.0.1" if kind else f"{name}@127.0.0.1"


def golden_snapshot(name: str, kind: str = "", *, pack: bool = False) -> NodeSnapshot:
    """The snapshot of runtime ``name``'s reply (or its ``kind`` variant),
    decoded as the .prom files were rendered from (``pack``: the reply as
    agent version 12 sends it)."""
    term = variant(reply(name), kind)
    return decode_snapshot(
        packed(term) if pack else term,
        node=node_name(name, kind),
        family=FAMILY,
        cluster=CLUSTER,
        taken_at=TAKEN_AT,
        duration=DURATION,
    )


def prom_path(name: str, kind: str = "") -> Path:
    """The committed exposition of a variant (``all`` for every snapshot)."""
    return REPLIES / (f"{name}-{kind}.prom" if kind else f"{name}.prom")


class _Snapshots:
    """A collector of the given snapshots, as the exporter registers them."""

    def __init__(self, snaps: Iterable[NodeSnapshot]) -> None:
        self._snaps = tuple(snaps)

    def collect(self) -> list[Metric]:
        return vm_metric_families(self._snaps)


def exposition(snaps: Iterable[NodeSnapshot]) -> bytes:
    """The Prometheus text exposition of ``snaps`` (what /metrics serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshots(snaps))
    return generate_latest(registry)
