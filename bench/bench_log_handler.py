"""Cost of beamside's logger handler per event, next to the node's default handler.

    python bench/bench_log_handler.py [--events 20000] [--rounds 5]

Starts a private EPMD and one real OTP 25 node on 127.0.0.1, loads a small
compiled loop module on it (``logger:error("bench ~p ~s", [I, Text])`` N
times in one process) and times the loop, in the same run, with:

* ``none``     no handler at all: what the logger call itself costs;
* ``default``  only logger_std_h (the ``default`` handler of every node),
               writing to a file (burst limit off so that it does not
               simply drop; its usual sync/drop modes stay on);
* ``beamside`` only beamside's handler, attached by a real sidecar reading
               the batches (rate limit raised so that nothing is dropped).

For each: the caller's wall time per event (what the logging process pays)
and the node's CPU time per event (``statistics(runtime)``, scheduler
busy-waiting off: handler, forwarder or file writer, distribution, all
included, up to half a second after the loop), medians over the
rounds, and the ratios to the default handler.  Events our handler dropped
(forwarder queue full) are reported: the figures are only meaningful when
that is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar import agents
from sidecar.agents import EVENTS_MAILBOX, EventOptions
from sidecar.agents.events import decode_batch
from sidecar.erldist.errors import DistTimeout
from sidecar.erldist.node import LocalNode, Mailbox
from sidecar.erldist.term import Atom, Charlist
from tests.support.nodes import Epmd, ErlangNode, random_cookie

LOOP = """
-module(bs_bench_loop).
-export([run/1]).
run(N) ->
    Text = lists:duplicate(60, $x),
    {_, _} = erlang:statistics(runtime),
    T0 = erlang:monotonic_time(microsecond),
    loop(N, Text),
    Wall = erlang:monotonic_time(microsecond) - T0,
    {_, Cpu} = erlang:statistics(runtime),
    {Wall, Cpu}.
loop(0, _) -> ok;
loop(I, Text) -> logger:error("bench ~p ~s", [I, Text]), loop(I - 1, Text).
"""


def compile_loop(tmp: Path) -> bytes:
    src = tmp / "bs_bench_loop.erl"
    src.write_text(LOOP)
    subprocess.run(["erlc", "-o", str(tmp), str(src)], check=True)
    return (tmp / "bs_bench_loop.beam").read_bytes()


async def run_loop(local: LocalNode, node: ErlangNode, events: int) -> tuple[float, float]:
    """(wall us per event in the caller, node cpu us per event)."""
    t0 = time.monotonic()
    reply = await local.rpc(node.name, "bs_bench_loop", "run", [events], timeout=300)
    wall_us, cpu_ms = reply
    # Let the handler's process (writer / forwarder) finish its backlog and
    # count that CPU too.
    await asyncio.sleep(max(0.5, (time.monotonic() - t0) / 2))
    _, cpu_after = await local.rpc(node.name, "erlang", "statistics", [Atom("runtime")])
    return wall_us / events, (cpu_ms + cpu_after) * 1000 / events


async def drain(box: Mailbox, counts: dict[str, int]) -> None:
    """Read batches until none comes for 0.5 s (after the loop's events)."""
    while True:
        try:
            message = await box.receive(timeout=0.5)
        except DistTimeout:
            return
        batch = decode_batch(message)
        counts["events"] += len(batch.events)
        for reason, n in batch.dropped.items():
            counts[reason] = counts.get(reason, 0) + n


async def bench(node: ErlangNode, epmd_port: int, events: int, rounds: int, tmp: Path) -> None:
    local = LocalNode("bench-log@127.0.0.1", node.cookie, epmd_port=epmd_port)
    try:
        beam = compile_loop(tmp)
        await local.rpc(
            node.name, "code", "load_binary", [Atom("bs_bench_loop"), Charlist("b.erl"), beam]
        )
        log_file = tmp / "default.log"
        results: dict[str, list[tuple[float, float]]] = {"none": [], "default": [], "beamside": []}
        counts = {"events": 0}
        box = local.mailbox(EVENTS_MAILBOX)
        await agents.ensure_loaded(local, node.name)
        for _ in range(rounds):
            # none
            node.eval("[logger:remove_handler(H) || H <- logger:get_handler_ids()], ok.")
            results["none"].append(await run_loop(local, node, events))
            # default: logger_std_h to a file
            node.eval(
                f"logger:add_handler(default, logger_std_h, #{{config => #{{file => "
                f'"{log_file}", burst_limit_enable => false}}}}).'
            )
            results["default"].append(await run_loop(local, node, events))
            node.eval("logger:remove_handler(default).")
            # beamside
            opts = EventOptions(
                max_rate=1_000_000, max_queue=1_000_000, shell_events=False
            ).to_attach_opts()
            await agents.attach(local, node.name, opts)
            reader = asyncio.create_task(drain(box, counts))
            results["beamside"].append(await run_loop(local, node, events))
            await reader
            await agents.detach(local, node.name)
            await agents.ensure_loaded(local, node.name)
        med = {
            k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in results.items()
        }
        print(f"{events} logger:error calls per round, {rounds} rounds, OTP 25, medians")
        print(f"{'handler':10} {'caller us/event':>16} {'node cpu us/event':>18}")
        for k, (w, c) in med.items():
            print(f"{k:10} {w:16.2f} {c:18.2f}")
        base_w, base_c = med["none"]
        dw, dc = med["default"][0] - base_w, med["default"][1] - base_c
        bw, bc = med["beamside"][0] - base_w, med["beamside"][1] - base_c
        print(
            f"handler cost over 'none': default {dw:.2f} us caller / {dc:.2f} us cpu; "
            f"beamside {bw:.2f} us caller / {bc:.2f} us cpu"
        )
        print(f"ratio beamside/default: caller {bw / dw:.2f}, cpu {bc / dc:.2f}")
        print(
            f"beamside delivered {counts['events']} of {events * rounds} events, "
            f"drops {dict((k, v) for k, v in counts.items() if k != 'events')}"
        )
    finally:
        await local.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with Epmd() as epmd, tempfile.TemporaryDirectory() as tmp:
        # No scheduler busy-waiting: the node's CPU time is then the work done.
        node = ErlangNode(
            "otp25",
            cookie=random_cookie(),
            epmd_port=epmd.port,
            extra_args=["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"],
        )
        node.start()
        try:
            asyncio.run(bench(node, epmd.port, args.events, args.rounds, Path(tmp)))
        finally:
            node.kill()


if __name__ == "__main__":
    main()
