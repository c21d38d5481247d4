"""Durability across crashes: SIGKILL beamside again and again while a real
node logs, Loki down part of the time, two CPU hogs running; count every line.

    python bench/bench_durability.py                 # 1,000 cycles (about an hour)
    python bench/bench_durability.py --cycles 50

One OTP 25 node logs numbered error lines (``dur N``) for the whole run,
from the first attach on: ``--per-ms`` lines, then a ``--sleep-ms`` pause
(several hundred lines a second).  Each cycle starts ``beamside run``
(always the same node name and spool directory, ``tests/support/daemon_proc``),
lets it run a random 0.3 to ``--max-up`` seconds (sometimes not even attached
yet, often mid-batch, mid-spill or mid-push) and kills it with SIGKILL; the
node goes on logging meanwhile (the forwarder keeps what beamside has not
acknowledged, agent version 7).  In about a third of the cycles the Loki
double (``tests/support/loki_double.py``, its own process) is down from a
random point of the cycle to another (or to the kill).  Two busy-loop
processes compete for the CPUs throughout and are stopped at the end.

At the end the logger stops, one last beamside runs with Loki up until the
double has every line, and the stored stream is checked: lines lost (numbers
never stored), duplicated (stored twice), out of order (by timestamp, within the stream).
Lines lost are set against the losses the node reported (beamside's
``events_lost`` notifications in the same stream: batches its bounded
retention gave up while no beamside acknowledged them).
The goal is 0, 0, 0 and the run exits 1 otherwise.  Entries re-sent identical
(the double's duplicate count: a kill after Loki accepted a push and before
beamside recorded it) are printed, not failed: Loki keeps one copy of them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.daemon_proc import BeamsideProcess  # noqa: E402
from tests.support.loki_double import LokiDoubleProcess  # noqa: E402
from tests.support.nodes import Epmd, ErlangNode, free_port, random_cookie  # noqa: E402

NAME = "beamside-durability@127.0.0.1"


def logger_expr(per_ms: int, sleep_ms: int) -> str:
    """A registered process logging ``dur N`` from 1 until told to stop; the
    last N logged in an atomics array."""
    return (
        "persistent_term:put(dur_at, atomics:new(1, [])), "
        "register(bench_dur, spawn(fun() -> A = persistent_term:get(dur_at), "
        "Loop = fun L(I) -> "
        'logger:error("dur ~10..0B", [I]), atomics:put(A, 1, I), '
        f"case I rem {per_ms} of 0 -> receive stop -> ok after {sleep_ms} -> L(I + 1) end; "
        "_ -> L(I + 1) end end, Loop(1) end)), ok."
    )


LAST = "atomics:get(persistent_term:get(dur_at), 1)."


def two_ports() -> tuple[int, int]:
    while True:
        a, b = free_port(), free_port()
        if a != b:
            return a, b


def write_config(tmp: Path, cookie_file: Path, node: str, loki_url: str, spool: Path) -> Path:
    http, grpc = two_ports()
    config: dict[str, Any] = {
        "cluster": "durability",
        "node_name": NAME,
        "targets": [{"nodes": [node], "cookie_file": str(cookie_file), "family": "bench"}],
        "intervals": {"metrics": "5s"},
        "http": {"listen": f"127.0.0.1:{http}"},
        "grpc": {"listen": f"127.0.0.1:{grpc}"},
        "loki": {
            "url": loki_url,
            "batch_wait": "200ms",
            "spool_dir": str(spool),
            "memory_bytes": "4MiB",
            "batch_bytes": "256KiB",
            "spill_after": "1s",
            "max_backoff": "1s",
        },
        "logs": {"level": "error", "rate_limit": 100000},
    }
    path = tmp / "beamside.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_beamside(tmp: Path, cookie_file: Path, node: str, loki_url: str) -> BeamsideProcess:
    path = write_config(tmp, cookie_file, node, loki_url, tmp / "spool")
    port = int(yaml.safe_load(path.read_text())["http"]["listen"].rsplit(":", 1)[1])
    return BeamsideProcess(path, port, tmp).start(timeout=60)


def hog() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def check(dump: list[list[Any]], node: str, last: int) -> dict[str, int]:
    stream = [
        (ts, int(json.loads(line)["message"].split()[1]))
        for labels, ts, line, _ in dump
        if labels.get("node") == node
        and labels.get("kind") == "log"
        and json.loads(line).get("message", "").startswith("dur ")
    ]
    stream.sort()
    numbers = [n for _, n in stream]
    seen = set(numbers)
    lost = len(set(range(1, last + 1)) - seen)
    duplicated = len(numbers) - len(seen)
    out_of_order = sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    missing = sorted(set(range(1, last + 1)) - seen)
    if missing:
        ranges: list[list[int]] = []
        for n in missing:
            if ranges and ranges[-1][1] == n - 1:
                ranges[-1][1] = n
            else:
                ranges.append([n, n])
        print(f"missing: {ranges[:20]}", flush=True)
    # What the node said it could not keep (beamside's events_lost
    # notifications): a loss beyond the node's retention bound is counted
    # there, never silent.
    reported: dict[str, int] = {}
    for labels, _, line, _ in dump:
        if labels.get("node") == node and labels.get("kind") == "notification":
            details = json.loads(line)
            if details.get("type") == "events_lost":
                for reason, n in details.get("dropped", {}).items():
                    reported[reason] = reported.get(reason, 0) + int(n)
                reported["batches missing"] = reported.get("batches missing", 0) + int(
                    details.get("missing_batches", 0)
                )
    if any(reported.values()):
        print(f"losses the node reported: {reported}", flush=True)
    return {
        "stored": len(numbers),
        "lost": lost,
        "duplicated": duplicated,
        "disorder": out_of_order,
        "reported": sum(v for k, v in reported.items() if k != "batches missing"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000, help="SIGKILL/restart cycles (1000)")
    ap.add_argument("--max-up", type=float, default=3.0, help="longest run before a kill (3 s)")
    ap.add_argument("--per-ms", type=int, default=2, help="lines logged between pauses (2)")
    ap.add_argument("--sleep-ms", type=int, default=2, help="each pause (2 ms)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    tmp = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    hogs = [hog(), hog()]
    loki = LokiDoubleProcess().start()
    procs: list[BeamsideProcess] = []
    try:
        with Epmd() as epmd:
            os.environ["ERL_EPMD_PORT"] = str(epmd.port)
            cookie = random_cookie()
            cookie_file = tmp / "cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o600)
            node = ErlangNode("otp25", cookie=cookie, epmd_port=epmd.port, log_dir=tmp)
            node.start()
            try:
                # The node logs from the moment the first beamside attached
                # (before that no handler captures anything) to the end.
                first = start_beamside(tmp, cookie_file, node.name, loki.url)
                first.wait_until(
                    lambda: first.value("beamside_node_up", node=node.name) == 1, 60, "attached"
                )
                node.eval(logger_expr(args.per_ms, args.sleep_ms))
                time.sleep(rng.uniform(0.0, args.max_up))
                first.kill()
                t0 = time.monotonic()
                down_cycles = 0
                mode = "ok"
                for cycle in range(2, args.cycles + 1):
                    up_for = rng.uniform(0.3, args.max_up)
                    down_at = down_to = None
                    if rng.random() < 1 / 3:
                        down_cycles += 1
                        down_at = rng.uniform(0.0, up_for)
                        down_to = rng.uniform(down_at, up_for + 1.0)
                        if down_at == 0.0:
                            mode = set_mode(loki, mode, "down")
                    proc = start_beamside(tmp, cookie_file, node.name, loki.url)
                    procs.append(proc)
                    started = time.monotonic()
                    while (now := time.monotonic() - started) < up_for:
                        if down_at is not None and now >= down_at:
                            mode = set_mode(loki, mode, "down")
                        if down_to is not None and now >= down_to:
                            mode = set_mode(loki, mode, "ok")
                            down_at = down_to = None
                        time.sleep(0.02)
                    proc.kill()
                    procs.remove(proc)
                    if down_to is None or rng.random() < 0.5:  # else down into the next start
                        mode = set_mode(loki, mode, "ok")
                    if cycle % 10 == 0 or cycle == args.cycles:
                        print(
                            f"cycle {cycle}/{args.cycles}: {int(node.eval(LAST))} lines logged, "
                            f"{time.monotonic() - t0:.0f} s",
                            flush=True,
                        )
                node.eval("bench_dur ! stop, ok.")
                time.sleep(0.2)
                last = int(node.eval(LAST))
                mode = set_mode(loki, mode, "ok")
                final = start_beamside(tmp, cookie_file, node.name, loki.url)
                procs.append(final)
                deadline = time.monotonic() + 300
                result: dict[str, int] = {}
                while time.monotonic() < deadline:
                    time.sleep(5)
                    if loki.stats().get("stored", 0) < last and time.monotonic() < deadline - 10:
                        continue
                    result = check(loki.dump(), node.name, last)
                    if result["lost"] == 0:
                        time.sleep(3)  # a late duplicate would arrive now
                        result = check(loki.dump(), node.name, last)
                        break
                stats = loki.stats()
                for name in (
                    "beamside_node_events_dropped_total",
                    "beamside_node_event_batches_missing_total",
                    "beamside_node_event_batches_duplicate_total",
                    "beamside_loki_entries_dropped_total",
                ):
                    found = [(lb, v) for _, lb, v in final.samples(name) if v]
                    if found:
                        print(f"{name}: {found}")
                final.terminate()
                procs.remove(final)
            finally:
                node.stop()
        print(
            f"\n{args.cycles} SIGKILL/restart cycles (seed {seed}), Loki down in "
            f"{down_cycles} of them, two CPU hogs; {os.cpu_count()} cores"
        )
        print(f"lines logged:       {last}")
        print(f"lines stored:       {result.get('stored')}")
        print(f"lost:               {result.get('lost')} (reported lost by the node: "
              f"{result.get('reported')} events)")  # fmt: skip
        print(f"duplicated:         {result.get('duplicated')} (re-sent identical: "
              f"{stats.get('duplicates')})")  # fmt: skip
        print(f"out of order:       {result.get('disorder')}")
        print(f"wall time:          {time.monotonic() - t0:.0f} s")
        ok = not (result.get("lost") or result.get("duplicated") or result.get("disorder"))
        # Identical re-sends are not counted against the run: a kill between
        # Loki's 2xx and our fsync of that fact can always happen (delivery to
        # a remote store is at-least-once), and Loki drops an entry identical
        # to one it has (same stream, timestamp and line), as the double does.
        return 0 if ok else 1
    finally:
        for p in procs:
            p.kill()
        loki.stop()
        for h in hogs:
            h.kill()
            h.wait()


def set_mode(loki: LokiDoubleProcess, current: str, mode: str) -> str:
    if mode != current:
        loki.set_mode(mode)
    return mode


if __name__ == "__main__":
    sys.exit(main())
