"""agentwatch's benchmark suite: every figure beside its peers, measured in one run.

    .venv/bin/python bench/suite.py [--quick] [--json FILE]      (make bench / make bench-quick)

S1 syscall tax (bench/open_close.py): a getpid() loop and an open+close loop, untraced,
   with empty BPF programs on the same tracepoints (the floor any tracer pays), traced but
   unwatched (the collector loaded, the loop outside any session) and traced and watched
   (every event decoded and through the process table); interleaved rounds, the median of
   per-round ratios to untraced; the open+close loop also under each peer.
S2 throughput (bench/throughput.py): the highest open rate delivered with zero loss, by
   doubling a paced load, and the tracer's CPU use and memory at that rate.
S3 fork/exec/exit churn (bench/throughput.py): exec rate traced over untraced, and the
   share of execs whose exit event arrived.
S4 start-up (Collector() to every probe attached; for peers, start to attached) and
   resident memory idle and at the S2 rate.

Peers (bench/peers.py) run on the same workloads in the same run. The final table puts
each figure beside theirs and beside the target of issue 8. Numbers from one run on a
busy machine move a lot; the ratios within one run are what counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import open_close, throughput
from bench.peers import EXEC_PEERS, OPEN_PEERS, Peer, PeerError
from bench.throughput import Counter, S2Config, S3Result, own_rss
from probes.kernel import SetupError
from probes.loader import ProbeConfig
from service.pipeline import Collector
from service.sinks import JsonlSink

MB = 1 << 20
TARGETS = {
    "unwatched": 1.03, "watched": 1.5, "s2_vs_bpfcc": 2.0, "startup_s": 2.0, "rss_mb": 150,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def installed(peers: dict[str, Peer]) -> list[Peer]:
    return [p for p in peers.values() if p.available()]


# ---------------------------------------------------------------------- S1
def run_s1(args: argparse.Namespace, peers: list[Peer]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"S1 getpid loop: N={args.n_getpid} x {args.rounds_getpid} rounds")
    summary, meta, _, _ = open_close.measure_s1(args.n_getpid, args.rounds_getpid,
                                                ProbeConfig().ringbuf_pages, [], getpid=True,
                                                progress=args.verbose)
    out["getpid"] = {"modes": summary, "meta": meta}
    # A ring that holds the whole burst: the loop makes an event every ~1 µs, faster than
    # any Python consumer, so a smaller ring would drop (S2 measures what is sustained).
    pages = args.s1_ringbuf_pages
    log(f"S1 open+close loop: N={args.n_open} x {args.rounds_open} rounds, ring "
        f"{pages * 4 // 1024} MiB, peers {', '.join(p.name for p in peers) or 'none'}")
    summary, meta, _, _ = open_close.measure_s1(args.n_open, args.rounds_open, pages, peers,
                                                progress=args.verbose)
    out["open_close"] = {"modes": summary, "meta": meta}
    return out


# ---------------------------------------------------------------------- S2-S4
def run_s234(args: argparse.Namespace, tmp: Path, open_peers: list[Peer],
             exec_peers: list[Peer]) -> dict[str, Any]:
    cfg = S2Config(seconds=args.s2_seconds, threads=args.threads, start=args.s2_start,
                   bisections=args.bisections)
    execloop = throughput.build(tmp, "execloop")
    s3 = S3Result()
    log(f"S3 untraced exec loop: N={args.n_exec}")
    subprocess.run([str(execloop), "50", str(tmp / "warm")], check=True)
    before = throughput.exec_untraced(execloop, tmp, args.n_exec)
    s3.add("untraced", before)
    watched: list[float] = []

    log("S4 collector start-up (default probes, 4 MiB ring)")
    counter = Counter()
    rss_before = own_rss()
    t0 = time.perf_counter()
    c = Collector(sinks=[counter, JsonlSink(os.devnull)], config=ProbeConfig())
    c.start()
    startup = time.perf_counter() - t0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # idle: polling, nothing watched
        c.poll(100)
    s4: dict[str, Any] = {"startup_s": startup, "rss_idle": own_rss(),
                          "rss_before_load": rss_before}
    try:
        log(f"S2 agentwatch: {cfg.seconds} s steps from {cfg.start:.0f}/s, "
            f"{cfg.threads} thread(s)")
        s2 = {"agentwatch": throughput.measure_s2_agentwatch(c, counter, tmp, cfg)}
        log("delivery latency (syscall entry -> collector), 100/s and 20000/s")
        latency = throughput.delivery_latency(c, tmp)
        log("S3 watched exec loop")
        for _ in range(args.rounds_exec):
            rate, seen, exits = throughput.exec_watched(c, counter, execloop, tmp,
                                                        args.n_exec)
            s3.add("agentwatch", rate, seen, exits)
            watched.append(rate)
    finally:
        t0 = time.perf_counter()
        c.close()
        s4["close_s"] = time.perf_counter() - t0
    after = throughput.exec_untraced(execloop, tmp, args.n_exec)
    s3.add("untraced", after)
    # the watched runs against the untraced ones just before the load and just after it
    s3.ratios["agentwatch"] = [r / ((before + after) / 2) for r in watched]

    log(f"S2 peers: {', '.join(p.name for p in open_peers) or 'none'}")
    s2.update(throughput.measure_s2_peers(open_peers, tmp, cfg))
    log(f"S3 peers: {', '.join(p.name for p in exec_peers) or 'none'}")
    for peer in exec_peers:
        try:
            for _ in range(args.rounds_exec):
                base = throughput.exec_untraced(execloop, tmp, args.n_exec)  # just before
                s3.add("untraced", base)
                rate, seen, ex = throughput.exec_peer(peer, execloop, tmp, args.n_exec)
                s3.add(peer.name, rate, seen, ex)
                s3.ratios.setdefault(peer.name, []).append(rate / base)
        except (PeerError, throughput.BenchError) as e:
            s3.errors[peer.name] = str(e)
    return {"s2": s2, "s3": s3.__dict__, "s4": s4, "latency": latency, "n_exec": args.n_exec,
            "s2_config": cfg.__dict__}


# ---------------------------------------------------------------------- the table
def fmt_ratio(m: dict[str, Any] | None, lost: bool = True) -> str:
    if not m:
        return "-"
    s = f"{m['ratio']:.2f}x"
    if lost and m.get("lost_total") is not None and m.get("opens_missing") is not None:
        s += f" ({m['lost_total']} lost)" if m["lost_total"] or m["opens_missing"] else \
            " (0 lost)"
    return s


def verdict(ok: bool | None, miss: str = "") -> str:
    if ok is None:
        return "n/a"
    return "met" if ok else f"MISSED{': ' + miss if miss else ''}"


def rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(peer columns, rows: figure, agentwatch, peers..., target, verdict)."""
    peers = ["opensnoop", "opensnoop-bpfcc", "trace-bpfcc", "bpftrace"]
    exec_peers = {"opensnoop": "execsnoop", "opensnoop-bpfcc": "execsnoop-bpfcc",
                  "bpftrace": "bpftrace-exec"}
    g = res["s1"]["getpid"]["modes"]
    o = res["s1"]["open_close"]["modes"]
    s2, s3, s4 = res["s2"], res["s3"], res["s4"]
    out: list[list[str]] = []

    def row(fig: str, ours: str, theirs: dict[str, str], target: str, v: str) -> None:
        out.append([fig, ours, *[theirs.get(p, "") for p in peers], target, v])

    floor_g, floor_o = g.get("floor", {}).get("ratio"), o.get("floor", {}).get("ratio")
    for name, modes, floor in (("getpid", g, floor_g), ("open+close", o, floor_o)):
        row(f"S1 {name}: floor (empty BPF prog)", fmt_ratio(modes.get("floor"), False), {},
            "", "")
        uw = modes["unwatched"]["ratio"]
        row(f"S1 {name}: unwatched / untraced", f"{uw:.2f}x", {}, "<= 1.03x",
            verdict(uw <= TARGETS["unwatched"],
                    f"+{(uw - 1.03) * 100:.0f} points; floor {floor:.2f}x" if floor else ""))
        w = modes["watched"]
        lost = w["lost_total"] + (w["opens_missing"] or 0)
        theirs = {p: fmt_ratio(modes.get(p)) for p in peers if p in modes} \
            if name == "open+close" else {}
        row(f"S1 {name}: watched / untraced", fmt_ratio(w) if name == "open+close"
            else f"{w['ratio']:.2f}x", theirs,
            "<= 1.5x, 0 lost" if name == "open+close" else "",
            verdict(w["ratio"] <= TARGETS["watched"] and lost == 0,
                    f"{w['ratio']:.2f}x, {lost} lost") if name == "open+close" else "")
    errs = {p: "did not run" for p in res["s1"]["open_close"]["meta"]["peer_errors"]}

    def s2fig(key: str, fn: Any) -> dict[str, str]:
        return {p: (fn(s2[p]) if "error" not in s2[p] else "did not run")
                for p in peers if p in s2}

    ours = s2["agentwatch"]["zero_loss_rate"]
    bpfcc = [s2[p]["zero_loss_rate"] for p in ("opensnoop-bpfcc", "trace-bpfcc")
             if p in s2 and "error" not in s2[p]]
    ref = max(bpfcc) if bpfcc else None
    row("S2 zero-loss opens/s", f"{ours:,.0f}",
        s2fig("", lambda m: f"{m['zero_loss_rate']:,.0f}"
              f"{' (gen.)' if m['limited_by'] == 'generator' else ''}"),
        ">= 2x bpfcc", verdict(ours >= 2 * ref, f"{ours / ref:.2f}x") if ref else "n/a")
    if ref:
        row("S2   ratio to the bpfcc peer", f"{ours / ref:.2f}x", {}, ">= 2x", "")
    row("S2 CPU at that rate (cores)", f"{s2['agentwatch']['cpu_cores']:.2f}",
        s2fig("", lambda m: f"{m['cpu_cores']:.2f}" if m["cpu_cores"] is not None else "-"),
        "", "")
    def exec_ratio(mode: str) -> str:
        if mode in s3["errors"]:
            return "did not run"
        r = s3["ratios"].get(mode)
        return f"{statistics.median(r):.2f}x" if r else ""

    def exit_share(mode: str) -> str:
        seen, ex = s3["seen"].get(mode), s3["exits"].get(mode)
        if not seen:
            return ""
        if mode not in ("agentwatch", "bpftrace-exec"):
            return f"{sum(seen)}/{res['n_exec'] * len(seen)} execs, no exits"
        return f"{100 * sum(ex) / max(1, sum(seen)):.1f}% of {sum(seen)}"

    row("S3 exec rate traced / untraced", exec_ratio("agentwatch"),
        {p: exec_ratio(e) for p, e in exec_peers.items()}, "", "")
    row("S3 execs with their exit event", exit_share("agentwatch"),
        {p: exit_share(e) for p, e in exec_peers.items()}, "", "")
    starts = res["s1"]["open_close"]["meta"]["startup_s"] + \
        res["s1"]["getpid"]["meta"]["startup_s"] + [s4["startup_s"]]
    st = statistics.median(starts)
    row("S4 start-up to attached, s", f"{st:.2f}",
        s2fig("", lambda m: f"{m['attach_s']:.2f}" if m.get("attach_s") else "-"),
        "< 2 s", verdict(st < TARGETS["startup_s"], f"{st:.2f} s"))
    rss_i, rss_l = s4["rss_idle"] / MB, (s2["agentwatch"]["rss"] or 0) / MB
    row("S4 RSS idle, MB", f"{rss_i:.0f}",
        s2fig("", lambda m: f"{m['rss_idle'] / MB:.0f}" if m.get("rss_idle") else "-"),
        "< 150", verdict(rss_i < TARGETS["rss_mb"]))
    row("S4 RSS at the S2 rate, MB", f"{rss_l:.0f}",
        s2fig("", lambda m: f"{m['rss'] / MB:.0f}" if m.get("rss") else "-"),
        "< 150", verdict(rss_l < TARGETS["rss_mb"]))
    for rate, lat in res.get("latency", {}).items():
        row(f"delivery latency at {int(rate):,}/s, µs", f"p50 {lat['p50_us']:.0f}, p99 "
            f"{lat['p99_us']:.0f}", {}, "a few ms", "")
    del errs
    return peers, out


def print_table(res: dict[str, Any]) -> None:
    peers, body = rows(res)
    head = ["figure", "agentwatch", *peers, "target", "verdict"]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    print()
    m = res["meta"]
    print(f"agentwatch bench: {m['date']}, {m['cpus']} CPUs, Linux {m['kernel']}, "
          f"{'quick' if m['quick'] else 'full'} run, {m['elapsed_s']:.0f} s")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()
    print("(gen.): the load could go no faster under that tracer (its tax), none lost. "
          "S3 ratios: each traced run over an untraced run next to it in time.")
    print("Peer columns: opensnoop = libbpf-tools (S3: execsnoop); opensnoop-bpfcc "
          "(S3: execsnoop-bpfcc); trace-bpfcc = bpfcc-tools' trace on "
          "syscalls:sys_exit_openat; bpftrace = one-liner (S3: sched exec/exit).")
    for section, errs in (("S1", res["s1"]["open_close"]["meta"]["peer_errors"]),
                          ("S2", {p: v["error"] for p, v in res["s2"].items()
                                  if "error" in v}),
                          ("S3", res["s3"]["errors"])):
        for p, e in errs.items():
            print(f"{section} {p}: {e}")
    for p, v in res["s2"].items():
        if "error" not in v:
            print(f"S2 {p}: limited by {v['limited_by']}; steps (offered/s: delivered/"
                  "generated, lost): " + ", ".join(
                      f"{s['offered']:.0f}: {s['delivered']}/{s['generated']}, {s['lost']}"
                      for s in v["steps"]))
    foreign = res["s1"]["open_close"]["modes"]["untraced"].get("foreign_tracing_bpf_max")
    if foreign:
        print(f"WARNING: {foreign} tracing BPF programs of others were loaded during the "
              "run: every figure includes their cost")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small runs (~3 min), for a check")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--no-peer", action="store_true", help="agentwatch alone")
    ap.add_argument("--threads", type=int, default=1, help="S2 load threads (default 1)")
    ap.add_argument("--verbose", "-v", action="store_true", help="per-run progress")
    args = ap.parse_args(argv)
    full = not args.quick
    args.n_getpid = 1_000_000 if full else 300_000
    args.rounds_getpid = 3 if full else 1
    args.n_open = 200_000 if full else 50_000
    args.rounds_open = 5 if full else 1
    args.s1_ringbuf_pages = 16384 if full else 4096
    args.s2_seconds = 2.0 if full else 1.0
    args.s2_start = 16_000
    args.bisections = 1 if full else 0
    args.n_exec = 1000 if full else 300
    args.rounds_exec = 2 if full else 1
    if os.geteuid() != 0:
        print("bench: must run as root (loads BPF programs)", file=sys.stderr)
        return 2
    if shutil.which("cc") is None:
        print("bench: no C compiler (cc): apt-get install gcc", file=sys.stderr)
        return 2
    open_peers = [] if args.no_peer else installed(OPEN_PEERS)
    exec_peers = [] if args.no_peer else installed(EXEC_PEERS)
    t0 = time.monotonic()
    try:
        # S2-S4 first: this process's resident memory is then the collector's alone (S1
        # loads the probes ten times over, and the heap keeps some of each compile).
        with tempfile.TemporaryDirectory(prefix="aw-bench-") as tmpdir:
            rest = run_s234(args, Path(tmpdir), open_peers, exec_peers)
        s1 = run_s1(args, open_peers)
    except (open_close.BenchError, throughput.BenchError, SetupError,
            subprocess.CalledProcessError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    res: dict[str, Any] = {"s1": s1, **rest, "meta": {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
        "kernel": platform.release(), "quick": args.quick,
        "elapsed_s": time.monotonic() - t0, "uname": " ".join(platform.uname())}}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
