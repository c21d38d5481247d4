"""/metrics at the cost of a concatenation: per-node text, cached per snapshot.

prometheus_client formats every sample of every node at every scrape (300
nodes: about a second of pure Python holding the GIL).  Here each node's
samples are formatted once per snapshot, by :class:`_TextWriter` fed by the
same section renderers as :func:`~sidecar.exporter.vm_metrics.vm_metric_families`,
into one block of sample lines per family; a scrape writes, for each family
in the order prometheus_client would, its ``# HELP``/``# TYPE`` lines once,
then every node's block (:func:`write_texts`: one buffer of the body's size,
filled node after node by ``_scatter.c`` without the GIL, each node's text
expanded from its stand-ins as it is copied).  This module and
:mod:`~sidecar.exporter.vm_metrics` are compiled with mypyc where ``pip
install`` can (:mod:`sidecar.compiled`); after editing either, run ``pip
install -e .`` again.
The bytes are those of prometheus_client's ``generate_latest`` (text 0.0.4)
and ``openmetrics.exposition.generate_latest`` over ``vm_metric_families``
of the same snapshots (tests/exporter checks it):
same float formatting (``floatToGoString``), label escaping, sorted labels,
counter ``_total``, info ``_info``, family order (where its first sample is
added, node after node).

A node's text is rendered when its snapshot arrives (:meth:`ExpositionCache.prepare`,
called by the node manager) while scrapes read every snapshot of it, and
otherwise by the scrape that needs it: no snapshot is rendered in vain, and a
scrape of nodes that keep up costs a copy of their texts.

Identity tells "changed": the node manager replaces a node's ``NodeSnapshot``
object when a new one arrives, so an entry is reused while
``entry.snapshot is snap``.  One render serves every format whose escaping
leaves the node's metric and label names as they are (text and OpenMetrics
with the default ``underscores``, ``allow-utf-8`` or ``values`` escaping:
sample lines are the same bytes in both formats, only headers and ``# EOF``
differ); a format that rewrites them (``escaping=dots``) gets its own render,
kept in the same entry.  Entries of nodes no longer in the snapshots are
dropped at the next scrape.  The body of a scrape is not kept: it is the
size of every node's text with its labels again (40 KB a node).
beamside's own families (a dozen series per node) are built fresh at every
scrape and formatted by :func:`format_families` the same way; a family of
another shape (histograms, ``_created``, timestamps) goes through
prometheus_client.

Thread safety: scrapes run on several HTTP threads while the manager
replaces snapshots from the asyncio thread.  Rendering holds no lock; a
finished :class:`NodeText` is immutable and published by replacing the
node's whole entry under a short lock, so two scrapes of a changed node may
both render it but each uses a complete text of one snapshot: never torn.

The plugin series budget lives in :class:`~sidecar.exporter.vm_metrics.NodeWriter`;
what it drops is counted here once per snapshot (whichever path rendered it
first), for ``beamside_series_dropped_total``.
"""

from __future__ import annotations

import functools
import string
import threading
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

from prometheus_client.exposition import generate_latest as _text_generate
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as _om
from prometheus_client.validation import _is_valid_legacy_metric_name

from sidecar.model import NodeSnapshot

from .vm_metrics import BASE_LABELS, NodeWriter, render_node

_SOURCE_SHA256: Final[str | None] = None
"""The SHA-256 of the source a compiled build was made from (setup.py fills
it in the copy it compiles; None here): see :mod:`sidecar.compiled`."""

__all__ = [
    "OPENMETRICS",
    "TEXT",
    "ExpositionCache",
    "Format",
    "NodeText",
    "Unsupported",
    "format_families",
    "format_of",
    "generate",
    "go_float",
]

UNDERSCORES: Final = _om.UNDERSCORES
ALLOWUTF8: Final = _om.ALLOWUTF8

# prometheus_client's OpenMetrics encoder is not annotated: called through a typed name
_om_generate: Callable[..., bytes] = _om.generate_latest
_EOF: Final = b"# EOF\n"


class Format(NamedTuple):
    """An exposition format as prometheus_client's ``choose_encoder`` picks it."""

    openmetrics: bool
    escaping: str = UNDERSCORES


TEXT: Final = Format(False)
OPENMETRICS: Final = Format(True)


class Unsupported(Exception):
    """A name this renderer does not write the way prometheus_client would
    (``escaping=allow-utf-8`` with a name outside the legacy character set):
    the caller renders the scrape with prometheus_client instead."""


class _Fixed:
    """A collector of given families (for prometheus_client's encoders)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def generate(fmt: Format, collector: Any) -> bytes:
    """prometheus_client's exposition of ``collector`` in ``fmt`` (the reference)."""
    if fmt.openmetrics:
        return _om_generate(collector, escaping=fmt.escaping)
    return _text_generate(collector, escaping=fmt.escaping)


def format_of(encoder: Callable[..., bytes]) -> Format | None:
    """The format of an encoder returned by ``choose_encoder`` (None: unknown)."""
    keywords: Mapping[str, Any] = {}
    func: object = encoder
    if isinstance(encoder, functools.partial):
        func, keywords = encoder.func, encoder.keywords
    escaping = str(keywords.get("escaping", UNDERSCORES))
    if func is _om.generate_latest:
        return Format(True, escaping)
    if func is _text_generate:
        return Format(False, escaping)
    return None


# --------------------------------------------------------------------------- formatting

_SPECIAL: Final = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def go_float(d: float) -> str:
    """``prometheus_client.utils.floatToGoString`` for a float, without its
    three comparisons on the common path."""
    s = repr(d)
    dot = s.find(".")
    if dot > 6 and d > 0:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    if dot < 0:
        return _SPECIAL.get(s, s)
    return s


def _esc(v: str) -> str:
    """A label value as both formats escape it (backslash, newline, quote)."""
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


class _Bounded(dict[Any, Any]):
    """A memo that forgets everything when full (names come from nodes too:
    msacc states; a hostile node must not grow it without bound)."""

    LIMIT: Final = 8192

    def put(self, key: Any, value: Any) -> Any:
        if len(self) >= self.LIMIT:
            self.clear()
        self[key] = value
        return value


_HEADERS: Final = _Bounded()
_SAME: Final = _Bounded()
_ORDERS: Final = _Bounded()
_METAS: Final = _Bounded()
_NAME_SETS: Final = _Bounded()
_NO_DROPS: Final[Mapping[str, int]] = MappingProxyType({})


def _header(fmt: Format, kind: str, name: str, doc: str) -> bytes:
    """``# HELP``/``# TYPE`` of a family: prometheus_client's, of the family
    without samples (memoized)."""
    key = (fmt, kind, name, doc)
    header: bytes | None = _HEADERS.get(key)
    if header is None:
        family: Metric
        if kind == "counter":
            family = CounterMetricFamily(name, doc)
        elif kind == "info":
            family = InfoMetricFamily(name, doc)
        else:
            family = GaugeMetricFamily(name, doc)
        header = generate(fmt, _Fixed([family]))
        if fmt.openmetrics:
            header = header[: -len(_EOF)]
        _HEADERS.put(key, header)
    return header


def _sample_name(fmt: Format, name: str) -> str:
    """A sample's name as ``fmt`` writes it before its labels."""
    if fmt.escaping == ALLOWUTF8 and not _is_valid_legacy_metric_name(name):
        raise Unsupported(name)  # written inside the braces: not this renderer's layout
    if fmt.openmetrics:
        return _om._escape(name, fmt.escaping, _om._is_legacy_labelname_rune)
    return _om.escape_metric_name(name, fmt.escaping)


def _label_name(fmt: Format, name: str) -> str:
    return _om.escape_label_name(name, fmt.escaping)


def _unchanged(fmt: Format, name: str, sample: bool) -> bool:
    """Whether ``fmt`` writes the name as it is (memoized)."""
    key = (fmt, name, sample)
    same: bool | None = _SAME.get(key)
    if same is None:
        try:
            escaped = _sample_name(fmt, name) if sample else _label_name(fmt, name)
        except Unsupported:
            escaped = None
        same = _SAME.put(key, escaped == name)
    return same


# Stand-ins in a kept text (see NodeText): the node, family and cluster
# labels are on every line, most of a node's text, and written back by one
# bytes.replace each at scrape time.
_STAND_INS: Final = {"cluster": "\x01", "family": "\x02", "node": "\x03"}
_STAND_IN_ORDER: Final = ("cluster", "family", "node")
_ALL_THREE: Final = "\x04"
_STAND_IN_BYTES: Final = b"\x01\x02\x03\x04"
_BASE_SET: Final = frozenset(BASE_LABELS)


@dataclass(frozen=True, eq=False)
class NodeText:
    """One node's samples as exposition text, one block of lines per family.

    Kept for every node between scrapes, so only ``body`` and its offsets
    are the node's own: the other fields are equal for most nodes and shared
    between them (one object per distinct value).  ``body`` holds the
    families' blocks one after the other, the base labels written as
    stand-ins (byte 4 for ``cluster="..",family="..",node=".."`` where the
    three are next to each other, else bytes 1, 2 and 3 for each value;
    :meth:`expand` puts them back): the 47 KB of text of the recorded OTP 25
    reply are kept in 29 KB, and its 69 KB with a Kubernetes node name too.  A
    line holds either byte 4 or each of the others once, so a block's place
    in the expanded text follows from the lines before it.  A node whose
    label values hold those bytes themselves keeps its text as written
    (``labels`` None)."""

    #: family names (as the renderers give them) in the order of their first sample
    order: tuple[str, ...]
    #: family name -> its position in ``order`` (and in ``blocks``)
    index: Mapping[str, int]
    #: family name -> (kind, doc) for its header
    meta: Mapping[str, tuple[str, str]]
    #: the sample lines of every family of ``order``, each ending in a newline
    body: bytes
    #: where each family's block starts in the expanded text (and the last ends)
    starts: array[int]
    #: what the stand-ins stand for: cluster, family and node values, and
    #: the three labels together (None: the text is written as it is)
    labels: tuple[bytes, bytes, bytes, bytes] | None
    #: names written as they are in ``blocks``, to tell which formats it serves
    sample_names: frozenset[str]
    label_names: frozenset[str]
    #: plugin samples dropped over the budget, by family name
    dropped: Mapping[str, int]

    def expand(self) -> bytes:
        """The text with its label values (``starts`` are its offsets)."""
        return _expand(self.body, self.labels)

    @property
    def blocks(self) -> tuple[bytes, ...]:
        """Per family of ``order``, the node's sample lines (a copy, for tests)."""
        full, starts = self.expand(), self.starts
        return tuple(full[starts[i] : starts[i + 1]] for i in range(len(self.order)))

    def serves(self, fmt: Format) -> bool:
        """True if ``fmt`` writes every name of this (canonical) text unchanged."""
        return all(_unchanged(fmt, n, True) for n in self.sample_names) and all(
            _unchanged(fmt, n, False) for n in self.label_names
        )


class _Skeleton(NamedTuple):
    """A family's line up to the value, with the node's labels still to fill in."""

    sample: str
    #: whether ``template`` has the base labels as one field, ``{three}``
    #: (they sort next to each other among the own labels)
    joined: bool
    #: ``str.format(**base)`` -> the line up to the value (no own labels)
    prefix: str
    #: the sample name as written and ``{``: with the node's base label text
    #: and ``} ``, the same line as ``prefix`` (without a format call)
    open: str
    #: ``str.format(**base)`` -> a template taking the own label values in order
    template: str


_SKELETONS: Final = _Bounded()


def _skeleton(
    fmt: Format | None, kind: str, name: str, doc: str, keys: tuple[str, ...]
) -> _Skeleton:
    """Memoized across nodes: only ``node``/``family``/``cluster`` vary."""
    key = (fmt, kind, name, keys)
    skeleton: _Skeleton | None = _SKELETONS.get(key)
    if skeleton is not None:
        return skeleton
    Metric(name, doc, kind)  # prometheus_client's checks on the name
    if kind == "counter":
        sample = f"{name[:-6] if name.endswith('_total') else name}_total"
    elif kind == "info":
        sample = f"{name}_info"
    else:
        sample = name
    head = sample if fmt is None else _sample_name(fmt, sample)
    prefix, template = [], []
    # sorted by label name (as prometheus_client writes them), own labels over base ones
    own = {k: i for i, k in enumerate(keys)}
    labels = sorted({*BASE_LABELS, *keys})
    base_at = [i for i, label in enumerate(labels) if label not in own]
    joined = len(base_at) == len(BASE_LABELS) and base_at[-1] - base_at[0] == len(base_at) - 1
    for label in labels:
        written = label if fmt is None else _label_name(fmt, label)
        if label in own:
            template.append(f'{_brace(_brace(written))}="{{{{{own[label]}}}}}"')
        else:
            prefix.append(f'{_brace(written)}="{{{label}}}"')
            if not joined:
                template.append(f'{_brace(_brace(written))}="{{{label}}}"')
            elif label == labels[base_at[0]]:
                template.append("{three}")
    skeleton = _Skeleton(
        sample,
        joined,
        f"{_brace(head)}{{{{{','.join(prefix)}}}}} ",
        head + "{",
        f"{_brace(_brace(head))}{{{{{{{{{','.join(template)}}}}}}}}} ",
    )
    return _SKELETONS.put(key, skeleton)  # type: ignore[no-any-return]


class _Form:
    """A family as every node with stand-ins writes it (memoized across nodes:
    only the values of the base labels differ, and those are stand-ins)."""

    __slots__ = ("doc", "joined", "keys", "kind", "name", "parts", "prefix", "sample", "slots")

    def __init__(
        self,
        name: str,
        keys: tuple[str, ...],
        kind: str,
        doc: str,
        prefix: str,
        template: str,
        sample: str,
        joined: bool,
    ) -> None:
        self.name = name
        self.keys = keys
        #: whether its lines have the base labels as one stand-in
        self.joined = joined
        self.sample = sample
        self.kind = kind
        self.doc = doc
        #: the whole line up to the value (no own labels)
        self.prefix = prefix
        # the line with own labels (``template``, a str.format template taking
        # their values in ``keys`` order) as the text around each value, and
        # which value goes where: joined, cheaper than parsing the template
        parts: list[str] = []
        slots: list[int] = []
        text = ""  # an escaped brace ends a literal too: up to the next field
        for literal, field, _, _ in string.Formatter().parse(template):
            text += literal
            if field is not None:
                parts.append(text)
                slots.append(int(field))
                text = ""
        parts.append(text)
        self.parts: tuple[str, ...] = tuple(parts)
        self.slots: tuple[int, ...] = tuple(slots)


_FORMS: Final = _Bounded()


class _Family:
    """A family's lines in one render, with what its hot path reads of its form."""

    __slots__ = ("form", "keys", "lines", "parts", "prefix", "slots")

    def __init__(self, form: _Form) -> None:
        self.form = form
        self.keys = form.keys
        self.prefix = form.prefix
        self.parts = form.parts
        self.slots = form.slots
        self.lines: list[str] = []

    def line(self, values: Sequence[str], number: float) -> str:
        """A sample line: the own label values (in ``keys`` order) escaped and
        put in their places, then the value."""
        parts = self.parts
        pieces = [parts[0]]
        for i, slot in enumerate(self.slots):
            pieces.append(_esc(values[slot]))
            pieces.append(parts[i + 1])
        pieces.append(go_float(number))
        return "".join(pieces)


@dataclass(frozen=True, eq=False)
class _Shape:
    """What a node's text shares with every node whose families are the same forms."""

    order: tuple[str, ...]
    index: Mapping[str, int]
    meta: Mapping[str, tuple[str, str]]
    sample_names: frozenset[str]
    label_names: frozenset[str]


_SHAPES: Final = _Bounded()


class _TextWriter(NodeWriter):
    """Formats one node's samples as exposition lines, as prometheus_client would."""

    def __init__(
        self,
        snap: NodeSnapshot,
        series_budget: int | None,
        fmt: Format | None,
        stand_ins: bool = True,
    ) -> None:
        super().__init__(snap, series_budget)
        self._fmt = fmt
        self._families: dict[str, _Family] = {}
        values = {k: _esc(v) for k, v in self.base.items()}
        three = ",".join(
            f'{label if fmt is None else _label_name(fmt, label)}="{values[label]}"'
            for label in sorted(BASE_LABELS)
        )
        #: the real values and the three labels, when written with stand-ins
        self._values: dict[str, str] | None = None
        if stand_ins and not any(c in v for v in values.values() for c in "\x01\x02\x03\x04"):
            self._values = {**values, "three": three}
            values, three = dict(_STAND_INS), _ALL_THREE
        #: a family has an own label named like a base one (see finish)
        self._lacking = False
        self._base_braced = {k: _brace(v) for k, v in values.items()}
        self._base_braced["three"] = _brace(three)
        # what a family without labels of its own has between its braces
        self._base_text = three + "} "

    # gauge/counter as NodeWriter's, inlined: they run for every sample (the
    # plugin budget and the number rule unchanged, see NodeWriter._add)
    def gauge(self, name: str, doc: str, value: Any, **labels: str) -> None:
        t = type(value)
        if t is float or t is int or t is bool:
            self._write("gauge", name, doc, value, labels)

    def counter(self, name: str, doc: str, value: Any, **labels: str) -> None:
        t = type(value)
        if t is float or t is int or t is bool:
            self._write("counter", name, doc, value, labels)

    def _write(self, kind: str, name: str, doc: str, value: Any, labels: dict[str, str]) -> None:
        if type(value) is not float:
            if type(value) is bool:
                value = 1.0 if value else 0.0
            else:
                try:
                    value = float(value)
                except OverflowError:  # an integer beyond a float's range
                    return
        if self._in_plugins and not self._spend(name):
            return
        family = self._families.get(name)
        if labels:
            if family is None or family.keys != tuple(labels):
                family = self._family(kind, name, doc, tuple(labels))
            family.lines.append(family.line(list(labels.values()), value))
        else:
            if family is None or family.keys:
                family = self._family(kind, name, doc, ())
            family.lines.append(family.prefix + go_float(value))

    def _emit(
        self, kind: str, name: str, doc: str, number: float, labels: Mapping[str, str]
    ) -> None:
        family = self._families.get(name)
        if family is None or family.keys != tuple(labels):
            family = self._family(kind, name, doc, tuple(labels))
        if family.keys:
            family.lines.append(family.line(list(labels.values()), number))
        else:
            family.lines.append(family.prefix + go_float(number))

    def _family(self, kind: str, name: str, doc: str, keys: tuple[str, ...]) -> _Family:
        known = self._families.get(name)
        if known is not None:  # as vm_metrics._Families.get
            raise ValueError(f"{name}: labels {keys} != {known.keys}")
        if self._values is not None:  # stand-ins: the same form for every node
            if keys and not _BASE_SET.isdisjoint(keys):
                self._lacking = True  # its lines lack a base label's stand-in
            key = (self._fmt, kind, name, doc, keys)
            form: _Form | None = _FORMS.get(key)
            if form is None:
                form = _FORMS.put(key, self._form(kind, name, doc, keys))
        else:
            form = self._form(kind, name, doc, keys)
        family = self._families[name] = _Family(form)
        return family

    def _form(self, kind: str, name: str, doc: str, keys: tuple[str, ...]) -> _Form:
        skeleton = _skeleton(self._fmt, kind, name, doc, keys)
        if keys:
            template = skeleton.template.format(**self._base_braced)
            return _Form(name, keys, kind, doc, "", template, skeleton.sample, skeleton.joined)
        prefix = skeleton.open + self._base_text
        return _Form(name, keys, kind, doc, prefix, "", skeleton.sample, True)

    def finish(self) -> NodeText | None:
        """The node's text; None when a line lacks a stand-in (a plugin's own
        label named like a base one): render again without them."""
        families = list(self._families.values())
        forms = tuple([f.form for f in families])
        # with stand-ins the forms are shared, and so is their shape (memoized by
        # the forms' identity); without, neither is, and nothing is kept
        shape: _Shape | None = _SHAPES.get(forms) if self._values is not None else None
        if shape is None:
            shape = _shape(forms, frozenset(self.base))
            if self._values is not None:
                _SHAPES.put(forms, shape)
        blocks = [("\n".join(f.lines) + "\n").encode() if f.lines else b"" for f in families]
        body = b"".join(blocks)
        labels = None
        each = grow = count = together = 0
        if self._values is not None:
            cluster, family, node, three = (
                self._values[k].encode() for k in (*_STAND_IN_ORDER, "three")
            )
            labels = (cluster, family, node, three)
            # how much longer a line gets when expanded
            each, grow = len(cluster) + len(family) + len(node) - 3, len(three) - 1
        starts = array("I", [0])
        position = 0
        for f, block in zip(families, blocks, strict=True):
            lines = len(f.lines)
            count += lines
            joined = f.form.joined
            position += len(block) + (lines * grow if joined else lines * each)
            together += lines if joined else 0
            starts.append(position)
        # each line as its family's template says: no line without a stand-in,
        # none from a value (a line has either byte 4 or each of the others)
        if labels is not None and (
            self._lacking
            or len(body) - len(body.translate(None, _STAND_IN_BYTES))
            != together + 3 * (count - together)
        ):
            return None
        return NodeText(
            order=shape.order,
            index=shape.index,
            meta=shape.meta,
            body=body,
            starts=starts,
            labels=labels,
            sample_names=shape.sample_names,
            label_names=shape.label_names,
            dropped=dict(self.dropped) if self.dropped else _NO_DROPS,
        )


def _shape(forms: tuple[_Form, ...], base: frozenset[str]) -> _Shape:
    order, index = _shared_order(tuple([f.name for f in forms]))
    meta = tuple([(f.name, f.kind, f.doc) for f in forms])
    return _Shape(
        order,
        index,
        _METAS.get(meta) or _METAS.put(meta, {name: (kind, doc) for name, kind, doc in meta}),
        _shared(frozenset([f.sample for f in forms])),
        _shared(base.union(*[f.keys for f in forms if f.keys])),
    )


def _shared_order(order: tuple[str, ...]) -> tuple[tuple[str, ...], Mapping[str, int]]:
    """One object per distinct family order, with its index."""
    known: tuple[tuple[str, ...], Mapping[str, int]] | None = _ORDERS.get(order)
    if known is None:
        known = _ORDERS.put(order, (order, {name: i for i, name in enumerate(order)}))
    return known


def _shared(names: frozenset[str]) -> frozenset[str]:
    known: frozenset[str] | None = _NAME_SETS.get(names)
    return known if known is not None else _NAME_SETS.put(names, names)


def _brace(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def render_text(
    snap: NodeSnapshot, fmt: Format | None = None, series_budget: int | None = None
) -> NodeText:
    """One node's text: names as they are (``fmt`` None), or escaped for ``fmt``."""
    writer = _TextWriter(snap, series_budget, fmt)
    render_node(writer, snap)
    text = writer.finish()
    if text is None:
        writer = _TextWriter(snap, series_budget, fmt, stand_ins=False)
        render_node(writer, snap)
        text = writer.finish()
        assert text is not None  # written as it is: nothing to check
    return text


def _expand(body: bytes, labels: tuple[bytes, bytes, bytes, bytes] | None) -> bytes:
    if labels is None:
        return body
    cluster, family, node, three = labels
    full = body.replace(b"\x04", three).replace(b"\x01", cluster)
    return full.replace(b"\x02", family).replace(b"\x03", node)


#: a node's text for :func:`_scatter_py`: body, labels, starts, and its plan
#: (per family block, the family's place in the body)
_Scattered: TypeAlias = (
    "tuple[bytes, tuple[bytes, bytes, bytes, bytes] | None, array[int], array[int]]"
)


def _scatter_py(out: bytearray, cursors: array[int], nodes: Sequence[_Scattered]) -> None:
    """The nodes' texts into the body: each family block of a node's
    ``body`` expanded (``starts``: the expanded text's block offsets) and
    copied to ``out[cursors[plan[i]]:]``, that cursor advanced.

    The pure-Python build of ``sidecar/exporter/_scatter.c`` (its header is
    the manual), which does the same without a Python object per block,
    without the expanded copy and without the GIL.  Both write the same
    bytes, and raise ValueError when the arguments do not agree (the compiled
    one also for a stand-in across a block's end, which this one cannot see)."""
    for body, labels, starts, plan in nodes:
        full = memoryview(_expand(body, labels))
        if len(starts) != len(plan) + 1 or starts[0] != 0 or starts[-1] != len(full):
            raise ValueError("starts: not the offsets of the expanded body")
        a = 0
        for i, b in zip(plan, starts[1:], strict=False):
            if b < a:
                raise ValueError("starts: offsets go back")
            if b > a:
                if i >= len(cursors):
                    raise ValueError("plan: a family beyond cursors")
                to = cursors[i]
                if to + b - a > len(out):
                    raise ValueError("a block beyond the end of out")
                out[to : to + b - a] = full[a:b]
                cursors[i] = to + b - a
            a = b


try:  # built by setup.py with the compiled modules, where a C compiler exists
    from ._scatter import scatter as _scatter
except ImportError:  # pragma: no cover - built wherever the tests run
    _scatter = _scatter_py


def write_texts(texts: Sequence[NodeText], fmt: Format, tail: bytes = b"") -> bytearray:
    """The families of ``texts`` (node order), each header once then every
    block, followed by ``tail``.

    Each family's place in the body is known from the nodes' offsets, so
    the body is one buffer of its final size, filled node after node
    (:func:`_scatter_py`, in C where it was built: without the GIL): a scrape
    holds the body, never a copy of every node's text."""
    headers: dict[str, bytes] = {}
    seen: set[int] = set()
    for text in texts:
        if id(text.order) in seen:  # same families as a node before: nothing new
            continue
        seen.add(id(text.order))
        for name in text.order:
            if name not in headers:
                kind, doc = text.meta[name]
                headers[name] = _header(fmt, kind, name, doc)
    # families by their place in the body; a node's families as those places
    # (one plan per distinct family order: most nodes share one)
    slot = {name: i for i, name in enumerate(headers)}
    plans: dict[int, array[int]] = {}
    size = [len(header) for header in headers.values()]
    for text in texts:
        plan = plans.get(id(text.order))
        if plan is None:
            plan = plans[id(text.order)] = array("I", [slot[name] for name in text.order])
        starts = text.starts
        a = 0
        for i, b in zip(plan, starts[1:], strict=False):
            size[i] += b - a
            a = b
    out = bytearray(sum(size) + len(tail))
    cursors = array("Q")
    at = 0
    for i, header in enumerate(headers.values()):
        out[at : at + len(header)] = header
        cursors.append(at + len(header))
        at += size[i]
    _scatter(out, cursors, [(t.body, t.labels, t.starts, plans[id(t.order)]) for t in texts])
    out[at:] = tail
    return out


# --------------------------------------------------------------------------- families

_FAST_TYPES: Final = frozenset({"gauge", "counter", "info"})
_METRIC_HEADERS: Final = _Bounded()


def _metric_header(fmt: Format, metric: Metric) -> bytes:
    key = (fmt, metric.type, metric.name, metric.documentation, metric.unit)
    header: bytes | None = _METRIC_HEADERS.get(key)
    if header is None:
        bare = Metric(metric.name, metric.documentation, metric.type, metric.unit)
        header = generate(fmt, _Fixed([bare]))
        if fmt.openmetrics:
            header = header[: -len(_EOF)]
        _METRIC_HEADERS.put(key, header)
    return header


def _fast_lines(fmt: Format, metric: Metric) -> list[str] | None:
    """The sample lines of a plain gauge/counter/info family, or None when
    prometheus_client must write it (timestamps, exemplars, ``_created``,
    names the format rewrites)."""
    if metric.type not in _FAST_TYPES:
        return None
    expected = {"counter": "_total", "info": "_info"}.get(metric.type, "")
    lines = []
    for sample in metric.samples:
        name, labels = sample.name, sample.labels
        if (
            name != metric.name + expected
            or sample.timestamp is not None
            or sample.exemplar is not None
            or sample.native_histogram is not None
            or not _unchanged(fmt, name, True)
        ):
            return None
        if labels:
            parts = []
            for key, value in sorted(labels.items()):
                if not _unchanged(fmt, key, False):
                    return None
                parts.append(f'{key}="{_esc(value)}"')
            lines.append(f"{name}{{{','.join(parts)}}} {go_float(float(sample.value))}")
        else:
            lines.append(f"{name} {go_float(float(sample.value))}")
    return lines


def format_lines(fmt: Format, kind: str, name: str, doc: str, lines: Sequence[str]) -> bytes:
    """A gauge or counter family written from its sample lines, made by the
    caller as :func:`_fast_lines` makes them (sorted labels, values escaped
    with :func:`escape_value`, numbers with :func:`go_float`); the header as
    prometheus_client writes it.  Unsupported when ``fmt`` would rewrite
    the sample name."""
    sample = f"{name}_total" if kind == "counter" else name
    if not _unchanged(fmt, sample, True):
        raise Unsupported(sample)
    header = _header(fmt, kind, name, doc)
    return header + ("\n".join(lines) + "\n").encode() if lines else header


escape_value: Final = _esc


def format_families(metrics: Iterable[Metric], fmt: Format) -> bytes:
    """prometheus_client's exposition of ``metrics`` in ``fmt`` without the
    OpenMetrics ``# EOF``: plain families formatted here (beamside's own
    families have a dozen series per node), any other through prometheus_client."""
    out: list[bytes] = []
    for metric in metrics:
        lines = _fast_lines(fmt, metric)
        if lines is None:
            body = generate(fmt, _Fixed([metric]))
            out.append(body[: -len(_EOF)] if fmt.openmetrics else body)
            continue
        out.append(_metric_header(fmt, metric))
        if lines:
            out.append(("\n".join(lines) + "\n").encode())
    return b"".join(out)


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True, eq=False)
class _Entry:
    snapshot: NodeSnapshot
    #: None: the canonical render (names unescaped); else per format served
    texts: Mapping[Format | None, NodeText]


class ExpositionCache:
    """Each node's text for its current snapshot, and the plugin series dropped."""

    def __init__(self, series_budget: int | None = 1000) -> None:
        self.series_budget = series_budget
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        #: the snapshot whose drops were last counted, per node
        self._counted: dict[str, NodeSnapshot] = {}
        self._dropped: dict[str, dict[str, int]] = {}
        #: per node, snapshots that arrived since a scrape last read its text ...
        self._arrivals: dict[str, int] = {}
        #: ... and how many had arrived when it did (scrapes keep up: 0 or 1)
        self._gap: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def node_text(self, snap: NodeSnapshot, fmt: Format) -> NodeText:
        """``snap``'s text in ``fmt``, for a scrape (rendered now if it is not kept)."""
        entry = self._entries.get(snap.node)
        canonical = None
        if entry is not None and entry.snapshot is snap:
            text = entry.texts.get(fmt)
            if text is not None:
                self._read(snap.node)
                return text
            canonical = entry.texts.get(None)
        # rendered without a lock: the event loop and other scrapes go on
        if canonical is None:
            canonical = render_text(snap, None, self.series_budget)
        text = canonical if canonical.serves(fmt) else render_text(snap, fmt, self.series_budget)
        self._install(snap, {None: canonical, fmt: text})
        self._read(snap.node)
        return text

    def _read(self, node: str) -> None:
        self._gap[node] = self._arrivals.get(node, 0)
        self._arrivals[node] = 0

    def prepare(self, snap: NodeSnapshot) -> bool:
        """Render a new snapshot now, ahead of the next scrape, when scrapes
        read every snapshot of the node (at the last read, at most one had
        arrived since the read before); True when rendered.  Called as
        snapshots arrive: a scrape then only joins texts (a cold scrape of
        300 nodes held the GIL for about 0.4 s, one of 10,000 for 10 s,
        starving the collections).  A node scraped less often than it is
        collected, or not at all, stays rendered on demand: no snapshot is
        rendered in vain."""
        node = snap.node
        entry = self._entries.get(node)
        if entry is not None and entry.snapshot is snap:
            return False
        self._arrivals[node] = self._arrivals.get(node, 0) + 1
        if self._gap.get(node, 2) > 1:
            return False
        self._install(snap, {None: render_text(snap, None, self.series_budget)})
        return True

    def _install(self, snap: NodeSnapshot, texts: dict[Format | None, NodeText]) -> None:
        with self._lock:
            current = self._entries.get(snap.node)
            if current is not None and current.snapshot is snap:
                self._entries[snap.node] = _Entry(snap, {**texts, **current.texts})
            elif current is None or current.snapshot.taken_at <= snap.taken_at:
                self._entries[snap.node] = _Entry(snap, texts)
                self._count_locked(snap, texts[None].dropped)
            # else: a scrape that read an older snapshot; the newer one stays

    def _count_locked(self, snap: NodeSnapshot, dropped: Mapping[str, int]) -> None:
        last = self._counted.get(snap.node)
        if last is snap or (last is not None and last.taken_at > snap.taken_at):
            return
        self._counted[snap.node] = snap
        if dropped:
            totals = self._dropped.setdefault(snap.node, {})
            for name, count in dropped.items():
                totals[name] = totals.get(name, 0) + count

    def count_dropped(self, snaps: Iterable[NodeSnapshot], dropped: Mapping[str, Any]) -> None:
        """What the reference path dropped (node -> family -> samples), once per snapshot."""
        with self._lock:
            for snap in snaps:
                self._count_locked(snap, dropped.get(snap.node) or {})

    def dropped(self) -> dict[str, dict[str, int]]:
        """Plugin samples dropped so far: node -> family name -> count."""
        with self._lock:
            return {node: dict(counts) for node, counts in self._dropped.items()}

    def forget_others(self, nodes: Iterable[str]) -> None:
        """Drop what is kept for nodes not in ``nodes`` (gone from the manager)."""
        keep = set(nodes)
        with self._lock:
            tables: tuple[dict[str, Any], ...] = (
                self._entries, self._counted, self._dropped, self._arrivals, self._gap
            )
            for table in tables:  # list(): prepare() adds nodes from the event loop
                for node in [n for n in list(table) if n not in keep]:
                    table.pop(node, None)

    def texts(self, snaps: Sequence[NodeSnapshot], fmt: Format) -> list[NodeText]:
        """The texts of ``snaps`` in ``fmt`` (for :func:`write_texts`), their
        drops counted; what is kept for other nodes is dropped."""
        texts = [self.node_text(snap, fmt) for snap in snaps]
        self.forget_others(snap.node for snap in snaps)
        return texts

    def exposition(self, snaps: Sequence[NodeSnapshot], fmt: Format) -> bytes:
        """The node families of ``snaps`` in ``fmt``."""
        return bytes(write_texts(self.texts(snaps, fmt), fmt))
