"""The Loki double is strict the way Loki is: every rejection, on both wire formats."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import cramjam
import httpx
import pytest

from sidecar.loki.gen import push_pb2
from sidecar.loki.model import LogEntry
from sidecar.loki.sink import encode_batch
from tests.support.loki_double import (
    LokiDouble,
    LokiDoubleProcess,
    LokiLimits,
    decode_push_proto,
)

NS = 1_000_000_000


def now() -> int:
    return time.time_ns()


def push_json(
    double: LokiDouble, streams: list[dict[str, Any]], *, gz: bool = False
) -> httpx.Response:
    body = json.dumps({"streams": streams}).encode()
    headers = {"Content-Type": "application/json"}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return httpx.post(double.push_url, content=body, headers=headers)


def proto_body(streams: list[tuple[str, list[tuple[int, str]]]]) -> bytes:
    req = push_pb2.PushRequest()
    for labels, entries in streams:
        s = req.streams.add()
        s.labels = labels
        for ts, line in entries:
            e = s.entries.add()
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, NS)
            e.line = line
    return req.SerializeToString()


def push_proto(double: LokiDouble, raw: bytes, *, compress: bool = True) -> httpx.Response:
    body = bytes(cramjam.snappy.compress_raw(raw)) if compress else raw
    return httpx.post(
        double.push_url,
        content=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    )


def test_json_push_stored_and_queryable(loki: LokiDouble) -> None:
    t = now()
    r = push_json(
        loki,
        [{"stream": {"job": "x", "node": "a"}, "values": [[str(t), "one"], [str(t + 1), "two"]]}],
    )
    assert r.status_code == 204, r.text
    assert loki.lines('{job="x"}') == ["one", "two"]
    q = httpx.get(
        loki.url + "/loki/api/v1/query_range",
        params={"query": '{job="x", node=~"a|b"}', "direction": "forward", "limit": "10"},
    ).json()
    assert q["status"] == "success"
    assert q["data"]["resultType"] == "streams"
    assert q["data"]["result"] == [
        {"stream": {"job": "x", "node": "a"}, "values": [[str(t), "one"], [str(t + 1), "two"]]}
    ]


def test_gzip_json_push(loki: LokiDouble) -> None:
    r = push_json(loki, [{"stream": {"job": "gz"}, "values": [[str(now()), "zipped"]]}], gz=True)
    assert r.status_code == 204, r.text
    assert loki.lines({"job": "gz"}) == ["zipped"]
    assert loki.requests[-1].content_encoding == "gzip"


def test_protobuf_snappy_push(loki: LokiDouble) -> None:
    t = now()
    raw = proto_body([('{job="p", node="n1"}', [(t, "a"), (t + 5, "b")])])
    r = push_proto(loki, raw)
    assert r.status_code == 204, r.text
    got = loki.entries({"job": "p"})
    assert [(e.ts, e.line, e.label_dict) for e in got] == [
        (t, "a", {"job": "p", "node": "n1"}),
        (t + 5, "b", {"job": "p", "node": "n1"}),
    ]


def test_hand_decoder_agrees_with_generated_code() -> None:
    """The double decodes protobuf by hand from Loki's field numbers: this
    pins our .proto to the same numbers."""
    t = 1_700_000_000_123_456_789
    entries = [LogEntry((("job", "j"), ("node", "n")), t + i, f'{{"i":{i}}}') for i in range(3)]
    raw = bytes(cramjam.snappy.decompress_raw(encode_batch(entries)))
    assert decode_push_proto(raw) == [
        ('{job="j", node="n"}', [(t + i, f'{{"i":{i}}}') for i in range(3)])
    ]


def test_corrupt_and_unreadable_bodies_rejected(loki: LokiDouble) -> None:
    raw = proto_body([('{job="p"}', [(now(), "x")])])
    good = bytes(cramjam.snappy.compress_raw(raw))
    cases = {
        "not snappy": push_proto(loki, b"\xff\xff\xff\xff\xff\x00garbage", compress=False),
        "truncated snappy": push_proto(loki, good[: len(good) // 2], compress=False),
        "uncompressed protobuf": push_proto(loki, raw + b"\xff" * 8, compress=False),
        "bad protobuf": push_proto(loki, b"\x0a\xff\x01\x00"),
        "bad json": httpx.post(
            loki.push_url, content=b"{nope", headers={"Content-Type": "application/json"}
        ),
        "bad gzip": httpx.post(
            loki.push_url,
            content=b"not gzip",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ),
    }
    for name, r in cases.items():
        assert r.status_code == 400, (name, r.status_code, r.text)
    assert "snappy" in cases["not snappy"].text
    assert loki.stored_entries == 0
    assert loki.lines() == []


@pytest.mark.parametrize("fmt", ["json", "proto"])
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"__name": "x"}, "invalid label name"),
        ({"1abc": "x"}, "invalid label name"),
        ({"a-b": "x"}, "invalid label name"),
        ({}, "at least one label pair is required per stream"),
        ({f"l{i}": "v" for i in range(16)}, "has 16 label names; limit 15"),
        ({"job": "v" * 2049}, "label value too long"),
    ],
)
def test_label_rejections(loki: LokiDouble, fmt: str, labels: dict[str, str], message: str) -> None:
    t = now()
    if fmt == "json":
        r = push_json(
            loki,
            [
                {"stream": labels, "values": [[str(t), "bad"]]},
                {"stream": {"job": "ok"}, "values": [[str(t), "good"]]},
            ],
        )
    else:
        text = "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        r = push_proto(loki, proto_body([(text, [(t, "bad")]), ('{job="ok"}', [(t, "good")])]))
    assert r.status_code == 400
    assert message in r.text
    assert "total ignored: 1 out of 2" in r.text
    # as in Loki, the valid stream of the same request is kept
    assert loki.lines() == ["good"]


def test_duplicate_label_names_rejected_in_protobuf(loki: LokiDouble) -> None:
    r = push_proto(loki, proto_body([('{job="a", job="b"}', [(now(), "x")])]))
    assert r.status_code == 400
    assert "duplicate label name: 'job'" in r.text
    assert loki.lines() == []


def test_unparsable_label_text_rejected(loki: LokiDouble) -> None:
    for text in ['job="a"', '{job=~"a"}', '{job="a"', "{job=a}"]:
        r = push_proto(loki, proto_body([(text, [(now(), "x")])]))
        assert r.status_code == 400, text
        assert "Error parsing labels" in r.text
    assert loki.stored_entries == 0


@pytest.mark.parametrize("fmt", ["json", "proto"])
def test_entry_rejections(fmt: str) -> None:
    limits = LokiLimits(max_line_size=100, reject_old_samples_max_age=3600)
    with LokiDouble(limits) as loki:
        t = now()
        entries = [
            (t - 7200 * NS, "too old"),
            (t + 3600 * NS, "too new"),
            (t, "x" * 101),
            (t + 1, "fine"),
        ]
        if fmt == "json":
            r = push_json(
                loki,
                [{"stream": {"job": "e"}, "values": [[str(ts), line] for ts, line in entries]}],
            )
        else:
            r = push_proto(loki, proto_body([('{job="e"}', entries)]))
        assert r.status_code == 400
        assert "timestamp too old" in r.text
        assert "timestamp too new" in r.text
        assert "Max entry size '100' bytes exceeded" in r.text
        assert "total ignored: 3 out of 4" in r.text
        assert loki.lines() == ["fine"]
        assert loki.rejected_entries == 3


def test_json_timestamps_must_be_strings(loki: LokiDouble) -> None:
    r = push_json(loki, [{"stream": {"job": "j"}, "values": [[now(), "number ts"]]}])
    assert r.status_code == 400
    assert "ReadString" in r.text
    r = push_json(loki, [{"stream": {"job": "j"}, "values": [["12.5", "float ts"]]}])
    assert r.status_code == 400
    assert loki.stored_entries == 0


def test_duplicates_ignored_but_counted(loki: LokiDouble) -> None:
    t = now()
    raw = proto_body([('{job="d"}', [(t, "same"), (t, "other line same ts")])])
    assert push_proto(loki, raw).status_code == 204
    assert push_proto(loki, raw).status_code == 204  # a re-send: Loki answers 204 too
    assert loki.lines() == ["same", "other line same ts"]
    assert loki.counts()["received"] == 4
    assert loki.counts()["stored"] == 2
    assert loki.duplicate_entries == 2


def test_out_of_order_accepted_by_default_rejected_in_strict_mode(loki: LokiDouble) -> None:
    t = now()
    raw = proto_body([('{job="o"}', [(t + 10, "later"), (t, "earlier")])])
    assert push_proto(loki, raw).status_code == 204
    with LokiDouble(LokiLimits(unordered_writes=False)) as strict:
        r = push_proto(strict, raw)
        assert r.status_code == 400
        assert "entry out of order" in r.text
        assert strict.lines() == ["later"]


def test_tenant_header_required_when_auth_enabled() -> None:
    with LokiDouble(LokiLimits(require_tenant=True)) as loki:
        raw = proto_body([('{job="t"}', [(now(), "x")])])
        assert push_proto(loki, raw).status_code == 401
        body = bytes(cramjam.snappy.compress_raw(raw))
        r = httpx.post(
            loki.push_url,
            content=body,
            headers={
                "Content-Type": "application/x-protobuf",
                "Content-Encoding": "snappy",
                "X-Scope-OrgID": "team-a",
            },
        )
        assert r.status_code == 204
        assert [e.line for e in loki.entries(tenant="team-a")] == ["x"]


def test_modes(loki: LokiDouble) -> None:
    raw = proto_body([('{job="m"}', [(now(), "x")])])
    loki.set_mode("429")
    r = push_proto(loki, raw)
    assert r.status_code == 429 and "rate limit" in r.text
    loki.set_mode("503")
    assert push_proto(loki, raw).status_code == 503
    with httpx.Client() as client:  # a kept-alive connection is cut when going down
        assert client.get(loki.url + "/ready").status_code == 200
        loki.set_mode("down")
        with pytest.raises(httpx.TransportError):
            client.get(loki.url + "/ready")
    with pytest.raises(httpx.ConnectError):
        httpx.get(loki.url + "/ready")
    loki.set_mode("ok")
    assert push_proto(loki, raw).status_code == 204
    assert loki.lines() == ["x"]


def test_query_range_matchers_filters_limits(loki: LokiDouble) -> None:
    t = now()
    push_json(
        loki,
        [
            {
                "stream": {"job": "q", "level": "info"},
                "values": [
                    [str(t + i), json.dumps({"i": i}, separators=(",", ":"))] for i in range(5)
                ],
            },
            {
                "stream": {"job": "q", "level": "error"},
                "values": [[str(t + 10), '{"i":10,"msg":"boom"}']],
            },
        ],
    )

    def query(q: str, **params: str) -> Any:
        return httpx.get(loki.url + "/loki/api/v1/query_range", params={"query": q, **params})

    def lines(q: str, **params: str) -> list[str]:
        r = query(q, **params)
        assert r.status_code == 200, r.text
        return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]

    assert len(lines('{job="q"}')) == 6
    assert lines('{job="q", level!="info"}') == ['{"i":10,"msg":"boom"}']
    assert lines('{level=~"err.*"}') == ['{"i":10,"msg":"boom"}']
    assert len(lines('{job="q", level!~"err.*"}')) == 5
    assert lines('{job="q"} |= "boom"') == ['{"i":10,"msg":"boom"}']
    assert lines('{job="q", level="info"}', limit="2") == ['{"i":4}', '{"i":3}']  # backward
    assert lines('{job="q", level="info"}', limit="2", direction="forward") == [
        '{"i":0}',
        '{"i":1}',
    ]
    r = query('{job="q", level="error"} | json')
    assert r.json()["data"]["result"][0]["stream"]["msg"] == "boom"
    for bad in ['{job=~".*"}', "job", '{job="q"} | nope', '{job=~"("}', "{}"]:
        assert query(bad).status_code == 400, bad
    assert httpx.get(loki.url + "/ready").text.strip() == "ready"


def test_double_in_its_own_process() -> None:
    with LokiDoubleProcess() as proc:
        raw = proto_body([('{job="proc"}', [(now(), "x")])])
        r = httpx.post(
            proc.url + "/loki/api/v1/push",
            content=bytes(cramjam.snappy.compress_raw(raw)),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
        )
        assert r.status_code == 204
        assert proc.stats()["stored"] == 1
        assert [row[2] for row in proc.dump()] == ["x"]
        proc.set_mode("503")
        r = httpx.post(
            proc.url + "/loki/api/v1/push",
            content=b"",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 503
