"""Tests of the external term format codec, ``sidecar.erldist.term``.

* Golden vectors: ``tests/vectors/golden.json`` holds the bytes real OTP 25
  and OTP 28 nodes' ``term_to_binary`` make for every tag the codec handles
  (generator and the command that regenerates it: ``tests/vectors/make_vectors.erl``).
  Each decodes to the exact value written out below, and every vector made
  with ``{minor_version, 2}`` re-encodes byte for byte.
* Properties (hypothesis): ``decode(encode(x))`` gives ``x`` back, for a
  recursive strategy over every encodable type.
* A batch of random terms goes through a real node (``binary_to_term`` then
  ``term_to_binary``) in one ``erl`` run per OTP release, and comes back equal.
* The DecodeError contract: truncated, absurd, deeply nested, zip-bombed,
  invalid or random input raises :class:`DecodeError`, fast, and nothing else.

Values are compared with :func:`same`, which is stricter than ``==``: types
must match (``1``, ``1.0`` and ``True`` differ, as they do in Erlang), and so
must the sign of a zero float.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import compiled
from sidecar.erldist import term as installed_term
from sidecar.erldist.errors import DecodeError, EncodeError
from sidecar.erldist.term import (
    DEFAULT_LIMITS,
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
)
from tests.support.nodes import RuntimeNotAvailable, runtime_executable

# ---------------------------------------------------------------------------
# Both builds: every test of this module runs on the installed codec (the
# mypyc-compiled one wherever `pip install` could build it) and on the pure
# Python term.py, loaded from source under another name.  The value classes
# and errors are shared (sidecar.erldist.termtypes, errors), so expected values
# are the same objects' types for both.

CODECS: dict[str, ModuleType] = {
    "installed": installed_term,
    "pure": compiled.load_pure(["sidecar.erldist.term"])[0],
}
_codec: ModuleType = installed_term


@pytest.fixture(autouse=True, scope="module", params=sorted(CODECS))
def codec(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """Point decode/encode/decode_from/encode_into below at one build."""
    global _codec
    _codec = CODECS[request.param]
    yield _codec
    _codec = installed_term


def decode(data: bytes | bytearray | memoryview, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    return _codec.decode(data, limits)


def decode_from(
    data: bytes | bytearray | memoryview, offset: int = 0, limits: DecodeLimits = DEFAULT_LIMITS
) -> tuple[Any, int]:
    return _codec.decode_from(data, offset, limits)  # type: ignore[no-any-return]


def encode(term: Any, *, compressed: int | None = None) -> bytes:
    return _codec.encode(term, compressed=compressed)  # type: ignore[no-any-return]


def encode_into(out: bytearray, term: Any) -> None:
    _codec.encode_into(out, term)


def test_each_build_is_the_one_it_says(codec: ModuleType) -> None:
    pure = CODECS["pure"]
    assert not compiled.is_compiled(pure) and pure.__name__ == "sidecar.erldist._pure.term"
    assert pure is not installed_term and pure.decode is not installed_term.decode
    assert _codec is codec
    # the compiled copy takes its branches for native arithmetic (tests/test_compiled.py
    # checks it is in use where it can be built, and fresh)
    assert installed_term._COMPILED is compiled.is_compiled(installed_term)
    assert pure._COMPILED is False and compiled.built_from(pure) is None


GOLDEN_PATH = Path(__file__).resolve().parent.parent / "vectors" / "golden.json"
GOLDEN: dict[str, dict[str, str]] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))


def vector(name: str) -> bytes:
    return bytes.fromhex(GOLDEN[name]["hex"])


# ---------------------------------------------------------------------------
# Strict equality


def same(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same Erlang term (types and float signs included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        # Erlang maps are unordered; a dict key equal in Python must be the same key.
        if len(a) != len(b):
            return False
        for key, value in a.items():
            if key not in b:
                return False
            other = next(k for k in b if k == key)
            if not (same(key, other) and same(value, b[key])):
                return False
        return True
    if isinstance(a, Map):
        return _same_pairs(list(a.pairs), list(b.pairs))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def _same_pairs(left: list[tuple[Any, Any]], right: list[tuple[Any, Any]]) -> bool:
    """The two lists of map pairs are equal as multisets (map order is not kept)."""
    if len(left) != len(right):
        return False
    rest = list(right)
    for key, value in left:
        for i, (k, v) in enumerate(rest):
            if same(key, k) and same(value, v):
                del rest[i]
                break
        else:
            return False
    return True


def test_same_is_strict() -> None:
    assert same([1, Atom("a")], [1, Atom("a")])
    assert not same(1, True)
    assert not same(1, 1.0)
    assert not same(0.0, -0.0)
    assert not same({1: Atom("a")}, {True: Atom("a")})
    assert same({1: 2, 3: 4}, {3: 4, 1: 2})
    assert same(Map(((1, 2), ([3], 4))), Map((([3], 4), (1, 2))))
    assert not same(Map(((1, 2),)), Map(((1.0, 2),)))
    assert not same(Pid(Atom("n@h"), 1, 0, 0), Pid(Atom("n@h"), True, 0, 0))


# ---------------------------------------------------------------------------
# Golden vectors: the exact value each one decodes to

A = Atom
NONODE = A("nonode@nohost")
REMOTE = A("beamside@host")
CREATION = 0x5F3A1B2C
# The funs of make_vectors.erl: uniq is the MD5 of the module's code (it changes
# whenever make_vectors.erl does), the pid is the process that made the fun.
FUN_UNIQ = bytes.fromhex("dec711927dbe1e0813156c3257e8b2a0")
FUN_OLD_UNIQ = 116799628
FUN_MAKER = Pid(NONODE, 9, 0, 0)


def make_fun(arity: int, index: int, free: tuple[Any, ...], maker: Pid = FUN_MAKER) -> Fun:
    return Fun(arity, FUN_UNIQ, index, A("make_vectors"), index, FUN_OLD_UNIQ, maker, free)


EXPECTED: dict[str, Any] = {
    # Atoms
    "atom_latin1": A("abc"),
    "atom_latin1_accented": A("héllo"),
    "atom_latin1_empty": A(""),
    "atom_latin1_255": A("z" * 255),
    "atom_utf8_small": A("abc"),
    "atom_utf8_small_accented": A("héllo"),
    "atom_utf8_small_4byte": A("\U0001f600\U0001f680"),
    "atom_utf8_empty": A(""),
    "atom_utf8_long": A("λ" * 255),
    "atom_utf8_long_v1": A("λ" * 255),
    "atom_utf8_small_v1": A("λx"),
    "small_atom_ext": A("abc"),
    "true": True,
    "false": False,
    "true_latin1": True,
    "undefined": A("undefined"),
    # Integers
    "small_integer_0": 0,
    "small_integer_255": 255,
    "integer_256": 256,
    "integer_neg1": -1,
    "integer_min": -(2**31),
    "integer_max": 2**31 - 1,
    "small_big_pos": 2**31,
    "small_big_neg": -(2**31) - 1,
    "small_big_2_64": 2**64,
    "small_big_max": 2**2040 - 1,
    "small_big_min": -(2**2040 - 1),
    "large_big_pos_2040": 2**2040,
    "large_big_pos": 2**2100,
    "large_big_neg": -(2**2100),
    # Floats
    "new_float_pi": 3.141592653589793,
    "new_float_neg": -2.5e-300,
    "new_float_zero": 0.0,
    "new_float_neg_zero": -0.0,
    "new_float_subnormal": 5e-324,
    "new_float_max": 1.7976931348623157e308,
    "float_ext_1_5": 1.5,
    "float_ext_pi": 3.141592653589793,
    "float_ext_neg": -1e-10,
    # Binaries and bitstrings
    "binary": b"hello",
    "binary_empty": b"",
    "binary_all_bytes": bytes(range(256)),
    "bit_binary_3": BitBinary(b"\x20", 3),
    "bit_binary_2_bytes": BitBinary(b"\xff\x28", 5),
    "bit_binary_7": BitBinary(b"\xfe", 7),
    "bit_binary_dirty": BitBinary(b"\x20", 3),
    # Lists
    "nil": [],
    "string": list(b"hello"),
    "string_latin1": [104, 233, 108, 108, 111],
    "string_bytes": list(range(256)),
    "string_max": [97] * 65535,
    "list_small_ints_65536": [97] * 65536,
    "unicode_charlist": [ord(c) for c in "héllo → \U0001f600"],
    "list_proper": [1, A("abc"), b"b", 2.5, -300],
    "list_nested": [[1], [[2]], [], [[]]],
    "list_improper": ImproperList((1, 2), A("three")),
    "list_improper_pair": ImproperList((A("a"),), A("b")),
    "list_improper_binary_tail": ImproperList((A("x"),), b"tail"),
    "list_with_list_tail": [1, 2],
    # Tuples
    "tuple_empty": (),
    "tuple_small": (A("a"), 1, b"x"),
    "tuple_255": tuple(range(1, 256)),
    "tuple_large_256": tuple(range(1, 257)),
    "tuple_large_300": tuple(range(1, 301)),
    # Maps
    "map_empty": {},
    "map_small": {A("a"): 1, A("b"): b"two"},
    "map_nested": {A("a"): {A("b"): [1, 2]}, A("c"): {}},
    "map_list_key": Map(((A("y"), [3]), ([1, 2], A("x")))),
    "map_map_key": Map((({A("k"): A("v")}, 1),)),
    "map_numeric_keys": Map(((1, A("a")), (1.0, A("b")), (True, A("c")))),
    "map_large": {i: i * i for i in range(1, 41)},
    # Pids, ports, references
    "pid_local": Pid(NONODE, 80, 0, 0),
    "pid_local_latin1": Pid(NONODE, 80, 0, 0),
    "pid_remote": Pid(REMOTE, 42, 7, CREATION),
    "pid_ext": Pid(REMOTE, 42, 7, 2),
    "port_local": Port(NONODE, 5, 0),
    "port_remote": Port(REMOTE, 9, CREATION),
    "port_v4": Port(REMOTE, 2**40 + 3, CREATION),
    "port_ext": Port(REMOTE, 9, 2),
    "ref_local": Reference(NONODE, 0, (3, 2, 1)),
    "ref_remote": Reference(REMOTE, CREATION, (1, 2, 3)),
    "reference_ext": Reference(REMOTE, 2, (77,)),
    "new_reference_ext": Reference(REMOTE, 2, (1, 2, 3)),
    # Funs
    "export_fun": Export(A("lists"), A("map"), 2),
    "export_fun_latin1": Export(A("erlang"), A("self"), 0),
    "local_fun": make_fun(1, 0, (7, b"free")),
    "local_fun_latin1": make_fun(1, 0, (-1, [A("a")])),
    "local_fun_closed": make_fun(0, 1, ()),
    # Compressed
    "compressed": ([A("hello")] * 200, list(range(1, 301))),
    "compressed_binary": bytes(10000),
    # Mixtures
    "nested_mixture": Map(
        (
            (
                A("procs"),
                [
                    (
                        Pid(NONODE, 80, 0, 0),
                        A("worker_1"),
                        2688,
                        0,
                        4006,
                        (A("gen_server"), A("loop"), 7),
                    ),
                    (
                        Pid(REMOTE, 42, 7, CREATION),
                        A("undefined"),
                        2**40,
                        3,
                        -5,
                        (A("erlang"), A("hibernate"), 3),
                    ),
                ],
            ),
            (
                (A("port"), Port(NONODE, 5, 0)),
                [Reference(NONODE, 0, (3, 2, 1)), Export(A("lists"), A("map"), 2)],
            ),
            ([ord(c) for c in "héllo →"], ()),
            (
                b"meta",
                (
                    [],
                    ImproperList((A("a"),), A("b")),
                    1.5,
                    -(2**70),
                    list(b"text"),
                    BitBinary(b"\x80", 1),
                ),
            ),
        )
    ),
    "nested_mixture_latin1": [
        (Pid(NONODE, 80, 0, 0), A("worker_1"), 2688, 0, 4006, (A("gen_server"), A("loop"), 7)),
        (Pid(NONODE, 81, 0, 0), A("undefined"), 2**40, 3, 12, (A("erlang"), A("hibernate"), 3)),
    ],
}

# Where the OTP 28 node's vector decodes to something else: its funs carry
# <0.0.0> (nonode@nohost) as the maker pid.
EXPECTED_OTP28: dict[str, Any] = {
    name: make_fun(fun.arity, fun.index, fun.free_vars, Pid(NONODE, 0, 0, 0))
    for name, fun in EXPECTED.items()
    if isinstance(fun, Fun)
}

# Vectors made with {minor_version, 2} that our encoder does not reproduce.
NOT_BYTE_EXACT = {
    # OTP 26+ encodes every port as V4_PORT_EXT; for ids that fit 32 bits we
    # send NEW_PORT_EXT, as OTP 25 does (both read by OTP 24+).
    "port_local@otp28",
    "port_remote@otp28",
    "nested_mixture@otp28",
}


def expected_value(name: str) -> Any:
    base, _, otp = name.partition("@otp")
    if otp:
        return EXPECTED_OTP28.get(base, EXPECTED[base])
    return EXPECTED[name]


def test_every_vector_has_an_expected_value_and_both_releases_made_them() -> None:
    names = {name.partition("@")[0] for name in GOLDEN}
    assert names == set(EXPECTED)
    assert {v["otp"] for v in GOLDEN.values()} == {"25", "28"}
    # OTP 28 made them all, but for two 64 KiB vectors (see make_vectors.erl).
    for name in set(EXPECTED) - {"string_max", "list_small_ints_65536"}:
        assert f"{name}@otp28" in GOLDEN


def test_vectors_cover_every_tag_the_codec_handles() -> None:
    top_level = {vector(name)[1] for name in GOLDEN}
    handled = {
        70,
        77,
        80,
        88,
        89,
        90,
        97,
        98,
        99,
        100,
        101,
        102,
        103,
        104,
        105,
        106,
        107,
        108,
        109,
        110,
        111,
        112,
        113,
        114,
        115,
        116,
        118,
        119,
        120,
    }
    assert handled <= top_level


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_decode(name: str) -> None:
    value = decode(vector(name))
    assert same(value, expected_value(name)), f"{name}: {value!r}"


BYTE_EXACT = sorted(
    name
    for name, v in GOLDEN.items()
    if v["options"] == "[{minor_version,2}]" and name not in NOT_BYTE_EXACT
)


@pytest.mark.parametrize("name", BYTE_EXACT)
def test_golden_encode_byte_exact(name: str) -> None:
    # The decoded value (checked equal to the expected one above) keeps the
    # node's map key order, so its encoding can match byte for byte.
    data = vector(name)
    assert encode(decode(data)).hex() == data.hex()


def test_byte_exact_vectors_include_every_kind() -> None:
    assert len(BYTE_EXACT) > 120
    assert {
        "local_fun",
        "port_v4",
        "map_large",
        "large_big_neg",
        "nested_mixture",
        "map_large@otp28",
        "local_fun@otp28",
    } <= set(BYTE_EXACT)


def test_expected_values_encode_byte_exact() -> None:
    """The literal Python values (not just the decoded ones) encode like the node."""
    for name in (
        "tuple_small",
        "list_improper",
        "ref_remote",
        "local_fun",
        "string_latin1",
        "unicode_charlist",
        "large_big_neg",
        "new_float_neg_zero",
        "map_small",
    ):
        assert encode(EXPECTED[name]) == vector(name), name


def test_not_byte_exact_vectors_still_round_trip() -> None:
    for name in sorted(NOT_BYTE_EXACT):
        value = decode(vector(name))
        assert same(decode(encode(value)), value)


@pytest.mark.parametrize("name", ["compressed", "compressed_binary"])
def test_compressed_vectors(name: str) -> None:
    data = vector(name)
    assert data[1] == 80
    value = decode(data)
    for level in (None, 0, 1, 6, 9):
        assert same(decode(encode(value, compressed=level)), value)
    assert len(encode(value, compressed=6)) < len(encode(value))


def test_charlist_encodes_as_code_points() -> None:
    assert encode(Charlist("héllo")) == vector("string_latin1")
    assert encode(Charlist("héllo → \U0001f600")) == vector("unicode_charlist")
    assert encode(Charlist("")) == vector("nil")
    assert decode(encode(Charlist("héllo"))) == [104, 233, 108, 108, 111]


def test_bool_and_atom_encodings() -> None:
    assert encode(True) == vector("true")
    assert encode(False) == vector("false")
    assert encode(A("true")) == vector("true")
    assert encode([True, 1]) == bytes.fromhex("836c000000027704747275656101" + "6a")


# ---------------------------------------------------------------------------
# Round-trip properties

atoms = st.text(max_size=12).filter(lambda s: s not in ("true", "false")).map(Atom)
long_atoms = st.text(alphabet="aλ\U0001f600", min_size=200, max_size=255).map(Atom)
node_names = st.sampled_from([NONODE, REMOTE, A("ñode@höst")])
u32 = st.integers(0, 2**32 - 1)
integers = st.one_of(
    st.integers(-300, 300),
    st.integers(-(2**31) - 2, 2**31 + 1),
    st.integers(-(2**64), 2**64),
    st.integers(-(2**2100), 2**2100),
)
bit_binaries = st.builds(
    lambda data, bits: BitBinary(data[:-1] + bytes((data[-1] & (0xFF00 >> bits) & 0xFF,)), bits),
    st.binary(min_size=1, max_size=8),
    st.integers(1, 7),
)
pids = st.builds(Pid, node_names, u32, u32, u32)
ports = st.builds(Port, node_names, st.integers(0, 2**64 - 1), u32)
refs = st.builds(Reference, node_names, u32, st.lists(u32, min_size=1, max_size=5).map(tuple))
exports = st.builds(Export, atoms, atoms, st.integers(0, 255))

leaves = st.one_of(
    atoms,
    long_atoms,
    st.booleans(),
    integers,
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary(max_size=20),
    bit_binaries,
    st.text(max_size=8).map(Charlist),
    st.lists(st.integers(0, 255), max_size=8),
    pids,
    ports,
    refs,
    exports,
)
# Keys Python can hash (a dict), and terms as keys of a Map.
hashable_keys = st.one_of(atoms, st.integers(-5, 300), st.binary(max_size=4), pids)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    non_list_tails = st.one_of(atoms, integers, st.binary(max_size=4), st.tuples(children))
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(hashable_keys, children, max_size=4),
        st.lists(st.tuples(children, children), max_size=3).map(lambda ps: Map(tuple(ps))),
        st.builds(
            ImproperList, st.lists(children, min_size=1, max_size=4).map(tuple), non_list_tails
        ),
        st.builds(
            Fun,
            st.integers(0, 255),
            st.binary(min_size=16, max_size=16),
            u32,
            atoms,
            st.integers(0, 2**31 - 1),
            st.integers(-(2**31), 2**31 - 1),
            pids,
            st.lists(children, max_size=3).map(tuple),
        ),
    )


terms = st.recursive(leaves, _containers, max_leaves=25)


def normalize(x: Any, fun_pid: Pid | None = None) -> Any:
    """What ``x`` decodes to after encoding (a Charlist is an Erlang list...).

    ``fun_pid`` replaces the maker pid of every fun: OTP 26+ nodes do not keep
    it, they encode the funs they pass on with ``<0.0.0>``.
    """
    if isinstance(x, Charlist):
        return [ord(c) for c in x.text]
    if isinstance(x, list):
        return [normalize(i, fun_pid) for i in x]
    if isinstance(x, tuple):
        return tuple(normalize(i, fun_pid) for i in x)
    if isinstance(x, dict | Map):
        items = x.items() if isinstance(x, dict) else x.pairs
        pairs = tuple((normalize(k, fun_pid), normalize(v, fun_pid)) for k, v in items)
        try:
            as_dict = dict(pairs)
        except TypeError:
            return Map(pairs)
        return as_dict if len(as_dict) == len(pairs) else Map(pairs)
    if isinstance(x, ImproperList):
        return ImproperList(
            tuple(normalize(i, fun_pid) for i in x.elements), normalize(x.tail, fun_pid)
        )
    if isinstance(x, Fun):
        return dataclasses.replace(
            x, pid=fun_pid or x.pid, free_vars=normalize(x.free_vars, fun_pid)
        )
    return x


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms)
def test_round_trip(term: Any) -> None:
    data = encode(term)
    back = decode(data)
    assert same(back, normalize(term))
    # The encoding is canonical: what we decode encodes to the same bytes.
    assert encode(back) == data


@settings(max_examples=50, deadline=None)
@given(terms, st.sampled_from([0, 1, 6, 9]))
def test_round_trip_compressed(term: Any, level: int) -> None:
    assert same(decode(encode(term, compressed=level)), normalize(term))


@settings(max_examples=100, deadline=None)
@given(st.lists(terms, min_size=1, max_size=4))
def test_decode_from_reads_consecutive_terms(batch: list[Any]) -> None:
    buf = bytearray(b"\x70")  # e.g. a pass-through byte before the control message
    for term in batch:
        encode_into(buf, term)
    data = bytes(buf)
    pos = 1
    for term in batch:
        value, pos = decode_from(data, pos)
        assert same(value, normalize(term))
    assert pos == len(data)


@settings(max_examples=100, deadline=None)
@given(st.integers())
def test_integers_round_trip_exactly(n: int) -> None:
    assert same(decode(encode(n)), n)


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_exactly(x: float) -> None:
    assert same(decode(encode(x)), x)


def test_bool_is_not_an_integer() -> None:
    assert same(decode(encode([True, 1, False, 0])), [True, 1, False, 0])
    assert same(decode(encode({True: 1, 0: False})), {True: 1, 0: False})
    assert same(decode(encode((1, True))), (1, True))


def test_lists_of_small_ints_use_string_ext() -> None:
    assert encode([104, 105]) == bytes.fromhex("836b00026869")
    assert decode(encode([0, 255])) == [0, 255]
    # Not bytes-sized, or too long: LIST_EXT.
    assert encode([256])[1] == 108
    assert encode([-1])[1] == 108
    assert encode([1] * 65536)[1] == 108
    assert encode([1] * 65535)[1] == 107


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = vector("nested_mixture")
    assert same(decode(bytearray(data)), EXPECTED["nested_mixture"])
    assert same(decode(memoryview(data)), EXPECTED["nested_mixture"])
    value, pos = decode_from(bytearray(data), 0)
    assert same(value, EXPECTED["nested_mixture"]) and pos == len(data)


# ---------------------------------------------------------------------------
# Through a real node: binary_to_term then term_to_binary, one run per release

ERL_ROUND_TRIP = r"""
[In, Out] = init:get_plain_arguments(),
{ok, Data} = file:read_file(In),
Each = fun Each(<<N:32, B:N/binary, Rest/binary>>, Acc) ->
               R = try term_to_binary(binary_to_term(B), [{minor_version, 2}]) of
                       Bin -> <<(byte_size(Bin)):32, Bin/binary>>
                   catch error:badarg -> <<16#FFFFFFFF:32>>
                   end,
               Each(Rest, [R | Acc]);
           Each(<<>>, Acc) ->
               lists:reverse(Acc)
       end,
ok = file:write_file(Out, Each(Data, [])),
halt().
"""


def random_term(rng: random.Random, depth: int = 0) -> Any:
    """A random term of every kind the encoder takes (seeded: reproducible)."""
    kinds = 18 if depth < 3 else 12
    kind = rng.randrange(kinds)
    if kind == 0:
        return Atom("".join(rng.choice("abcZ_éλ\U0001f600") for _ in range(rng.randrange(12))))
    if kind == 1:
        return rng.choice([True, False, Atom("undefined")])
    if kind == 2:
        return rng.choice([rng.randrange(256), rng.randrange(-(2**31), 2**31)])
    if kind == 3:
        return rng.randrange(-(2 ** rng.randrange(32, 2200)), 2 ** rng.randrange(32, 2200))
    if kind == 4:
        return rng.choice(
            [rng.uniform(-1e6, 1e6), rng.random() * 10.0 ** rng.randrange(-300, 300), -0.0, 5e-324]
        )
    if kind == 5:
        return rng.randbytes(rng.randrange(40))
    if kind == 6:
        bits = rng.randrange(1, 8)
        data = rng.randbytes(rng.randrange(1, 6))
        return BitBinary(data[:-1] + bytes((data[-1] & (0xFF00 >> bits) & 0xFF,)), bits)
    if kind == 7:
        return Charlist("".join(chr(rng.choice([97, 233, 0x3BB, 0x1F600])) for _ in range(5)))
    if kind == 8:
        return Pid(
            rng.choice([NONODE, REMOTE]),
            rng.randrange(2**28),
            rng.randrange(2**13),
            rng.randrange(2**32),
        )
    if kind == 9:
        return Port(
            REMOTE,
            rng.choice([rng.randrange(2**28), rng.randrange(2**60)]),
            rng.randrange(1, 2**32),
        )
    if kind == 10:
        ids = tuple(rng.randrange(2**32) for _ in range(3))
        return Reference(REMOTE, rng.randrange(1, 2**32), (ids[0] & 0x3FFFF, *ids[1:]))
    if kind == 11:
        return Export(Atom("lists"), Atom(rng.choice(["map", "foldl", "séq"])), rng.randrange(4))
    children = [random_term(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 12:
        return children
    if kind == 13:
        return tuple(children)
    if kind == 14:
        return {random_term(rng, 3) if rng.random() < 0.5 else i: c for i, c in enumerate(children)}
    if kind == 15:
        return Map(tuple(([i], c) for i, c in enumerate(children)))
    if kind == 16:
        return ImproperList((*children, Atom("x")), rng.choice([Atom("tail"), b"t", 7]))
    return list(range(rng.randrange(250, 260)))


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _unordered(x: Any) -> bool:
    """``x`` holds a map of two or more keys (a node may order them differently)."""
    if isinstance(x, dict):
        return len(x) > 1 or any(_unordered(k) or _unordered(v) for k, v in x.items())
    if isinstance(x, Map):
        return len(x.pairs) > 1 or any(_unordered(k) or _unordered(v) for k, v in x.pairs)
    if isinstance(x, list | tuple):
        return any(_unordered(i) for i in x)
    if isinstance(x, ImproperList):
        return any(_unordered(i) for i in x.elements) or _unordered(x.tail)
    return False


def _has_port(x: Any) -> bool:
    if isinstance(x, Port):
        return True
    if isinstance(x, dict):
        return any(_has_port(k) or _has_port(v) for k, v in x.items())
    if isinstance(x, Map):
        return any(_has_port(k) or _has_port(v) for k, v in x.pairs)
    if isinstance(x, list | tuple):
        return any(_has_port(i) for i in x)
    if isinstance(x, ImproperList):
        return any(_has_port(i) for i in x.elements) or _has_port(x.tail)
    return False


def _erl(runtime: str) -> str:
    try:
        return runtime_executable(runtime)  # type: ignore[arg-type]
    except RuntimeNotAvailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.parametrize("runtime", ["otp25", "otp28"])
def test_round_trip_through_a_real_node(runtime: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("BEAMSIDE_TERM_SEED", "20251124"))
    rng = random.Random(seed)
    batch = [random_term(rng) for _ in range(300)]
    # Plus a real node's local fun, and every golden vector's value.
    batch += [
        normalize(expected_value(name))
        for name in sorted(EXPECTED)
        if name not in ("string_max", "list_small_ints_65536")
    ]
    sent = [encode(term) for term in batch]
    (tmp_path / "in").write_bytes(b"".join(struct.pack(">I", len(b)) + b for b in sent))
    subprocess.run(
        [
            _erl(runtime),
            "-noshell",
            "-eval",
            ERL_ROUND_TRIP,
            "-extra",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    out = (tmp_path / "out").read_bytes()
    fun_pid = Pid(NONODE, 0, 0, 0) if runtime == "otp28" else None
    pos = 0
    for term in batch:
        (n,) = struct.unpack_from(">I", out, pos)
        assert n != 0xFFFFFFFF, f"the {runtime} node refused {term!r} (seed {seed})"
        theirs = out[pos + 4 : pos + 4 + n]
        pos += 4 + n
        expected = normalize(term, fun_pid)
        assert same(decode(theirs), expected), f"{term!r} (seed {seed})"
        # Byte for byte where the node's choices are ours: map key order is the
        # node's own, and OTP 26+ encodes every port as V4_PORT_EXT.
        if not _unordered(term) and not (runtime == "otp28" and _has_port(term)):
            assert theirs == encode(expected), f"{term!r} (seed {seed})"
    assert pos == len(out)


# ---------------------------------------------------------------------------
# The DecodeError contract

MAX_FULL_PREFIX = 4096


def _prefix_lengths(n: int) -> list[int]:
    """Every strict prefix length; for big vectors (where that check is O(n^2):
    a 65,536 element list) the first 1,024, the last 32 and 128 in between."""
    if n <= MAX_FULL_PREFIX:
        return list(range(n))
    return sorted({*range(1024), *range(n - 32, n), *range(0, n, n // 128)})


def test_every_strict_prefix_of_every_vector_raises_decode_error() -> None:
    checked = 0
    for name in sorted(GOLDEN):
        data = vector(name)
        for n in _prefix_lengths(len(data)):
            with pytest.raises(DecodeError):
                decode(data[:n])
            checked += 1
    assert checked > 15000


def test_every_strict_prefix_raises_from_decode_from_too() -> None:
    for name in ("nested_mixture", "local_fun", "compressed", "ref_remote", "port_v4"):
        data = b"\x70" + vector(name)
        for n in range(1, len(data)):
            with pytest.raises(DecodeError):
                decode_from(data[:n], 1)


def _fast(fn: Any, limit: float = 1.0) -> DecodeError:
    start = time.perf_counter()
    with pytest.raises(DecodeError) as info:
        fn()
    assert time.perf_counter() - start < limit
    return info.value


MAX32 = b"\xff\xff\xff\xff"
ABSURD = {
    "list length": b"\x83\x6c" + MAX32 + b"\x61\x01\x6a",
    "list length (big input)": b"\x83\x6c\x7f\xff\xff\xff" + b"\x61\x01" * 100_000 + b"\x6a",
    "binary length": b"\x83\x6d" + MAX32 + b"abc",
    "bit binary length": b"\x83\x4d" + MAX32 + b"\x03abc",
    "tuple arity": b"\x83\x69" + MAX32 + b"\x61\x01",
    "map arity": b"\x83\x74" + MAX32 + b"\x61\x01\x61\x02",
    "large big": b"\x83\x6f" + MAX32 + b"\x00\x01\x02",
    "large big over the limit with the bytes": b"\x83\x6f\x00\x20\x00\x00\x00" + bytes(2**21),
    "string length": b"\x83\x6b\xff\xff" + b"ab",
    "atom length": b"\x83\x76\xff\xff" + b"ab",
    "latin-1 atom length": b"\x83\x64\xff\xff" + b"ab",
    "reference ids": b"\x83\x5a\xff\xff\x77\x01a" + bytes(8),
    "fun size": b"\x83\x70" + MAX32 + bytes(40),
    "fun free variables": b"\x83\x70\x00\x00\x00\x30" + bytes(21) + MAX32 + bytes(30),
    "pid node length": b"\x83\x58\x76\xff\xff" + bytes(12),
    "compressed size": b"\x83\x50" + MAX32 + zlib.compress(b"\x6a"),
}


@pytest.mark.parametrize("name", sorted(ABSURD))
def test_absurd_declared_lengths_raise_fast(name: str) -> None:
    _fast(lambda: decode(ABSURD[name]))


def _nested(opening: bytes, closing: bytes, leaf: bytes, depth: int) -> bytes:
    return b"\x83" + opening * depth + leaf + closing * depth


NESTINGS = {
    "list": (b"\x6c\x00\x00\x00\x01", b"\x6a", b"\x6a"),
    "tuple": (b"\x68\x01", b"", b"\x6a"),
    "large tuple": (b"\x69\x00\x00\x00\x01", b"", b"\x6a"),
    "map value": (b"\x74\x00\x00\x00\x01\x61\x01", b"", b"\x6a"),
    "map key": (b"\x74\x00\x00\x00\x01", b"\x61\x01", b"\x6a"),
    "improper tail": (b"\x6c\x00\x00\x00\x01\x61\x01", b"", b"\x77\x01x"),
}


@pytest.mark.parametrize("kind", sorted(NESTINGS))
def test_nesting_100000_deep_raises_decode_error(kind: str) -> None:
    data = _nested(*NESTINGS[kind], 100_000)
    err = _fast(lambda: decode(data))
    assert "nested too deeply" in str(err)


def fun_depth(fun: Any) -> int:
    """How many funs are nested in ``fun`` around a final 0 (without recursion:
    ``==`` and same() would overflow the stack on these)."""
    depth = 0
    while isinstance(fun, Fun):
        assert fun.uniq == FUN_UNIQ and fun.pid == FUN_MAKER
        (fun,) = fun.free_vars
        depth += 1
    assert fun == 0
    return depth


def test_nested_funs_at_and_over_the_limit() -> None:
    # A fun whose free variable is a fun whose free variable is a fun...
    fun: Any = 0
    for _ in range(DEFAULT_LIMITS.max_depth):
        fun = make_fun(0, 0, (fun,))
    assert fun_depth(decode(encode(fun))) == DEFAULT_LIMITS.max_depth
    with pytest.raises(EncodeError, match="nested too deeply"):
        encode(make_fun(0, 0, (fun,)))
    # One more level by hand (the encoder refuses it): a fun header with one
    # free variable, whose size field counts the nested fun's bytes.
    body = encode(fun)[1:]
    header = encode(make_fun(0, 0, (0,)))[1:-2]  # drop the free variable 0 (97, 0)
    (size,) = struct.unpack_from(">I", header, 1)
    deeper = b"\x83" + header[:1] + struct.pack(">I", size - 2 + len(body)) + header[5:] + body
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode(deeper)
    # ...and the hand-made bytes are right: with more room, they decode.
    assert fun_depth(decode(deeper, DecodeLimits(max_depth=401))) == 401


def test_nesting_at_the_limit_decodes_and_the_encoder_agrees() -> None:
    limit = DEFAULT_LIMITS.max_depth
    deepest: Any = []
    for _ in range(limit):
        deepest = [deepest]  # `limit` LIST_EXT around a NIL
    assert decode(encode(deepest)) == deepest
    with pytest.raises(EncodeError, match="nested too deeply"):
        encode([deepest])
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode(_nested(b"\x6c\x00\x00\x00\x01", b"\x6a", b"\x6a", limit + 1))
    assert decode(_nested(b"\x68\x01", b"", b"\x6a", limit)) is not None


def test_nesting_beyond_the_ceiling_raises_whatever_max_depth_says() -> None:
    # The compiled build's calls are C calls with no RecursionError to fall
    # back on: 1000 levels at most, or a hostile term would end the process.
    limits = DecodeLimits(max_depth=10**9)
    for kind in sorted(NESTINGS):
        data = _nested(*NESTINGS[kind], 200_000)
        err = _fast(lambda data=data: decode(data, limits))
        assert "nested too deeply" in str(err), kind
    # Below the ceiling (and the interpreter's recursion limit), max_depth rules.
    deep = _nested(b"\x68\x01", b"", b"\x6a", 700)
    value = decode(deep, limits)
    for _ in range(700):
        assert type(value) is tuple and len(value) == 1
        value = value[0]
    assert value == []


def test_decode_limits_max_depth() -> None:
    data = encode(((((1,),),),))  # four tuples
    assert decode(data, DecodeLimits(max_depth=4)) == ((((1,),),),)
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode(data, DecodeLimits(max_depth=3))


def _deflate_zeros(n: int) -> bytes:
    comp = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [comp.compress(chunk) for _ in range(n >> 20)]
    parts.append(comp.flush())
    return b"".join(parts)


def test_zip_bomb_declaring_1_gb_raises_fast() -> None:
    data = b"\x83\x50" + struct.pack(">I", 1 << 30) + _deflate_zeros(1 << 20)
    err = _fast(lambda: decode(data))
    assert "limit" in str(err)


def test_zip_bomb_declaring_less_than_it_inflates_to_raises_fast() -> None:
    bomb = _deflate_zeros(64 << 20)  # 64 MiB of zeros in ~64 KiB
    for declared in (1, 100, 1 << 20):
        data = b"\x83\x50" + struct.pack(">I", declared) + bomb
        err = _fast(lambda data=data: decode(data))
        assert "declared" in str(err)


def test_compressed_declaring_more_than_it_inflates_to_raises() -> None:
    inner = encode([1, 2, 3])[1:]
    for declared in (len(inner) + 1, 400 << 20):
        data = b"\x83\x50" + struct.pack(">I", declared) + zlib.compress(inner)
        _fast(lambda data=data: decode(data))


def test_compressed_limit_is_configurable() -> None:
    data = encode(bytes(5000), compressed=6)
    assert decode(data) == bytes(5000)
    with pytest.raises(DecodeError, match="limit"):
        decode(data, DecodeLimits(max_uncompressed=4000))


def test_compressed_bad_zlib_and_trailing_data() -> None:
    inner = encode(Atom("ok"))[1:]
    with pytest.raises(DecodeError, match="zlib"):
        decode(b"\x83\x50" + struct.pack(">I", len(inner)) + b"garbage!")
    good = b"\x83\x50" + struct.pack(">I", len(inner)) + zlib.compress(inner)
    assert decode(good) == Atom("ok")
    with pytest.raises(DecodeError, match="trailing"):
        decode(good + b"\x6a")
    padded = encode(Atom("ok"))[1:] + b"\x6a"  # inflates to a term plus a byte
    with pytest.raises(DecodeError, match="trailing"):
        decode(b"\x83\x50" + struct.pack(">I", len(padded)) + zlib.compress(padded))


def test_local_ext_is_refused_by_name() -> None:
    err = _fast(lambda: decode(b"\x83\x79" + bytes(8) + encode(1)[1:]))
    assert "LOCAL_EXT" in str(err)
    assert err.offset == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x83", "truncated"),
        (b"\x82\x6a", "version"),
        (b"\x00\x6a", "version"),
        (b"\x83\x01", "unknown tag 1"),
        (b"\x83\xff", "unknown tag 255"),
        (b"\x83\x52\x00", "ATOM_CACHE_REF"),
        (b"\x83\x75" + bytes(20), "FUN_EXT"),
        (b"\x83\x68\x01\x50\x00\x00\x00\x01\x78\x9c", "compressed"),
        (b"\x83\x6a\x6a", "trailing"),
        (b"\x83\x61\x01\x00", "trailing"),
        (b"\x83\x77\x02\xc3\x28", "UTF-8"),
        (b"\x83\x76\x00\x02\xc3\x28", "UTF-8"),
        (b"\x83\x77\x01\xff", "UTF-8"),
        (b"\x83\x58\x77\x02\xc3\x28" + bytes(12), "UTF-8"),
        (b"\x83\x76\x01\x00" + b"a" * 256, "255"),
        (b"\x83\x64\x01\x00" + b"a" * 256, "255"),
        (b"\x83\x46\x7f\xf8" + bytes(6), "finite"),
        (b"\x83\x46\xff\xf0" + bytes(6), "finite"),
        (b"\x83\x63" + b"inf".ljust(31, b"\0"), "finite"),
        (b"\x83\x63" + b"nan".ljust(31, b"\0"), "finite"),
        (b"\x83\x63" + b"1.5e+00x".ljust(31, b"\0"), "FLOAT_EXT"),
        (b"\x83\x6e\x01\x02\x05", "sign"),
        (b"\x83\x4d\x00\x00\x00\x01\x00\xff", "bit binary"),
        (b"\x83\x4d\x00\x00\x00\x01\x09\xff", "bit binary"),
        (b"\x83\x4d\x00\x00\x00\x00\x03", "bit binary"),
        (b"\x83\x58\x61\x01" + bytes(12), "atom"),
        (b"\x83\x58\x68\x00" + bytes(12), "atom"),
        (b"\x83\x71\x77\x01m\x61\x01\x61\x02", "atom"),
        (b"\x83\x71\x77\x01m\x77\x01f\x77\x01a", "integer"),
        (b"\x83\x5a\x00\x06\x77\x01a" + bytes(28), "id words"),
    ],
)
def test_malformed_input(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(data)


def test_fun_size_must_match_its_content() -> None:
    data = bytearray(vector("local_fun"))
    data[5] -= 1  # the size field's low byte
    with pytest.raises(DecodeError, match="size 88 does not match"):
        decode(bytes(data))
    data[5] += 2  # now larger than the input
    with pytest.raises(DecodeError, match="truncated"):
        decode(bytes(data))


def test_decode_error_carries_the_offset() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b"\x83\x68\x02\x61\x01\x01")
    assert info.value.offset == 5
    assert "at byte 5" in str(info.value)
    with pytest.raises(DecodeError) as info:
        decode(b"\x83\x68\x02\x61\x01")
    assert info.value.offset == 5


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(b"\x83" + data)


# Bytes that make a random byte string more likely to go somewhere.
_TAGS = bytes(
    [
        70,
        77,
        80,
        88,
        89,
        90,
        97,
        98,
        99,
        100,
        104,
        105,
        106,
        107,
        108,
        109,
        110,
        111,
        112,
        113,
        114,
        115,
        116,
        118,
        119,
        120,
        121,
    ]
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_TAGS), st.integers(0, 255)), max_size=48))
def test_random_tag_soup_decodes_or_raises_decode_error(soup: list[int]) -> None:
    with contextlib.suppress(DecodeError):
        decode(b"\x83" + bytes(soup))


SMALL_VECTORS = sorted(name for name in GOLDEN if len(vector(name)) < 2048)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(SMALL_VECTORS),
    st.lists(
        st.tuples(st.integers(0, 2047), st.integers(0, 255), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_vectors_decode_or_raise_decode_error(
    name: str, edits: list[tuple[int, int, int]]
) -> None:
    data = bytearray(vector(name))
    for where, byte, how in edits:
        i = 1 + where % max(len(data) - 1, 1)
        if how == 0:
            data[i : i + 1] = bytes((byte,))
        elif how == 1:
            data.insert(i, byte)
        else:
            del data[i : i + 1]
    with contextlib.suppress(DecodeError):
        decode(bytes(data))


# ---------------------------------------------------------------------------
# The encoder's errors


def test_str_is_refused_with_a_helpful_message() -> None:
    with pytest.raises(EncodeError) as info:
        encode("hello")
    message = str(info.value)
    assert "ambiguous" in message and "Charlist" in message and "Atom" in message
    assert "bytes" in message
    with pytest.raises(EncodeError):
        encode([1, {Atom("k"): ("nested", 2)}])
    assert isinstance(info.value, TypeError)


def test_none_is_refused_with_a_helpful_message() -> None:
    with pytest.raises(EncodeError, match="undefined"):
        encode(None)
    with pytest.raises(EncodeError, match="None"):
        encode((Atom("ok"), None))


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        [1.0, math.nan],
        Atom("a" * 256),
        Atom("\ud800"),
        Pid(NONODE, 2**32, 0, 0),
        Pid(NONODE, -1, 0, 0),
        Port(NONODE, 2**64, 0),
        Reference(NONODE, 0, ()),
        Reference(NONODE, 0, (1, 2, 3, 4, 5, 6)),
        Reference(NONODE, 0, (2**32,)),
        make_fun(256, 0, ()),
        Fun(0, b"short", 0, A("m"), 0, 0, FUN_MAKER, ()),
        ImproperList((), A("tail")),
        ImproperList((1,), []),
        {1, 2},
        object(),
        1j,
    ],
    ids=repr,
)
def test_unencodable_values_raise_encode_error(value: Any) -> None:
    with pytest.raises(EncodeError):
        encode(value)


def test_encode_accepts_bytearray_and_int_subclasses() -> None:
    assert encode(bytearray(b"hello")) == vector("binary")

    class Level(int):
        pass

    assert encode(Level(256)) == vector("integer_256")


def test_compression_level_is_checked() -> None:
    with pytest.raises(ValueError):
        encode(1, compressed=10)
