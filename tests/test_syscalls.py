"""Root tests of the generic syscall probe (sys.bpf.c + probes/syscalls.py): for every syscall of
the table, a small real workload makes the call (through libc's syscall(), so that the
syscall is exactly the one meant) and the test finds its event with its arguments and its
return value, failed attempts included. Only loopback addresses are ever used.

Syscall numbers for the workloads come from the kernel headers when they are installed
(an independent source; the table is checked against them in test_sys_decode.py), with
the few syscalls newer than Debian 12's headers written down here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from probes import syscalls
from tests.conftest import busy_outsider
from tests.syscall_workload import calls, ok, one, py

pytestmark = pytest.mark.bpf


# ------------------------------------------------------------------------------ files


def test_file_syscalls(run_session, tmp_path: Path) -> None:
    d = str(tmp_path)
    r = run_session(py(f"""
        d = {d!r}
        fd = sc("creat", d + "/c", 0o4755); assert fd >= 0, fd; os.close(fd)
        assert sc("unlink", d + "/missing") == -2
        assert sc("unlink", d + "/c") == 0
        assert sc("mkdir", d + "/m", 0o700) == 0
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        assert sc("mkdirat", dfd, "m2", 0o755) == 0
        assert sc("unlinkat", -100, d + "/m2", 0x200) == 0
        assert sc("rmdir", d + "/m") == 0
        assert sc("rmdir", d + "/m") == -2
        open(d + "/f", "w").close()
        open(d + "/h", "w").close()
        assert sc("rename", d + "/f", d + "/g") == 0
        assert sc("renameat", -100, d + "/missing", -100, d + "/z") == -2
        assert sc("renameat2", -100, d + "/g", -100, d + "/h", 1) == -17
        assert sc("chmod", d + "/g", 0o2755) == 0
        fd = os.open(d + "/g", os.O_RDWR)
        assert sc("fchmod", fd, 0o4711) == 0
        assert sc("fchmodat", -100, d + "/g", 0o644) == 0
        assert sc("fchmodat2", -100, d + "/g", 0o600, 0x100) == 0
        assert os.stat(d + "/g").st_mode & 0o7777 == 0o600
        assert sc("chown", d + "/g", 0, 0) == 0
        assert sc("lchown", d + "/g", -1, 0) == 0
        assert sc("fchown", fd, 65534, 65534) == 0
        assert sc("fchownat", -100, d + "/g", 0, 0, 0x100) == 0
        assert sc("link", d + "/g", d + "/hard") == 0
        assert sc("linkat", -100, d + "/g", -100, d + "/hard", 0) == -17
        assert sc("symlink", "target-text", d + "/sym") == 0
        assert sc("symlinkat", "t2", -100, d + "/sym") == -17
        assert sc("truncate", d + "/g", 10) == 0
        assert sc("truncate", d + "/missing", 0) == -2
        assert sc("ftruncate", fd, 0) == 0
        assert sc("setxattr", d + "/g", "user.aw", b"v1", 2, 0) == 0
        assert sc("lsetxattr", d + "/g", "user.aw", b"v2", 2, 2) == 0
        assert sc("fsetxattr", fd, "user.aw3", b"v3", 2, 1) == 0
        value = buf(b"v4")
        xattr_args = buf(struct.pack("QII", ctypes.addressof(value), 2, 0))
        assert sc("setxattrat", -100, d + "/g", 0, "user.aw4", xattr_args, 16) == 0
        assert os.getxattr(d + "/g", "user.aw4") == b"v4"
        assert sc("chdir", d + "/missing") == -2
        assert sc("chdir", d) == 0
        assert sc("unlink", "rel-missing") == -2       # relative to the new cwd
        os.mkdir(d + "/sub")
        sub = os.open(d + "/sub", os.O_RDONLY | os.O_DIRECTORY)
        assert sc("fchdir", sub) == 0
        assert sc("mkdirat", -100, "../from-sub", 0o700) == 0  # cwd from fchdir
        assert sc("fchdir", dfd) == 0
        json.dump({{"dfd": dfd, "fd": fd}}, open(d + "/out.json", "w"))
    """))
    ok(r)
    out = json.loads((tmp_path / "out.json").read_text())
    dfd, fd = out["dfd"], out["fd"]

    e = one(r, "creat", path=f"{d}/c")
    assert e.ret >= 3 and e.args == {"path": f"{d}/c", "mode": 0o4755, "setuid": True,
                                     "setgid": False}
    assert one(r, "unlink", path=f"{d}/missing").error == "ENOENT"
    assert one(r, "unlink", path=f"{d}/c").ret == 0
    assert one(r, "mkdir", path=f"{d}/m").args["mode"] == 0o700
    e = one(r, "mkdirat", path="m2")
    assert e.args == {"dfd": dfd, "path": "m2", "mode": 0o755} and e.ret == 0
    e = one(r, "unlinkat", path=f"{d}/m2")
    assert e.args["dfd"] == "AT_FDCWD" and e.args["flags"] == ["AT_REMOVEDIR"] and e.ret == 0
    assert [e.error for e in calls(r, "rmdir", path=f"{d}/m")] == [None, "ENOENT"]
    e = one(r, "rename", ret=0)
    assert (e.path, e.path2) == (f"{d}/f", f"{d}/g")
    e = one(r, "renameat")
    assert e.error == "ENOENT" and e.args["olddfd"] == "AT_FDCWD" and e.path2 == f"{d}/z"
    e = one(r, "renameat2")
    assert e.error == "EEXIST" and e.args["flags"] == ["RENAME_NOREPLACE"]
    e = one(r, "chmod")
    assert e.args["mode"] == 0o2755 and e.args["setgid"] is True and e.args["setuid"] is False
    e = one(r, "fchmod")
    assert e.args == {"fd": fd, "mode": 0o4711, "setuid": True, "setgid": False}
    assert one(r, "fchmodat").args["mode"] == 0o644
    e = one(r, "fchmodat2")
    assert e.ret == 0 and e.args["flags"] == ["AT_SYMLINK_NOFOLLOW"] and e.path == f"{d}/g"
    assert one(r, "chown").args == {"path": f"{d}/g", "uid": 0, "gid": 0}
    assert one(r, "lchown").args["uid"] == -1  # (uid_t)-1: unchanged
    assert one(r, "fchown").args == {"fd": fd, "uid": 65534, "gid": 65534}
    assert one(r, "fchownat").args["flags"] == ["AT_SYMLINK_NOFOLLOW"]
    e = one(r, "link")
    assert (e.path, e.path2, e.ret) == (f"{d}/g", f"{d}/hard", 0)
    assert one(r, "linkat").error == "EEXIST"
    e = one(r, "symlink")
    assert e.args["target"] == "target-text" and e.path == f"{d}/sym" and e.path2 is None
    e = one(r, "symlinkat")
    assert e.error == "EEXIST" and e.args == {"target": "t2", "newdfd": "AT_FDCWD",
                                              "linkpath": f"{d}/sym"}
    assert one(r, "truncate", path=f"{d}/g").args["length"] == 10
    assert one(r, "truncate", path=f"{d}/missing").error == "ENOENT"
    assert one(r, "ftruncate").args == {"fd": fd, "length": 0}
    e = one(r, "setxattr")
    assert e.args == {"path": f"{d}/g", "name": "user.aw", "size": 2, "flags": []}
    assert one(r, "lsetxattr").args["flags"] == ["XATTR_REPLACE"]
    e = one(r, "fsetxattr")
    assert e.args["name"] == "user.aw3" and e.args["flags"] == ["XATTR_CREATE"]
    e = one(r, "setxattrat")
    assert e.ret == 0 and e.args["name"] == "user.aw4" and e.path == f"{d}/g"
    assert one(r, "chdir", path=f"{d}/missing").error == "ENOENT"
    assert one(r, "chdir", path=d).ret == 0
    assert [e.args for e in calls(r, "fchdir")][-1] == {"fd": dfd}
    # Relative paths made absolute from the cwd the session's chdir/fchdir set; the
    # argument keeps the path exactly as passed.
    (e,) = [e for e in calls(r, "unlink") if e.path == f"{d}/rel-missing"]
    assert e.args["path"] == "rel-missing" and e.error == "ENOENT"
    (e,) = [e for e in calls(r, "mkdirat") if e.path == f"{d}/from-sub"]
    assert e.args["path"] == "../from-sub" and e.ret == 0
    assert not [e for e in r.of("syscall") if e.fault]


# ------------------------------------------------------------------------------ mounts


def test_namespace_and_mount_syscalls(run_session, tmp_path: Path) -> None:
    d = str(tmp_path)
    for sub in ("mnt", "mnt2", "ro", "src"):
        (tmp_path / sub).mkdir()
    r = run_session(py(f"""
        d = {d!r}
        assert sc("unshare", 0x20000) == 0                          # CLONE_NEWNS
        assert sc("mount", None, "/", None, 0x4000 | 0x40000, None) == 0  # MS_REC|MS_PRIVATE
        assert sc("unshare", 0x4000000) == 0                        # CLONE_NEWUTS
        assert sc("mount", "aw-tmpfs", d + "/mnt", "tmpfs", 0, "size=1m") == 0
        assert sc("mount", "none", d + "/missing", "tmpfs", 0, None) == -2
        assert sc("mount", d + "/ro", d + "/ro", None, 0x1000, None) == 0
        assert sc("mount", None, d + "/ro", None, 0x1000 | 0x20 | 0x1, None) == 0
        assert sc("mkdir", d + "/ro/x", 0o755) == -30               # EROFS
        assert sc("mkdir", "/proc/aw-x", 0o755) == -2
        assert sc("umount2", d + "/mnt", 2) == 0                    # MNT_DETACH
        assert sc("umount2", d + "/src", 0) == -22                  # not a mount point
        fs = sc("fsopen", "tmpfs", 1); assert fs >= 0, fs
        assert sc("fsconfig", fs, 6, None, None, 0) == 0             # FSCONFIG_CMD_CREATE
        mfd = sc("fsmount", fs, 1, 0x4); assert mfd >= 0, mfd        # MOUNT_ATTR_NODEV
        assert sc("move_mount", mfd, "", -100, d + "/mnt2", 4) == 0  # F_EMPTY_PATH
        assert sc("fsopen", "aw-nofs", 0) == -19                     # ENODEV
        t = sc("open_tree", -100, d + "/src", 1 | 0x80000); assert t >= 0, t
        attr = buf(struct.pack("4Q", 1, 0, 0, 0))                    # MOUNT_ATTR_RDONLY
        t2 = sc("open_tree_attr", -100, d + "/src", 1 | 0x80000, attr, 32)
        assert t2 >= 0 or t2 == -38, t2
        assert sc("mount_setattr", -100, d + "/mnt2", 0, attr, 32) == 0
        pr = sc("pivot_root", d + "/mnt2", d + "/ro")  # put_old not under new_root
        assert pr == -22, pr
        ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        assert sc("setns", ns, 0x40000000) == 0                      # CLONE_NEWNET
        def jail():
            assert sc("chroot", d + "/missing") == -2
            assert sc("chroot", d) == 0
        child(jail)
        json.dump({{"ns": ns, "fs": fs, "mfd": mfd}}, open(d + "/out.json", "w"))
    """))
    ok(r)
    out = json.loads((tmp_path / "out.json").read_text())

    assert one(r, "unshare", flags=["CLONE_NEWNS"]).ret == 0
    assert one(r, "unshare", flags=["CLONE_NEWUTS"]).ret == 0
    e = one(r, "mount", path="/")
    assert e.args == {"source": None, "target": "/", "fstype": None,
                      "flags": ["MS_REC", "MS_PRIVATE"]} and e.ret == 0
    e = one(r, "mount", path=f"{d}/mnt")
    assert e.args["fstype"] == "tmpfs" and e.path2 == "aw-tmpfs" and e.ret == 0
    assert one(r, "mount", path=f"{d}/missing").error == "ENOENT"
    bind, remount = calls(r, "mount", path=f"{d}/ro")
    assert bind.args["flags"] == ["MS_BIND"] and bind.path2 == f"{d}/ro"
    assert remount.args["flags"] == ["MS_RDONLY", "MS_REMOUNT", "MS_BIND"]
    assert one(r, "mkdir", path=f"{d}/ro/x").error == "EROFS"
    assert one(r, "mkdir", path="/proc/aw-x").error == "ENOENT"
    e = one(r, "umount2", path=f"{d}/mnt")
    assert e.args["flags"] == ["MNT_DETACH"] and e.ret == 0
    assert one(r, "umount2", path=f"{d}/src").error == "EINVAL"
    e = one(r, "pivot_root")
    assert e.error == "EINVAL" and (e.path, e.path2) == (f"{d}/mnt2", f"{d}/ro")
    e = one(r, "fsopen", fsname="tmpfs")
    assert e.ret == out["fs"] and e.args["flags"] == ["FSOPEN_CLOEXEC"]
    assert one(r, "fsopen", fsname="aw-nofs").error == "ENODEV"
    e = one(r, "fsmount")
    assert e.args == {"fs_fd": out["fs"], "flags": ["FSMOUNT_CLOEXEC"],
                      "attr_flags": ["MOUNT_ATTR_NODEV"]} and e.ret == out["mfd"]
    e = one(r, "move_mount")
    assert e.args["from_dfd"] == out["mfd"] and e.args["from_path"] == ""
    assert e.path2 == f"{d}/mnt2" and e.args["flags"] == ["MOVE_MOUNT_F_EMPTY_PATH"]
    assert e.ret == 0
    e = one(r, "open_tree")
    assert e.args["flags"] == ["OPEN_TREE_CLONE", "OPEN_TREE_CLOEXEC"] and e.ret >= 0
    e = one(r, "open_tree_attr")
    assert e.args["attr_set"] == ["MOUNT_ATTR_RDONLY"] and e.path == f"{d}/src"
    e = one(r, "mount_setattr")
    assert e.ret == 0 and e.path == f"{d}/mnt2" and e.args["attr_set"] == ["MOUNT_ATTR_RDONLY"]
    e = one(r, "setns")
    assert e.args == {"fd": out["ns"], "nstype": ["CLONE_NEWNET"]} and e.ret == 0
    assert one(r, "chroot", path=f"{d}/missing").error == "ENOENT"
    e = one(r, "chroot", path=d)
    assert e.ret == 0 and e.pid != r.root_pid  # made by the child


# ------------------------------------------------------------------------------ privilege


def test_privilege_syscalls(run_session) -> None:
    r = run_session(py("""
        def creds():
            rc = [sc("setuid", 0), sc("setgid", 0), sc("setreuid", -1, 0),
                  sc("setregid", -1, 0), sc("setresuid", -1, -1, -1),
                  sc("setresgid", -1, -1, -1), sc("setfsuid", 0), sc("setfsgid", 0)]
            assert rc == [0] * 8, rc
            hdr = buf(struct.pack("Ii", 0x20080522, 0))
            data = buf(bytes(24))
            assert sc("capget", hdr, data) == 0
            assert sc("capset", hdr, data) == 0
            assert sc("setresuid", 65534, 65534, 65534) == 0
            assert sc("setuid", 0) == -1                 # EPERM: no way back
            assert sc("capset", hdr, data) == -1         # EPERM: cannot raise them again
        child(creds)
    """))
    ok(r)
    assert [e.ret for e in calls(r, "setuid")] == [0, -1]
    assert calls(r, "setuid")[1].error == "EPERM" and calls(r, "setuid")[1].args == {"uid": 0}
    assert one(r, "setgid").args == {"gid": 0}
    assert one(r, "setreuid").args == {"ruid": -1, "euid": 0}
    assert one(r, "setregid").args == {"rgid": -1, "egid": 0}
    assert [e.args for e in calls(r, "setresuid")] == [
        {"ruid": -1, "euid": -1, "suid": -1}, {"ruid": 65534, "euid": 65534, "suid": 65534}]
    assert one(r, "setresgid").args == {"rgid": -1, "egid": -1, "sgid": -1}
    assert one(r, "setfsuid").args == {"uid": 0} and one(r, "setfsgid").args == {"gid": 0}
    good, bad = calls(r, "capset")
    assert good.ret == 0 and bad.error == "EPERM"
    assert good.args["version"] == "_LINUX_CAPABILITY_VERSION_3" and good.args["pid"] == 0
    assert "CAP_SYS_ADMIN" in good.args["effective"] and "CAP_BPF" in good.args["permitted"]
    assert good.args == bad.args


# ------------------------------------------------------------------------------ kernel


def test_kernel_syscalls(run_session, bpf_collector) -> None:
    from probes.loader import attached_syscalls

    collector, _ = bpf_collector
    attach = attached_syscalls(collector.bpf)
    assert attach is not None and not attach.failed
    r = run_session(py("""
        assert sc("bpf", 0, buf(bytes(72)), 72) == -22     # BPF_MAP_CREATE, map_type 0
        attr = buf(struct.pack("IIQ", 1, 64, 0) + bytes(48))  # PERF_TYPE_SOFTWARE, CPU_CLOCK
        pfd = sc("perf_event_open", attr, 0, -1, -1, 8)
        assert pfd >= 0, pfd
        sc("finit_module", 12345, "", 0)
        sc("init_module", None, 0, "")
        sc("delete_module", "aw_nomod", 0)
    """))
    ok(r)
    e = one(r, "bpf")
    assert e.args == {"cmd": "BPF_MAP_CREATE", "size": 72, "map_type": 0}
    assert e.error == "EINVAL"
    e = one(r, "perf_event_open")
    assert e.ret >= 0 and e.args["type"] == "PERF_TYPE_SOFTWARE" and e.args["config"] == 0
    assert e.args["pid"] == 0 and e.args["cpu"] == -1 and e.args["flags"] == [
        "PERF_FLAG_FD_CLOEXEC"]
    # Module syscalls exist only with CONFIG_MODULES, and so do their `syscalls:`
    # tracepoints; the raw dispatcher sees the attempt either way (ENOSYS without them).
    for name, want in (("finit_module", {"fd": 12345, "params": "", "flags": []}),
                       ("init_module", {"len": 0, "params": ""}),
                       ("delete_module", {"name": "aw_nomod", "flags": []})):
        assert name in attach.attached
        e = one(r, name)
        assert e.args == want and e.ret < 0


def test_attach_result_matches_the_kernel(bpf_collector) -> None:
    from probes.loader import attached_syscalls

    collector, _ = bpf_collector
    attach = attached_syscalls(collector.bpf)
    assert attach is not None
    # one raw tracepoint pair sees every number: nothing is missing, whatever `syscalls:`
    # tracepoints this kernel has
    assert set(attach.attached) == set(syscalls.BY_NAME)
    assert not attach.missing and not attach.failed


# ------------------------------------------------------------------------------ processes


def test_process_syscalls(run_session, tmp_path: Path) -> None:
    out_path = tmp_path / "out.json"
    r = run_session(py(f"""
        secret = buf(b"secret-in-child", 32)
        pid = os.fork()
        if pid == 0:
            while True:
                time.sleep(1)
        assert sc("ptrace", 16, pid, 0, 0) == 0              # PTRACE_ATTACH
        os.waitpid(pid, 0)
        assert sc("ptrace", 17, pid, 0, 0) == 0              # PTRACE_DETACH
        local = buf(bytes(32))
        liov = buf(struct.pack("QQ", ctypes.addressof(local), 15))
        riov = buf(struct.pack("QQ", ctypes.addressof(secret), 15))
        assert sc("process_vm_readv", pid, liov, 1, riov, 1, 0) == 15
        assert local.value == b"secret-in-child"
        assert sc("process_vm_writev", pid, liov, 1, riov, 1, 0) == 15
        assert sc("kill", pid, 0) == 0
        assert sc("tkill", pid, 0) == 0
        assert sc("tgkill", pid, pid, 18) == 0                # SIGCONT
        pidfd = sc("pidfd_open", pid, 0); assert pidfd >= 0
        assert sc("pidfd_send_signal", pidfd, 9, None, 0) == 0
        os.waitpid(pid, 0)
        memfd = sc("memfd_create", "aw-memfd", 3); assert memfd >= 0
        uffd = sc("userfaultfd", 0x80000)
        key = sc("keyctl", 0, -3, 0)          # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
        ring = sc("io_uring_setup", 4, buf(bytes(120)))
        master, slave = os.openpty()
        ch = buf(b"x")
        sti = sc("ioctl", slave, 0x5412, ch)                 # TIOCSTI
        sc("ioctl", slave, 0x5413, buf(bytes(8)))            # TIOCGWINSZ: not reported
        sti_hi = sc("ioctl", slave, 0x1_0000_5412, ch)       # the kernel sees TIOCSTI
        lnx = sc("ioctl", slave, 0x541C, buf(b"\\x02"))      # TIOCLINUX: fails on a pty
        json.dump(dict(pid=pid, pidfd=pidfd, memfd=memfd, uffd=uffd, key=key, ring=ring,
                       slave=slave, sti=sti, sti_hi=sti_hi, lnx=lnx),
                  open({str(out_path)!r}, "w"))
    """))
    ok(r)
    out = json.loads(out_path.read_text())
    pid = out["pid"]
    attach, detach = calls(r, "ptrace")
    assert attach.args == {"request": "PTRACE_ATTACH", "pid": pid, "addr": 0, "data": 0}
    assert attach.ret == 0 and detach.args["request"] == "PTRACE_DETACH"
    e = one(r, "process_vm_readv")
    assert e.args == {"pid": pid, "liovcnt": 1, "riovcnt": 1, "flags": 0} and e.ret == 15
    assert one(r, "process_vm_writev").args["pid"] == pid
    assert one(r, "kill").args == {"pid": pid, "sig": 0}
    assert one(r, "tkill").args == {"tid": pid, "sig": 0}
    assert one(r, "tgkill").args == {"tgid": pid, "tid": pid, "sig": "SIGCONT"}
    e = one(r, "pidfd_open")
    assert e.args == {"pid": pid, "flags": []} and e.ret == out["pidfd"]
    e = one(r, "pidfd_send_signal")
    assert e.args == {"pidfd": out["pidfd"], "sig": "SIGKILL", "flags": []} and e.ret == 0
    e = one(r, "memfd_create")
    assert e.args == {"name": "aw-memfd", "flags": ["MFD_CLOEXEC", "MFD_ALLOW_SEALING"]}
    assert e.ret == out["memfd"]
    e = one(r, "userfaultfd")  # may be refused (EPERM) on other hosts: the event shows it
    assert e.args == {"flags": ["O_CLOEXEC"]} and e.ret == out["uffd"]
    e = one(r, "keyctl")
    assert e.args == {"op": "KEYCTL_GET_KEYRING_ID", "key": -3} and e.ret == out["key"]
    e = one(r, "io_uring_setup")
    assert e.args == {"entries": 4, "setup_flags": []} and e.ret == out["ring"]
    ioctls = calls(r, "ioctl")
    assert [(e.args["cmd"], e.ret) for e in ioctls] == [
        ("TIOCSTI", out["sti"]), ("TIOCSTI", out["sti_hi"]), ("TIOCLINUX", out["lnx"])]
    assert ioctls[0].args == {"fd": out["slave"], "cmd": "TIOCSTI", "char": "x"}
    assert ioctls[2].args["subcode"] == 2 and ioctls[2].ret < 0


# ------------------------------------------------------------------------------ filtering


def test_unwatched_processes_cost_nothing_visible(bpf_collector, run_session,
                                                  tmp_path: Path) -> None:
    """An outsider making the same syscalls during a session never appears."""
    collector, sink = bpf_collector
    marker = tmp_path / "outsider"
    with busy_outsider(f"""
        import os, time
        end = time.time() + 1.5
        while time.time() < end:
            os.mkdir({str(marker)!r}); os.rmdir({str(marker)!r})
            try:
                os.unlink({str(marker)!r})
            except OSError:
                pass
    """) as outsider:
        r = run_session(py(f"""
            time.sleep(0.5)
            sc("unlink", {str(tmp_path / "session-marker")!r})
        """))
    collector.poll(10)
    assert r.exit_status == 0
    assert not [e for e in sink.events if e.pid == outsider.pid]
    assert not [e for e in sink.events if getattr(e, "path", None) == str(marker)]
    assert one(r, "unlink").error == "ENOENT"


SECCOMP_SCRIPT = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
# a classic-BPF seccomp filter, as sandboxes install: unshare and mount -> EPERM, the rest
# allowed (BPF_LD|W|ABS nr; JEQ; RET)
ins = [(0x20, 0, 0, 0),
       (0x15, 0, 1, 272), (0x06, 0, 0, 0x00050000 | 1),
       (0x15, 0, 1, 165), (0x06, 0, 0, 0x00050000 | 1),
       (0x06, 0, 0, 0x7fff0000)]
buf = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *i) for i in ins))
prog = struct.pack("<HxxxxxxQ", len(ins), ctypes.addressof(buf))
pbuf = ctypes.create_string_buffer(prog)
assert libc.prctl(38, 1, 0, 0, 0) == 0                    # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, pbuf, 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
r = libc.unshare(0x10000000)                               # CLONE_NEWUSER
print(r, ctypes.get_errno())
r = libc.mount(b"none", sys.argv[1].encode(), b"tmpfs", 0, None)
print(r, ctypes.get_errno())
"""


def test_calls_a_seccomp_filter_refuses_are_seen_at_exit(run_session, tmp_path: Path) -> None:
    """A sandbox's seccomp filter refuses unshare/mount before the syscall entry
    tracepoint: only sys_exit fires. The event must still be there, with its arguments
    (from the saved registers), its strings and the filter's EPERM."""
    out = tmp_path / "out"
    r = run_session(["/bin/sh", "-c", f'"$0" -c "$1" "$2" > {out}', sys.executable,
                     SECCOMP_SCRIPT, str(tmp_path)])
    assert r.exit_status == 0, out.read_text() if out.exists() else ""
    assert out.read_text().split() == ["-1", "1", "-1", "1"]  # both refused with EPERM
    e = one(r, "unshare")
    assert e.refused_at_entry and e.error == "EPERM"
    assert "CLONE_NEWUSER" in e.args["flags"]
    m = one(r, "mount")
    assert m.refused_at_entry and m.error == "EPERM"
    assert m.path == str(tmp_path) and m.args.get("fstype") == "tmpfs"
    # calls the filter let through are ordinary events
    assert not [e for e in r.of("syscall") if e.refused_at_entry
                and e.syscall not in ("unshare", "mount")]
