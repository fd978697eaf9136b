"""End to end with a real sandbox: bubblewrap under `agentwatch run`.

The sandboxed command runs in new pid, mount and other namespaces; its events must still
be in the session, with host pids, and the fork return values seen inside the sandbox's
pid namespace must differ from the host pids.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]


@pytest.fixture
def bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        from tests.conftest import bpf_unavailable
        bpf_unavailable("bubblewrap is not installed (make setup installs it)")
    return str(path)


def test_bubblewrap_payload_is_watched_with_host_pids(run_session, bwrap: str,
                                                      tmp_path: Path) -> None:
    secret = tmp_path / "inside.txt"
    secret.write_text("x")
    r = run_session([
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
        "/bin/sh", "-c", f"cat {secret} >/dev/null; /bin/true",
    ])
    assert r.exit_status == 0
    execs = {e.filename: e for e in r.of("exec") if e.ret == 0}
    assert {"/bin/sh", "/bin/true"} <= set(execs) and any(
        f.endswith("/cat") for f in execs)
    opened = [e for e in r.of("open") if e.path == str(secret)]
    assert opened and opened[0].ret >= 0
    # Inside the new pid namespace, fork() returns small namespace pids while child_pid
    # is the host pid the events carry.
    inner = [f for f in r.of("fork") if f.pid == execs["/bin/sh"].pid and not f.thread]
    assert inner, "the sandboxed shell forked cat"
    assert all(f.ret != f.child_pid for f in inner)
    assert any(e.pid == inner[0].child_pid for e in r.of("exec"))
    # The sandbox's own setup is in the session too (bwrap's clone with CLONE_NEWPID).
    newpid = 0x20000000
    assert any(f.clone_flags & newpid for f in r.of("fork"))
