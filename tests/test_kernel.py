"""Unit tests of the host preparation helpers (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

from probes import kernel


def _fake_headers(src: Path, version: str) -> tuple[Path, Path]:
    common = src / f"linux-headers-{version}-common"
    arch = src / f"linux-headers-{version}-{kernel._DEB_ARCH.get(os.uname().machine, 'amd64')}"
    (common / "include/linux").mkdir(parents=True)
    (common / "include/linux/sched.h").write_text("common sched")
    (common / "include/linux/only_common.h").write_text("c")
    (arch / "include/generated").mkdir(parents=True)
    (arch / "include/generated/autoconf.h").write_text("arch autoconf")
    (arch / "include/linux").mkdir(parents=True)
    (arch / "include/linux/sched.h").write_text("arch sched")  # arch-specific wins
    lib = src / "kbuild-scripts"
    lib.mkdir(exist_ok=True)
    (lib / "tool").write_text("t")
    (arch / "scripts").symlink_to(lib)  # Debian links scripts/ into linux-kbuild
    return common, arch


def test_newest_pair_is_found(tmp_path: Path) -> None:
    _fake_headers(tmp_path, "6.1.0-9")
    common, arch = _fake_headers(tmp_path, "6.1.0-57")
    assert kernel.find_distribution_headers(tmp_path) == (common, arch)
    assert kernel.find_distribution_headers(tmp_path / "none") is None


def test_merge_overlays_arch_on_common(tmp_path: Path) -> None:
    common, arch = _fake_headers(tmp_path / "src", "6.1.0-57")
    dest = tmp_path / "merged"
    kernel._merge_tree(common, arch, dest)
    assert (dest / "include/linux/sched.h").read_text() == "arch sched"
    assert (dest / "include/linux/only_common.h").read_text() == "c"
    assert (dest / "include/generated/autoconf.h").read_text() == "arch autoconf"
    assert (dest / "scripts/tool").read_text() == "t"
    assert not list(tmp_path.glob("merged.tmp*")), "temporary tree left behind"
    # A second merge into an existing tree keeps it (idempotent, no error).
    kernel._merge_tree(common, arch, dest)
    assert (dest / "include/linux/sched.h").read_text() == "arch sched"


def test_state_dir_from_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTWATCH_STATE_DIR", str(tmp_path))
    assert kernel.state_dir() == tmp_path
    monkeypatch.delenv("AGENTWATCH_STATE_DIR")
    assert kernel.state_dir() == Path("/var/lib/agentwatch")
