"""Tests of `agentwatch doctor` (service/doctor.py).

The bpf-marked tests run the real checks on this host: they load BPF programs, make cgroups
and run bubblewrap, so they need root. A check that fails is a failing test, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import doctor
from service.doctor import Check, format_check, main, run_checks

REPO = Path(__file__).resolve().parent.parent
ORDER = [
    "root and capabilities",
    "BTF",
    "tracefs",
    "kernel headers",
    "ring buffer",
    "bpf_send_signal",
    "cgroup v2",
    "cgroup sock_addr hooks",
    "kprobes",
    "fentry",
    "BPF LSM",
    "bubblewrap",
    "agentwatch probes",
]
MUST = {"root and capabilities", "tracefs", "kernel headers", "ring buffer",
        "agentwatch probes"}
STATUS_WORDS = {"ok", "missing", "MISSING", "unavailable", "UNAVAILABLE"}


def _cgroup2_mount_from_proc() -> str:
    """Independent of the doctor's own parser: the cgroup2 mount point of this host."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return fields[1].replace("\\040", " ")
    raise AssertionError("no cgroup2 mount in /proc/self/mounts")


# --------------------------------------------------------------------------- pure unit tests


def test_format_check_ok_line() -> None:
    c = Check("ring buffer", "ok", "must", "event received through a 4 KiB BPF ring buffer",
              "never shown")
    line = format_check(c)
    assert line.startswith("ok ")
    assert line.split(None, 1)[1].startswith("ring buffer ")
    assert line.endswith("event received through a 4 KiB BPF ring buffer")
    assert "fix" not in line
    # Columns line up: the name starts at the same place whatever the status word.
    other = format_check(Check("kprobes", "unavailable", "optional", "x"))
    assert line.index("ring buffer") == other.index("kprobes")


def test_format_check_missing_must_is_loud_and_has_fix() -> None:
    c = Check("kernel headers", "missing", "must", "no kernel headers",
              "apt-get install linux-headers-amd64")
    line = format_check(c)
    assert line.startswith("MISSING ")
    assert "kernel headers" in line
    assert "[must]" in line
    assert line.endswith("-> fix: apt-get install linux-headers-amd64")


def test_format_check_is_one_line_and_quiet_for_optional() -> None:
    c = Check("fentry", "unavailable", "optional", "load refused\nwith EPERM\n",
              "a kernel\nwith it")
    line = format_check(c)
    assert "\n" not in line
    assert line.startswith("unavailable ")
    assert "load refused with EPERM [optional] -> fix: a kernel with it" in line


def test_main_returns_1_when_a_must_have_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = [
        Check("root and capabilities", "ok", "must", "euid 0"),
        Check("kernel headers", "missing", "must", "none", "apt-get install linux-headers-amd64"),
        Check("kprobes", "unavailable", "optional", "no kprobes", "not required"),
    ]
    monkeypatch.setattr(doctor, "run_checks", lambda: fake)
    assert main() == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [format_check(c) for c in fake]
    assert "kernel headers" in err  # what to do goes to stderr, one line per check on stdout

    monkeypatch.setattr(doctor, "run_checks", lambda: fake[:1] + fake[2:])
    assert main(json_output=True) == 0
    out, _ = capsys.readouterr()
    assert [d["name"] for d in json.loads(out)] == ["root and capabilities", "kprobes"]


def test_cgroup2_mount_parses_escaped_mount_points(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n"
                      "cgroup2 /sys/fs/my\\040cgroup cgroup2 rw,nosuid 0 0\n")
    assert doctor.cgroup2_mount(mounts) == Path("/sys/fs/my cgroup")
    mounts.write_text("proc /proc proc rw 0 0\n")
    assert doctor.cgroup2_mount(mounts) is None


# --------------------------------------------------------------------------- on this host


@pytest.mark.slow
@pytest.mark.bpf
def test_run_checks_on_this_host(capsys: pytest.CaptureFixture[str]) -> None:
    checks = run_checks()
    assert [c.name for c in checks] == ORDER
    for c in checks:
        assert c.status in ("ok", "missing", "unavailable"), c
        assert c.level in ("must", "recommended", "optional"), c
        assert c.detail.strip(), f"{c.name}: empty detail"
        assert "Traceback" not in c.detail
    by_name = {c.name: c for c in checks}
    for name in MUST:
        assert by_name[name].level == "must"
        assert by_name[name].ok, format_check(by_name[name])

    cg = by_name["cgroup v2"]
    mount = _cgroup2_mount_from_proc()
    assert cg.ok, format_check(cg)
    assert cg.detail.startswith(mount + ":"), cg.detail
    # Nothing left behind in the cgroup tree.
    assert not [p for p in os.listdir(mount) if p.startswith("agentwatch-doctor-")]

    assert main() == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(ORDER)


@pytest.mark.slow
@pytest.mark.bpf
def test_doctor_as_a_subprocess_prints_one_line_per_check() -> None:
    code = "import sys; from service.doctor import main; sys.exit(main())"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(ORDER), r.stdout
    for line, name in zip(lines, ORDER, strict=True):
        status, rest = line.split(None, 1)
        assert status in STATUS_WORDS, line
        assert rest.startswith(name + " "), line
