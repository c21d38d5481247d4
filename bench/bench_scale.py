"""Proof at scale: the real daemon against real and simulated nodes (issue 15).

    python bench/bench_scale.py --quick            # 20 real, 500 simulated, ~2 min
    python bench/bench_scale.py                    # 300 real, 10,000 simulated
    python bench/bench_scale.py --mesh --real 300  # the real nodes in one full mesh

Runs ``python3 -m sidecar.cli run --config FILE`` (the real daemon, as
tests/support/daemon_proc.py does) against:

* ``--real`` N real OTP 25 nodes on this machine (private EPMD, ``+sbwt none``
  as bench/bench_sidecar.py starts them), and
* ``--simulated`` M fake nodes (tests/support/fake_nodes.py): several
  processes of asyncio fakes on distinct ports, doing the handshake, ticking
  and answering every rpc of attach, collect and detach with replies recorded
  at the start of this run from a real node running the current agents (a
  plain node; with ``--mesh`` a node in a mesh of three), counters and
  clocks bumped at each tick.  A fake EPMD knows every fake name and asks
  the real EPMD for the others, so one daemon can manage both kinds.

Phases, each with its own daemon(s): a baseline daemon with no reachable
node (its RSS is the reference for RSS per node); the real nodes at
``--interval`` (1 s) with one, then two scrapers (``--scrapers 1,2``, each
scraping every ``--scrape-every`` 5 s with Prometheus' Accept header for
OpenMetrics and gzip) over ``--window`` seconds each; the simulated nodes
at ``--sim-interval`` (15 s) with one scraper; then all nodes sharded over
each count of ``--shards`` (2,4) daemons, each ``sharding: {count, index}``.

Figures:

* CPU per node-tick: the daemon's utime + stime from /proc/<pid>/stat over
  the window, divided by the node-ticks in it (simulated: collects the fakes
  answered; real: per node, how far its
  ``beamside_collect_last_success_timestamp_seconds`` moved, in intervals).
  It includes everything the daemon did meanwhile: scrapes, alarm checks,
  ticks.  Nodes per core at 15 s = 15 s / (CPU per node-tick at 15 s).
* RSS per node: (VmRSS with the nodes - VmRSS of the baseline) / nodes.
* Attach time: from the daemon's start until its log said ``attached to``
  each node; then one scrape checks ``beamside_node_up`` is 1 for all.
* Scrape time and size: during the windows (what the scrapers saw) and
  after them, ``--format-runs`` scrapes each of OpenMetrics and text 0.0.4,
  gzip asked; samples counted in the uncompressed body.
* Collection timeouts: the increase of the sum of
  ``beamside_collect_errors_total`` over the window (the daemon counts a
  failed collect there; with ``reason`` "timeout" when no reply came within
  its timeout, 0.8 interval, at least 1 s, as its log lines say); lateness:
  ``beamside_snapshot_age_seconds`` minus the interval, the largest any
  scraper saw.
* Sharding: every node in exactly one shard's ``beamside_node_up`` (and up
  there), the one ``sidecar.discovery.sharding.owner`` names; the sum of
  ``beamside_nodes_managed`` equals the node count.

Every process started here (nodes, EPMDs, fake servers, daemons) runs in
its own session and is stopped on the way out, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import yaml
from bench_sidecar import QUIET_NODE_FLAGS, cpu_model, mem_total_gb

from sidecar.discovery.sharding import owner
from tests.support.fake_nodes import Recording, record
from tests.support.nodes import (
    Epmd,
    ErlangNode,
    free_port,
    random_cookie,
    start_nodes,
    stop_nodes,
)

ROOT = Path(__file__).resolve().parents[1]
# Prometheus' own Accept header (scrape_protocols default, Prometheus 2.x)
ACCEPT_OPENMETRICS = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
ACCEPT_TEXT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLUSTER = "scale"

GOAL_SCRAPE_MS = 50.0  # scrape of 300 nodes, OpenMetrics
GOAL_SAMPLES = 120_000  # a 300-node mesh
GOAL_TIMEOUTS = 0  # 300 nodes, 1 s interval, two scrapers every 5 s
GOAL_NODES_PER_CORE = 10_000  # at 15 s, one scraper, alarms on (simulated)
GOAL_RSS_KB = 100.0  # per managed node
GOAL_NODES = 300  # what the scrape, samples and timeout goals are stated for


# --------------------------------------------------------------------------- processes


class Cleanup:
    """Everything started, stopped in reverse order whatever happens."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def push(self, fn: Callable[[], object]) -> None:
        def safe() -> None:
            try:
                fn()
            except BaseException as exc:  # keep cleaning up
                print(f"cleanup: {exc!r}", file=sys.stderr)

        self._stack.callback(safe)

    def close(self) -> None:
        # Ctrl-C again while cleaning up must not leave the rest running
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._stack.close()
        finally:
            signal.signal(signal.SIGINT, old)


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True if it ended by itself."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/<pid>/stat fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Helper:
    """A ``python3 -m tests.support.fake_nodes`` process that answers one JSON line."""

    def __init__(self, args: Sequence[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_nodes", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches us only: we stop it in order
        )

    def first_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise RuntimeError(f"{self.proc.args} did not start:\n{self.log.read_text()[-2000:]}")
        answer: dict[str, Any] = json.loads(result[0])
        return answer

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # it ends when its stdin closes
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, 5)


@dataclass
class Daemon:
    """One ``beamside run`` process."""

    name: str
    config: Path
    port: int
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    _log_pos: int = 0
    attached: dict[str, float] = field(default_factory=dict)

    def start(self) -> Daemon:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            env={**os.environ, **self.env},
            cwd=ROOT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return proc_cpu(self.pid)

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0])

    def read_log(self) -> list[dict[str, Any]]:
        """New JSON log records since the last call; ``attached`` updated."""
        records = []
        with self.log.open("rb") as f:
            f.seek(self._log_pos)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._log_pos += end
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            records.append(entry)
            msg = str(entry.get("msg", ""))
            node = entry.get("node")
            if node and (msg.startswith("attached to") or " is up again" in msg):
                self.attached.setdefault(str(node), time.monotonic() - self.started)
        return records

    def stop(self, timeout: float) -> bool:
        return True if self.proc is None else stop_process(self.proc, timeout)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


# --------------------------------------------------------------------------- scraping


@dataclass(frozen=True)
class Scrape:
    at: float  # time.time() when asked
    seconds: float
    wire_bytes: int
    body: bytes
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 200


def scrape(client: httpx.Client, url: str, accept: str, timeout: float) -> Scrape:
    """One scrape as Prometheus asks (its Accept header, gzip), timed from the
    request to the last byte on the wire: decompressing the body is the
    scraper's work, done after the clock stops."""
    at, t0 = time.time(), time.perf_counter()
    try:
        with client.stream(
            "GET",
            url,
            headers={"Accept": accept, "Accept-Encoding": "gzip"},
            timeout=timeout,
        ) as reply:
            raw = b"".join(reply.iter_raw())
    except httpx.HTTPError:
        return Scrape(at, time.perf_counter() - t0, 0, b"", 0)
    seconds = time.perf_counter() - t0
    zipped = reply.headers.get("content-encoding") == "gzip"
    return Scrape(at, seconds, len(raw), gzip.decompress(raw) if zipped else raw, reply.status_code)


_NODE = re.compile(rb'node="([^"]*)"')


def series(body: bytes, name: str) -> list[tuple[str, float]]:
    """(node label, value) of every sample of ``name`` (fast: no full parse)."""
    prefix = name.encode() + b"{"
    out = []
    start = body.find(b"\n" + prefix)
    while start >= 0:
        end = body.find(b"\n", start + 1)
        line = body[start + 1 : end if end >= 0 else len(body)]
        m = _NODE.search(line)
        try:
            value = float(line.rsplit(b" ", 1)[1])
        except (IndexError, ValueError):
            value = float("nan")
        out.append((m.group(1).decode() if m else "", value))
        start = body.find(b"\n" + prefix, start + 1)
    return out


def total(body: bytes, name: str) -> float:
    return sum(v for _, v in series(body, name))


def count_samples(body: bytes) -> int:
    return sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))


class Scrapers:
    """``count`` threads scraping ``url`` every ``every`` seconds (OpenMetrics, gzip),
    each scrape's time and size kept, and the largest snapshot age seen."""

    def __init__(self, url: str, count: int, every: float, timeout: float) -> None:
        self.url, self.count, self.every, self.timeout = url, count, every, timeout
        self.scrapes: list[Scrape] = []
        self.max_age = 0.0
        self.ages: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)
        ]

    def __enter__(self) -> Scrapers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)

    def _run(self, i: int) -> None:
        with httpx.Client() as client:
            # spread the scrapers over the period, as independent Prometheus servers are
            next_at = time.monotonic() + i * self.every / max(self.count, 1)
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                s = scrape(client, self.url, ACCEPT_OPENMETRICS, self.timeout)
                ages = [v for _, v in series(s.body, "beamside_snapshot_age_seconds")]
                with self._lock:
                    self.scrapes.append(replace_body(s))
                    if ages:
                        self.ages.append(max(ages))
                next_at += self.every
                if next_at < time.monotonic():
                    next_at = time.monotonic()


def replace_body(s: Scrape) -> Scrape:
    """The scrape without its body (kept: size only)."""
    return Scrape(s.at, s.seconds, s.wire_bytes, b"", s.status)


# --------------------------------------------------------------------------- configs


def write_config(
    path: Path,
    names: Sequence[str],
    cookie_file: Path,
    interval: float,
    *,
    shard: tuple[int, int] | None = None,
    per_peer: bool = False,
) -> int:
    """A daemon config for ``names``; returns its HTTP port."""
    port = free_port()
    config: dict[str, Any] = {
        "cluster": CLUSTER,
        "node_name": f"beamside-scale-{os.getpid()}-{secrets.token_hex(3)}@127.0.0.1",
        "targets": [{"nodes": list(names), "cookie_file": str(cookie_file)}],
        "intervals": {"metrics": f"{interval:g}s"},
        "http": {"listen": f"127.0.0.1:{port}"},
        "grpc": {"listen": f"127.0.0.1:{free_port()}"},
    }
    if shard is not None:
        config["sharding"] = {"count": shard[1], "index": shard[0]}
    if per_peer:
        config["metrics"] = {"dist_per_peer": True}
    path.write_text(yaml.safe_dump(config))
    return port


# --------------------------------------------------------------------------- phases


@dataclass
class Window:
    scrapers: int
    seconds: float
    cpu: float
    ticks: float
    ticks_how: str
    errors: float
    timeout_lines: int
    scrapes: list[Scrape]
    max_age: float
    fake_cpu: float = 0.0  # the fake node processes' CPU meanwhile

    @property
    def per_tick(self) -> float:
        return self.cpu / self.ticks if self.ticks else float("nan")


@dataclass
class FormatFigures:
    label: str
    runs: int
    median_s: float
    best_s: float
    wire_bytes: int
    body_bytes: int
    samples: int


@dataclass
class PhaseResult:
    label: str
    nodes: int
    interval: float
    attach_s: float
    up: int
    rss_kb: int
    windows: list[Window]
    formats: list[FormatFigures]
    stopped_cleanly: bool
    stop_s: float
    log_problems: dict[str, int]


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, cleanup: Cleanup) -> None:
        self.args = args
        self.work = work
        self.cleanup = cleanup
        self.cookie = random_cookie()
        self.cookie_file = work / "cookie"
        self.cookie_file.write_text(self.cookie)
        self.cookie_file.chmod(0o400)
        self.fake_epmd_port = 0
        self.fake_stats: list[Path] = []
        self.fake_pids: list[int] = []
        self.sim_names: list[str] = []
        self.real_names: list[str] = []
        self.baseline_rss_kb = 0
        self._daemons = 0

    # -- fakes

    def fake_collects(self) -> int:
        n = 0
        for path in self.fake_stats:
            with contextlib.suppress(OSError, ValueError):
                n += int(json.loads(path.read_text())["collects"])
        return n

    def fake_cpu(self) -> float:
        """CPU seconds the fake node processes used so far (they must keep up)."""
        return sum(proc_cpu(pid) for pid in self.fake_pids)

    def fake_unknown(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for path in self.fake_stats:
            with contextlib.suppress(OSError, ValueError):
                for k, v in json.loads(path.read_text())["unknown"].items():
                    out[k] = out.get(k, 0) + int(v)
        return out

    def start_fakes(self, recording: Path, real_epmd: int) -> None:
        args = self.args
        epmd = Helper(["epmd", "--fallback", str(real_epmd)], self.work / "fake_epmd.log")
        self.cleanup.push(epmd.stop)
        self.fake_epmd_port = int(epmd.first_line(20)["port"])
        if not args.simulated:
            return
        procs = max(args.fake_procs, -(-args.simulated // 2500))  # 2 fds per fake
        per = -(-args.simulated // procs)
        prefix = f"sim{os.getpid()}"
        helpers = []
        for k in range(procs):
            first, count = k * per, min(per, args.simulated - k * per)
            if count <= 0:
                break
            stats = self.work / f"fake_{k}.json"
            helper = Helper(
                [
                    "serve",
                    "--recording", str(recording),
                    "--cookie-file", str(self.cookie_file),
                    "--epmd-port", str(self.fake_epmd_port),
                    "--prefix", prefix,
                    "--first", str(first),
                    "--count", str(count),
                    "--port-base", str(args.port_base + first),
                    "--stats", str(stats),
                ],
                self.work / f"fake_{k}.log",
            )  # fmt: skip
            self.cleanup.push(helper.stop)
            helpers.append(helper)
            self.fake_stats.append(stats)
            self.fake_pids.append(helper.proc.pid)
        for helper in helpers:
            helper.first_line(60 + args.simulated / 100)
        self.sim_names = [f"{prefix}_{i:05d}@127.0.0.1" for i in range(args.simulated)]

    # -- daemons

    def daemon(
        self, names: Sequence[str], interval: float, shard: tuple[int, int] | None = None
    ) -> Daemon:
        self._daemons += 1
        label = f"d{self._daemons}" + (f"_shard{shard[0]}of{shard[1]}" if shard else "")
        config = self.work / f"{label}.yaml"
        port = write_config(
            config, names, self.cookie_file, interval, shard=shard, per_peer=self.args.per_peer
        )
        d = Daemon(label, config, port, self.work / f"{label}.log",
                   {"ERL_EPMD_PORT": str(self.fake_epmd_port)})  # fmt: skip
        d.start()
        self.cleanup.push(lambda: d.stop(5))
        return d

    def wait_attached(
        self, daemons: Sequence[Daemon], names: Sequence[str], timeout: float
    ) -> float:
        """Seconds until the daemons' logs said every node is attached."""
        want = set(names)
        t0 = min(d.started for d in daemons)
        deadline = time.monotonic() + timeout
        last_print = time.monotonic()
        while True:
            for d in daemons:
                if not d.alive():
                    raise RuntimeError(f"{d.name} exited:\n{d.log_tail()}")
                d.read_log()
            when: dict[str, float] = {}
            for d in daemons:
                for n, t in d.attached.items():
                    when.setdefault(n, d.started + t)
            seen = set(when) & want
            if len(seen) == len(want):
                return max(when[n] for n in want) - t0
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(seen)} of {len(want)} nodes attached in {timeout:.0f} s; "
                    f"{daemons[0].name}'s log:\n{daemons[0].log_tail()}"
                )
            if time.monotonic() - last_print > 10:
                print(f"  ... {len(seen)} of {len(want)} attached", flush=True)
                last_print = time.monotonic()
            time.sleep(0.25)

    def baseline(self) -> None:
        d = self.daemon([f"nobody_{os.getpid()}@127.0.0.1"], 15.0)
        time.sleep(self.args.baseline_s)
        if not d.alive():
            raise RuntimeError(f"baseline daemon exited:\n{d.log_tail()}")
        self.baseline_rss_kb = d.rss_kb()
        d.stop(10)

    def node_ticks(
        self, before: bytes, after: bytes, interval: float, fakes: tuple[int, int] | None
    ) -> tuple[float, str]:
        """Node-ticks between two scrapes: the collects the fakes answered, or
        for real nodes how far each last-success timestamp moved, in intervals."""
        if fakes is not None:
            return float(fakes[1] - fakes[0]), "collects the fakes answered"
        t0 = dict(series(before, "beamside_collect_last_success_timestamp_seconds"))
        t1 = dict(series(after, "beamside_collect_last_success_timestamp_seconds"))
        est = sum(round((t1[n] - t0[n]) / interval) for n in t1 if n in t0)
        return float(est), "last-success timestamps / interval"

    def measure(
        self,
        label: str,
        names: Sequence[str],
        interval: float,
        scraper_counts: Sequence[int],
        *,
        simulated: bool,
    ) -> PhaseResult:
        args = self.args
        print(f"\n== {label}: {len(names)} nodes at {interval:g} s ==", flush=True)
        d = self.daemon(names, interval)
        attach = self.wait_attached([d], names, args.attach_timeout + len(names) / 20)
        print(f"  all {len(names)} attached after {attach:.1f} s", flush=True)
        time.sleep(min(interval + 2.0, args.settle))
        timeout = args.scrape_timeout
        with httpx.Client() as client:
            check = scrape(client, d.url, ACCEPT_TEXT, timeout)
            if not check.ok:
                raise RuntimeError(f"{d.name}: /metrics answered {check.status}")
            up = {n: v for n, v in series(check.body, "beamside_node_up")}
            n_up = sum(1 for n in names if up.get(n) == 1.0)
            print(f"  beamside_node_up 1 for {n_up} of {len(names)}", flush=True)
            if n_up != len(names):
                down = [n for n in names if up.get(n) != 1.0][:5]
                print(f"  NOT UP (first 5): {down}", flush=True)
            rss = d.rss_kb()
            windows = []
            for count in scraper_counts:
                before = scrape(client, d.url, ACCEPT_TEXT, timeout)
                d.read_log()
                fakes0 = self.fake_collects() if simulated else None
                cpu0, t0, fake0 = d.cpu(), time.monotonic(), self.fake_cpu()
                with Scrapers(d.url, count, args.scrape_every, timeout) as scrapers:
                    time.sleep(whole_intervals(args.window, interval))
                cpu1, t1, fake1 = d.cpu(), time.monotonic(), self.fake_cpu()
                fakes = None if fakes0 is None else (fakes0, self.fake_collects())
                after = scrape(client, d.url, ACCEPT_TEXT, timeout)
                timeouts = sum(
                    1
                    for r in d.read_log()
                    if "collection on" in str(r.get("msg", "")) and r.get("reason") == "timeout"
                )
                ticks, how = self.node_ticks(before.body, after.body, interval, fakes)
                w = Window(
                    scrapers=count,
                    seconds=t1 - t0,
                    cpu=cpu1 - cpu0,
                    ticks=ticks,
                    ticks_how=how,
                    errors=total(after.body, "beamside_collect_errors_total")
                    - total(before.body, "beamside_collect_errors_total"),
                    timeout_lines=timeouts,
                    scrapes=scrapers.scrapes,
                    max_age=max(scrapers.ages, default=float("nan")),
                    fake_cpu=fake1 - fake0 if simulated else 0.0,
                )
                windows.append(w)
                ok = [s for s in w.scrapes if s.ok]
                print(
                    f"  {count} scraper(s), {w.seconds:.1f} s: CPU {w.cpu:.2f} s, "
                    f"{w.ticks:.0f} node-ticks ({w.per_tick * 1e6:,.0f} µs each), "
                    f"collect errors {w.errors:.0f}, scrapes {len(ok)}/{len(w.scrapes)} ok, "
                    f"median {ms(median([s.seconds for s in ok]))}",
                    flush=True,
                )
            formats = []
            for fmt_label, accept in (
                ("OpenMetrics", ACCEPT_OPENMETRICS),
                ("text 0.0.4", ACCEPT_TEXT),
            ):
                runs = [scrape(client, d.url, accept, timeout) for _ in range(args.format_runs)]
                good = [s for s in runs if s.ok]
                if not good:
                    continue
                times = [s.seconds for s in good]
                formats.append(
                    FormatFigures(
                        fmt_label,
                        len(good),
                        statistics.median(times),
                        min(times),
                        good[-1].wire_bytes,
                        len(good[-1].body),
                        count_samples(good[-1].body),
                    )
                )
        unknown = self.fake_unknown()
        if unknown:
            print(f"  rpcs the fakes could not answer from the recording: {unknown}")
        problems: dict[str, int] = {}
        d.read_log()
        for line in d.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if entry.get("level") in ("warning", "error", "critical"):
                    key = f"{entry.get('level')}: {str(entry.get('msg', ''))[:60]}"
                    key = re.sub(r"\S+@\S+", "<node>", key)
                    problems[key] = problems.get(key, 0) + 1
        t0 = time.monotonic()
        clean = d.stop(args.stop_timeout)
        stop_s = time.monotonic() - t0
        return PhaseResult(
            label,
            len(names),
            interval,
            attach,
            n_up,
            rss,
            windows,
            formats,
            clean,
            stop_s,
            problems,
        )

    def sharded(self, count: int, names: Sequence[str], interval: float) -> dict[str, Any]:
        args = self.args
        print(
            f"\n== sharded over {count} daemons: {len(names)} nodes at {interval:g} s ==",
            flush=True,
        )
        daemons = [self.daemon(names, interval, shard=(i, count)) for i in range(count)]
        expected = {n: owner(n, count) for n in names}
        result: dict[str, Any] = {"count": count, "nodes": len(names)}
        try:
            result["attach_s"] = self.wait_attached(
                daemons, names, args.attach_timeout + len(names) / 20
            )
        except RuntimeError as exc:
            result["attach_s"] = float("nan")
            print(f"  {exc}".splitlines()[0])
        time.sleep(min(interval + 2.0, args.settle))
        with httpx.Client() as client:
            bodies = [scrape(client, d.url, ACCEPT_TEXT, args.scrape_timeout).body for d in daemons]
            fakes0 = self.fake_collects()
            cpu0 = sum(d.cpu() for d in daemons)
            time.sleep(whole_intervals(args.shard_window, interval))
            cpu1 = sum(d.cpu() for d in daemons)
            fakes1 = self.fake_collects()
            after = [scrape(client, d.url, ACCEPT_TEXT, args.scrape_timeout).body for d in daemons]
        listed: dict[str, list[int]] = {}
        up_in: dict[str, list[int]] = {}
        managed = 0.0
        for i, body in enumerate(after):
            managed += (
                total(body, "beamside_nodes_managed") if b"beamside_nodes_managed{" in body else 0.0
            )
            for n, v in series(body, "beamside_node_up"):
                listed.setdefault(n, []).append(i)
                if v == 1.0:
                    up_in.setdefault(n, []).append(i)
        result["managed_sum"] = managed
        result["listed_once"] = sum(1 for n in names if len(listed.get(n, [])) == 1)
        result["up_once"] = sum(1 for n in names if len(up_in.get(n, [])) == 1)
        result["wrong_shard"] = sum(1 for n in names if listed.get(n, [None]) != [expected[n]])
        result["per_shard"] = [sum(1 for n in names if expected[n] == i) for i in range(count)]
        real = set(self.real_names)
        ticks = fakes1 - fakes0
        for before, aft in zip(bodies, after, strict=True):
            t0 = dict(series(before, "beamside_collect_last_success_timestamp_seconds"))
            t1 = dict(series(aft, "beamside_collect_last_success_timestamp_seconds"))
            ticks += sum(round((t1[n] - t0[n]) / interval) for n in t1 if n in t0 and n in real)
        result["cpu"] = cpu1 - cpu0
        result["ticks"] = ticks
        result["rss_kb"] = [d.rss_kb() for d in daemons]
        for d in daemons:
            d.stop(args.stop_timeout)
        print(
            f"  managed {managed:.0f}, listed once {result['listed_once']}, "
            f"up once {result['up_once']}, not where owner() says {result['wrong_shard']}, "
            f"CPU {result['cpu']:.2f} s for {ticks} node-ticks",
            flush=True,
        )
        return result


# --------------------------------------------------------------------------- recording


def record_replies(
    args: argparse.Namespace, nodes: Sequence[ErlangNode], cookie: str, epmd_port: int, work: Path
) -> tuple[Path, Recording]:
    """The recording the fakes replay: from a fresh real node (plain), or from a
    node in a mesh of three (``--mesh``)."""
    import asyncio

    extra: list[ErlangNode] = []
    try:
        source = nodes[0]
        peers = 0
        if args.mesh:
            extra = [
                ErlangNode("otp25", cookie=cookie, epmd_port=epmd_port, extra_args=QUIET_NODE_FLAGS)
                for _ in range(3)
            ]
            start_nodes(extra, timeout=60)
            names = ",".join(f"'{n.name}'" for n in extra)
            for n in extra:
                n.eval(f"[net_adm:ping(N) || N <- [{names}]], ok.", timeout=30)
            source, peers = extra[0], 2
        recording = asyncio.run(record(cookie, source.name, epmd_port=epmd_port, mesh_peers=peers))
    finally:
        stop_nodes(extra, timeout=5)
    path = work / "recording.etf"
    recording.save(path)
    return path, recording


def mesh_real(nodes: Sequence[ErlangNode], timeout: float) -> int:
    """Every real node pings every other; the least ``length(nodes())`` seen."""
    names = ",".join(f"'{n.name}'" for n in nodes)
    threads = [
        threading.Thread(
            target=n.eval,
            args=(f"[net_adm:ping(N) || N <- [{names}], N =/= node()], ok.",),
            kwargs={"timeout": timeout},
            daemon=True,
        )
        for n in nodes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return min(int(n.eval("length(nodes()).", timeout=30)) for n in nodes)


# --------------------------------------------------------------------------- report


def whole_intervals(window: float, interval: float) -> float:
    """``window`` rounded up to whole intervals: every node ticks as often in it."""
    return max(1, -(-window // interval)) * interval


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def report(
    args: argparse.Namespace,
    bench: Bench,
    real: PhaseResult | None,
    sim: PhaseResult | None,
    shards: list[dict[str, Any]],
    recording: Recording,
) -> None:
    base = bench.baseline_rss_kb
    print()
    print("== figures ==")
    print(f"baseline daemon (no node reachable): RSS {base:,} KB")
    for p in (real, sim):
        if p is None:
            continue
        print(
            f"{p.label}: {p.nodes} nodes at {p.interval:g} s, all attached in {p.attach_s:.1f} s, "
            f"{p.up} up; RSS {p.rss_kb:,} KB; stop (detach all) {p.stop_s:.1f} s"
            f"{'' if p.stopped_cleanly else ' (killed: over --stop-timeout)'}"
        )
        for w in p.windows:
            ok = [s for s in w.scrapes if s.ok]
            times = sorted(s.seconds for s in ok)
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))] if times else float("nan")
            print(
                f"  {w.scrapers} scraper(s) every {args.scrape_every:g} s over {w.seconds:.0f} s: "
                f"CPU {w.cpu:.2f} s / {w.ticks:.0f} node-ticks ({w.ticks_how}) = "
                f"{w.per_tick * 1e6:,.0f} µs; collect errors {w.errors:.0f} "
                f"(log lines with reason timeout: {w.timeout_lines}); largest snapshot age "
                f"{w.max_age:.1f} s (lateness {w.max_age - p.interval:+.1f} s); scrapes "
                f"{len(ok)}/{len(w.scrapes)} ok, median {ms(median(times))}, "
                f"p95 {ms(p95)}"
                + (
                    f"; the fake nodes' processes used {w.fake_cpu:.2f} s CPU meanwhile"
                    if w.fake_cpu
                    else ""
                )
            )
        for f in p.formats:
            print(
                f"  /metrics {f.label} (gzip): median {f.median_s * 1000:,.1f} ms, best "
                f"{f.best_s * 1000:,.1f} ms over {f.runs}; {f.wire_bytes:,} bytes on the wire, "
                f"{f.body_bytes:,} uncompressed, {f.samples:,} samples"
            )
        if p.log_problems:
            print("  warnings/errors in its log:")
            for k, v in sorted(p.log_problems.items(), key=lambda kv: -kv[1])[:8]:
                print(f"    {v:>6} x {k}")
    for s in shards:
        print(
            f"sharded over {s['count']}: {s['nodes']} nodes "
            f"({'/'.join(map(str, s['per_shard']))} by owner()), "
            f"attached in {s['attach_s']:.1f} s, "
            f"sum of beamside_nodes_managed {s['managed_sum']:.0f}, "
            f"in exactly one shard {s['listed_once']}, up in exactly one {s['up_once']}, "
            f"elsewhere than owner() {s['wrong_shard']}; "
            f"CPU {s['cpu']:.2f} s / {s['ticks']} node-ticks; "
            f"RSS {', '.join(f'{r:,}' for r in s['rss_kb'])} KB"
        )

    rows: list[tuple[str, str, str, str]] = []

    def row(figure: str, measured: str, goal: str, ok: bool | None) -> None:
        rows.append((figure, measured, goal, verdict(ok)))

    note300 = "" if real is None or real.nodes == GOAL_NODES else f" (measured with {real.nodes})"
    if real is not None:
        om = next((f for f in real.formats if f.label == "OpenMetrics"), None)
        if om is not None:
            row(
                f"scrape, {real.nodes} real nodes, OpenMetrics, gzip{note300}",
                f"{om.median_s * 1000:,.1f} ms",
                f"< {GOAL_SCRAPE_MS:.0f} ms (300 nodes)",
                om.median_s * 1000 < GOAL_SCRAPE_MS if real.nodes >= GOAL_NODES else None,
            )
            mesh = "mesh" if args.mesh else "no mesh: run with --mesh"
            row(
                f"samples, {real.nodes} real nodes ({mesh}){note300}",
                f"{om.samples:,}",
                f"< {GOAL_SAMPLES:,} (300-node mesh)",
                om.samples < GOAL_SAMPLES if args.mesh and real.nodes >= GOAL_NODES else None,
            )
        two = next((w for w in real.windows if w.scrapers == 2), None)
        if two is not None:
            row(
                f"collect timeouts, {real.nodes} real at {real.interval:g} s, "
                f"2 scrapers/{args.scrape_every:g} s{note300}",
                f"{two.errors:.0f} in {two.seconds:.0f} s",
                "0 (300 nodes, 1 s)",
                two.errors == GOAL_TIMEOUTS
                if real.nodes >= GOAL_NODES and real.interval <= 1.0
                else None,
            )
        for w in real.windows:
            row(
                f"CPU per node-tick, real, {w.scrapers} scraper(s)",
                f"{w.per_tick * 1e6:,.0f} µs",
                "(reference)",
                None,
            )
        rss = (real.rss_kb - base) / real.nodes
        row(
            f"RSS per node, {real.nodes} real",
            f"{rss:,.1f} KB",
            f"<= {GOAL_RSS_KB:.0f} KB",
            rss <= GOAL_RSS_KB,
        )
        row(f"attach all, {real.nodes} real", f"{real.attach_s:.1f} s", "(reference)", None)
    if sim is not None and sim.windows:
        w = sim.windows[0]
        per_core = sim.interval / w.per_tick if w.per_tick == w.per_tick and w.per_tick > 0 else 0.0
        at15 = sim.interval == 15.0
        row(
            f"nodes per core at {sim.interval:g} s, {sim.nodes} simulated, 1 scraper, alarms on",
            f"{per_core:,.0f} ({w.per_tick * 1e6:,.0f} µs per node-tick)",
            f">= {GOAL_NODES_PER_CORE:,} (at 15 s)",
            # judged at the goal's scale only: with fewer nodes, scrapes weigh less
            per_core >= GOAL_NODES_PER_CORE if at15 and sim.nodes >= GOAL_NODES_PER_CORE else None,
        )
        rss = (sim.rss_kb - base) / sim.nodes
        row(
            f"RSS per node, {sim.nodes} simulated",
            f"{rss:,.1f} KB",
            f"<= {GOAL_RSS_KB:.0f} KB",
            rss <= GOAL_RSS_KB,
        )
        row(f"attach all, {sim.nodes} simulated", f"{sim.attach_s:.1f} s", "(reference)", None)
        om = next((f for f in sim.formats if f.label == "OpenMetrics"), None)
        if om is not None:
            row(
                f"scrape, {sim.nodes} simulated, OpenMetrics, gzip",
                f"{om.median_s * 1000:,.0f} ms, {om.samples:,} samples",
                "(reference)",
                None,
            )
    for s in shards:
        ok = s["listed_once"] == s["nodes"] and s["up_once"] == s["nodes"] and s["wrong_shard"] == 0
        row(
            f"sharded over {s['count']}: each of {s['nodes']} nodes owned once",
            f"{s['up_once']:,} up once, {s['wrong_shard']} misplaced, "
            f"managed sum {s['managed_sum']:.0f}",
            "every node exactly once",
            ok and s["managed_sum"] == s["nodes"],
        )
    print()
    widths = [
        max(len(r[i]) for r in [("figure", "measured", "goal", "verdict"), *rows]) for i in range(4)
    ]
    header = ("figure", "measured", "goal", "verdict")
    for r in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)))
    print(
        f"\nsimulated nodes replay replies recorded in this run from {recording.source} "
        f"(OTP {recording.otp_release}{', in a mesh of 3' if recording.mesh_peers else ''}); "
        f"the real ones run OTP 25 with {' '.join(QUIET_NODE_FLAGS)}"
    )


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--real", type=int, default=300, help="real OTP 25 nodes (300)")
    ap.add_argument("--simulated", type=int, default=10_000, help="simulated nodes (10,000)")
    ap.add_argument(
        "--interval", type=float, default=1.0, help="metrics interval with the real nodes, s (1)"
    )
    ap.add_argument(
        "--sim-interval", type=float, default=15.0, help="interval with the simulated, s (15)"
    )
    ap.add_argument("--scrapers", default="1,2", help="scraper counts for the real phase (1,2)")
    ap.add_argument(
        "--scrape-every", type=float, default=5.0, help="seconds between a scraper's scrapes (5)"
    )
    ap.add_argument("--scrape-timeout", type=float, default=120.0, help="per scrape, s (120)")
    ap.add_argument(
        "--shards", default="2,4", help="daemon counts to shard all nodes over (2,4; '' none)"
    )
    ap.add_argument(
        "--mesh",
        action="store_true",
        help="real nodes in one full mesh; fakes replay a meshed node",
    )
    ap.add_argument(
        "--per-peer",
        action="store_true",
        help="the daemons with metrics.dist_per_peer (every peer's series; with --mesh)",
    )
    ap.add_argument("--window", type=float, default=60.0, help="measurement window, s (60)")
    ap.add_argument(
        "--shard-window", type=float, default=30.0, help="CPU window of a sharded run, s (30)"
    )
    ap.add_argument("--settle", type=float, default=20.0, help="wait after attach, at most, s (20)")
    ap.add_argument(
        "--format-runs", type=int, default=5, help="scrapes per format after the windows (5)"
    )
    ap.add_argument("--attach-timeout", type=float, default=120.0, help="+ nodes/20 s (120)")
    ap.add_argument(
        "--stop-timeout", type=float, default=30.0, help="SIGTERM, then SIGKILL after (30)"
    )
    ap.add_argument(
        "--baseline-s", type=float, default=5.0, help="baseline daemon's run before RSS (5)"
    )
    ap.add_argument("--fake-procs", type=int, default=2, help="fake node processes, at least (2)")
    ap.add_argument("--port-base", type=int, default=12000, help="first port the fakes try (12000)")
    ap.add_argument("--skip", default="", help="phases to skip: real,sim,shards")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    ap.add_argument(
        "--quick", action="store_true", help="20 real, 500 simulated, short windows (~2 min)"
    )
    args = ap.parse_args()
    if args.quick:
        given = {a.split("=")[0] for a in sys.argv[1:]}  # counts given explicitly win
        args.real = args.real if "--real" in given else 20
        args.simulated = args.simulated if "--simulated" in given else 500
        args.window, args.shard_window, args.settle = 8.0, 5.0, 3.0
        args.format_runs, args.baseline_s, args.stop_timeout = 3, 3.0, 15.0
    if args.real < 1:
        ap.error("--real must be at least 1 (the replies are recorded from a real node)")
    return args


def main() -> None:
    args = parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    scraper_counts = [int(x) for x in args.scrapers.split(",") if x.strip()]
    shard_counts = [int(x) for x in args.shards.split(",") if x.strip()]
    started = time.monotonic()
    print(
        f"bench_scale {datetime.date.today().isoformat()}: CPython {platform.python_version()}, "
        f"{os.cpu_count()} cores ({cpu_model()}), {mem_total_gb():.1f} GB RAM, load "
        f"{os.getloadavg()[0]:.1f}; {args.real} real + {args.simulated} simulated nodes"
        f"{', mesh' if args.mesh else ''}{', per-peer series' if args.per_peer else ''}"
        f"{' (quick)' if args.quick else ''}",
        flush=True,
    )
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the daemon holds one fd per node
    # SIGTERM cleans up as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    cleanup = Cleanup()
    try:
        epmd = Epmd(log_path=work / "epmd.log").start()
        cleanup.push(epmd.stop)
        bench = Bench(args, work, cleanup)
        nodes = [
            ErlangNode("otp25", cookie=bench.cookie, epmd_port=epmd.port,
                       extra_args=QUIET_NODE_FLAGS, log_dir=work / "nodes")
            for _ in range(args.real)
        ]  # fmt: skip
        cleanup.push(lambda: stop_nodes(nodes, timeout=5))
        t0 = time.monotonic()
        start_nodes(nodes, timeout=60 + args.real)
        bench.real_names = [n.name for n in nodes]
        print(
            f"started {len(nodes)} real OTP 25 nodes in {time.monotonic() - t0:.1f} s", flush=True
        )
        rec_path, recording = record_replies(args, nodes, bench.cookie, epmd.port, work)
        print(
            f"recorded {len(recording.replies)} replies from {recording.source} "
            f"(collect variants: {', '.join(v or 'plain' for v in recording.collect_variants())})",
            flush=True,
        )
        if args.mesh:
            t0 = time.monotonic()
            least = mesh_real(nodes, timeout=120 + args.real)
            print(
                f"meshed the real nodes: each sees >= {least} peers ({time.monotonic() - t0:.0f} s)"
            )
        t0 = time.monotonic()
        bench.start_fakes(rec_path, epmd.port)
        if args.simulated:
            print(
                f"started {args.simulated} simulated nodes in {time.monotonic() - t0:.1f} s",
                flush=True,
            )
        bench.baseline()
        print(f"baseline daemon RSS {bench.baseline_rss_kb:,} KB", flush=True)
        real = sim = None
        if "real" not in skip:
            real = bench.measure(
                "real nodes", bench.real_names, args.interval, scraper_counts, simulated=False
            )
        if args.simulated and "sim" not in skip:
            sim = bench.measure(
                "simulated nodes", bench.sim_names, args.sim_interval, [1], simulated=True
            )
        shards = []
        if "shards" not in skip:
            for count in shard_counts:
                shards.append(
                    bench.sharded(count, bench.real_names + bench.sim_names, args.sim_interval)
                )
        report(args, bench, real, sim, shards, recording)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    finally:
        cleanup.close()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        print(f"total run time {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
