"""Throughput of the external term format codec on a real node's payload.

Run from the repository root::

    python bench/bench_term.py [--runs N] [--erl PATH]

The payload is made fresh by a real OTP node (Debian's OTP 25 ``erl`` by
default): it spawns 10,000 processes and replies with one tuple per process,
``{Pid, Name, Memory, MsgQLen, Reductions, {M, F, A}}`` (``Name`` is the
registered name or ``undefined``), as ``term_to_binary`` of a 10,000 element
list, written to a temporary file.  This is the shape of a process listing,
beamside's heaviest regular reply.

Our codec in both its builds (issue 15) -- ``compiled``, the mypyc extension
module ``pip install`` builds where it can, and ``pure``, ``term.py`` loaded
from source -- and okeuday's pure-Python ``erlang_py`` (module ``erlang``)
decode the same bytes and encode their own decoded value, in the same
process, alternately; each figure is the best of ``--runs`` runs timed with
``time.perf_counter`` (garbage collector on, as in service, and run before
each timed call).  A compiled module made from another ``term.py`` than the
tree's is refused; without a compiled build only the pure figures are shown.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import erlang  # type: ignore[import-untyped]

from sidecar import compiled
from sidecar.erldist import term

N_PROCS = 10_000

# The payload generator, run by ``erl -noshell -eval``; the output path is the
# first plain argument (after ``-extra``).
ERL_PAYLOAD = r"""
[Out] = init:get_plain_arguments(),
Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, __N__)],
[register(list_to_atom("worker_" ++ integer_to_list(I)), P)
 || {I, P} <- lists:zip(lists:seq(1, 250), lists:sublist(Pids, 250))],
%% Queued messages (left unread): some non-zero MsgQLen.
[P ! {job, J} || {I, P} <- lists:zip(lists:seq(1, 1000), lists:sublist(Pids, 1000)),
                 J <- lists:seq(1, I rem 7)],
Keys = [registered_name, memory, message_queue_len, reductions, current_function],
Row = fun(P) ->
    case erlang:process_info(P, Keys) of
        undefined -> [];
        [{registered_name, N}, {memory, M}, {message_queue_len, Q}, {reductions, R},
         {current_function, MFA}] ->
            Name = case N of [] -> undefined; _ -> N end,
            [{P, Name, M, Q, R, MFA}]
    end
end,
Rows = lists:sublist(lists:append([Row(P) || P <- processes()]), __N__),
__N__ = length(Rows),
ok = file:write_file(Out, term_to_binary(Rows)),
[P ! stop || P <- Pids],
halt().
""".replace("__N__", str(N_PROCS))


def make_payload(erl: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "payload.etf")
        subprocess.run(
            [erl, "-noshell", "+P", "262144", "-eval", ERL_PAYLOAD, "-extra", out],
            check=True,
            timeout=120,
        )
        return Path(out).read_bytes()


def best_times(runs: int, cases: dict[tuple[str, str], Callable[[], Any]]) -> dict[Any, float]:
    """Best time of each case over ``runs`` rounds; the cases alternate within a
    round, so a burst of load on the machine hits them all alike."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(runs):
        for key, fn in cases.items():
            gc.collect()  # each run starts from a clean heap, whatever ran before
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (best kept)")
    parser.add_argument("--erl", default=shutil.which("erl") or "erl", help="OTP node to use")
    args = parser.parse_args()

    stale = compiled.stale_reason(term)
    if stale is not None:
        sys.exit(f"bench_term: {stale}")
    codecs: dict[str, Any] = {"pure": compiled.load_pure(["sidecar.erldist.term"])[0]}
    if compiled.is_compiled(term):
        codecs = {"compiled": term, **codecs}

    payload = make_payload(args.erl)
    theirs = erlang.binary_to_term(payload)
    assert len(theirs) == N_PROCS
    decoded = {name: codec.decode(payload) for name, codec in codecs.items()}
    for value in decoded.values():
        assert isinstance(value, list) and len(value) == N_PROCS
        assert value == decoded["pure"]
    encoded = {name: codecs[name].encode(value) for name, value in decoded.items()}
    assert len(set(encoded.values())) == 1, "the builds encode differently"
    sizes = {name: len(out) for name, out in encoded.items()}
    sizes["erlang_py"] = len(erlang.term_to_binary(theirs))

    cases: dict[tuple[str, str], Callable[[], Any]] = {}
    for op in ("decode", "encode"):
        for name, codec in codecs.items():
            if op == "decode":
                cases[(op, name)] = lambda codec=codec: codec.decode(payload)
            else:
                cases[(op, name)] = lambda codec=codec, v=decoded[name]: codec.encode(v)
        cases[(op, "erlang_py")] = (
            (lambda: erlang.binary_to_term(payload))
            if op == "decode"
            else (lambda: erlang.term_to_binary(theirs))
        )
    times = best_times(args.runs, cases)

    otp = subprocess.run(
        [
            args.erl,
            "-noshell",
            "-eval",
            'io:format("~s", [erlang:system_info(otp_release)]), halt().',
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    print(f"payload: {len(payload):,} bytes, {N_PROCS:,} process tuples from OTP {otp}")
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cpus, best of {args.runs}"
    )
    if "compiled" in codecs:
        made_from = compiled.built_from(term)
        print(f"compiled: {Path(str(term.__file__)).name}, from term.py {made_from}")
    else:
        print("compiled: none (sidecar.erldist.term is pure Python here): pure figures only")
    print()
    print(
        f"encoded sizes: beamside {sizes['pure']:,} bytes (UTF-8 atoms), "
        f"erlang_py {sizes['erlang_py']:,} bytes"
    )
    print("decode MB/s: the node's payload bytes; encode MB/s: each codec's own output;")
    print("terms/s: process tuples (of the 10,000 in the list) per second")
    print()
    print(f"{'op':<7} {'codec':<10} {'ms':>8} {'MB/s':>8} {'terms/s':>10}")
    for (op, codec_name), secs in times.items():
        nbytes = len(payload) if op == "decode" else sizes[codec_name]
        print(
            f"{op:<7} {codec_name:<10} {secs * 1e3:8.2f} {nbytes / secs / 1e6:8.2f} "
            f"{N_PROCS / secs:10,.0f}"
        )
    print()
    for op in ("decode", "encode"):
        for name in codecs:
            ratio = times[(op, "erlang_py")] / times[(op, name)]
            print(f"{op}: beamside {name:<8} is {ratio:5.2f}x erlang_py's throughput")
    if "compiled" in codecs:
        for op in ("decode", "encode"):
            gain = times[(op, "pure")] / times[(op, "compiled")]
            print(f"{op}: compiled is {gain:5.2f}x pure")


if __name__ == "__main__":
    main()
