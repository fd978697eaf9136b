"""The file the kernel actually opened (include/aw_resolve.h at file.bpf.c's open exit):
real probes, real sessions, every other name a process can give a file.

Each workload opens one target file through another name; the event's `path` must be the
kernel's resolved path (d_path's view for the caller), `raw_path` the string it passed, and
(dev, ino) equal to os.stat()'s of the target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpf
PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "dir"
    d.mkdir()
    (d / "secret.txt").write_text("s3cret\n")
    os.symlink(d / "secret.txt", tmp_path / "link")
    os.link(d / "secret.txt", tmp_path / "hard")
    return tmp_path


def _opens(r, raw: str):  # type: ignore[no-untyped-def]
    return [e for e in r.of("open") if e.raw_path == raw and e.ret >= 0]


def _same_file(ev, target: Path) -> None:  # type: ignore[no-untyped-def]
    st = os.stat(target)
    assert (ev.dev, ev.ino) == (st.st_dev, st.st_ino), ev
    assert ev.file_type == "file" and ev.file_mode == st.st_mode
    assert ev.resolved is True and not ev.resolve_flags


def test_other_names_resolve_to_the_kernels_path(run_session, tree: Path) -> None:
    d, secret = tree / "dir", tree / "dir" / "secret.txt"
    r = run_session(py(f"""
        import os, socket, array
        D, T = {str(d)!r}, {str(secret)!r}
        os.close(os.open("/proc/self/root" + T, os.O_RDONLY))
        dfd = os.open(D, os.O_RDONLY | os.O_DIRECTORY)
        os.close(os.open(f"/dev/fd/{{dfd}}/secret.txt", os.O_RDONLY))
        pfd = os.open(T, os.O_PATH)
        os.close(os.open(f"/proc/self/fd/{{pfd}}", os.O_RDONLY))
        os.close(os.open({str(tree / "link")!r}, os.O_RDONLY))
        os.close(os.open({str(tree / "hard")!r}, os.O_RDONLY))
        # a dirfd received over SCM_RIGHTS: the collector never saw it opened
        a, b = socket.socketpair(socket.AF_UNIX)
        tmp = os.open(D, os.O_RDONLY | os.O_DIRECTORY)
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [tmp]))])
        os.close(tmp)
        _msg, anc, _f, _a = b.recvmsg(1, socket.CMSG_SPACE(4))
        rfd = array.array("i", anc[0][2][:4])[0]
        os.close(os.open("secret.txt", os.O_RDONLY, dir_fd=rfd))
        os.fchdir(rfd)
        os.close(os.open("./secret.txt", os.O_RDONLY))
    """))
    assert r.exit_status == 0
    cases = {
        "/proc/self/root" + str(secret): secret,
        "/dev/fd/{}/secret.txt": secret,
        "/proc/self/fd/{}": secret,
        str(tree / "link"): secret,
        str(tree / "hard"): tree / "hard",
        "secret.txt": secret,
        "./secret.txt": secret,
    }
    opens = r.of("open")
    for raw, want in cases.items():
        if "{}" in raw:
            prefix = raw.split("{}")[0]
            evs = [e for e in opens if e.raw_path.startswith(prefix) and e.ret >= 0
                   and e.raw_path.endswith(raw.split("{}")[1])
                   and e.raw_path[len(prefix):].split("/")[0].isdigit()]
        else:
            evs = _opens(r, raw)
        assert evs, f"no open event for {raw!r}"
        ev = evs[-1]
        assert ev.path == str(want), (raw, ev.path)
        _same_file(ev, secret)


def test_bind_mount_in_a_private_mount_namespace(run_session, tree: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    mnt = tree / "mnt"
    mnt.mkdir()
    secret = tree / "dir" / "secret.txt"
    r = run_session(["unshare", "-m", "--propagation", "private", "sh", "-c",
                     f"mount --bind {tree / 'dir'} {mnt} && cat {mnt}/secret.txt"])
    assert r.exit_status == 0
    (ev,) = _opens(r, f"{mnt}/secret.txt")
    assert ev.path == f"{mnt}/secret.txt"  # the caller's view: its own mount namespace
    _same_file(ev, secret)


def test_pseudo_files_and_the_root(run_session, tree: Path) -> None:
    r = run_session(py("""
        import os
        rd, wr = os.pipe()
        os.close(os.open(f"/proc/self/fd/{rd}", os.O_RDONLY))
        os.close(os.open("/", os.O_RDONLY))
        m = os.memfd_create("aw-memfd")
        os.close(os.open(f"/proc/self/fd/{m}", os.O_RDONLY))
    """))
    assert r.exit_status == 0
    opens = [e for e in r.of("open") if e.ret >= 0]
    (pipe,) = [e for e in opens if e.file_type == "fifo"]
    st_ino = pipe.ino
    assert pipe.path == f"pipe:[{st_ino}]" and "disconnected" in pipe.resolve_flags
    (root,) = [e for e in opens if e.raw_path == "/"]
    assert root.path == "/" and root.file_type == "dir"
    assert (root.dev, root.ino) == (os.stat("/").st_dev, os.stat("/").st_ino)
    (memfd,) = [e for e in opens if e.path.startswith("/memfd:aw-memfd")]
    assert memfd.path == "/memfd:aw-memfd"  # d_path adds " (deleted)": a flag here
    assert set(memfd.resolve_flags) == {"disconnected", "deleted"}


def test_deep_and_non_utf8_paths(run_session, tmp_path: Path) -> None:
    # a path of about 4,000 bytes in 2-byte components (past the walk's step bound) and a
    # name that is not UTF-8
    depth = 1990
    rel = "/".join(["d"] * depth)
    base = tmp_path
    script = f"""
        import os
        os.chdir({str(base)!r})
        for _ in range({depth}):
            os.mkdir("d"); os.chdir("d")
        fd = os.open("f", os.O_WRONLY | os.O_CREAT, 0o600); os.close(fd)
        os.chdir({str(base)!r})
        fd = os.open({str(base)!r}.encode() + b"/\\xff\\xfe-name", os.O_WRONLY | os.O_CREAT)
        os.close(fd)
        fd = os.open({rel!r} + "/f", os.O_RDONLY); os.close(fd)
    """
    r = run_session(py(script))
    assert r.exit_status == 0, r
    (bad,) = [e for e in r.of("open") if e.raw_path.endswith("-name") and e.ret >= 0]
    assert bad.path == f"{base}/\\xff\\xfe-name" and bad.resolved
    (deep,) = [e for e in r.of("open") if e.raw_path == rel + "/f" and e.ret >= 0]
    assert "truncated" in deep.resolve_flags and not deep.resolved
    assert deep.path == f"{base}/{rel}/f"  # user space's join of the string
    st = os.stat(f"{base}/{rel}/f") if len(f"{base}/{rel}/f") < 4096 else None
    if st is not None:
        assert (deep.dev, deep.ino) == (st.st_dev, st.st_ino)
    subprocess.run(["rm", "-rf", str(base / "d")], check=False)


def test_failed_opens_keep_the_callers_string(run_session, tmp_path: Path) -> None:
    r = run_session(py(f"""
        import os
        try:
            os.open({str(tmp_path / "missing")!r}, os.O_RDONLY)
        except FileNotFoundError:
            pass
    """))
    (ev,) = [e for e in r.of("open") if e.raw_path == str(tmp_path / "missing")]
    assert ev.ret == -2 and not ev.resolved and ev.path == str(tmp_path / "missing")
    assert ev.dev is None and ev.ino is None and ev.resolve_flags == []


# ------------------------------------------------------------------------------ enforce

@pytest.fixture(scope="module")
def decoys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("aw-resolve-enforce")
    (d / "decoy.txt").write_text("bait\n")
    (d / "decoys").mkdir()
    (d / "decoys" / "inner.txt").write_text("bait\n")
    (d / "decoys" / "sub").mkdir()
    (d / "decoys" / "sub" / "deep.txt").write_text("bait\n")
    os.link(d / "decoy.txt", d / "hard")
    os.link(d / "decoys" / "sub" / "deep.txt", d / "hard-deep")
    os.symlink(d / "decoy.txt", d / "link")
    return d


@pytest.fixture(scope="module")
def enforcing(decoys: Path):  # type: ignore[no-untyped-def]
    from tests.conftest import bpf_unavailable

    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from detectors.config import parse
    from service.pipeline import Collector
    from service.sinks import MemorySink

    config = parse({"mode": "enforce", "detectors": {
        "canary_touch": {"paths": [str(decoys / "decoy.txt"), str(decoys / "decoys/**")]},
    }}, "<test>")
    alerts, events = MemorySink(), MemorySink()
    c = Collector([events], detection=config, alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    yield c, alerts, events
    c.close()


ENFORCE_CASES = {
    "hardlink": ("{d}/hard", "{d}/hard"),
    "hardlink_below_dir": ("{d}/hard-deep", "{d}/hard-deep"),
    "symlink": ("{d}/link", "{d}/decoy.txt"),
    "proc_root": ("/proc/self/root{d}/decoy.txt", "{d}/decoy.txt"),
    "dev_fd": ("DIRFD:decoys/inner.txt", "{d}/decoys/inner.txt"),
}


@pytest.mark.parametrize("case", sorted(ENFORCE_CASES))
def test_other_names_of_a_decoy_are_killed_at_the_opens_exit(enforcing, decoys: Path,
                                                             case: str) -> None:
    from service.run import run

    c, alerts, events = enforcing
    name, want = (x.format(d=decoys) for x in ENFORCE_CASES[case])
    out = decoys / f"out-{case}"
    out.unlink(missing_ok=True)
    if name.startswith("DIRFD:"):
        opener = (f"dfd = os.open({str(decoys)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
                  f"name = f'/dev/fd/{{dfd}}/{name[6:]}'\n")
    else:
        opener = f"name = {name!r}\n"
    script = decoys / f"{case}.py"
    script.write_text("import os\n" + opener +
                      "fd = os.open(name, os.O_RDONLY)\n"
                      f"open({str(out)!r}, 'w').write('read: ' + os.read(fd, 100).decode())\n")
    r = run([PY, str(script)], collector=c)
    assert r.exit_status == 128 + 9, f"{case}: not killed (exit {r.exit_status})"
    assert not out.exists(), f"{case}: the process read the decoy and ran on"
    killed = [e for e in events.session(r.session) if e.kernel_kill]
    assert [(e.kind, e.kernel_kill) for e in killed] == [("open", "canary_touch")], killed
    ev = killed[0]
    assert ev.path == want and ev.resolved and ev.ino is not None
    got = [a for a in alerts.events if a.session == r.session
           and a.detector == "canary_touch" and (a.event or {}).get("kernel_kill")]
    assert got and got[0].action["by"] == "kernel"
    assert got[0].action["result"].startswith("kernel: SIGKILL at the exit of openat")


def test_an_unrelated_file_is_not_killed(enforcing, decoys: Path) -> None:
    from service.run import run

    c, _alerts, events = enforcing
    (decoys / "fine.txt").write_text("ok\n")
    r = run([PY, "-c", f"print(open({str(decoys / 'fine.txt')!r}).read())"], collector=c)
    assert r.exit_status == 0
    assert not [e for e in events.session(r.session) if e.kernel_kill]


def test_probes_load_with_resolution_compiled_out() -> None:
    """A kernel without BTF: the loader passes -DAW_NO_BTF (btf.cflags_or_fallback) and
    the probes still load; their records say no_btf (tests/test_resolve_unit.py)."""
    from probes import btf
    from probes.loader import ProbeConfig, load
    from tests.conftest import bpf_unavailable

    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    flags, why = btf.cflags_or_fallback(path="/nonexistent/vmlinux")
    assert flags == ["-DAW_NO_BTF"] and why
    probes = load(ProbeConfig(concerns=("proc", "file"), extra_cflags=flags))
    probes.close()


def test_user_space_detectors_judge_the_resolved_path(enforcing, decoys: Path) -> None:
    """Kernel enforcement off: canary_touch (user space) sees the decoy reached through a
    symlink and /proc/self/root, and its alert names the resolved path."""
    from service.run import run

    c, alerts, _events = enforcing
    config = c.analyzer.engine.config
    config.kernel_enforcement = False
    c.apply_policy()
    try:
        code = (f"import os\nos.close(os.open({str(decoys / 'link')!r}, os.O_RDONLY))\n"
                f"os.close(os.open('/proc/self/root' + {str(decoys / 'decoys/inner.txt')!r},"
                " os.O_RDONLY))\nimport time; time.sleep(30)\n")
        r = run([PY, "-c", code], collector=c)
    finally:
        config.kernel_enforcement = True
        c.apply_policy()
    got = [a for a in alerts.events if a.session == r.session and a.detector == "canary_touch"]
    assert got, "no canary_touch alert"
    paths = {a.fields.get("path") for a in got} | {(a.event or {}).get("path") for a in got}
    assert str(decoys / "decoy.txt") in paths or str(decoys / "decoys/inner.txt") in paths
    assert got[0].action["by"] == "user space"
