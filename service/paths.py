"""Where this agentwatch keeps its sockets: the run directory (`/run/agentwatch`, or
`$AGENTWATCH_RUN_DIR`), shared by the control socket, the streams and monitor_tamper."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

RUN_DIR_ENV = "AGENTWATCH_RUN_DIR"


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV, "/run/agentwatch"))


PIN_ROOT_ENV = "AGENTWATCH_PIN_ROOT"


def pin_root() -> str | None:
    """Where the daemon and `run` pin the probes (`$AGENTWATCH_PIN_ROOT`; "off": nowhere,
    every load private)."""
    root = os.environ.get(PIN_ROOT_ENV, "/sys/fs/bpf/agentwatch")
    return None if root in ("", "off") else root


def pin_state() -> Path:
    """The pins' descriptions and the reader's lock (bpffs holds no files)."""
    return run_dir() / "pins"


def pinned_probe_config(wait: float) -> Any:
    """A probes.loader.ProbeConfig that pins (None where pinning is off or the rings
    cannot be read from their pages here, which a re-used set needs)."""
    from collector import ringbuf
    from probes.loader import ProbeConfig

    root = pin_root()
    if root is None or not ringbuf.supported():
        return None
    return ProbeConfig(pin_root=root, pin_state=str(pin_state()), pin_wait=wait)
