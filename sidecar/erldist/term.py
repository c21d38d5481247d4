"""Erlang External Term Format: encoder and decoder.

Mapping between Erlang and Python (both directions, nothing guessed):

=====================  ==========================  ==========================
Erlang                 decoded as                  encoded from
=====================  ==========================  ==========================
atom                   :class:`Atom` (a ``str``)    :class:`Atom`
``true`` / ``false``   ``True`` / ``False``        ``bool``
integer (any size)     ``int``                     ``int``
float                  ``float``                   ``float``
binary                 ``bytes``                   ``bytes``, ``bytearray``
bitstring              :class:`BitBinary`          :class:`BitBinary`
list (proper)          ``list``                    ``list``
STRING_EXT list        ``list`` of ``int``         :class:`Charlist`, or a list
                                                   of ints 0..255
improper list          :class:`ImproperList`       :class:`ImproperList`
tuple                  ``tuple``                   ``tuple``
map                    ``dict`` (or :class:`Map`   ``dict``, :class:`Map`
                       if a key is unhashable)
pid / port / ref       :class:`Pid` / :class:`Port` / :class:`Reference`
``fun M:F/A``          :class:`Export`             :class:`Export`
fun                    :class:`Fun`                :class:`Fun`
=====================  ==========================  ==========================

A plain Python ``str`` is refused by the encoder: it could mean a binary, a
charlist or an atom, so the caller says which (``s.encode()``,
``Charlist(s)``, ``Atom(s)``).  ``None`` is refused for the same reason.

Decoding is offset based (no re-slicing of the input), and bounded: every
declared length is checked against the bytes that remain before anything is
allocated, nesting is capped, compressed terms are inflated with a cap, so a
malformed or hostile input raises :class:`DecodeError` and never a
``MemoryError``, ``RecursionError`` or a hang.

``pip install`` compiles this module with mypyc where it can (``setup.py``;
about 3x faster decoding); this source is the fallback and is tested alongside
(:mod:`sidecar.compiled`).  After editing it, run ``pip install -e .``
again: a test refuses a compiled module built from another version.  The
value classes live in :mod:`sidecar.erldist.termtypes`, shared by both builds.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any, Final

from .errors import DecodeError, EncodeError, InflationRefused
from .termtypes import (
    Atom,
    BitBinary,
    Charlist,
    DecodeLimits,
    Export,
    Fun,
    ImproperList,
    Map,
    Pid,
    Port,
    Reference,
    Term,
)

__all__ = [
    "DEFAULT_LIMITS",
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
    "decode",
    "decode_from",
    "encode",
    "encode_into",
]

VERSION: Final = 131

# Tags of the external term format (erts/doc "External Term Format").
NEW_FLOAT_EXT: Final = 70
BIT_BINARY_EXT: Final = 77
COMPRESSED: Final = 80
ATOM_CACHE_REF: Final = 82
NEW_PID_EXT: Final = 88
NEW_PORT_EXT: Final = 89
NEWER_REFERENCE_EXT: Final = 90
SMALL_INTEGER_EXT: Final = 97
INTEGER_EXT: Final = 98
FLOAT_EXT: Final = 99
ATOM_EXT: Final = 100
REFERENCE_EXT: Final = 101
PORT_EXT: Final = 102
PID_EXT: Final = 103
SMALL_TUPLE_EXT: Final = 104
LARGE_TUPLE_EXT: Final = 105
NIL_EXT: Final = 106
STRING_EXT: Final = 107
LIST_EXT: Final = 108
BINARY_EXT: Final = 109
SMALL_BIG_EXT: Final = 110
LARGE_BIG_EXT: Final = 111
NEW_FUN_EXT: Final = 112
EXPORT_EXT: Final = 113
NEW_REFERENCE_EXT: Final = 114
SMALL_ATOM_EXT: Final = 115
MAP_EXT: Final = 116
FUN_EXT: Final = 117
ATOM_UTF8_EXT: Final = 118
SMALL_ATOM_UTF8_EXT: Final = 119
V4_PORT_EXT: Final = 120
LOCAL_EXT: Final = 121


DEFAULT_LIMITS: Final = DecodeLimits()

_COMPILED: Final = False
"""True in the copy setup.py compiles: there, native integer arithmetic on
bytes beats a call into ``struct`` (here, in the interpreter, it is the other
way round), so a few hot reads take the branch that suits the build."""
_SOURCE_SHA256: Final[str | None] = None
"""The SHA-256 of the term.py a compiled build was made from (setup.py fills it
in the copy it compiles; None here): see :mod:`sidecar.compiled`."""

_INFLATION_FLOOR: Final = 1 << 16
"""A term this small inflated passes whatever its ratio (tiny terms compress well)."""

_TRUE: Final = Atom("true")
_FALSE: Final = Atom("false")

_u16: Final = struct.Struct(">H").unpack_from
_u32: Final = struct.Struct(">I").unpack_from
_i32: Final = struct.Struct(">i").unpack_from
_u64: Final = struct.Struct(">Q").unpack_from
_f64: Final = struct.Struct(">d").unpack_from
_pid_tail: Final = struct.Struct(">III").unpack_from
_port_tail: Final = struct.Struct(">II").unpack_from
_v4_port_tail: Final = struct.Struct(">QI").unpack_from
_isfinite: Final = math.isfinite

# Atoms repeat constantly (module names, tags, the node name): keep the
# decoded objects, keyed by their encoded bytes.  Bounded, and cleared when
# full, so a peer sending endless distinct atoms cannot grow it forever.
_ATOM_CACHE_MAX: Final = 1 << 16
_utf8_atoms: Final[dict[bytes, Any]] = {}
_latin1_atoms: Final[dict[bytes, Any]] = {}


def _atom(raw: bytes, utf8: bool, pos: int) -> Any:
    cache = _utf8_atoms if utf8 else _latin1_atoms
    hit = cache.get(raw)
    if hit is not None:
        return hit
    try:
        text = raw.decode("utf-8" if utf8 else "latin-1")
    except UnicodeDecodeError:
        raise DecodeError("atom is not valid UTF-8", pos) from None
    if len(text) > 255:
        raise DecodeError("atom longer than 255 characters", pos)
    value: Any = True if text == "true" else False if text == "false" else Atom(text)
    if len(cache) >= _ATOM_CACHE_MAX:
        cache.clear()
    cache[raw] = value
    return value


# A frozen dataclass's __init__ sets each field through object.__setattr__,
# which costs more than all the rest of decoding a pid; pids fill process
# listings, so the decoder sets the slots through their descriptors instead.
_object_new: Final = object.__new__
_set_pid_node: Final = Pid.__dict__["node"].__set__
_set_pid_id: Final = Pid.__dict__["id"].__set__
_set_pid_serial: Final = Pid.__dict__["serial"].__set__
_set_pid_creation: Final = Pid.__dict__["creation"].__set__


def _new_pid(node: Atom, pid_id: int, serial: int, creation: int) -> Pid:
    """``Pid(node, pid_id, serial, creation)``, faster."""
    pid: Pid = _object_new(Pid)
    _set_pid_node(pid, node)
    _set_pid_id(pid, pid_id)
    _set_pid_serial(pid, serial)
    _set_pid_creation(pid, creation)
    return pid


_DEPTH_CEILING: Final = 1000
"""Nesting never decoded, whatever ``DecodeLimits.max_depth`` says: the pure
module would hit the interpreter's recursion limit (a RecursionError, turned
into a DecodeError) about here, and the compiled one, whose calls are C calls
that no recursion limit guards, must stop before its C stack ends."""


class _Decoder:
    """The input of one decoding run and its limits, read off ``DecodeLimits``
    once (attributes of this class are plain fields once compiled)."""

    __slots__ = ("buf", "end", "max_big_bytes", "max_depth")

    def __init__(self, buf: bytes, end: int, limits: DecodeLimits) -> None:
        self.buf = buf
        self.end = end
        self.max_depth: int = min(limits.max_depth, _DEPTH_CEILING)
        self.max_big_bytes: int = limits.max_big_bytes


def _be32(buf: bytes, pos: int) -> int:
    """The unsigned big-endian 32-bit word at ``pos`` (IndexError past the end)."""
    return buf[pos] << 24 | buf[pos + 1] << 16 | buf[pos + 2] << 8 | buf[pos + 3]


def _need(end: int, pos: int, n: int) -> None:
    if n < 0 or pos + n > end:
        raise DecodeError(f"truncated term: need {n} bytes, {max(end - pos, 0)} remain", pos)


def _items(d: _Decoder, pos: int, count: int, depth: int) -> tuple[list[Any], int]:
    """Decode ``count`` consecutive terms at ``pos``; return them and the offset after.

    This loop is the decoder's core.  The tags that real payloads are made of
    are decoded inline, most frequent first, with no call per leaf term;
    containers recurse (one frame per nesting level, counted by ``depth``);
    the other tags go to :func:`_decode_other`.

    ``d.end`` is always ``len(d.buf)``, so the fixed-size reads here skip
    their bounds checks: running off the end raises ``IndexError`` or
    ``struct.error``, which :func:`_decode_one` turns into a DecodeError.
    Slices never raise, so every variable-length read is checked first.
    """
    buf = d.buf
    end = d.end
    items: list[Any] = []
    for _ in range(count):
        tag = buf[pos]

        if tag == SMALL_INTEGER_EXT:
            items.append(buf[pos + 1])
            pos += 2

        elif tag == SMALL_ATOM_UTF8_EXT or tag == ATOM_EXT:
            # The two atom tags real nodes send: UTF-8 (OTP 26+, minor_version 2)
            # and latin-1 (OTP 25's term_to_binary default).
            if tag == ATOM_EXT:
                start = pos + 3
                stop = start + (buf[pos + 1] << 8 | buf[pos + 2])
                cache = _latin1_atoms
            else:
                start = pos + 2
                stop = start + buf[pos + 1]
                cache = _utf8_atoms
            if stop > end:
                _need(end, start, stop - start)
            raw = buf[start:stop]
            value = cache.get(raw)
            if value is None:
                value = _atom(raw, tag != ATOM_EXT, start)
            items.append(value)
            pos = stop

        elif tag == SMALL_TUPLE_EXT or tag == LARGE_TUPLE_EXT:
            if tag == SMALL_TUPLE_EXT:
                arity = buf[pos + 1]
                pos += 2
            else:
                (arity,) = _u32(buf, pos + 1)
                pos += 5
                if arity > end - pos:
                    raise DecodeError(f"tuple arity {arity} exceeds the remaining input", pos)
            if depth >= d.max_depth:
                raise DecodeError("term nested too deeply", pos)
            elements, pos = _items(d, pos, arity, depth + 1)
            items.append(tuple(elements))

        elif tag == INTEGER_EXT:
            if _COMPILED:
                n = _be32(buf, pos + 1)
                items.append(n - 0x100000000 if n & 0x80000000 else n)
            else:
                items.append(_i32(buf, pos + 1)[0])
            pos += 5

        elif tag == NEW_PID_EXT or tag == PID_EXT:
            # The node atom, inline when it is already in the atom cache.
            pos += 1
            node_tag = buf[pos]
            node: Any = None
            if node_tag == ATOM_EXT:
                stop = pos + 3 + (buf[pos + 1] << 8 | buf[pos + 2])
                node = _latin1_atoms.get(buf[pos + 3 : stop])
            elif node_tag == SMALL_ATOM_UTF8_EXT:
                stop = pos + 2 + buf[pos + 1]
                node = _utf8_atoms.get(buf[pos + 2 : stop])
            if type(node) is Atom and stop <= end:
                pos = stop
            else:
                node, pos = _node(d, pos)
            if tag == NEW_PID_EXT and _COMPILED:
                pid_id = _be32(buf, pos)
                serial = _be32(buf, pos + 4)
                creation = _be32(buf, pos + 8)
                pos += 12
            elif tag == NEW_PID_EXT:
                pid_id, serial, creation = _pid_tail(buf, pos)
                pos += 12
            else:
                pid_id, serial = _port_tail(buf, pos)
                creation = buf[pos + 8]
                pos += 9
            items.append(_new_pid(node, pid_id, serial, creation))

        elif tag == LIST_EXT:
            n = _be32(buf, pos + 1) if _COMPILED else _u32(buf, pos + 1)[0]
            pos += 5
            if n > end - pos:
                raise DecodeError(f"list length {n} exceeds the remaining input", pos)
            if depth >= d.max_depth:
                raise DecodeError("term nested too deeply", pos)
            elements, pos = _items(d, pos, n, depth + 1)
            if pos < end and buf[pos] == NIL_EXT:
                items.append(elements)
                pos += 1
                continue
            (tail,), pos = _items(d, pos, 1, depth + 1)
            if isinstance(tail, list):
                # A non-canonical encoding with a list as the tail: splice it.
                items.append(elements + tail)
            elif isinstance(tail, ImproperList):
                items.append(ImproperList(tuple(elements) + tail.elements, tail.tail))
            else:
                items.append(ImproperList(tuple(elements), tail))

        elif tag == STRING_EXT:
            n = buf[pos + 1] << 8 | buf[pos + 2]
            pos += 3
            _need(end, pos, n)
            items.append(list(buf[pos : pos + n]))
            pos += n

        elif tag == BINARY_EXT:
            n = _be32(buf, pos + 1) if _COMPILED else _u32(buf, pos + 1)[0]
            pos += 5
            _need(end, pos, n)
            items.append(buf[pos : pos + n])
            pos += n

        elif tag == NIL_EXT:
            items.append([])
            pos += 1

        elif tag == MAP_EXT:
            arity = _be32(buf, pos + 1) if _COMPILED else _u32(buf, pos + 1)[0]
            pos += 5
            if arity * 2 > end - pos:
                raise DecodeError(f"map arity {arity} exceeds the remaining input", pos)
            if depth >= d.max_depth:
                raise DecodeError("term nested too deeply", pos)
            flat, pos = _items(d, pos, 2 * arity, depth + 1)
            items.append(_make_map(flat[0::2], flat[1::2]))

        elif tag == NEW_FLOAT_EXT:
            number = _f64(buf, pos + 1)[0]
            if not _isfinite(number):
                raise DecodeError("NEW_FLOAT_EXT is not a finite number", pos + 1)
            items.append(number)
            pos += 9

        elif tag == NEW_FUN_EXT:  # here, not in _decode_other: one frame less per level
            value, pos = _decode_fun(d, pos + 1, depth)
            items.append(value)

        else:
            value, pos = _decode_other(d, tag, pos + 1, depth)
            items.append(value)
    return items, pos


def _make_map(keys: list[Any], values: list[Any]) -> Any:
    try:
        mapping = dict(zip(keys, values, strict=True))
    except TypeError:  # a key Python cannot hash (a list, a map)
        return Map(tuple(zip(keys, values, strict=True)))
    if len(mapping) != len(keys):
        # Keys that differ in Erlang can be equal in Python (1, 1.0 and true;
        # {1} and {true}): keep every pair rather than lose one.
        return Map(tuple(zip(keys, values, strict=True)))
    return mapping


def _node(d: _Decoder, pos: int) -> tuple[Atom, int]:
    """Decode the atom naming the node of a pid, port, reference (or a fun's module)."""
    buf = d.buf
    end = d.end
    if pos + 1 >= end:
        raise DecodeError("truncated node name", pos)
    tag = buf[pos]
    if tag == SMALL_ATOM_UTF8_EXT or tag == SMALL_ATOM_EXT:
        n = buf[pos + 1]
        pos += 2
    elif tag == ATOM_EXT or tag == ATOM_UTF8_EXT:
        _need(end, pos + 1, 2)
        n = buf[pos + 1] << 8 | buf[pos + 2]
        pos += 3
    else:
        raise DecodeError(f"expected an atom, found tag {tag}", pos)
    if pos + n > end:
        _need(end, pos, n)
    raw = buf[pos : pos + n]
    utf8 = tag == SMALL_ATOM_UTF8_EXT or tag == ATOM_UTF8_EXT
    value = (_utf8_atoms if utf8 else _latin1_atoms).get(raw)
    if value is None:
        value = _atom(raw, utf8, pos)
    if value is True or value is False:  # a name, not a boolean: fun m:true/0
        value = _TRUE if value else _FALSE
    return value, pos + n


def _small_int(d: _Decoder, pos: int) -> tuple[int, int]:
    """Decode a SMALL_INTEGER_EXT or INTEGER_EXT (fun and export header fields)."""
    buf = d.buf
    if pos < d.end and buf[pos] == SMALL_INTEGER_EXT:
        _need(d.end, pos + 1, 1)
        return buf[pos + 1], pos + 2
    if pos < d.end and buf[pos] == INTEGER_EXT:
        _need(d.end, pos + 1, 4)
        return _i32(buf, pos + 1)[0], pos + 5
    raise DecodeError("expected an integer", pos)


def _decode_other(d: _Decoder, tag: int, pos: int, depth: int) -> tuple[Any, int]:
    """Decode a term of one of the less frequent tags (``pos`` is after the tag)."""
    buf = d.buf
    end = d.end

    if tag == SMALL_BIG_EXT or tag == LARGE_BIG_EXT:
        if tag == SMALL_BIG_EXT:
            _need(end, pos, 2)
            n = buf[pos]
            pos += 1
        else:
            _need(end, pos, 5)
            (n,) = _u32(buf, pos)
            pos += 4
            if n > d.max_big_bytes:
                raise DecodeError(f"bignum of {n} bytes exceeds the limit", pos)
        _need(end, pos, n + 1)
        sign = buf[pos]
        if sign > 1:
            raise DecodeError("bignum sign byte is not 0 or 1", pos)
        value = int.from_bytes(buf[pos + 1 : pos + 1 + n], "little")
        return (-value if sign else value), pos + 1 + n

    if tag == NEWER_REFERENCE_EXT or tag == NEW_REFERENCE_EXT:
        _need(end, pos, 2)
        (n,) = _u16(buf, pos)
        pos += 2
        if n > 5:
            raise DecodeError(f"reference with {n} id words (at most 5)", pos)
        node, pos = _node(d, pos)
        if tag == NEWER_REFERENCE_EXT:
            _need(end, pos, 4 + 4 * n)
            (creation,) = _u32(buf, pos)
            pos += 4
        else:
            _need(end, pos, 1 + 4 * n)
            creation = buf[pos]
            pos += 1
        ids = struct.unpack_from(f">{n}I", buf, pos)
        return Reference(node, creation, ids), pos + 4 * n

    if tag == NEW_PORT_EXT or tag == V4_PORT_EXT or tag == PORT_EXT:
        node, pos = _node(d, pos)
        if tag == V4_PORT_EXT:
            _need(end, pos, 12)
            port_id, creation = _v4_port_tail(buf, pos)
            return Port(node, port_id, creation), pos + 12
        if tag == NEW_PORT_EXT:
            _need(end, pos, 8)
            port_id, creation = _port_tail(buf, pos)
            return Port(node, port_id, creation), pos + 8
        _need(end, pos, 5)
        return Port(node, _u32(buf, pos)[0], buf[pos + 4]), pos + 5

    if tag == SMALL_ATOM_EXT or tag == ATOM_UTF8_EXT:
        if tag == SMALL_ATOM_EXT:
            _need(end, pos, 1)
            n = buf[pos]
            pos += 1
        else:
            _need(end, pos, 2)
            (n,) = _u16(buf, pos)
            pos += 2
        _need(end, pos, n)
        return _atom(buf[pos : pos + n], tag == ATOM_UTF8_EXT, pos), pos + n

    if tag == BIT_BINARY_EXT:
        _need(end, pos, 5)
        (n,) = _u32(buf, pos)
        bits = buf[pos + 4]
        pos += 5
        _need(end, pos, n)
        if n == 0 or not 1 <= bits <= 8:
            raise DecodeError(f"bit binary of {n} bytes with {bits} bits in the last byte", pos)
        data = buf[pos : pos + n]
        if bits == 8:
            return data, pos + n
        last = data[-1] & (0xFF00 >> bits) & 0xFF
        if last != data[-1]:  # Erlang ignores the unused low bits: so do we
            data = data[:-1] + bytes((last,))
        return BitBinary(data, bits), pos + n

    if tag == EXPORT_EXT:
        module, pos = _node(d, pos)
        function, pos = _node(d, pos)
        arity, pos = _small_int(d, pos)
        return Export(module, function, arity), pos

    if tag == FLOAT_EXT:
        _need(end, pos, 31)
        text = buf[pos : pos + 31].split(b"\0", 1)[0]
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not _isfinite(number):
            raise DecodeError("FLOAT_EXT is not a finite number", pos)
        return number, pos + 31

    if tag == REFERENCE_EXT:
        node, pos = _node(d, pos)
        _need(end, pos, 5)
        return Reference(node, buf[pos + 4], (_u32(buf, pos)[0],)), pos + 5

    if tag == LOCAL_EXT:
        raise DecodeError(
            "LOCAL_EXT term: it is only valid inside the node that made it "
            "(we never announce DFLAG_LOCAL_EXT)",
            pos - 1,
        )
    if tag == ATOM_CACHE_REF:
        raise DecodeError("ATOM_CACHE_REF without a distribution header atom cache", pos - 1)
    if tag == FUN_EXT:
        raise DecodeError("FUN_EXT (pre-R7 fun) is no longer supported", pos - 1)
    if tag == COMPRESSED:
        raise DecodeError("compressed term nested inside a term", pos - 1)
    raise DecodeError(f"unknown tag {tag}", pos - 1)


def _decode_fun(d: _Decoder, pos: int, depth: int) -> tuple[Any, int]:
    buf = d.buf
    start = pos
    _need(d.end, pos, 4 + 1 + 16 + 4 + 4)
    (size,) = _u32(buf, pos)
    _need(d.end, pos, size)
    arity = buf[pos + 4]
    uniq = bytes(buf[pos + 5 : pos + 21])
    index, num_free = _port_tail(buf, pos + 21)
    pos += 29
    if num_free > d.end - pos:
        raise DecodeError(f"fun with {num_free} free variables exceeds the input", pos)
    if depth >= d.max_depth:
        raise DecodeError("term nested too deeply", pos)
    module, pos = _node(d, pos)
    old_index, pos = _small_int(d, pos)
    old_uniq, pos = _small_int(d, pos)
    (pid,), pos = _items(d, pos, 1, depth + 1)
    if not isinstance(pid, Pid):
        raise DecodeError("malformed NEW_FUN_EXT: no creator pid", pos)
    free, pos = _items(d, pos, num_free, depth + 1)
    # Size counts from the size field itself (the tag byte excluded).
    if pos - start != size:
        raise DecodeError(f"NEW_FUN_EXT size {size} does not match its content", start)
    return Fun(arity, uniq, index, module, old_index, old_uniq, pid, tuple(free)), pos


def _decode_one(d: _Decoder, pos: int) -> tuple[Term, int]:
    try:
        (value,), pos = _items(d, pos, 1, 0)
    except (IndexError, struct.error):
        # A fixed-size read in _items ran off the end of the input.
        raise DecodeError("truncated term: the input ends too early", d.end) from None
    except RecursionError:  # pragma: no cover - max_depth keeps us below it
        raise DecodeError("term nested too deeply", pos) from None
    return value, pos


def decode_from(
    data: bytes | bytearray | memoryview, offset: int = 0, limits: DecodeLimits = DEFAULT_LIMITS
) -> tuple[Term, int]:
    """Decode one external term (version byte 131 first) starting at ``offset``.

    Returns the term and the offset just past it, so several terms in one
    buffer (a control message followed by a payload) decode without copies.
    ``data`` should be ``bytes``; a ``bytearray`` or ``memoryview`` is copied.
    """
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    if offset >= end:
        raise DecodeError("empty input", offset)
    if data[offset] != VERSION:
        raise DecodeError(f"bad version byte {data[offset]} (expected 131)", offset)
    pos = offset + 1
    if pos < end and data[pos] == COMPRESSED:
        return _decode_compressed(data, pos + 1, limits)
    return _decode_one(_Decoder(data, end, limits), pos)


def _decode_compressed(data: bytes, pos: int, limits: DecodeLimits) -> tuple[Term, int]:
    _need(len(data), pos, 4)
    (size,) = _u32(data, pos)
    pos += 4
    if size > limits.max_uncompressed:
        raise InflationRefused(
            f"compressed term declares {size} bytes inflated (limit {limits.max_uncompressed})",
            pos,
        )
    ratio = limits.max_inflation_ratio
    if ratio is not None and size > max(ratio * (len(data) - pos), _INFLATION_FLOOR):
        raise InflationRefused(
            f"compressed term declares {size} bytes inflated from at most "
            f"{len(data) - pos} (ratio limit {ratio:g})",
            pos,
        )
    inflater = zlib.decompressobj()
    try:
        # max_length caps the work at the declared size: no zip bomb.
        plain = inflater.decompress(data[pos:], size + 1)
    except zlib.error as exc:
        raise DecodeError(f"bad zlib data in compressed term: {exc}", pos) from None
    if len(plain) != size or not inflater.eof:
        raise DecodeError(f"compressed term inflates to {len(plain)} bytes, declared {size}", pos)
    consumed = len(data) - pos - len(inflater.unused_data)
    if ratio is not None and size > max(ratio * consumed, _INFLATION_FLOOR):
        raise InflationRefused(
            f"compressed term inflates {consumed} bytes to {size} (ratio limit {ratio:g})", pos
        )
    value, inner = _decode_one(_Decoder(plain, size, limits), 0)
    if inner != size:
        raise DecodeError("trailing bytes inside compressed term", pos)
    return value, pos + consumed


def decode(data: bytes | bytearray | memoryview, limits: DecodeLimits = DEFAULT_LIMITS) -> Term:
    """Decode a whole buffer holding exactly one external term."""
    if not isinstance(data, bytes):
        data = bytes(data)
    value, pos = decode_from(data, 0, limits)
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} trailing bytes after the term", pos)
    return value


# --------------------------------------------------------------------------
# Encoding

_p_u16: Final = struct.Struct(">H").pack
_p_u32: Final = struct.Struct(">I").pack
_p_i32: Final = struct.Struct(">i").pack
_p_f64: Final = struct.Struct(">d").pack
_p_tag_u32: Final = struct.Struct(">BI").pack
_p_tag_i32: Final = struct.Struct(">Bi").pack
_p_pid_tail: Final = struct.Struct(">III").pack
_p_port_tail: Final = struct.Struct(">II").pack
_p_v4_port_tail: Final = struct.Struct(">QI").pack

_encoded_atoms: Final[dict[str, bytes]] = {}
_ENCODE_MAX_DEPTH: Final = DEFAULT_LIMITS.max_depth


def _atom_bytes(text: str) -> bytes:
    hit = _encoded_atoms.get(text)
    if hit is not None:
        return hit
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no Erlang atom has them
        raise EncodeError(f"atom is not valid Unicode text: {text[:40]!r}") from None
    if len(text) > 255:
        raise EncodeError(f"atom longer than 255 characters: {text[:40]!r}...")
    out = (
        bytes((SMALL_ATOM_UTF8_EXT, len(raw))) + raw
        if len(raw) < 256
        else (bytes((ATOM_UTF8_EXT,)) + _p_u16(len(raw)) + raw)
    )
    if len(_encoded_atoms) < _ATOM_CACHE_MAX:
        _encoded_atoms[text] = out
    return out


def _enc(out: bytearray, term: Any, depth: int) -> None:
    kind = type(term)
    if kind is Atom:
        out += _atom_bytes(term)
    elif kind is int:
        if 0 <= term <= 255:
            out += bytes((SMALL_INTEGER_EXT, term))
        elif -(1 << 31) <= term < (1 << 31):
            out += _p_tag_i32(INTEGER_EXT, term)
        else:
            magnitude = -term if term < 0 else term
            digits = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
            if len(digits) < 256:
                out += bytes((SMALL_BIG_EXT, len(digits), 1 if term < 0 else 0))
            else:
                out += _p_tag_u32(LARGE_BIG_EXT, len(digits))
                out.append(1 if term < 0 else 0)
            out += digits
    elif kind is tuple:
        if depth >= _ENCODE_MAX_DEPTH:
            raise EncodeError("term nested too deeply to encode")
        arity = len(term)
        if arity < 256:
            out += bytes((SMALL_TUPLE_EXT, arity))
        else:
            out += _p_tag_u32(LARGE_TUPLE_EXT, arity)
        for item in term:
            _enc(out, item, depth + 1)
    elif kind is list:
        _enc_list(out, term, depth)
    elif kind is bytes or kind is bytearray:
        out += _p_tag_u32(BINARY_EXT, len(term))
        out += term
    elif kind is float:
        if not _isfinite(term):
            raise EncodeError(f"{term} has no Erlang equivalent: Erlang floats are finite")
        out.append(NEW_FLOAT_EXT)
        out += _p_f64(term)
    elif kind is bool:
        out += _atom_bytes("true" if term else "false")
    elif kind is Pid:
        _enc_node(out, NEW_PID_EXT, term.node)
        out += _p_pid_tail(term.id, term.serial, term.creation)
    elif kind is dict or kind is Map:
        if depth >= _ENCODE_MAX_DEPTH:
            raise EncodeError("term nested too deeply to encode")
        pairs = term.items() if kind is dict else term.pairs
        out += _p_tag_u32(MAP_EXT, len(pairs))
        for key, value in pairs:
            _enc(out, key, depth + 1)
            _enc(out, value, depth + 1)
    elif kind is Reference:
        if not 1 <= len(term.ids) <= 5:
            raise EncodeError("a reference has 1 to 5 id words")
        out.append(NEWER_REFERENCE_EXT)
        out += _p_u16(len(term.ids))
        _enc_node(out, None, term.node)
        out += _p_u32(term.creation)
        out += struct.pack(f">{len(term.ids)}I", *term.ids)
    elif kind is Port:
        if term.id > 0xFFFFFFFF:
            _enc_node(out, V4_PORT_EXT, term.node)
            out += _p_v4_port_tail(term.id, term.creation)
        else:
            _enc_node(out, NEW_PORT_EXT, term.node)
            out += _p_port_tail(term.id, term.creation)
    elif kind is Charlist:
        _enc_list(out, [ord(c) for c in term.text], depth)
    elif kind is ImproperList:
        if depth >= _ENCODE_MAX_DEPTH:
            raise EncodeError("term nested too deeply to encode")
        if not term.elements:
            raise EncodeError("an improper list needs at least one element")
        if type(term.tail) is list and not term.tail:
            raise EncodeError("ImproperList with [] as tail is a proper list: use list")
        out += _p_tag_u32(LIST_EXT, len(term.elements))
        for item in term.elements:
            _enc(out, item, depth + 1)
        _enc(out, term.tail, depth + 1)
    elif kind is BitBinary:
        out += _p_tag_u32(BIT_BINARY_EXT, len(term.data))
        out.append(term.bits)
        out += term.data
    elif kind is Export:
        out.append(EXPORT_EXT)
        out += _atom_bytes(term.module)
        out += _atom_bytes(term.function)
        _enc(out, term.arity, depth + 1)
    elif kind is Fun:
        _enc_fun(out, term, depth)
    elif isinstance(term, str):
        raise EncodeError(
            f"str {term[:40]!r} is ambiguous: pass bytes for a binary, "
            "Charlist(s) for a charlist or Atom(s) for an atom"
        )
    elif term is None:
        raise EncodeError("None has no Erlang equivalent: pass Atom('undefined') or Atom('nil')")
    elif isinstance(term, bool):  # bool subclasses are not expected, but be exact
        out += _atom_bytes("true" if term else "false")
    elif isinstance(term, int):
        _enc(out, int(term), depth)
    else:
        raise EncodeError(f"cannot encode {kind.__name__} as an Erlang term")


def _enc_list(out: bytearray, items: list[Any], depth: int) -> None:
    n = len(items)
    if n == 0:
        out.append(NIL_EXT)
        return
    if n <= 0xFFFF and all(type(i) is int and 0 <= i <= 255 for i in items):
        out.append(STRING_EXT)
        out += _p_u16(n)
        out += bytes(items)
        return
    if depth >= _ENCODE_MAX_DEPTH:
        raise EncodeError("term nested too deeply to encode")
    out += _p_tag_u32(LIST_EXT, n)
    for item in items:
        _enc(out, item, depth + 1)
    out.append(NIL_EXT)


def _enc_node(out: bytearray, tag: int | None, node: str) -> None:
    if tag is not None:
        out.append(tag)
    out += _atom_bytes(node)


def _enc_fun(out: bytearray, fun: Fun, depth: int) -> None:
    if depth >= _ENCODE_MAX_DEPTH:
        raise EncodeError("term nested too deeply to encode")
    if len(fun.uniq) != 16:
        raise EncodeError("Fun.uniq must be 16 bytes")
    body = bytearray()
    body.append(fun.arity)
    body += fun.uniq
    body += _p_port_tail(fun.index, len(fun.free_vars))
    body += _atom_bytes(fun.module)
    _enc(body, fun.old_index, depth + 1)
    _enc(body, fun.old_uniq, depth + 1)
    _enc(body, fun.pid, depth + 1)
    for var in fun.free_vars:
        _enc(body, var, depth + 1)
    out.append(NEW_FUN_EXT)
    out += _p_u32(len(body) + 4)
    out += body


def encode_into(out: bytearray, term: Term) -> None:
    """Append ``term`` in external format (with the 131 version byte) to ``out``."""
    out.append(VERSION)
    try:
        _enc(out, term, 0)
    except RecursionError:
        raise EncodeError("term nested too deeply to encode") from None
    except (struct.error, ValueError) as exc:
        # A field out of its range: a pid id over 32 bits, a fun arity over 255...
        raise EncodeError(f"a value does not fit its external format field: {exc}") from None


def encode(term: Term, *, compressed: int | None = None) -> bytes:
    """Encode ``term`` as an external term.

    ``compressed`` (zlib level 1..9) produces the compressed form, as
    ``term_to_binary(T, [{compressed, Level}])`` does.
    """
    out = bytearray()
    encode_into(out, term)
    if compressed is None:
        return bytes(out)
    if not 0 <= compressed <= 9:
        raise ValueError("compression level must be 0..9")
    body = memoryview(out)[1:]
    return bytes((VERSION, COMPRESSED)) + _p_u32(len(body)) + zlib.compress(body, compressed)
