"""The one redaction rule (sidecar/redact.py): names, marker, text, structures."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from sidecar.redact import (
    SECRET_WORDS,
    is_marker,
    is_secret_key,
    marker,
    redact_json,
    redact_named,
    redact_text,
)

MARKER = re.compile(r"<redacted sha256:[0-9a-f]{6}>")


def sha6(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:6]


def test_the_word_list_is_the_agents() -> None:
    source = Path(__file__).parents[1] / "erl_agents" / "beamside_redact.erl"
    define = re.search(r"-define\(SECRET_WORDS,\s*\[(.*?)\]\)", source.read_text(), re.S)
    assert define is not None
    assert tuple(re.findall(r'<<"([a-z]+)">>', define.group(1))) == SECRET_WORDS


@pytest.mark.parametrize("word", SECRET_WORDS)
def test_every_word_names_a_secret_in_any_case_and_as_part_of_a_name(word: str) -> None:
    for name in (word, word.upper(), word.capitalize(), f"db_{word}", f"x{word.upper()}_2"):
        assert is_secret_key(name), name
        assert is_secret_key(name.encode()), name
    # As a printed key in each shape the text rule knows:
    value = f"V{sha6(word.encode())}zz"
    for text in (
        f'{{{word}_x, <<"{value}">>}}',
        f"{{'{word.upper()} X', \"{value}\"}}",
        f"#{{{word} => {value}}}",
        f'[{word}: "{value}"]',
        f'%{{"{word}" => "{value}"}}',
        f'{{"{word}": "{value}"}}',
        f"{word}={value}&a=1",
    ):
        out = redact_text(text)
        assert value not in out and MARKER.search(out), (text, out)


def test_names_that_are_not_secrets() -> None:
    for name in ("user", "host", "port", "pool_size", "verify", "level", "", "a" * 5000):
        assert not is_secret_key(name)
    for not_a_name in (None, 42, ("pass",), ["key"]):
        assert not is_secret_key(not_a_name)


def test_the_marker() -> None:
    assert marker("guest") == f"<redacted sha256:{sha6(b'guest')}>"
    assert marker(b"guest") == marker("guest")
    assert marker("guest") != marker("guest2")  # a change stays visible
    assert marker({"b": 1, "a": [2]}) == marker({"a": [2], "b": 1})
    assert is_marker(marker("x")) and is_marker("<redacted phash2:0a0b0c>")
    assert is_marker("<redacted: beyond limits>") and not is_marker(marker("x") + " ")


def test_erlang_proplists_and_maps() -> None:
    text = (
        '[{default_user,<<"guest">>},{default_pass,<<"guestpw">>},'
        '{ssl_options,[{certfile,"/etc/rabbit/cert.pem"},{password,"pempw"},'
        "{verify,verify_peer}]},{loopback_users,[]}]"
    )
    out = redact_text(text)
    assert "guestpw" not in out and "pempw" not in out and "/etc/rabbit/cert.pem" not in out
    assert '{default_user,<<"guest">>}' in out and "{verify,verify_peer}" in out
    assert "{loopback_users,[]}" in out
    guestpw = sha6(b'<<"guestpw">>')
    assert f"{{default_pass,<redacted sha256:{guestpw}>}}" in out
    nested = "#{db => #{<<\"password\">> => <<\"p1\">>, port => 5432}, 'Api-Key' => 'k k'}"
    out = redact_text(nested)
    assert "p1" not in out and "k k" not in out and "port => 5432" in out


def test_a_secret_keys_nested_value_is_redacted_whole() -> None:
    out = redact_text('{secret_key_base, [{a, {b, "deep"}}, #{c => <<"x">>}]}, {next, 1}')
    assert "deep" not in out and '"x"' not in out and "{next, 1}" in out
    # A value that never closes is redacted to the end of the text.
    assert redact_text("{password, [cut here...") == "{password, " + marker("[cut here...")


def test_elixir_keyword_lists_maps_structs_and_sigils() -> None:
    text = (
        'config :app, MyApp.Repo, username: "postgres", password: "pg-pass", '
        'hostname: "db", pool_size: 10, ssl_opts: [keyfile: ~c"/k.pem", verify: :verify_peer]'
    )
    out = redact_text(text)
    assert "pg-pass" not in out and "/k.pem" not in out
    assert (
        'username: "postgres"' in out and "pool_size: 10" in out and "verify: :verify_peer" in out
    )
    out = redact_text('%MyApp.Conf{api_token: "t0k", name: "n"} {:secret, ~s(s3c)}')
    assert "t0k" not in out and "s3c" not in out and 'name: "n"' in out
    out = redact_text('%{"auth" => %{"user" => "u", "pw" => "x"}, "ok" => true}')
    assert '"u"' not in out and '"ok" => true' in out


def test_json_and_json_inside_a_printed_binary() -> None:
    out = redact_text('{"token": "abc123", "user": "bob", "n": 1}')
    assert "abc123" not in out and '"user": "bob"' in out
    out = redact_text('<<"{\\"client_secret\\":\\"cs-1\\",\\"id\\":\\"i\\"}">>')
    assert "cs-1" not in out and '\\"id\\":\\"i\\"' in out


def test_key_equals_value_and_authorization_headers() -> None:
    out = redact_text("GET /cb?code=1&access_token=tok-9&state=s password = hunter2 user=bob")
    assert "tok-9" not in out and "hunter2" not in out and "user=bob" in out and "code=1" in out
    out = redact_text("Authorization: Basic dXNlcjpwYXNz then")
    assert "dXNlcjpwYXNz" not in out and out.endswith(" then")
    out = redact_text("sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig to the API")
    assert (
        "eyJ" not in out and out.startswith("sent Bearer <redacted") and out.endswith(" to the API")
    )


def test_pem_blocks() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83+/=\n-----END RSA PRIVATE KEY-----"
    out = redact_text(f"loaded {pem} ok")
    assert out == f"loaded {marker(pem)} ok"
    printed = '{cacerts,<<"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n">>}'
    assert "MIIB" not in redact_text(printed)
    assert "MIIB" not in redact_text('{data, <<"x -----BEGIN CERTIFICATE-----\\nMIIBxx')


def test_url_passwords_keep_user_and_host() -> None:
    out = redact_text('{url, "amqp://guest:gpw@mq.local:5672/vh"} postgres://u:p%40ss@db/x')
    assert out == (
        f'{{url, "amqp://guest:{marker("gpw")}@mq.local:5672/vh"}} '
        f"postgres://u:{marker('p%40ss')}@db/x"
    )
    # A text cut before the "@" (to a limit): the part after the last ":" is
    # a password unless it is a port.
    assert redact_text("dial amqp://u:Pw1x") == f"dial amqp://u:{marker('Pw1x')}"
    assert redact_text("dial http://host:8080") == "dial http://host:8080"
    untouched = "see https://example.com/a?b=c and amqp://guest@host and mailto:x@y"
    assert redact_text(untouched) == untouched


def test_agent_markers_are_normalized_and_never_redacted_again() -> None:
    assert redact_text("{default_pass,'<redacted sha256:abcdef>'}") == (
        "{default_pass,<redacted sha256:abcdef>}"
    )
    assert redact_text('{password, <<"<redacted phash2:012345>">>}') == (
        "{password, <redacted phash2:012345>}"
    )
    kept = '{password,"<redacted sha256:abcdef>"} "token": "<redacted sha256:abcdef>"'
    assert redact_text(kept) == kept
    once = redact_text('[{password, "a"}, {api_key, <<"b">>}] amqp://u:p@h')
    assert redact_text(once) == once


def test_text_without_secrets_is_untouched() -> None:
    lines = [
        "Supervisor: {local,shop_sup}. Started: [{pid,<0.123.0>},{id,worker}]",
        'GET /api/orders?id=7 200 in 3 ms, {"user": "bob", "items": 3}',
        "ranch listener http started on 0.0.0.0:8080",
        "config :logger, level: :info",
        "#{pool_size => 10, mode => fast} [a: 1, b: [c: 2]]",
        "",
    ]
    for line in lines:
        assert redact_text(line) == line


def test_redact_json_walks_nesting() -> None:
    value = {
        "app": {"Password": "p1", "list": [{"token": 5}, {"ok": "x"}], "none_key": None},
        "message": "connecting amqp://u:p2@h",
        "tuple": ("s", {"secretName": ["p3"]}),
    }
    out = redact_json(value)
    text = json.dumps(out)
    for secret in ("p1", "p2", "p3"):
        assert secret not in text
    assert out["app"]["Password"] == marker("p1") and out["app"]["list"][1] == {"ok": "x"}
    assert out["app"]["list"][0]["token"] == marker(5) and out["app"]["none_key"] is None
    assert redact_json("guest", key="default_pass") == marker("guest")
    assert redact_json({"a": {"b": {"c": "x"}}}) == {"a": {"b": {"c": "x"}}}
    deep: object = "leaf"
    for _ in range(200):
        deep = [deep]
    assert "<redacted: beyond limits>" in json.dumps(redact_json(deep))


def test_named_values_keep_their_names() -> None:
    change = {"app": "rabbit", "key": "default_pass", "old": '<<"a">>', "new": None}
    out = redact_json(change)
    assert out == {**change, "old": marker('<<"a">>')}
    entry = redact_json({"key": "ctl_limit", "value": '[{password, "x"}]'})
    assert entry["key"] == "ctl_limit" and "x" not in entry["value"].replace("redacted", "")
    assert redact_json({"key": "AKIA-LOOSE"}) == {"key": marker("AKIA-LOOSE")}
    assert redact_named("default_pass", '<<"g">>') == marker('<<"g">>')
    assert redact_named("default_pass", "<redacted sha256:abcdef>") == "<redacted sha256:abcdef>"
    assert redact_named("max_orders", "500") == "500"


def test_never_raises() -> None:
    rng = random.Random(13)
    alphabet = "{}[]<>\"'\\,:=#%~ -abcpassKEYtoken\n\x00é€"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        assert isinstance(redact_text(text), str)
    assert redact_json(object()) is not None
    assert redact_json({1: b"\xff", (2, 3): {"k": float("nan")}}) is not None
