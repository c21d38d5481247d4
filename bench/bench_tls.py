"""Distribution over TLS against plain TCP, same run: attach, rpc, per-node-tick CPU.

    python bench/bench_tls.py [--calls 3000] [--ticks 300] [--attaches 30]

Starts a private EPMD and two real OTP 25 nodes on 127.0.0.1: one plain, one
with ``-proto_dist inet_tls`` (``verify_peer`` + ``fail_if_no_peer_cert``,
certificates from a throwaway CA made with ``openssl``; beamside presents its
client certificate and checks the node's name).  Then, for each transport:

* attach time: a fresh hidden node connects (EPMD, TCP, TLS, handshake) and
  makes its first rpc, ``--attaches`` times;
* rpc round trip ``erlang:node/0``, sequential, and throughput with 64
  concurrent callers;
* sidecar CPU per node tick: the agents loaded and attached, then ``--ticks``
  collects each decoded into a snapshot (what the manager does per node per
  tick), CPU of this process (``time.process_time``) divided by ticks; plain
  and TLS alternate in blocks so drift hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.erldist.tls import TlsConfig
from sidecar.model import decode_snapshot
from sidecar.pki import make_ca, make_cert
from tests.support.nodes import Epmd, ErlangNode, TlsDist, random_cookie


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def attach_times(
    node: str, cookie: str, epmd: int, tls: TlsConfig | None, n: int
) -> list[float]:
    out = []
    for i in range(n):
        local = LocalNode(f"bench-attach-{i}@127.0.0.1", cookie, epmd_port=epmd, tls=tls)
        t0 = time.perf_counter()
        await local.rpc(node, "erlang", "node", [])
        out.append((time.perf_counter() - t0) * 1000)
        await local.close()
    return out


async def rpc_times(local: LocalNode, node: str, calls: int) -> tuple[list[float], float]:
    await local.rpc(node, "erlang", "node", [])
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        await local.rpc(node, "erlang", "node", [])
        samples.append((time.perf_counter_ns() - t0) / 1000)
    total = 20 * 64

    async def caller() -> None:
        for _ in range(20):
            await local.rpc(node, "erlang", "node", [])

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(64)))
    return samples, total / (time.perf_counter() - t0)


async def tick(local: LocalNode, node: str) -> None:
    t0 = time.monotonic()
    data = await agents.collect(local, node, timeout=30)
    decode_snapshot(
        data,
        node=node,
        family="bench",
        cluster="bench",
        taken_at=time.time(),
        duration=time.monotonic() - t0,
    )


async def tick_cpu(
    locals_: dict[str, LocalNode], nodes: dict[str, str], ticks: int, block: int = 25
) -> dict[str, float]:
    for kind, local in locals_.items():
        await agents.ensure_loaded(local, nodes[kind], timeout=60)
        await agents.attach(local, nodes[kind], timeout=30)
        for _ in range(10):  # warm up
            await tick(local, nodes[kind])
    cpu = dict.fromkeys(locals_, 0.0)
    done = dict.fromkeys(locals_, 0)
    while min(done.values()) < ticks:
        for kind, local in locals_.items():
            c0 = time.process_time()
            for _ in range(block):
                await tick(local, nodes[kind])
            cpu[kind] += time.process_time() - c0
            done[kind] += block
    for kind, local in locals_.items():
        await agents.detach(local, nodes[kind])
    return {k: cpu[k] / done[k] for k in cpu}


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="beamside-bench-tls-"))
    ca = make_ca(work / "pki", "bench CA")
    node_cert = make_cert(ca, work / "pki", "node", dns_names=["127.0.0.1"])
    client = make_cert(ca, work / "pki", "beamside")
    tls = TlsConfig(
        cacertfile=str(ca.certfile), certfile=str(client.certfile), keyfile=str(client.keyfile)
    )
    dist = TlsDist(
        node_cert.certfile,
        node_cert.keyfile,
        ca.certfile,
        verify="verify_peer",
        fail_if_no_peer_cert=True,
        versions=tuple(args.versions.split(",")),
    )
    cookie = random_cookie()
    with Epmd() as epmd:
        plain = ErlangNode("otp25", cookie=cookie, epmd_port=epmd.port, log_dir=work).start()
        secure = ErlangNode(
            "otp25",
            cookie=cookie,
            epmd_port=epmd.port,
            log_dir=work,
            extra_args=dist.erl_args(work),
        ).start()
        nodes = {"plain TCP": plain.name, "TLS": secure.name}
        try:
            attach = {
                "plain TCP": await attach_times(plain.name, cookie, epmd.port, None, args.attaches),
                "TLS": await attach_times(secure.name, cookie, epmd.port, tls, args.attaches),
            }
            locals_ = {
                "plain TCP": LocalNode("bench-plain@127.0.0.1", cookie, epmd_port=epmd.port),
                "TLS": LocalNode("bench-tls@127.0.0.1", cookie, epmd_port=epmd.port, tls=tls),
            }
            rpc = {k: await rpc_times(local, nodes[k], args.calls) for k, local in locals_.items()}
            conn = locals_["TLS"].connection(secure.name)
            assert conn is not None
            ssl_object = conn._writer.get_extra_info("ssl_object")
            version, cipher = ssl_object.version(), ssl_object.cipher()[0]
            cpu = await tick_cpu(locals_, nodes, args.ticks)
            for local in locals_.values():
                await local.close()
        finally:
            plain.stop()
            secure.stop()

    print(f"TLS: {version} {cipher}; node verify_peer + fail_if_no_peer_cert, client cert")
    print(f"\nattach (EPMD + TCP [+ TLS] + handshake + first rpc), {args.attaches} times (ms)")
    print(f"{'':28}{'p50':>8}{'p90':>8}{'max':>8}")
    for kind, s in attach.items():
        print(f"{kind:28}{pct(s, 0.5):8.2f}{pct(s, 0.9):8.2f}{max(s):8.2f}")
    print(f"\nrpc erlang:node/0, {args.calls} sequential calls (microseconds)")
    print(f"{'':28}{'p50':>8}{'p90':>8}{'p99':>8}{'mean':>8}{'calls/s (64)':>14}")
    for kind, (s, rate) in rpc.items():
        mean = statistics.mean(s)
        row = f"{pct(s, 0.5):8.0f}{pct(s, 0.9):8.0f}{pct(s, 0.99):8.0f}{mean:8.0f}"
        print(f"{kind:28}{row}{rate:14,.0f}")
    ratio = pct(rpc["TLS"][0], 0.5) / pct(rpc["plain TCP"][0], 0.5)
    print(f"ratio TLS/plain p50: {ratio:.2f}")
    print(f"\nsidecar CPU per node tick (collect + decode), {args.ticks} ticks each (microseconds)")
    for kind, seconds in cpu.items():
        print(f"{kind:28}{seconds * 1e6:8.0f}")
    tick_ratio = cpu["TLS"] / cpu["plain TCP"]
    print(f"ratio TLS/plain per tick: {tick_ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--attaches", type=int, default=30)
    parser.add_argument("--versions", default="tlsv1.2", help="the node's TLS versions")
    asyncio.run(main(parser.parse_args()))
