"""Roles that match the risk, against a real OTP 25 node (issue 13).

Reading ETS rows is an operator's, a table that holds credentials an
admin's; GetEnv shows secrets redacted unless an operator asks
``reveal_secrets`` (audited); a SetEnv of a secret key leaves its value in no
audit record and no Loki line.
"""

from __future__ import annotations

import json

import grpc
import pytest

from sidecar.control.gen.beamside.v1 import config_pb2, processes_pb2, tables_pb2
from sidecar.loki.model import LogEntry
from sidecar.notify import Notifier
from tests.control.conftest import ControlFactory, ControlPlane
from tests.support.nodes import ErlangNode

VIEWER = "viewer-token-1234"
OPERATOR = "operator-token-1234"
ADMIN = "admin-token-1234"
SECRET = "Sup3r-s3cret-pw-4711"

# A plain table, one named like RabbitMQ's users table, one whose name names
# a secret, and one whose owner's registered name does; all public, owned by
# registered processes so they outlive the eval.
MAKE_TABLES = f"""
Self = self(),
Make = fun(Owner, Tables) ->
    Pid = spawn(fun() ->
        [begin T = ets:new(Name, [named_table, public, set]),
               ets:insert(T, {{user, <<"{SECRET}">>}}) end || Name <- Tables],
        Self ! made,
        receive stop -> ok end
    end),
    register(Owner, Pid),
    receive made -> ok end
end,
Make(roles_plain_owner, [roles_plain_tab, rabbit_user, roles_api_tokens]),
Make(roles_session_store, [roles_by_owner]).
"""


@pytest.fixture
async def plane(control_factory: ControlFactory, otp25_node: ErlangNode) -> ControlPlane:
    return await control_factory([otp25_node], family="shop", auth=True)


async def test_reading_rows_needs_operator_and_credential_tables_admin(
    plane: ControlPlane, otp25_node: ErlangNode
) -> None:
    node = otp25_node.name
    await otp25_node.aeval(MAKE_TABLES)
    # Listing stays a viewer's.
    listed = await plane.call(
        plane.tables.ListTables,
        tables_pb2.ListTablesRequest(node=node, order_by="name", limit=1000),
        token=VIEWER,
    )
    assert {"roles_plain_tab", "rabbit_user", "roles_by_owner"} <= {t.name for t in listed.tables}
    plain = tables_pb2.ReadTableRequest(node=node, table="roles_plain_tab")
    try:
        await plane.call(plane.tables.ReadTable, plain, token=VIEWER)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "ReadTable needs the operator role" in (exc.details() or "")
    else:
        raise AssertionError("a viewer read table rows")
    rows = await plane.call(plane.tables.ReadTable, plain, token=OPERATOR)
    assert list(rows.rows) == [f'{{user,<<"{SECRET}">>}}']
    # The rows are audited by count, never by content.
    (record,) = [a for a in plane.audits if a.action == "Tables/ReadTable" and a.ok]
    assert record.details["response"]["rows"] == 1 and SECRET not in json.dumps(record.details)

    by_id = next(t.id for t in listed.tables if t.name == "roles_by_owner")
    for table, reason in (
        ("rabbit_user", "rabbit_user is a known credential table"),
        ("roles_api_tokens", "its name roles_api_tokens names a secret"),
        ("roles_by_owner", "its owner roles_session_store names a secret"),
        (by_id, "its owner roles_session_store names a secret"),
    ):
        request = tables_pb2.ReadTableRequest(node=node, table=table)
        try:
            await plane.call(plane.tables.ReadTable, request, token=OPERATOR)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED, table
            details = exc.details() or ""
            assert reason in details and "needs the admin role" in details, details
        else:
            raise AssertionError(f"an operator read {table}")
        read = await plane.call(plane.tables.ReadTable, request, token=ADMIN)
        assert list(read.rows) == [f'{{user,<<"{SECRET}">>}}'], table


async def test_get_env_redacted_unless_an_operator_reveals(
    plane: ControlPlane, otp25_node: ErlangNode
) -> None:
    node = otp25_node.name
    await otp25_node.aeval(
        f'application:set_env(kernel, roles_db_password, <<"{SECRET}">>),'
        f" application:set_env(kernel, roles_pool, [{{size, 5}},"
        f' {{url, "amqp://guest:{SECRET}@mq:5672"}}, {{api_key, "{SECRET}"}}]).'
    )
    ask = config_pb2.GetEnvRequest(node=node, app="kernel")
    for token in (VIEWER, OPERATOR):
        got = await plane.call(plane.config.GetEnv, ask, token=token)
        entries = {e.key: e for e in got.entries}
        assert SECRET not in str(got), token
        assert entries["roles_db_password"].value.startswith("<redacted ")
        assert entries["roles_db_password"].redacted and entries["roles_pool"].redacted
        assert "{size,5}" in entries["roles_pool"].value and "amqp://guest:<redacted " in (
            entries["roles_pool"].value
        )
        assert entries["net_ticktime"].value == "60" and not entries["net_ticktime"].redacted
    # Plain reads are not audited.
    assert not [a for a in plane.audits if a.action == "Config/GetEnv"]

    reveal = config_pb2.GetEnvRequest(node=node, app="kernel", reveal_secrets=True)
    try:
        await plane.call(plane.config.GetEnv, reveal, token=VIEWER)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "reveal_secrets needs the operator role" in (exc.details() or "")
    else:
        raise AssertionError("a viewer revealed secrets")
    shown = await plane.call(plane.config.GetEnv, reveal, token=OPERATOR)
    entries = {e.key: e for e in shown.entries}
    assert entries["roles_db_password"].value == f'<<"{SECRET}">>'
    assert not entries["roles_db_password"].redacted
    # Both asks are audited (who, the flag), the revealed values never.
    denied, revealed = [a for a in plane.audits if a.action == "Config/GetEnv"]
    assert not denied.ok and denied.who.startswith("token:")
    assert "PERMISSION_DENIED" in denied.result and denied.role == "viewer"
    assert revealed.ok and revealed.role == "operator"
    assert revealed.details["request"]["reveal_secrets"] is True
    assert "roles_db_password" in revealed.details["response"]["keys"]
    assert SECRET not in json.dumps([a.details for a in plane.audits])


async def test_set_env_of_a_secret_key_leaves_no_value_in_audit_or_loki(
    plane: ControlPlane, otp25_node: ErlangNode
) -> None:
    node = otp25_node.name
    sent: list[LogEntry] = []
    notifier = Notifier("control-test", lambda _: "shop", sent.append)
    first = "Old-pw-0815-value"
    for value in (first, SECRET):
        reply = await plane.call(
            plane.config.SetEnv,
            config_pb2.SetEnvRequest(
                node=node, app="kernel", key="roles_default_pass", value=f'<<"{value}">>'
            ),
            token=OPERATOR,
        )
        assert first not in str(reply) and SECRET not in str(reply)
        assert reply.value.startswith("<redacted ")
    assert await otp25_node.aeval("application:get_env(kernel, roles_default_pass).") == (
        f'{{ok,<<"{SECRET}">>}}'
    )
    # A value that does not parse is not quoted back for a secret key.
    try:
        await plane.call(
            plane.config.SetEnv,
            config_pb2.SetEnvRequest(
                node=node, app="kernel", key="roles_default_pass", value=f'<<"{SECRET}'
            ),
            token=OPERATOR,
        )
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert SECRET not in (exc.details() or "")
    else:
        raise AssertionError("an unclosed binary parsed")
    records = [a for a in plane.audits if a.action == "Config/SetEnv"]
    assert [r.ok for r in records] == [True, True, False]
    for record in records:
        notifier.audit(record)  # what Deps.audit does in the daemon
    lines = [e.line for e in sent]
    assert len(lines) == 3 and all('"key":"roles_default_pass"' in line for line in lines)
    for text in [*lines, json.dumps([r.details for r in records]), *(r.result for r in records)]:
        assert SECRET not in text and first not in text
    # A change is still visible: the markers of the two values differ.
    request_markers = {r.details["request"]["value"] for r in records[:2]}
    assert len(request_markers) == 2
    assert all(m.startswith("<redacted sha256:") for m in request_markers)


# A minimal gen_server compiled on the node: its state is its init argument.
MAKE_SERVER = f"""
Forms = [begin {{ok, T, _}} = erl_scan:string(S), {{ok, F}} = erl_parse:parse_form(T), F end
         || S <- ["-module(roles_state_srv).",
                  "-export([init/1, handle_call/3, handle_cast/2]).",
                  "init(S) -> {{ok, S}}.",
                  "handle_call(_, _, S) -> {{reply, ok, S}}.",
                  "handle_cast(_, S) -> {{noreply, S}}."]],
{{ok, M, Bin}} = compile:forms(Forms),
{{module, M}} = code:load_binary(M, "roles_state_srv.erl", Bin),
{{ok, _}} = gen_server:start({{local, roles_secret_srv}}, M,
    #{{db => [{{username, <<"app">>}}, {{password, <<"{SECRET}">>}}],
      url => "postgres://app:{SECRET}@db:5432/app", pool => 5}}, []),
ok.
"""


async def test_viewer_sees_process_state_redacted(
    plane: ControlPlane, otp25_node: ErlangNode
) -> None:
    node = otp25_node.name
    assert await otp25_node.aeval(MAKE_SERVER) == "ok"
    request = processes_pb2.GetProcessRequest(node=node, pid="roles_secret_srv")
    got = await plane.call(plane.processes.GetProcess, request, token=VIEWER)
    assert got.registered_name == "roles_secret_srv" and SECRET not in str(got)
    assert "pool => 5" in got.state and "<redacted " in got.state
    assert "postgres://app:<redacted " in got.state
