"""beamside.v1.Tables and beamside.v1.Code against a real OTP 25 node."""

from __future__ import annotations

import grpc
import pytest

from sidecar.control.gen.beamside.v1 import code_pb2, tables_pb2
from tests.control.conftest import ControlFactory, ControlPlane
from tests.support.nodes import ErlangNode

# 50 tables: ctl_tab_1 .. ctl_tab_50, table N holds N rows {K, <<"vK">>, {K}};
# the even ones are named, the odd ones only reachable by id.  Their owner
# is a registered process so they outlive the eval that made them.
MAKE_TABLES = """
Self = self(),
Owner = spawn(fun() ->
    [begin
        Name = list_to_atom("ctl_tab_" ++ integer_to_list(N)),
        Opts = case N rem 2 of 0 -> [named_table, public]; 1 -> [protected] end,
        T = ets:new(Name, [ordered_set | Opts]),
        ets:insert(T, [{K, list_to_binary("v" ++ integer_to_list(K)), {K}}
                       || K <- lists:seq(1, N)])
     end || N <- lists:seq(1, 50)],
    ets:new(ctl_private, [named_table, private]),
    Self ! made,
    receive stop -> ok end
end),
register(ctl_table_owner, Owner),
receive made -> ok end.
"""


@pytest.fixture
async def plane(control_factory: ControlFactory, otp25_node: ErlangNode) -> ControlPlane:
    return await control_factory([otp25_node], family="shop")


async def test_fifty_tables_listed_and_read(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    node = otp25_node.name
    await otp25_node.aeval(MAKE_TABLES)
    listed = await plane.call(
        plane.tables.ListTables,
        tables_pb2.ListTablesRequest(node=node, order_by="name", limit=1000),
    )
    ours = {t.name: t for t in listed.tables if t.name.startswith("ctl_tab_")}
    assert len(ours) == 50 and listed.total >= 51
    for n in range(1, 51):
        table = ours[f"ctl_tab_{n}"]
        assert table.size == n and table.type == "ordered_set"
        assert table.owner_name == "ctl_table_owner" and table.owner_pid.startswith("<0.")
        assert table.protection == ("public" if n % 2 == 0 else "protected")
        assert table.named_table == (n % 2 == 0) and table.id.startswith("#Ref<0.")
        assert table.memory_words > 0 and table.memory_bytes == table.memory_words * 8
    names = [t.name for t in listed.tables]
    assert names == sorted(names)

    by_size = await plane.call(
        plane.tables.ListTables, tables_pb2.ListTablesRequest(node=node, order_by="size", limit=3)
    )
    assert [t.size for t in by_size.tables] == sorted(
        (t.size for t in by_size.tables), reverse=True
    )
    assert len(by_size.tables) == 3

    for n in (1, 2, 37, 50):
        table = ours[f"ctl_tab_{n}"]
        # Named tables by name, the others by id; 7 rows a page.
        ref = table.name if table.named_table else table.id
        rows: list[str] = []
        continuation = ""
        pages = 0
        while True:
            page = await plane.call(
                plane.tables.ReadTable,
                tables_pb2.ReadTableRequest(
                    node=node, table=ref, limit=7, continuation=continuation
                ),
            )
            rows += page.rows
            pages += 1
            assert page.size == n
            continuation = page.continuation
            if not continuation:
                break
        assert rows == [f'{{{k},<<"v{k}">>,{{{k}}}}}' for k in range(1, n + 1)]
        assert pages == n // 7 + 1

    private = await plane.status_of(
        plane.tables.ReadTable, tables_pb2.ReadTableRequest(node=node, table="ctl_private")
    )
    assert private == grpc.StatusCode.FAILED_PRECONDITION
    unnamed = await plane.status_of(
        plane.tables.ReadTable, tables_pb2.ReadTableRequest(node=node, table="ctl_tab_1")
    )
    assert unnamed == grpc.StatusCode.NOT_FOUND  # unnamed: read by id
    # A continuation of one table is refused for another.
    first = await plane.call(
        plane.tables.ReadTable,
        tables_pb2.ReadTableRequest(node=node, table="ctl_tab_50", limit=5),
    )
    wrong = await plane.status_of(
        plane.tables.ReadTable,
        tables_pb2.ReadTableRequest(
            node=node, table="ctl_tab_48", limit=5, continuation=first.continuation
        ),
    )
    assert wrong == grpc.StatusCode.INVALID_ARGUMENT
    forged = await plane.status_of(
        plane.tables.ReadTable,
        tables_pb2.ReadTableRequest(node=node, table="ctl_tab_50", continuation="g2gCZAABYWQAAWI="),
    )
    assert forged == grpc.StatusCode.INVALID_ARGUMENT
    too_many = await plane.status_of(
        plane.tables.ReadTable, tables_pb2.ReadTableRequest(node=node, table="ac_tab", limit=5000)
    )
    assert too_many == grpc.StatusCode.INVALID_ARGUMENT
    await otp25_node.aeval("ctl_table_owner ! stop.")


# A module compiled on the node from source, loaded twice: old code remains.
LOAD_TWICE = """
Form = fun(S) -> {ok, Ts, _} = erl_scan:string(S), {ok, F} = erl_parse:parse_form(Ts), F end,
Forms = fun(V) -> [Form("-module(ctl_twice)."), Form("-export([v/0, wait/0])."),
                   Form("v() -> " ++ integer_to_list(V) ++ "."),
                   Form("wait() -> receive stop -> ok end.")] end,
Load = fun(V) ->
    {ok, M, Bin} = compile:forms(Forms(V)),
    {module, M} = code:load_binary(M, "ctl_twice.erl", Bin)
end,
Load(1),
Holder = spawn(ctl_twice, wait, []),
register(ctl_holder, Holder),
Load(2),
{erlang:check_old_code(ctl_twice), ctl_twice:v()}.
"""


async def test_soft_purge_and_modules(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    node = otp25_node.name
    assert await otp25_node.aeval(LOAD_TWICE) == "{true,2}"
    old = await plane.call(
        plane.code.ListModules, code_pb2.ListModulesRequest(node=node, only_old_code=True)
    )
    assert "ctl_twice" in {m.name for m in old.modules}
    # A process still runs the old code: soft purge leaves it alone.
    busy = await plane.call(
        plane.code.SoftPurge, code_pb2.SoftPurgeRequest(node=node, module="ctl_twice")
    )
    assert list(busy.purged) == [] and list(busy.in_use) == ["ctl_twice"]
    assert await otp25_node.aeval("is_process_alive(whereis(ctl_holder)).") == "true"
    await otp25_node.aeval("ctl_holder ! stop, timer:sleep(50).")
    everything = await plane.call(plane.code.SoftPurge, code_pb2.SoftPurgeRequest(node=node))
    assert "ctl_twice" in everything.purged and "ctl_twice" not in everything.in_use
    assert await otp25_node.aeval("erlang:check_old_code(ctl_twice).") == "false"
    again = await plane.call(
        plane.code.SoftPurge, code_pb2.SoftPurgeRequest(node=node, module="ctl_twice")
    )
    assert list(again.purged) == [] and list(again.in_use) == []

    listed = await plane.call(
        plane.code.ListModules, code_pb2.ListModulesRequest(node=node, prefix="ctl_")
    )
    (mod,) = listed.modules
    assert mod.name == "ctl_twice" and not mod.old_code and len(mod.md5) == 32
    assert mod.path == "ctl_twice.erl"
    assert listed.total > 50 and listed.matching == 1
    assert (
        await plane.status_of(
            plane.code.SoftPurge, code_pb2.SoftPurgeRequest(node=node, module="not_loaded_xyz")
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await plane.status_of(
            plane.code.SoftPurge, code_pb2.SoftPurgeRequest(node=node, module="Bad Module")
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_diff_modules_across_a_family(
    control_factory: ControlFactory, node_factory: object, otp25_node: ErlangNode
) -> None:
    from tests.conftest import NodeFactory

    assert isinstance(node_factory, NodeFactory)
    other = node_factory("otp25")
    plane = await control_factory([otp25_node, other], family="pair")
    # Same module, different code on each node; one module only on one node.
    await otp25_node.aeval(LOAD_TWICE)
    await other.aeval(LOAD_TWICE.replace("Load(2)", "Load(3)"))
    await other.aeval(
        "{ok, M, B} = compile:forms([{attribute, 1, module, ctl_only_here}], []),"
        ' code:load_binary(M, "x.erl", B).'
    )
    diff = await plane.call(
        plane.code.DiffModules, code_pb2.DiffModulesRequest(family="pair", prefix="ctl_")
    )
    assert sorted(diff.nodes) == sorted([otp25_node.name, other.name])
    by_module = {d.module: dict(d.md5) for d in diff.differences}
    assert set(by_module) == {"ctl_twice", "ctl_only_here"}
    assert by_module["ctl_only_here"][otp25_node.name] == ""
    assert len(set(by_module["ctl_twice"].values())) == 2
    whole = await plane.call(plane.code.DiffModules, code_pb2.DiffModulesRequest(family="pair"))
    assert whole.identical > 50
    assert (
        await plane.status_of(plane.code.DiffModules, code_pb2.DiffModulesRequest(family="nope"))
        == grpc.StatusCode.NOT_FOUND
    )
