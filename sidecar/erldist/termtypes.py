"""The values of the Erlang External Term Format codec (:mod:`sidecar.erldist.term`).

They live apart from the codec so that the codec can be compiled (mypyc) while
these stay ordinary Python classes: a ``str`` subclass and frozen, slotted
dataclasses, with the same identity whether the compiled or the pure-Python
codec made them.  Import them from :mod:`sidecar.erldist.term`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "Atom",
    "BitBinary",
    "Charlist",
    "DecodeLimits",
    "Export",
    "Fun",
    "ImproperList",
    "Map",
    "Pid",
    "Port",
    "Reference",
    "Term",
]


class Atom(str):
    """An Erlang atom.  A ``str`` subclass, so it compares equal to its text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Pid:
    node: Atom
    id: int
    serial: int
    creation: int

    def __str__(self) -> str:
        return f"<{self.node}.{self.id}.{self.serial}>"


@dataclass(frozen=True, slots=True)
class Port:
    node: Atom
    id: int
    creation: int

    def __str__(self) -> str:
        return f"#Port<{self.node}.{self.id}>"


@dataclass(frozen=True, slots=True)
class Reference:
    node: Atom
    creation: int
    ids: tuple[int, ...]

    def __str__(self) -> str:
        return f"#Ref<{self.node}.{'.'.join(str(i) for i in reversed(self.ids))}>"


@dataclass(frozen=True, slots=True)
class Export:
    """``fun Module:Function/Arity``."""

    module: Atom
    function: Atom
    arity: int


@dataclass(frozen=True, slots=True)
class Fun:
    """A local fun (NEW_FUN_EXT).  Opaque: it can be passed back, not called."""

    arity: int
    uniq: bytes
    index: int
    module: Atom
    old_index: int
    old_uniq: int
    pid: Pid
    free_vars: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class BitBinary:
    """A bitstring whose length is not a multiple of 8.

    ``bits`` is the number of significant bits in the last byte (1..8); the
    unused low bits of the last byte are zero.
    """

    data: bytes
    bits: int

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 8 or not self.data:
            raise ValueError("BitBinary needs data and 1..8 bits in its last byte")


@dataclass(frozen=True, slots=True)
class ImproperList:
    """``[E1, E2, ... | Tail]`` where ``Tail`` is not ``[]``."""

    elements: tuple[Any, ...]
    tail: Any


@dataclass(frozen=True, slots=True)
class Charlist:
    """Encode ``text`` as an Erlang list of code points (an Erlang "string")."""

    text: str


@dataclass(frozen=True, slots=True)
class Map:
    """An Erlang map whose keys Python cannot hash (lists, maps as keys), or
    that has keys Erlang tells apart and Python does not (``1``, ``1.0`` and
    ``true``).

    Decoded maps are plain ``dict`` whenever every key is hashable and distinct.
    """

    pairs: tuple[tuple[Any, Any], ...]


Term: TypeAlias = Any
"""Any value this codec decodes to or encodes from (see the module table)."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Caps that keep a hostile input from costing unbounded memory or time."""

    max_depth: int = 400
    """Nesting of containers; below the interpreter's recursion limit."""
    max_uncompressed: int = 512 * 1024 * 1024
    """Largest declared size of a compressed term's inflated form."""
    max_inflation_ratio: float | None = None
    """Largest declared inflated size over the compressed bytes that follow
    (None: no ratio check); a peer's zip bomb is refused before inflating."""
    max_big_bytes: int = 1 << 20
    """Largest bignum in bytes (~2.5 million decimal digits)."""
