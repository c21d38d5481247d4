"""The forwarder keeps every batch until the sidecar acknowledges it (agent
version 7): a sidecar that goes without a goodbye and comes back within the
grace period gets what it had not acknowledged again, first and in order,
then what was logged while it was gone; the retention is bounded and its
losses counted; after the grace period nothing of beamside is left."""

from __future__ import annotations

import asyncio
from typing import Any

from sidecar import agents
from sidecar.agents import EVENTS_MAILBOX, EventOptions
from sidecar.agents.events import ack_message
from sidecar.erldist.node import LocalNode
from tests.agents.conftest import NO_RESIDUE, RESIDUE_EXPR
from tests.agents.events_helpers import HANDLERS, Collected, attach_events, wait_value
from tests.support.nodes import ErlangNode


def options(**events: int) -> dict[str, Any]:
    opts = EventOptions(log_level="error", max_rate=100_000, batch_size=20).to_attach_opts()
    opts["events"] = {**opts["events"], **events}
    return opts


def numbers(got: Collected, tag: str) -> list[int]:
    return [int(e.message.split()[1]) for e in got.events if e.message.startswith(tag + " ")]


def log_expr(tag: str, first: int, last: int) -> str:
    return f'[logger:error("{tag} ~p", [I]) || I <- lists:seq({first}, {last})], ok.'


async def until_count(got: Collected, tag: str, count: int, timeout: float = 15.0) -> None:
    await got.until(lambda e: e.message.startswith(tag + " "), count, timeout)


async def test_unacknowledged_batches_come_again_first_in_order(
    otp25_node: ErlangNode, local: LocalNode
) -> None:
    node = otp25_node
    opts = options()
    box = await attach_events(local, node, **opts)
    got = Collected(box)
    node.eval(log_expr("r", 1, 100))
    await until_count(got, "r", 100)
    first = got.batches[:]
    session = first[0].session
    assert session is not None and [b.seq for b in first] == list(range(1, len(first) + 1))
    # Acknowledge the batches that carry 1..40: those are not sent again.
    upto = next(b.seq for b in first if any(e.message == "r 40" for e in b.events))
    await local.send_to_name(node.name, EVENTS_MAILBOX, ack_message(str(local.name), session, upto))
    await asyncio.sleep(0.3)
    acked = [n for b in first if b.seq <= upto for n in numbers_of(b)]

    await local.disconnect(node.name)
    await asyncio.sleep(0.3)
    # Logged while no sidecar is connected: kept for it.
    node.eval(log_expr("r", 101, 150))
    await asyncio.sleep(0.5)
    assert "beamside" in node.eval(HANDLERS)
    again = Collected(box)
    await agents.attach(local, node.name, opts)
    await until_count(again, "r", 150 - len(acked))
    node.eval(log_expr("r", 151, 160))
    await until_count(again, "r", 160 - len(acked))
    await again.drain(0.5)
    # The same session, the batches not acknowledged first (their own
    # numbers), then the new ones: every line once, in order.
    assert {b.session for b in again.batches} == {session}
    seqs = [b.seq for b in again.batches]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) and seqs[0] == upto + 1
    assert numbers(again, "r") == list(range(len(acked) + 1, 161))
    assert acked == list(range(1, len(acked) + 1))


def numbers_of(batch: Any) -> list[int]:
    return [int(e.message.split()[1]) for e in batch.events if e.message.startswith("r ")]


async def test_retention_is_bounded_and_its_losses_counted(
    otp25_node: ErlangNode, local: LocalNode
) -> None:
    node = otp25_node
    opts = options(retain_events=100)
    box = await attach_events(local, node, **opts)
    await local.disconnect(node.name)
    await asyncio.sleep(0.3)
    node.eval(log_expr("b", 1, 500))
    await asyncio.sleep(0.6)
    got = Collected(box)
    await agents.attach(local, node.name, opts)
    await until_count(got, "b", 100)
    await got.drain(1.5)  # the drops go with the next batch (a drops-only one within 1 s)
    kept = numbers(got, "b")
    assert kept == list(range(401, 501)), kept  # the newest are kept, in order
    assert got.dropped().get("retain_overflow") == 400


async def test_grace_expiry_removes_everything(otp25_node: ErlangNode, local: LocalNode) -> None:
    node = otp25_node
    await attach_events(local, node, **options(grace_s=2))
    await local.disconnect(node.name)
    await asyncio.sleep(0.5)
    # Within the grace period: the handler, the forwarder and its parent stay.
    assert "beamside" in node.eval(HANDLERS)
    assert node.eval("is_pid(whereis(beamside_events)).") == "true"
    assert node.eval("is_pid(whereis(beamside_sysmon)).") == "true"
    # After it: no handler, no process, no table, no module.
    value = await wait_value(node, RESIDUE_EXPR, lambda v: v == NO_RESIDUE, timeout=15)
    assert value == NO_RESIDUE
    assert "beamside" not in node.eval(HANDLERS)
    assert node.eval("ets:info(beamside_sysmon).") == "undefined"


async def test_clean_detach_removes_everything_at_once(
    otp25_node: ErlangNode, local: LocalNode
) -> None:
    node = otp25_node
    await attach_events(local, node, **options())
    node.eval(log_expr("d", 1, 10))
    await agents.detach(local, node.name)
    assert node.eval(RESIDUE_EXPR) == NO_RESIDUE
    assert "beamside" not in node.eval(HANDLERS)
