"""Nodes/ApplicationTree on real RabbitMQ: the supervision tree of the
``rabbit`` application is the one ``supervisor:which_children`` gives when
walked by hand on the node from the same top supervisor - every child at
every level, with its id, pid, type and registered name - and the limits
cut it where they say."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.realapps.beamside_run import Beamside
from tests.realapps.conftest import RunningApp

pytestmark = pytest.mark.parametrize("real_app", ["rabbitmq"], indirect=True)

# Every child below Top, one line each: path of ids, pid (or restarting /
# undefined), type, registered name.  The ids printed as the agent prints
# them (~0tp).
HAND_WALK = """
Top = list_to_pid("{top}"),
Name = fun(P) when is_pid(P) ->
               case process_info(P, registered_name) of
                   {{registered_name, N}} -> atom_to_list(N);
                   _ -> ""
               end;
          (_) -> ""
       end,
Walk = fun W(Sup, Path) ->
    lists:flatmap(
        fun({{Id, Child, Type, _Mods}}) ->
            P = Path ++ "/" ++ lists:flatten(io_lib:format("~0tp", [Id])),
            PidText = case Child of
                          C when is_pid(C) -> pid_to_list(C);
                          A -> atom_to_list(A)
                      end,
            Line = [P, 9, PidText, 9, atom_to_list(Type), 9, Name(Child), 10],
            case {{Type, is_pid(Child)}} of
                {{supervisor, true}} -> [Line | W(Child, P)];
                _ -> [Line]
            end
        end,
        supervisor:which_children(Sup))
end,
Walk(Top, "")
"""


@pytest.fixture
def beamside(app: RunningApp) -> Beamside:
    """``beamside run`` attached to the node (detached by ``app``'s teardown)."""
    proc = app.beamside(name="apptree")
    proc.wait_attached(collects=1)
    return proc


def flatten(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, str, str, str]]:
    """The children below ``node`` as the hand walk lists them."""
    for child in node.get("children", []):
        here = f"{path}/{child['id']}"
        yield here, child.get("pid", ""), child["type"], child.get("registeredName", "")
        yield from flatten(child, here)


def test_rabbit_tree_matches_which_children(app: RunningApp, beamside: Beamside) -> None:
    request = {"node": app.node.name, "application": "rabbit", "maxDepth": 20, "maxChildren": 1000}

    def ours() -> dict[str, Any]:
        reply = beamside.grpcurl("beamside.v1.Nodes/ApplicationTree", request)
        assert reply.status == "OK", reply.stderr
        assert not reply.json.get("truncated"), reply.json
        (rabbit,) = reply.json["applications"]
        assert rabbit["name"] == "rabbit" and rabbit["version"] and rabbit["master"]
        tree: dict[str, Any] = rabbit["tree"]
        return tree

    def by_hand(top: str) -> set[tuple[str, str, str, str]]:
        text = app.probe.text(HAND_WALK.format(top=top))
        return {tuple(line.split("\t")) for line in text.splitlines()}  # type: ignore[misc]

    # a child may come or go between the two walks (a broker starting a
    # helper): walk by hand before and after ours, until the three agree
    for _ in range(3):
        tree = ours()
        before = by_hand(tree["pid"])
        got = set(flatten(tree))
        if before == got and by_hand(tree["pid"]) == got:
            break
    assert got == before, (sorted(got - before)[:10], sorted(before - got)[:10])
    assert len(got) > 30  # rabbit_sup's tree: dozens of children, several levels deep
    assert max(path.count("/") for path, *_ in got) >= 3
    assert tree["registeredName"] == "rabbit_sup" and tree["strategy"] == "one_for_all"
    assert tree["childCount"] == sum(1 for path, *_ in got if path.count("/") == 1)

    # the limits: the top's children listed, nothing below them
    shallow = beamside.grpcurl(
        "beamside.v1.Nodes/ApplicationTree", {**request, "maxDepth": 1}
    ).json["applications"][0]["tree"]
    assert {c["id"] for c in shallow["children"]} == {
        path[1:] for path, *_ in got if path.count("/") == 1
    }
    below = [c for c in shallow["children"] if c["type"] == "supervisor" and "pid" in c]
    assert below and all(c.get("truncated") and not c.get("children") for c in below)
