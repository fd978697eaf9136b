"""S5's pure parts (bench/workload_gen.py, bench/workloads_report.py and the summary
scan of bench/workloads.py): the generated inputs' counts and validity, the table's
figures and verdicts. No kernel, no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bench import workload_gen as gen
from bench import workloads_report as rep
from bench.workloads import SummaryScan


def test_c_project_counts_and_includes(tmp_path: Path) -> None:
    counts = gen.c_project(tmp_path, n_files=gen.C_FILES)
    assert gen.C_FILES >= 200
    assert counts == {"c_files": gen.C_FILES + 1, "headers": gen.C_HEADERS}
    assert len(list((tmp_path / "src").glob("*.c"))) == gen.C_FILES + 1
    assert len(list((tmp_path / "include").glob("*.h"))) == gen.C_HEADERS
    # every file includes project headers (gcc probes -Iinclude for each)
    for c in (tmp_path / "src").glob("f*.c"):
        assert '#include "h' in c.read_text()
    assert "-Iinclude" in (tmp_path / "Makefile").read_text()


def test_c_project_builds_and_cleans(tmp_path: Path) -> None:
    if subprocess.run(["sh", "-c", "command -v make && command -v cc"],
                      capture_output=True).returncode:
        pytest.skip("no make or cc")  # make setup installs both
    gen.c_project(tmp_path, n_files=12, n_headers=4)
    subprocess.run(["make", "-s", "-j2", "-C", str(tmp_path)], check=True,
                   capture_output=True)
    assert subprocess.run([str(tmp_path / "prog")], capture_output=True).returncode == 0
    assert len(list((tmp_path / "src").glob("*.o"))) == 13
    gen.c_clean(tmp_path)
    assert not list((tmp_path / "src").glob("*.o")) and not (tmp_path / "prog").exists()


def test_wheels_are_valid(tmp_path: Path) -> None:
    made = gen.wheels(tmp_path / "w")
    assert len(made) == gen.WHEELS == 20
    assert {p.name.split("-")[0] for p in made} == set(gen.wheel_names())
    with zipfile.ZipFile(made[0]) as z:
        names = set(z.namelist())
        dist = "awbench_pkg0-1.0.dist-info"
        assert {f"{dist}/METADATA", f"{dist}/WHEEL", f"{dist}/RECORD",
                "awbench_pkg0/__init__.py"} <= names
        record = z.read(f"{dist}/RECORD").decode().splitlines()
        # every file but RECORD itself is listed with its hash and size
        assert {ln.split(",")[0] for ln in record} == names
        assert all(ln.split(",")[1].startswith("sha256=") for ln in record
                   if not ln.startswith(f"{dist}/RECORD"))


def test_wheel_installs_offline(tmp_path: Path) -> None:
    """pip accepts a hand-made wheel with --no-index (what the pip workload does)."""
    gen.wheels(tmp_path / "w", n=2)
    out = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "-q", "--no-index",
                          "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
                          "--find-links", str(tmp_path / "w"), "--target",
                          str(tmp_path / "t"), "awbench_pkg1"],
                         capture_output=True, text=True)
    if "No module named pip" in out.stderr:
        pytest.skip("no pip for /usr/bin/python3")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "t" / "awbench_pkg1" / "mod4.py").exists()


def test_git_repo_counts(tmp_path: Path) -> None:
    assert gen.GIT_FILES >= 5000
    assert gen.git_repo(tmp_path / "r", n_files=250, per_dir=100) == 250
    assert len(list((tmp_path / "r").glob("d*/file*.txt"))) == 250


def test_summary_scan_sums_counts_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"

    def ev(kind: str, **kw: Any) -> bytes:
        return json.dumps({"kind": kind, **kw}).encode() + b"\n"
    log.write_bytes(ev("open", path="/summary") + ev("summary", count=5) + ev("exec"))
    scan = SummaryScan(tmp_path)
    assert scan.scan() == 5
    with open(log, "ab") as f:
        f.write(ev("summary", count=7) + b'{"kind":"summary","cou')  # a partial line
    assert scan.scan() == 12
    os.rename(log, tmp_path / "events.jsonl.1")  # rotation: the file keeps its bytes
    with open(tmp_path / "events.jsonl.1", "ab") as f:
        f.write(b'nt":3}\n')
    log.write_bytes(ev("summary", count=100) + b"\xff\xfe not json summary\n")
    assert scan.scan() == 115
    assert scan.scan() == 115 and scan.events == 4


def _res(lost: int = 0, peer_lost: int = 5, rss: int = 80 << 20,
         traced: float = 1.2) -> dict[str, Any]:
    def wl(name: str) -> dict[str, Any]:
        return {"title": name, "inputs": {}, "untraced": [1.0, 1.0, 1.0],
                "tracers": {
                    "agentwatch": {"rss": rss, "hwm": rss * 2, "samples": [
                        {"elapsed": traced, "window": 2.0, "cpu_s": 0.5, "lost": lost,
                         "delivered": 1000, "summarised": 50}]},
                    "bpftrace": {"rss": 10 << 20, "samples": [
                        {"elapsed": 3.0, "lines": 900, "lost": peer_lost, "cpu_s": 1.5}]},
                    "opensnoop-bpfcc": {"error": "fentry refused", "samples": []}}}
    return {"meta": {"date": "d", "cpus": 2, "kernel": "k", "quick": True,
                     "elapsed_s": 1, "loadavg_before": "0", "loadavg_after": "0"},
            "variants": ["agentwatch"], "peers": ["opensnoop-bpfcc", "bpftrace"],
            "workloads": {"rg": wl("rg"), "git": wl("git")}}


def _row(res: dict[str, Any], fig: str) -> list[str]:
    _cols, body = rep.rows(res)
    (r,) = [r for r in body if r[0] == fig]
    return r


def test_report_met() -> None:
    res = _res()
    assert rep.ratio(res["workloads"]["rg"], "agentwatch") == pytest.approx(1.2)
    assert rep.cores(res["workloads"]["rg"], "agentwatch") == pytest.approx(0.25)
    assert rep.zero_loss(res, "agentwatch") == (2, 2)
    assert rep.zero_loss(res, "bpftrace") == (0, 2)
    assert rep.zero_loss(res, "opensnoop-bpfcc") == (0, 0)
    r = _row(res, "S5 rg: traced / untraced")
    assert r[1:4] == ["1.20x", "did not run", "3.00x"] and r[-1] == "met"
    assert _row(res, "S5 git: traced / untraced")[-2:] == ["", ""]  # rg only has a target
    r = _row(res, "S5 rg: lost / delivered")
    assert r[1] == "0 / 1,000 (+50 summarised)" and r[3] == "5 / 900" and r[-1] == "met"
    assert _row(res, "S5 rg: tracer CPU, cores (max)")[-1] == "met"
    assert _row(res, "S5 rg: RSS at end, MB")[1] == "80 (peak 160)"
    assert _row(res, "S5 rg: RSS at end, MB")[-1] == "met"
    r = _row(res, "S5 workloads with 0 lost")
    assert r[1:4] == ["2/2", "did not run", "0/2"] and r[-1] == "met"
    text = rep.table(res)
    assert "opensnoop-bpfcc did not run: fentry refused" in text
    assert rep.markdown(res).count("\n") == len(rep.rows(res)[1]) + 1


def test_report_missed() -> None:
    res = _res(lost=3, peer_lost=0, rss=150 << 20, traced=1.5)
    assert _row(res, "S5 rg: traced / untraced")[-1] == "MISSED: 1.50x"
    assert _row(res, "S5 rg: lost / delivered")[-1] == "MISSED: 3 lost"
    assert _row(res, "S5 rg: RSS at end, MB")[-1] == "MISSED: 150 MB"
    assert _row(res, "S5 workloads with 0 lost")[-1] == "MISSED: 0/2"
    res["workloads"]["rg"]["tracers"]["agentwatch"]["samples"][0]["cpu_s"] = 3.0
    assert _row(res, "S5 rg: tracer CPU, cores (max)")[-1] == "MISSED: 1.50"


def test_report_tie_at_all_zero_loss_is_met() -> None:
    res = _res(peer_lost=0)
    assert _row(res, "S5 workloads with 0 lost")[1:4] == ["2/2", "did not run", "2/2"]
    assert _row(res, "S5 workloads with 0 lost")[-1] == "met"


def test_soak_rg_report_separates_searches_overlapping_floods() -> None:
    from bench.soak import Job, rg_report

    jobs = [Job("flood", "fork", "f", started=10.0, took=5.0),
            Job("rg", "rg", "a", started=12.0, took=2.0, lost={"open": 100}),
            Job("rg", "rg", "b", started=20.0, took=1.0, lost={}),
            Job("rg", "rg", "c", started=30.0, took=3.0, lost={"open": 4, "exec": 1}),
            Job("benign", "work", "w", started=12.0, took=1.0)]
    line = rg_report(jobs)
    assert "rg jobs: 3, 2.0 s each (median)" in line
    assert "events lost while they ran: 105 {'open': 104, 'exec': 1}" in line
    assert line.endswith("in the 2 with no flood at the same time: 5")
    assert rg_report([]).startswith("  rg jobs: 0; events lost while they ran: 0")


def test_soak_searches_alone_are_those_no_flood_overlapped() -> None:
    """The soak fails on a loss during these (bench/soak.py verdict)."""
    from bench.soak import Job, quiet_searches

    jobs = [Job("flood", "open", "f", started=10.0, took=5.0),
            Job("rg", "rg", "a", started=14.9, took=2.0),      # overlaps the flood's end
            Job("rg", "rg", "b", started=15.0, took=1.0),      # starts as it ends
            Job("rg", "rg", "c", started=8.0, took=1.0)]
    assert [j.token for j in quiet_searches(jobs)] == ["b", "c"]


# ------------------------------------------------------------------------------ live
def _loop_workload(tmp: Path) -> Any:
    from bench.workloads import Workload

    ws = tmp / "ws"
    ws.mkdir(exist_ok=True)
    # 150 children each opening /etc/hostname: a process tree, not one pid
    return Workload("loop", "150 cats", ["sh", "-c", "for i in $(seq 150); do "
                    "cat /etc/hostname >/dev/null; done"], (str(ws),), lambda: None)


def test_live_daemon_figures(tmp_path: Path) -> None:
    """The real default daemon on a small tree of processes: events delivered and
    counted by kind, losses counted, CPU and memory read, no error, a clean stop."""
    from bench.workloads import Runner, run_daemon
    from tests.conftest import bpf_unavailable

    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    runner = Runner(tmp_path)
    try:
        out = run_daemon(runner, _loop_workload(tmp_path), tmp_path, "agentwatch", [], 2)
    finally:
        runner.close()
    if "did not start" in out.get("error", "") or "daemon died" in out.get("error", ""):
        bpf_unavailable(out["error"])
    assert "error" not in out, out
    assert out["exit"] == 0
    assert len(out["samples"]) == 2
    for s in out["samples"]:
        # each cat's exec, its opens of /etc/hostname and the libraries, its exit
        assert s["by_kind"].get("exec", 0) + s["lost_by_cause"].get("exec", 0) >= 150
        assert s["delivered"] + s["lost"] >= 150 * 3
        assert s["lost"] == sum(s["lost_by_cause"].values())
        assert s["summarised"] >= 0 and s["cpu_s"] >= 0 and s["window"] >= s["elapsed"]
    assert 0 < out["rss"] <= out["hwm"]


def test_live_bpftrace_follows_the_sandbox_tree(tmp_path: Path) -> None:
    """The S5 peers filter on the run's cgroup: bpftrace sees the opens of the
    sandbox's grandchildren (every cat), none of the host's."""
    import shutil

    from bench.workloads import Runner, run_peer, tree_peers
    from tests.conftest import bpf_unavailable

    if os.geteuid() != 0:
        bpf_unavailable("bpftrace needs root")
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is a bench package (make bench-setup installs it)")
    runner = Runner(tmp_path)
    try:
        if runner.cgroup is None:
            pytest.skip("no cgroup v2 hierarchy to filter on")
        peer = tree_peers(runner.cgroup)["bpftrace"]
        out = run_peer(runner, _loop_workload(tmp_path), tmp_path, peer, 1)
    finally:
        runner.close()
    if isinstance(out.get("error"), str) and "attach" in out["error"]:
        bpf_unavailable(out["error"])
    assert "error" not in out, out
    (s,) = out["samples"]
    # every cat opens /etc/hostname (and its libraries); the one other line is
    # bpftrace's "Attaching 1 probe..."
    assert s["lines"] >= 150 and s["all_lines"] - s["lines"] <= 1


def test_report_failed_workload() -> None:
    res = _res()
    res["workloads"]["git"] = {"title": "git", "inputs": {}, "untraced": [],
                               "tracers": {}, "error": "git exited 128: boom"}
    assert _row(res, "S5 git: untraced, s (median of 0)")[-1] == "FAILED"
    assert _row(res, "S5 git: traced / untraced")[1:4] == ["", "", ""]
    assert rep.zero_loss(res, "agentwatch") == (1, 1)
    assert "  FAILED: git exited 128: boom" in rep.table(res)
