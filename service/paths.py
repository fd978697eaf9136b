"""Where this agentwatch keeps its sockets: the run directory (`/run/agentwatch`, or
`$AGENTWATCH_RUN_DIR`), shared by the control socket, the streams and monitor_tamper."""

from __future__ import annotations

import os
from pathlib import Path

RUN_DIR_ENV = "AGENTWATCH_RUN_DIR"


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV, "/run/agentwatch"))
