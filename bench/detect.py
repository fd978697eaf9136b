"""User-space cost per event: ring records replayed through the collector's path, no BPF.

The records are the kernel's own binary format (probes/layout.py), synthesised from the
file system so that no probe is needed: one bubblewrap-like session in which

- a build runs (`make -j2` of a C project): make forks and execs cc per source file; each
  compiler opens its source, a set of system headers and writes its object file, then
  exits; and the dynamic loader's opens at every exec;
- ripgrep searches /usr/lib and /usr/share (`rg -c PATTERN /usr/lib /usr/share`, as
  Claude Code's search does): an exec, then one read-only open per directory
  (O_DIRECTORY) and per regular file walked, from its worker threads, with the inode,
  device and mode the kernel would have resolved.

`--records FILE` replays records recorded elsewhere instead (length-prefixed: a u32 size,
then the record; `--save FILE` writes the synthesised ones in that format).

Each pass starts from fresh state and streams the records (each event dropped after its
last stage, as the collector does) through the stages cumulatively; a stage's figure is
what adding it costs per event (so they add up, give or take noise):

- `decode`: RecordDecoder.decode (collector/decode/);
- `table`: ProcessTable.observe and the enrichment the ingest does (collector/proctable.py);
- `engine`: the detector engine with every default detector on, as the daemon runs it
  (service/analysis.py's Analyzer over the same table; the session's start included);
- `sink`: JSON Lines to /dev/null (service/sinks.py);
- `total`: all of it through the collector itself (service/pipeline.py's Collector, its
  ingest handler: decode, table, sinks, detectors), which is what a deployment pays.

Reported: microseconds per event, best of `--passes`, and the load average (the figures
are only indicative on a shared machine). `--profile` prints cProfile's top functions of
one `total` pass. `/proc` is not read (the table's `read_proc` is off): the pids are
made up, and a run must not depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.decode import RecordDecoder, session_name
from collector.events import ExecEvent, SessionEvent
from collector.proctable import ProcessTable
from detectors.config import defaults
from probes import file as pfile
from probes import proc as pproc
from probes.file import kernel_dev
from probes.layout import Layout
from service.analysis import Analyzer
from service.pipeline import Collector
from service.sinks import JsonlSink

SESSION_ID = 0x5EED_0000_0000_0017
ROOT_PID = 4_000_000  # made up: above any pid_max default, never a live process
O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC = os.O_RDONLY, os.O_WRONLY, os.O_CREAT, os.O_TRUNC
O_DIRECTORY, O_CLOEXEC, O_NOCTTY = os.O_DIRECTORY, os.O_CLOEXEC, os.O_NOCTTY
LOADER_OPENS = ("/etc/ld.so.cache", "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libm.so.6", "/lib/x86_64-linux-gnu/libgcc_s.so.1")
HEADERS = ("/usr/include/stdio.h", "/usr/include/stdlib.h", "/usr/include/string.h",
           "/usr/include/features.h", "/usr/include/x86_64-linux-gnu/bits/types.h",
           "/usr/include/x86_64-linux-gnu/sys/cdefs.h", "/usr/include/errno.h",
           "/usr/include/unistd.h", "/usr/include/fcntl.h", "/usr/include/stdint.h")
WORKSPACE = "/work/project"


def _pack(layout: Layout, tail: bytes = b"", **values: Any) -> bytes:
    fields = {name: (b"" if "[" in ctype else 0) for name, ctype in layout.fields}
    fields.update(values)
    body = layout.struct.pack(*(fields[n] for n, _ in layout.fields)) + tail
    return body


class Synth:
    """Ring records of one session, in the kernel's layouts."""

    def __init__(self) -> None:
        self.ts = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self.records: list[bytes] = []
        self.next_pid = ROOT_PID + 1

    def _hdr(self, typ: int, pid: int, tid: int, ppid: int, comm: str) -> dict[str, Any]:
        self.ts += 2_000  # ~500,000 records a second: the rates of a search burst
        return {"type": typ, "size": 0, "ts": self.ts, "session": SESSION_ID, "pid": pid,
                "tid": tid, "ppid": ppid, "uid": 1000, "gid": 1000, "hdr_flags": 0,
                "cgroup": 7777, "comm": comm.encode()[:15]}

    def open(self, pid: int, ppid: int, comm: str, path: str, flags: int,
             tid: int | None = None, st: os.stat_result | None = None,
             fd: int = 3) -> None:
        raw = path.encode("utf-8", "surrogateescape")[:pfile.AW_PATH_MAX - 1] + b"\0"
        values: dict[str, Any] = {"ret": fd, "dfd": pfile.AT_FDCWD, "syscall": 1,
                                  "flags": flags, "path_len": len(raw)}
        tail = raw
        if st is None:
            values["ret"] = -2  # ENOENT: nothing resolved
        else:
            values.update(r_ino=st.st_ino, r_magic=0xEF53, r_dev=kernel_dev(st.st_dev),
                          r_mode=st.st_mode, r_flags=pfile.RF_OK, r_path_len=len(raw))
            tail += raw
        self.records.append(_pack(pfile.OPEN, tail, **self._hdr(
            pfile.AW_EV_OPEN, pid, tid or pid, ppid, comm), **values))

    def fork(self, pid: int, ppid: int, comm: str) -> int:
        child = self.next_pid
        self.next_pid += 1
        self.records.append(_pack(pproc.FORK, **self._hdr(pproc.AW_EV_FORK, pid, pid, ppid,
                                                          comm), ret=child, child_pid=child,
                                  clone_flags=0x1200011))
        return child

    def exec(self, pid: int, ppid: int, comm: str, filename: str, argv: list[str]) -> None:
        fn = filename.encode() + b"\0"
        args = b"".join(a.encode() + b"\0" for a in argv)
        tty = {f"s{n}_flags": 0x1 for n in range(3)}  # IO_FILE, a char device
        tty.update({f"s{n}_mode": stat.S_IFCHR | 0o620 for n in range(3)})
        tty.update({f"s{n}_rdev": (136 << 20) for n in range(3)})
        self.records.append(_pack(pproc.EXEC, fn + args, **self._hdr(
            pproc.AW_EV_EXEC, pid, pid, ppid, comm), ret=0, dfd=pfile.AT_FDCWD,
            filename_len=len(fn), argv_len=len(args), argc=len(argv), **tty))
        for path in LOADER_OPENS:
            self.open(pid, ppid, comm, path, O_RDONLY | O_CLOEXEC, st=_stat(path))

    def exit(self, pid: int, ppid: int, comm: str, code: int = 0) -> None:
        self.records.append(_pack(pproc.EXIT, **self._hdr(pproc.AW_EV_EXIT, pid, pid, ppid,
                                                          comm), exit_code=code,
                                  exit_flags=pproc.PF_EXIT_CODE))


_STATS: dict[str, os.stat_result | None] = {}


def _stat(path: str) -> os.stat_result | None:
    if path not in _STATS:
        try:
            _STATS[path] = os.stat(path)
        except OSError:
            _STATS[path] = None
    return _STATS[path]


def walk(roots: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Directories and regular files under `roots`, as ripgrep visits them."""
    for root in roots:
        for top, dirs, files in os.walk(root):
            dirs.sort()
            try:
                yield top, os.lstat(top)
            except OSError:
                continue
            for name in sorted(files):
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield path, st


def synthesise(n: int, roots: list[str], jobs: int) -> list[bytes]:
    """About `n` records: a build of `jobs` compiles, then a search filling the rest."""
    s = Synth()
    shell = ROOT_PID
    make = s.fork(shell, 1, "bash")
    s.exec(make, shell, "make", "/usr/bin/make", ["make", "-j2"])
    for i in range(jobs):
        cc = s.fork(make, shell, "make")
        s.exec(cc, make, "cc", "/usr/bin/cc", ["cc", "-O2", "-c", f"src/f{i}.c",
                                               "-o", f"src/f{i}.o"])
        s.open(cc, make, "cc", f"{WORKSPACE}/src/f{i}.c", O_RDONLY | O_NOCTTY,
               st=_stat("/etc/hostname"))
        for h in HEADERS:
            s.open(cc, make, "cc", h, O_RDONLY | O_NOCTTY, st=_stat(h))
        s.open(cc, make, "cc", f"{WORKSPACE}/src/f{i}.o",
               O_WRONLY | O_CREAT | O_TRUNC, st=_stat("/etc/hostname"))
        s.exit(cc, make, "cc")
    s.exit(make, shell, "make")
    rg = s.fork(shell, 1, "bash")
    s.exec(rg, shell, "rg", "/usr/bin/rg", ["rg", "-c", "PATTERN", *roots])
    tids = [rg, *(rg + 1 + t for t in range(3))]
    s.next_pid += 4
    for i, (path, st) in enumerate(walk(roots)):
        if len(s.records) >= n - 1:
            break
        d = stat.S_ISDIR(st.st_mode)
        s.open(rg, shell, "rg", path,
               O_RDONLY | O_CLOEXEC | (O_DIRECTORY if d else 0), tid=tids[i % 4], st=st,
               fd=3 + i % 60)
    s.exit(rg, shell, "rg")
    return s.records


def save(records: list[bytes], path: str) -> None:
    with open(path, "wb") as f:
        for r in records:
            f.write(struct.pack("<I", len(r)) + r)


def load(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    out, i = [], 0
    while i + 4 <= len(data):
        (size,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4:i + 4 + size])
        i += 4 + size
    return out


# ------------------------------------------------------------------ the stages
def session_start(c: Collector) -> None:
    """The session as the collector's manager registers it (no kernel map to write)."""
    c.manager._register(SESSION_ID, session_name(SESSION_ID), "launcher", ROOT_PID, 1,
                        ["bwrap", "--unshare-all", "--", "bash"], time.time_ns(), 1000,
                        WORKSPACE, "/home/agent")


def new_collector() -> tuple[Collector, JsonlSink]:
    sink = JsonlSink(os.devnull)
    c = Collector([sink], detection=defaults())
    c.table.read_proc = False
    return c, sink


def _pipeline(depth: int) -> tuple[Callable[[bytes], None], Callable[[], int]]:
    """The first `depth` stages (1 decode, 2 + table, 3 + engine, 4 + sink) as one
    function of a record, each event dropped after its last stage as the collector drops
    it (keeping every event alive would make the garbage collector's passes, not the
    stages, the cost); and a count of the alerts."""
    dec = RecordDecoder()
    table = ProcessTable(read_proc=False)
    table.add_root(ROOT_PID, 1, session_name(SESSION_ID), ["bwrap"], 0, cwd=WORKSPACE)
    analyzer = Analyzer(defaults(), table=table, live=True)
    analyzer.feed(SessionEvent(ts=time.time_ns(), session=session_name(SESSION_ID),
                               pid=ROOT_PID, ppid=1, uid=1000, phase="start",
                               session_kind="launcher", root_pid=ROOT_PID, argv=["bwrap"],
                               cwd=WORKSPACE, homes=["/home/agent"]))
    sink = JsonlSink(os.devnull)
    alerts = [0]
    decode, observe, feed, write = dec.decode, table.observe, analyzer.feed, sink.write

    def handle(raw: bytes) -> None:
        ev = decode(raw)
        if depth < 2:
            return
        proc = observe(ev)  # and the ingest's enrichment of an exec
        if proc is not None and isinstance(ev, ExecEvent) and ev.ret == 0:
            ev.exe, ev.cwd, ev.ns = proc.exe, proc.cwd, proc.ns
        if depth < 3:
            return
        alerts[0] += len(feed(ev))
        if depth < 4:
            return
        write(ev)

    return handle, lambda: alerts[0]


def one_pass(records: list[bytes]) -> dict[str, float]:
    """Seconds for one pass over `records` at each depth, each from fresh state; and the
    collector's own path (`total`)."""
    out: dict[str, float] = {}
    for depth, name in enumerate(("decode", "table", "engine", "sink"), 1):
        handle, count = _pipeline(depth)
        t0 = time.perf_counter()
        for r in records:
            handle(r)
        out[name] = time.perf_counter() - t0
        if depth == 3:
            out["alerts"] = count()
    c, _sink = new_collector()
    session_start(c)
    handle = c.ingest._handle_bytes
    t0 = time.perf_counter()
    for r in records:
        handle(r)
    c.flush()
    out["total"] = time.perf_counter() - t0
    c.ingest._reraise()
    out["total_alerts"] = c.stats.events["alert"]
    c.close()
    return out


def profile(records: list[bytes], top: int) -> None:
    c, _sink = new_collector()
    session_start(c)
    handle = c.ingest._handle_bytes
    prof = cProfile.Profile()
    prof.enable()
    for r in records:
        handle(r)
    prof.disable()
    c.close()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--events", type=int, default=20_000,
                    help="records to synthesise (default 20000)")
    ap.add_argument("--passes", type=int, default=5, help="best of N passes (default 5)")
    ap.add_argument("--jobs", type=int, default=200, help="compiles in the build part")
    ap.add_argument("--roots", nargs="+", default=["/usr/lib", "/usr/share"])
    ap.add_argument("--records", help="replay these records (u32 size + record each)")
    ap.add_argument("--save", help="write the synthesised records here and stop")
    ap.add_argument("--profile", action="store_true", help="cProfile of one total pass")
    ap.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    ap.add_argument("--json", action="store_true", help="the figures as one JSON object")
    args = ap.parse_args(argv)
    records = load(args.records) if args.records else \
        synthesise(args.events, args.roots, args.jobs)
    if args.save:
        save(records, args.save)
        print(f"{len(records)} records written to {args.save}")
        return 0
    if args.profile:
        profile(records, args.top)
        return 0
    best: dict[str, float] = {}
    alerts = total_alerts = 0.0
    for _ in range(args.passes):
        r = one_pass(records)
        alerts, total_alerts = r.pop("alerts"), r.pop("total_alerts")
        for k, v in r.items():
            best[k] = min(best.get(k, v), v)
    n = len(records)
    cum = {k: v / n * 1e6 for k, v in best.items()}
    # each stage: what adding it to the ones before costs (best of the passes each)
    us = {"decode": cum["decode"], "table": cum["table"] - cum["decode"],
          "engine": cum["engine"] - cum["table"], "sink": cum["sink"] - cum["engine"],
          "total": cum["total"]}
    load1, load5, _ = os.getloadavg()
    result = {"records": n, "passes": args.passes, "us_per_event": us,
              "alerts": int(alerts), "total_alerts": int(total_alerts),
              "loadavg": [round(load1, 2), round(load5, 2)]}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"detect: {n} records, best of {args.passes} passes, load average "
          f"{load1:.2f} {load5:.2f} (indicative only on a shared machine)")
    for k in ("decode", "table", "engine", "sink", "total"):
        print(f"  {k:<7} {us[k]:7.2f} µs/event")
    print(f"  alerts  {int(alerts)} (engine stage), {int(total_alerts)} (total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
