"""beamside_redact on a real OTP 25 node (over rpc, as the agents use it), and
every agent place that prints or keeps an env value or a process's state:
GetEnv / SetEnv / DiffConfig's agent calls, the config_events section, GetProcess,
and beamside_sysmon's table (protected, no planted secret in it)."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar import agents
from sidecar.agents import EventOptions
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist, ImproperList, Map, encode
from tests.agents.events_helpers import Collected, attach_events, has_text
from tests.support.nodes import ErlangNode, shell_node

A = Atom
MARKER = re.compile(r"<redacted (sha256|phash2):[0-9a-f]{6}>")
BEYOND = "<redacted: beyond limits>"
PLANTED = "pl4nted-S3cret-9f2c"  # never to be seen in anything the agents print


def leaves(term: Any) -> Iterator[str]:
    """Every text in a decoded term: binaries, charlists (lists of ints), atoms."""
    if isinstance(term, bytes):
        yield term.decode("utf-8", "replace")
    elif isinstance(term, str):
        yield str(term)
    elif isinstance(term, list):
        if term and all(isinstance(c, int) for c in term):
            yield "".join(chr(c) for c in term if 0 <= c < 0x110000)
        else:
            for t in term:
                yield from leaves(t)
    elif isinstance(term, tuple):
        for t in term:
            yield from leaves(t)
    elif isinstance(term, dict):
        for k, v in term.items():
            yield from leaves(k)
            yield from leaves(v)
    elif isinstance(term, Map):
        for k, v in term.pairs:
            yield from leaves(k)
            yield from leaves(v)
    elif isinstance(term, ImproperList):
        for t in term.elements:
            yield from leaves(t)
        yield from leaves(term.tail)


def text(term: Any) -> str:
    """A charlist (list of ints) or a binary as ``str``."""
    if isinstance(term, bytes):
        return term.decode()
    assert isinstance(term, list) and all(isinstance(c, int) for c in term), term
    return "".join(chr(c) for c in term)


def is_marker(term: Any) -> bool:
    return MARKER.fullmatch(text(term)) is not None


def all_text(term: Any) -> str:
    return "\n".join(leaves(term))


class Agent:
    """rpc calls into the agents of one node, as the sidecar makes them."""

    def __init__(self, local: LocalNode, node: ErlangNode) -> None:
        self.local, self.node = local, node

    async def call(self, module: str, fun: str, args: list[Any], timeout: float = 10.0) -> Any:
        return await self.local.rpc(self.node.name, module, fun, args, timeout=timeout)

    async def redact(self, term: Any) -> Any:
        return await self.call("beamside_redact", "redact", [term])

    async def ops(self, module: str, fun: str, args: list[Any]) -> Any:
        reply = await self.call(module, fun, args)
        assert isinstance(reply, tuple) and reply[0] == "ok", reply
        return reply[1]


@pytest.fixture
async def agent(otp25_node: ErlangNode, local: LocalNode) -> Agent:
    await agents.ensure_loaded(local, otp25_node.name)
    return Agent(local, otp25_node)


# --------------------------------------------------------------------------- the rule


async def test_nested_proplists_maps_and_keyword_lists(agent: Agent) -> None:
    rabbit_like = [
        (A("default_user"), b"admin"),
        (A("default_pass"), PLANTED.encode()),
        (
            A("ssl_options"),
            [
                (A("cacertfile"), Charlist("/etc/ca.pem")),
                (A("password"), Charlist(PLANTED)),
                (A("keyfile"), Charlist("/etc/" + PLANTED)),
                (A("verify"), A("verify_peer")),
            ],
        ),
        (A("tcp_listeners"), [5672]),
    ]
    out = await agent.redact(rabbit_like)
    assert PLANTED not in all_text(out)
    assert out[0] == (A("default_user"), b"admin") and out[3] == (A("tcp_listeners"), [5672])
    assert out[1][0] == "default_pass" and is_marker(out[1][1])
    ssl = dict(out[2][1])
    assert all(is_marker(ssl[k]) for k in ("cacertfile", "password", "keyfile"))
    assert ssl["verify"] == "verify_peer"

    # maps: atom, binary (any case) and charlist keys, nested in lists
    m = {
        A("db"): [{b"Password": PLANTED.encode(), b"host": b"db1"}],
        A("api"): {Charlist("X-Auth-Token"): Charlist(PLANTED), A("timeout"): 5},
    }
    out = await agent.redact(m)
    assert PLANTED not in all_text(out)
    assert out["db"][0][b"host"] == b"db1" and is_marker(out["db"][0][b"Password"])
    api = out["api"]  # a charlist key: decoded as a Map of pairs
    assert isinstance(api, Map)
    api_pairs = {text(k) if isinstance(k, list) else k: v for k, v in api.pairs}
    assert api_pairs["timeout"] == 5 and is_marker(api_pairs["X-Auth-Token"])

    # an Elixir Repo config: a keyword list (atom keys) inside a keyword list
    repo = [
        (
            A("Elixir.Shop.Repo"),
            [
                (A("username"), b"shop"),
                (A("password"), PLANTED.encode()),
                (A("hostname"), b"localhost"),
                (A("pool_size"), 10),
            ],
        )
    ]
    out = await agent.redact(repo)
    assert PLANTED not in all_text(out)
    kw = dict(out[0][1])
    assert kw["username"] == b"shop" and kw["hostname"] == b"localhost" and kw["pool_size"] == 10
    assert is_marker(kw["password"])


async def test_secret_key_names(agent: Agent) -> None:
    secret = [
        A("password"),
        A("passwd"),
        A("default_pass"),
        A("pwd"),
        A("API_KEY"),
        A("secret_key_base"),
        A("private"),
        A("credentials"),
        A("cookie"),
        A("auth_token"),
        A("certfile"),
        A("salt"),
        A("signature"),
        A("session_id"),
        b"Bearer",
        b"X-Auth-Token",
        Charlist("keyfile"),
    ]
    plain = [A("port"), A("hostname"), A("verify"), A("user"), b"timeout", Charlist("host"), 42]
    for k in secret:
        assert await agent.call("beamside_redact", "is_secret_key", [k]) is True, k
    for k in plain:
        assert await agent.call("beamside_redact", "is_secret_key", [k]) is False, k


async def test_pem_blocks_and_url_passwords(agent: Agent) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEv" + PLANTED + "\n-----END PRIVATE KEY-----\n"
    doc = f"key: {pem}tail"
    out = await agent.redact([doc.encode(), Charlist(doc)])
    for t in out:
        s = text(t)
        assert PLANTED not in s and "BEGIN" not in s
        assert s.startswith("key: <redacted ") and s.endswith("\ntail"), s
    # a block cut short (no END) is redacted to the end
    cut = await agent.redact(("-----BEGIN CERTIFICATE-----\n" + PLANTED).encode())
    assert is_marker(cut)

    urls = [
        f"amqp://guest:{PLANTED}@rabbit.local:5672/vhost",
        f"postgres://shop:{PLANTED}@db:5432/shop?ssl=true",
        f"redis://:{PLANTED}@cache/0",
    ]
    out = await agent.redact([u.encode() for u in urls] + [Charlist(u) for u in urls])
    for got in out:
        s = text(got)
        assert PLANTED not in s
        m = re.fullmatch(r"(\w+)://([^:]*):(<redacted [^>]+>)@(.*)", s)
        assert m is not None and MARKER.fullmatch(m.group(3)), s
    assert text(out[0]).endswith("@rabbit.local:5672/vhost") and "guest:" in text(out[0])
    # no userinfo password: left alone
    plain = [b"http://host/path?mail=a@b.c", b"https://token@github.com/x", b"see http://x"]
    assert await agent.redact(plain) == plain


async def test_deep_improper_and_odd_terms(agent: Agent) -> None:
    # secret at depth 20: redacted with a digest; at depth 40: beyond the walk's limit
    shallow: Any = [(A("password"), Charlist(PLANTED))]
    for _ in range(19):
        shallow = [shallow]
    out = await agent.redact(shallow)
    assert PLANTED not in all_text(out)
    while isinstance(out, list) and len(out) == 1 and isinstance(out[0], list):
        out = out[0]
    assert out[0][0] == "password" and is_marker(out[0][1])
    deep: Any = (A("innocent"), Charlist(PLANTED))
    for _ in range(40):
        deep = [deep]
    out = await agent.redact(deep)
    assert PLANTED not in all_text(out) and BEYOND in all_text(out)

    improper = ImproperList((A("a"), (A("token"), b"x" + PLANTED.encode())), (A("pass"), 1))
    out = await agent.redact(improper)
    assert isinstance(out, ImproperList) and out.elements[0] == "a"
    assert is_marker(out.elements[1][1]) and is_marker(out.tail[1])

    # odd terms come back unchanged, never an exception
    odd = await agent.node.aeval(
        "T = {self(), make_ref(), fun erlang:now/0, <<1:3>>, 1.5, -7, 1 bsl 80, [], {},"
        ' #{}, <<255, 254, "://x:y@">>, [1, 2 | 3], {[[[]]]}},'
        " T =:= beamside_redact:redact(T)."
    )
    assert odd == "false"  # the non-UTF-8 binary's URL password is still found
    same = await agent.node.aeval(
        "T = {self(), make_ref(), fun erlang:now/0, <<1:3>>, 1.5, -7, 1 bsl 80, [], {},"
        ' #{}, <<255, 254>>, [1, 2 | 3], {[[[]]]}, "plain text"},'
        " T =:= beamside_redact:redact(T)."
    )
    assert same == "true"


async def test_huge_terms_are_bounded(agent: Agent) -> None:
    reply = await agent.node.aeval(
        "L = lists:seq(1, 2000000),"
        " M = maps:from_list([{I, [{password, I}]} || I <- lists:seq(1, 200000)]),"
        " {T1, R1} = timer:tc(fun() -> beamside_redact:redact(L) end),"
        " {T2, R2} = timer:tc(fun() -> beamside_redact:redact(M) end),"
        " Leak = [V || {_, [{password, V}]} <- maps:to_list(R2), is_integer(V)],"
        " {T1, length(R1), lists:last(R1), T2, map_size(R2), length(Leak)}.",
        timeout=60,
    )
    m = re.fullmatch(r'\{(\d+),(\d+),"(.*)",(\d+),(\d+),(\d+)\}', reply)
    assert m is not None, reply
    t1, n1, last, t2, n2, leak = m.groups()
    assert int(n1) < 300000 and last == BEYOND  # cut once the budget is spent
    assert int(n2) == 200000 and int(leak) == 0  # every entry kept, none in clear
    assert int(t1) < 2_000_000 and int(t2) < 5_000_000, reply


async def test_marker_is_a_keyed_digest_and_redacting_twice_changes_nothing(
    agent: Agent,
) -> None:
    value = PLANTED.encode()
    # crypto not loaded on a plain node (and beamside does not load it): phash2
    assert await agent.node.aeval("erlang:module_loaded(crypto).") == "false"
    out = await agent.redact((A("password"), value))
    assert text(out[1]).startswith("<redacted phash2:")
    assert await agent.node.aeval("erlang:module_loaded(crypto).") == "false"
    assert await agent.redact(out) == out
    # with crypto loaded: HMAC-SHA256 of term_to_binary(Value), keyed with the cookie
    await agent.node.aeval("{module, crypto} = code:ensure_loaded(crypto).")
    out = await agent.redact((A("password"), value))
    digest = hmac.new(agent.node.cookie.encode(), encode(value), hashlib.sha256).hexdigest()
    assert text(out[1]) == f"<redacted sha256:{digest[:6]}>"
    other = await agent.redact((A("password"), value + b"!"))
    assert other != out and is_marker(other[1])  # a change is visible
    assert await agent.redact(out) == out


# --------------------------------------------------------------------------- the agents


async def _plant(agent: Agent) -> None:
    await agent.node.aeval(
        "application:load(sasl),"
        f' application:set_env(sasl, db_password, <<"{PLANTED}">>),'
        ' application:set_env(sasl, ssl_options, [{certfile, "/c.pem"},'
        f' {{password, "{PLANTED}"}}, {{verify, verify_peer}}]),'
        f' application:set_env(sasl, broker_url, "amqp://u:{PLANTED}@h/v"),'
        " application:set_env(sasl, plain_knob, 42)."
    )


async def test_get_env_set_env_env_dump(agent: Agent) -> None:
    await _plant(agent)
    env = await agent.ops("beamside_ops_env", "get_env", [b"sasl", A("all"), {}])
    entries = {e["key"]: e for e in env["entries"]}
    assert PLANTED not in all_text(env)
    assert MARKER.fullmatch(entries[b"db_password"]["value"].decode())  # bare, no quotes
    assert entries[b"db_password"]["redacted"] is True
    assert entries[b"plain_knob"]["value"] == b"42"
    assert entries[b"plain_knob"]["redacted"] is False
    assert b'{password,"<redacted ' in entries[b"ssl_options"]["value"]
    assert b'{certfile,"<redacted ' in entries[b"ssl_options"]["value"]
    assert b"verify_peer" in entries[b"ssl_options"]["value"]
    assert entries[b"broker_url"]["value"].startswith(b'"amqp://u:<redacted ')

    # reveal => true (an operator's audited request): the clear value
    one = await agent.ops(
        "beamside_ops_env", "get_env", [b"sasl", b"db_password", {A("reveal"): True}]
    )
    assert one["entries"][0]["value"] == f'<<"{PLANTED}">>'.encode()
    assert one["entries"][0]["redacted"] is False

    # set_env: previous and new always redacted, a bad value not quoted back
    new = "n3w-" + PLANTED
    res = await agent.ops(
        "beamside_ops_env", "set_env", [b"sasl", b"db_password", f'<<"{new}">>'.encode(), {}]
    )
    assert MARKER.fullmatch(res["previous"].decode()) and MARKER.fullmatch(res["value"].decode())
    assert res["previous"] != res["value"]
    assert await agent.node.aeval("application:get_env(sasl, db_password).") == (
        f'{{ok,<<"{new}">>}}'
    )
    bad = await agent.call(
        "beamside_ops_env", "set_env", [b"sasl", b"db_password", f"[{PLANTED}".encode(), {}]
    )
    assert bad[0] == "error" and bad[1][0] == "invalid" and PLANTED not in all_text(bad)
    bad = await agent.call(
        "beamside_ops_env", "set_env", [b"sasl", b"knob", f"[{{password, {PLANTED}".encode(), {}]
    )
    assert bad[0] == "error" and PLANTED not in all_text(bad)
    ok = await agent.call("beamside_ops_env", "set_env", [b"sasl", b"knob", b"[1,", {}])
    assert ok[0] == "error" and b"not an Erlang term: " in ok[1][1]  # still says why

    dump = await agent.ops("beamside_ops_env", "env_dump", [[b"sasl"], {}])
    sasl = dump[b"sasl"]
    assert PLANTED not in all_text(dump)
    assert MARKER.fullmatch(sasl[b"db_password"]["text"].decode())
    # the hash still compares the values themselves
    assert str(sasl[b"db_password"]["hash"]) == await agent.node.aeval(
        "{ok, V} = application:get_env(sasl, db_password), erlang:phash2(V)."
    )


async def test_config_events_and_the_sysmon_table(agent: Agent, local: LocalNode) -> None:
    node = agent.node
    await agents.attach(local, node.name)
    await _plant(agent)
    first = await agents.collect(local, node.name, {"sections": [], "config_events": True})
    assert first["config_events"]["baseline"] is True

    # the table: protected (only beamside_sysmon writes), no planted secret in it
    assert await node.aeval("ets:info(beamside_sysmon, protection).") == "protected"
    denied = await node.aeval("catch ets:insert(beamside_sysmon, {x, 1}).")
    assert denied.startswith("{'EXIT',{badarg,"), denied
    planted = f'"{PLANTED}"'
    scan = (
        'Txt = lists:flatten(io_lib:format("~0tp", [ets:tab2list(beamside_sysmon)])),'
        f" {{length(Txt) > 0, string:find(Txt, {planted}) =:= nomatch,"
        f' string:find(Txt, "n3w") =:= nomatch}}.'
    )
    assert await node.aeval(scan) == "{true,true,true}"

    # a change of a secret, nested and top level: visible, never in clear
    new = "n3w-" + PLANTED
    await node.aeval(
        f'application:set_env(sasl, db_password, <<"{new}">>),'
        f' application:set_env(sasl, ssl_options, [{{password, "{new}"}}]),'
        " application:set_env(sasl, plain_knob, 43)."
    )
    data = await agents.collect(local, node.name, {"sections": [], "config_events": True})
    section = data["config_events"]
    events = {e["key"]: e for e in section["events"]}
    assert PLANTED not in all_text(section)
    assert (events["plain_knob"]["old"], events["plain_knob"]["new"]) == (b"42", b"43")
    pw = events["db_password"]
    assert MARKER.fullmatch(pw["old"].decode()) and MARKER.fullmatch(pw["new"].decode())
    assert pw["old"] != pw["new"]
    assert b'{password,"<redacted ' in events["ssl_options"]["new"]
    assert await node.aeval(scan) == "{true,true,true}"
    # the protected table still does its work: the next collect has nothing new
    again = await agents.collect(local, node.name, {"sections": [], "config_events": True})
    assert again["config_events"]["baseline"] is False and again["config_events"]["events"] == []
    await agents.detach(local, node.name)


PROBE_SRV = """
-module(redact_probe_srv).
-behaviour(gen_server).
-export([start/2, init/1, handle_call/3, handle_cast/2]).
start(State, Dict) -> gen_server:start({local, redact_probe}, ?MODULE, {State, Dict}, []).
init({State, Dict}) -> [put(K, V) || {K, V} <- Dict], {ok, State}.
handle_call(_, _, S) -> {reply, ok, S}.
handle_cast(_, S) -> {noreply, S}.
"""


async def test_get_process_state_dictionary_and_messages(agent: Agent, tmp_path: Path) -> None:
    node = agent.node
    src = tmp_path / "redact_probe_srv.erl"
    src.write_text(PROBE_SRV)
    subprocess.run(["erlc", "-o", str(tmp_path), str(src)], check=True)
    beam = (tmp_path / "redact_probe_srv.beam").read_bytes()
    loaded = await agent.call(
        "code", "load_binary", [A("redact_probe_srv"), Charlist(str(src)), beam]
    )
    assert loaded == (A("module"), A("redact_probe_srv"))
    await node.aeval(
        "{ok, _} = redact_probe_srv:start("
        f'#{{password => <<"{PLANTED}">>, user => <<"shop">>}},'
        f' [{{db_password, "{PLANTED}"}}, {{conn, [{{url, <<"pg://u:{PLANTED}@db/x">>}}]}}]),'
        " ok."
    )
    reply = await agent.ops("beamside_ops_procs", "process", [b"redact_probe", {}])
    assert PLANTED not in all_text(reply)
    assert b"shop" in reply["state"] and b'password => "<redacted ' in reply["state"]
    dict_values = {d["key"]: d["value"] for d in reply["dictionary"]}
    assert MARKER.fullmatch(dict_values[b"db_password"].decode().strip('"'))
    assert b"pg://u:<redacted " in dict_values[b"conn"]
    revealed = await agent.ops(
        "beamside_ops_procs", "process", [b"redact_probe", {A("reveal"): True}]
    )
    assert PLANTED in revealed["state"].decode()

    # a message queued in a process: redacted too
    await node.aeval(
        "P = spawn(fun() -> receive never -> ok end end), register(redact_queue, P),"
        f' P ! {{login, [{{token, "{PLANTED}"}}]}}, ok.'
    )
    queued = await agent.ops("beamside_ops_procs", "process", [b"redact_queue", {}])
    assert PLANTED not in all_text(queued)
    assert len(queued["messages"]) == 1 and b'{token,"<redacted ' in queued["messages"][0]
    await node.aeval(
        "exit(whereis(redact_queue), kill), gen_server:stop(redact_probe),"
        " code:delete(redact_probe_srv), code:purge(redact_probe_srv)."
    )
    log = node.log_text()
    for report in ("ERROR REPORT", "WARNING REPORT", "CRASH REPORT", "SUPERVISOR REPORT"):
        assert report not in log, log[-3000:]


async def test_sasl_alarm_rows_go_through_the_owner(agent: Agent, local: LocalNode) -> None:
    """The alarm forwarder cannot write the protected table: it sends its rows to
    beamside_sysmon, and a collect right after set_alarm sees the alarm (printed
    redacted)."""
    node = agent.node
    await node.aeval("application:start(sasl).")
    await agents.attach(local, node.name)
    first = await agents.collect(local, node.name, {"sections": ["alarms"]})
    assert first["alarms"]["sasl"] == {"count": 0, "truncated": False, "alarms": []}, first
    state = "{beamside_sysmon:forwarders(), gen_event:which_handlers(alarm_handler)}."
    for i in range(5):
        await node.aeval(
            f'alarm_handler:set_alarm({{{{db_down, {i}}}, [{{password, "{PLANTED}"}}]}}).'
        )
        data = await agents.collect(local, node.name, {"sections": ["alarms"]})
        sasl = data["alarms"]["sasl"]
        ids = [a["id"] for a in sasl["alarms"]]
        assert f"{{db_down,{i}}}".encode() in ids, (sasl, await node.aeval(state))
        assert PLANTED not in all_text(sasl)
    await node.aeval("alarm_handler:clear_alarm({db_down, 0}).")
    data = await agents.collect(local, node.name, {"sections": ["alarms"]})
    assert b"{db_down,0}" not in [a["id"] for a in data["alarms"]["sasl"]["alarms"]]
    await agents.detach(local, node.name)
    log = node.log_text()
    for report in ("ERROR REPORT", "WARNING REPORT", "CRASH REPORT"):
        assert report not in log, log[-3000:]


async def test_log_events_are_redacted(otp25_node: ErlangNode, local: LocalNode) -> None:
    """What the logger handler forwards (Loki lines): reports, format arguments,
    text and metadata, with the secret at any depth."""
    node = otp25_node
    got = Collected(await attach_events(local, node, EventOptions(log_level="notice")))
    pem = "-----BEGIN PRIVATE KEY-----\\nMII" + PLANTED + "\\n-----END PRIVATE KEY-----"
    await node.aeval(
        f'logger:notice(#{{what => rd1, opts => [{{ssl, [{{password, "{PLANTED}"}}]}}]}}),'
        f' logger:notice("rd2 ~p", [[{{repo, [{{username, <<"shop">>}},'
        f' {{password, <<"{PLANTED}">>}}]}}]]),'
        f' logger:notice("rd3 ~s", ["postgres://shop:{PLANTED}@db/x"]),'
        f' logger:notice("rd4 ~s", ["{pem}"]),'
        f' logger:notice("rd5", [], #{{auth_token => <<"{PLANTED}">>, request_id => 7}}).'
    )
    events = {}
    for tag in ("rd1", "rd2", "rd3", "rd4", "rd5"):
        (events[tag],) = await got.until(has_text(tag))
    for tag, event in events.items():
        assert PLANTED not in repr(event.to_json()), (tag, event)
    assert '{password,"<redacted ' in events["rd1"].message
    assert '{username,<<"shop">>},{password,"<redacted ' in events["rd2"].message
    assert "postgres://shop:<redacted " in events["rd3"].message
    assert events["rd4"].message.startswith("rd4 <redacted ")
    meta = events["rd5"].fields["metadata"]
    assert isinstance(meta, dict) and meta["request_id"] == 7
    assert MARKER.fullmatch(str(meta["auth_token"])), meta
    await agents.detach(local, node.name)


async def test_shell_commands_are_redacted(
    otp25_node: ErlangNode, local: LocalNode, cookie: str, epmd_port: int, tmp_path: Path
) -> None:
    """An expression typed in a shell (the shell_command notification) names a
    secret: its string literals are hidden; otherwise only URL passwords go."""
    node = otp25_node
    got = Collected(await attach_events(local, node))
    with shell_node("otp25", cookie, epmd_port, tmp_path, remsh=node.name) as sh:
        await sh.wait_output(f"({node.name})1> ")
        sh.type(f'application:set_env(kernel, db_password, <<"{PLANTED}">>).')
        sh.type(f'Url = "amqp://shop:{PLANTED}@mq/vh".')
        sh.type(f'Pwd = "{PLANTED}", Greeting = "hello".')
        sh.type('Y = "plain text".')
        events = await got.until(lambda e: e.type == "shell_command", count=4, timeout=15)
    texts = [e.message for e in events]
    assert PLANTED not in repr([e.to_json() for e in events])
    assert re.fullmatch(
        r'application:set_env\(kernel, db_password, <<"<redacted [^>]+>">>\)', texts[0]
    ), texts
    assert re.fullmatch(r'Url = "amqp://shop:<redacted [^>]+>@mq/vh"', texts[1]), texts
    # a variable named for a secret: every string literal hidden, the benign one too
    assert texts[2].startswith('Pwd = "<redacted ') and "hello" not in texts[2], texts
    assert texts[3] == 'Y = "plain text"'
    await agents.detach(local, node.name)
