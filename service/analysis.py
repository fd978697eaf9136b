"""The live and offline analysis: the detector engine over events, with the views it needs.

`Analyzer` runs the detector engine over events, live (sharing the collector's process
table; `protect_self` adds this agentwatch's own pids and paths to monitor_tamper) or over
a recording (building its own table from the events, with no /proc reads).
"""

from __future__ import annotations

import os
from typing import Any

from collector.events import AlertEvent, Event, ExecEvent, SessionEvent
from collector.homes import host_homes, setenv_home
from collector.proctable import ProcessTable
from detectors.base import ProcView, SessionView
from detectors.config import Config
from detectors.engine import Engine


def protect_self(params: dict[str, Any], own_paths: list[str]) -> None:
    """monitor_tamper's view of this agentwatch: its pid and thread ids (signals, ptrace,
    /proc/<id>), and where it keeps its configuration, state, logs and sockets when they
    are not the default places (`own_paths`: the config file, the log directory; the run
    and state directories from the environment)."""
    from probes.kernel import state_dir
    from response.enforce import own_ids
    from service.paths import run_dir

    pids = params.get("monitor_pids")
    if isinstance(pids, list):
        for pid in sorted(own_ids()):
            if str(pid) not in pids:
                pids.append(str(pid))
    paths = params.get("paths")
    if isinstance(paths, list):
        for p in [*own_paths, str(run_dir()), str(state_dir())]:
            p = os.path.abspath(p)
            for pat in (p, p + "/**"):
                if pat not in paths:
                    paths.append(pat)


class Analyzer:
    """Detector engine + the views it needs (process, ancestry, session)."""

    def __init__(self, config: Config, table: ProcessTable | None = None,
                 live: bool = False, own_paths: list[str] | None = None) -> None:
        self.own_table = table is None
        self.live = live
        self.table = table if table is not None else ProcessTable(read_proc=False)
        self.sessions: dict[str, SessionView] = {}
        if live and "monitor_tamper" in config.detectors:
            protect_self(config.detectors["monitor_tamper"].params, own_paths or [])
        # `~/`: the host's homes, read here (at start and at each reload) when live; a
        # replay knows only each session's recorded HOME (and /root, /home/*)
        self.engine = Engine(config, proc=self._proc, ancestry=self._ancestry,
                             session=self._session, homes=host_homes() if live else ())

    def _proc(self, pid: int) -> ProcView | None:
        p = self.table.get(pid)
        if p is None:
            return None
        return ProcView(pid=p.pid, ppid=p.ppid, exe=p.exe, argv=p.argv, cwd=p.cwd,
                        comm=p.comm)

    def _ancestry(self, pid: int) -> list[dict[str, Any]]:
        return [p.brief() for p in self.table.ancestry(pid)]

    def _session(self, name: str) -> SessionView | None:
        return self.sessions.get(name)

    def feed(self, ev: Event) -> list[AlertEvent]:
        if isinstance(ev, SessionEvent) and ev.phase == "start" and ev.session:
            self.sessions[ev.session] = SessionView(ev.session, ev.session_kind,
                                                    ev.root_pid, ev.cwd,
                                                    tuple(ev.homes or ()))
            if self.own_table:
                self.table.add_root(ev.root_pid, ev.ppid, ev.session, ev.argv, ev.ts,
                                    uid=ev.uid, cwd=ev.cwd)
        elif self.own_table and not isinstance(ev, AlertEvent):
            self.table.observe(ev)
        if isinstance(ev, ExecEvent) and ev.ret == 0 and ev.session:
            self._root_exec(ev)
        alerts = self.engine.process(ev)
        if not self.live:
            for a in alerts:
                if a.action.get("taken") == "pending":
                    a.action = {**a.action, "taken": "none",
                                "result": f"replay: would {a.action['requested']} the session"}
        if isinstance(ev, SessionEvent) and ev.phase == "end" and ev.session:
            self.sessions.pop(ev.session, None)
        return alerts

    def _root_exec(self, ev: ExecEvent) -> None:
        """A launcher session whose root was gone before its start could read /proc (a
        sandbox that ran for milliseconds) has no argv there: the root's own exec event
        still carries the `--setenv HOME DIR` it gives the sandbox."""
        view = self.sessions.get(ev.session or "")
        if view is None or view.root_pid != ev.pid:
            return
        home = setenv_home(ev.argv)
        if home and home.startswith("/") and home not in view.homes:
            view.homes = (*view.homes, home.rstrip("/") or "/")

    def finish(self) -> list[AlertEvent]:
        return self.engine.flush()
