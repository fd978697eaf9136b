"""The `agentwatch` command line. Thin: parse, call the library, turn errors into messages."""

from __future__ import annotations

import signal
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from probes.kernel import SetupError
from service.sinks import SinkError

if TYPE_CHECKING:
    from detectors.config import Config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Runtime monitor for sandboxed AI agents (eBPF).")
config_app = typer.Typer(no_args_is_help=True, help="Check or print the configuration.")
app.add_typer(config_app, name="config")
session_app = typer.Typer(no_args_is_help=True,
                          help="List running sessions; freeze, thaw or kill one.")
app.add_typer(session_app, name="session")
sensor_app = typer.Typer(no_args_is_help=True,
                         help="The pinned probes (kernel rules that outlive the daemon).")
app.add_typer(sensor_app, name="sensor")


class Mode(StrEnum):
    monitor = "monitor"
    enforce = "enforce"


EventsOpt = Annotated[str | None, typer.Option(
    "--events", metavar="FILE|-", help="Write events as JSON Lines to FILE (- = stdout).")]
AlertsOpt = Annotated[str | None, typer.Option(
    "--alerts", metavar="FILE|-",
    help="Write alerts as JSON Lines to FILE (- = stdout); default: one line each on stderr.")]
ConfigOpt = Annotated[str | None, typer.Option(
    "--config", metavar="FILE", help="TOML configuration (default: built-in defaults).")]
ModeOpt = Annotated[Mode | None, typer.Option(
    "--mode", help="Override the configuration's mode.")]


class EventsLevel(StrEnum):
    interest = "interest"
    all = "all"


EventsLevelOpt = Annotated[EventsLevel, typer.Option(
    "--events-level",
    help="interest: opens no enabled detector can use (read-only, below system roots or "
         "the workspace) are counted in the kernel and reported as `summary` events; "
         "all: every event is sent, with a 64 MiB ring (full recording).")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"agentwatch: {message}", err=True)
    return typer.Exit(code)


def _detection(config: str | None, mode: Mode | None) -> Config:
    from detectors.config import ConfigError, load

    try:
        cfg = load(config)
    except ConfigError as e:
        raise _fail(f"bad configuration: {e}", 2) from None
    if mode is not None:
        cfg.mode = mode.value
    return cfg


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    command: Annotated[list[str] | None, typer.Argument(help="CMD [ARGS...] after --")] = None,
    events: EventsOpt = None,
    alerts: AlertsOpt = None,
    config: ConfigOpt = None,
    mode: ModeOpt = None,
    cgroup: Annotated[bool, typer.Option(
        "--cgroup/--no-cgroup",
        help="Put CMD in a cgroup v2 of its own (kill and freeze whole, egress programs) "
             "where the host allows it.")] = True,
    ebpf: Annotated[bool, typer.Option("--ebpf", hidden=True,
                                       help="Print the BPF C program and exit.")] = False,
    events_level: EventsLevelOpt = EventsLevel.interest,
) -> None:
    """Run CMD as a watched session; exit with CMD's status (128+N if killed by signal N)."""
    from probes import loader

    if ebpf:
        typer.echo(loader.source())
        raise typer.Exit(0)
    from service import run as runmod
    from service.proctitle import hide_command

    detection = _detection(config, mode)
    hide_command()  # the session's own `pkill -f PATTERN` must not match agentwatch
    try:
        code = runmod.main(list(command or []), events, detection, alerts, cgroup, config,
                           events_level.value)
    except runmod.RunError as e:
        raise _fail(str(e), e.code) from None
    except (SetupError, SinkError) as e:
        raise _fail(str(e), 1) from None
    raise typer.Exit(code)


@app.command()
def daemon(
    events: EventsOpt = None,
    alerts: AlertsOpt = None,
    config: ConfigOpt = None,
    mode: ModeOpt = None,
    launcher: Annotated[list[str] | None, typer.Option(
        "--launcher", metavar="COMM",
        help="Sandbox launcher command name to adopt (repeatable; default: bwrap).")] = None,
    log_dir: Annotated[str | None, typer.Option(
        "--log-dir", metavar="DIR",
        help="Write DIR/events.jsonl and DIR/alerts.jsonl (rotated) and one line per "
             "alert on stdout: the service's set-up (/var/log/agentwatch).")] = None,
    log_max_mb: Annotated[int, typer.Option(
        "--log-max-mb", min=1, help="Rotate a log file when it reaches this size.")] = 100,
    log_keep: Annotated[int, typer.Option(
        "--log-keep", min=1, help="Rotated files kept per log.")] = 5,
    metrics: Annotated[str | None, typer.Option(
        "--metrics", metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. "
             "127.0.0.1:9464).")] = None,
    events_level: EventsLevelOpt = EventsLevel.interest,
) -> None:
    """Watch every sandbox on the host: each exec of a launcher starts a session.
    SIGHUP (or `agentwatch reload`) re-reads --config; SIGTERM drains and stops."""
    from collector.sessions import DEFAULT_LAUNCHERS, SessionError
    from service import daemon as d
    from service.metrics import MetricsError, parse_address

    detection = _detection(config, mode)
    if metrics is not None:
        try:
            parse_address(metrics)
        except MetricsError as e:
            raise _fail(str(e), 2) from None
    try:
        code = d.daemon(events, launcher or list(DEFAULT_LAUNCHERS), detection, alerts,
                        log_dir, log_max_mb << 20, log_keep, config,
                        mode.value if mode else None, metrics, events_level.value)
    except (SetupError, SinkError, SessionError, MetricsError) as e:
        raise _fail(str(e), 1) from None
    raise typer.Exit(code)


class Severity(StrEnum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


FollowOpt = Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing new ones as they come.")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", metavar="T", help="Only from T on: 10m, 2h, 1d, an ISO time or Unix seconds.")]
SessionOpt = Annotated[str | None, typer.Option("--session", metavar="ID")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON Lines, for pipes.")]
LogDirOpt = Annotated[str | None, typer.Option(
    "--log-dir", metavar="DIR", help="The daemon's log directory (default "
                                     "/var/log/agentwatch or $AGENTWATCH_LOG_DIR).")]


def _stream(name: str, follow_: bool, json_output: bool, since: str | None,
            flt_kwargs: dict[str, str | None], log_dir: str | None) -> None:
    import os
    from pathlib import Path

    from service import stream as st
    from service.sinks import alert_line

    try:
        since_ns = st.parse_since(since) if since else None
    except st.StreamError as e:
        raise _fail(str(e), 2) from None
    flt = st.Filter(since_ns=since_ns, **flt_kwargs)
    logs = Path(log_dir) if log_dir else st.log_dir()
    colour = sys.stdout.isatty()

    # SIGTERM (a supervisor, `timeout`) ends the stream between lines, never inside one:
    # a reader must not get half a JSON object. A line longer than the pipe takes several
    # write()s and the signal may come while one blocks; Python's buffered writer then
    # drops the rest of the line (seen with CPython 3.11), so lines go out through
    # os.write, looping over partial writes.
    state = {"writing": False, "stop": False}

    def on_term(_sig: int, _frame: object) -> None:
        if state["writing"]:
            state["stop"] = True
        else:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    fd = sys.stdout.fileno()

    def emit(ev: object) -> None:
        if json_output:
            line = ev.to_json() + b"\n"  # type: ignore[attr-defined]
        elif name == "alerts":
            line = (alert_line(ev, colour) + "\n").encode(  # type: ignore[arg-type]
                "utf-8", "backslashreplace")
        else:
            line = (st.event_line(ev) + "\n").encode(  # type: ignore[arg-type]
                "utf-8", "backslashreplace")
        state["writing"] = True
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        state["writing"] = False
        if state["stop"]:
            raise SystemExit(0)

    if not follow_ and not logs.is_dir():
        raise _fail(f"no log directory {logs} (is the daemon running with --log-dir?)", 1)
    try:
        bad = st.follow(name, flt, emit, logs, follow_live=follow_)
    except BrokenPipeError:
        os._exit(0)  # `| head`: the reader is gone
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if bad:
        typer.echo(f"agentwatch: {bad} lines of {logs} could not be read", err=True)


@app.command()
def alerts(
    follow_: FollowOpt = False, json_output: JsonOpt = False, since: SinceOpt = None,
    severity: Annotated[Severity | None, typer.Option(
        "--severity", help="This severity and above.")] = None,
    session: SessionOpt = None,
    detector: Annotated[str | None, typer.Option("--detector", metavar="ID")] = None,
    log_dir: LogDirOpt = None,
) -> None:
    """The daemon's alerts: from its logs, then live with --follow (its stream socket,
    or the log file when it is down)."""
    _stream("alerts", follow_, json_output, since,
            {"severity": severity.value if severity else None, "session": session,
             "detector": detector}, log_dir)


@app.command()
def events(
    follow_: FollowOpt = False, json_output: JsonOpt = False, since: SinceOpt = None,
    session: SessionOpt = None,
    kind: Annotated[str | None, typer.Option("--kind", help="exec, open, connect, ...")]
    = None,
    log_dir: LogDirOpt = None,
) -> None:
    """The daemon's events: from its logs, then live with --follow."""
    _stream("events", follow_, json_output, since, {"session": session, "kind": kind},
            log_dir)


@app.command()
def status(json_output: JsonOpt = False) -> None:
    """Running agentwatch processes: sessions, counters, losses, uptime."""
    import orjson

    from service.control import ControlError, collectors

    try:
        replies = [r for r in collectors(op="status") if r.get("ok")]
    except ControlError as e:
        raise _fail(str(e), 1) from None
    if json_output:
        for r in replies:
            typer.echo(orjson.dumps(r).decode())
        return
    if not replies:
        raise _fail("no agentwatch is running (no control socket answers)", 1)
    for r in replies:
        lost = sum(r["lost"].values())
        alerts_n = sum(a["count"] for a in r["alerts"])
        fill = r["ring_fill"]
        typer.echo(f"agentwatch {r['role']} pid {r['pid']}: up {r['uptime_s']:.0f} s, mode "
                   f"{r['mode']}, config {r['config']}")
        typer.echo(f"  {r['enforcement']}; {r['egress']}")
        typer.echo(f"  events {sum(r['events'].values())}, alerts {alerts_n}, lost {lost}"
                   + (f" ({', '.join(f'{k} {v}' for k, v in r['lost'].items())})"
                      if lost else "")
                   + f", kills {r['kills']}, ring buffer "
                   + (f"{fill:.0%} full" if fill is not None else "fill unknown")
                   + (f", {r['unwritten']} NOT WRITTEN" if r["unwritten"] else ""))
        interest = r.get("interest") or {}
        if interest:
            typer.echo(f"  events level {interest['level']}: {interest['summarised']} opens "
                       f"summarised in {interest['summaries']} summary events; "
                       f"{interest['plan']}")
        typer.echo(f"  sessions: {len(r['sessions'])} now, {r['sessions_started']} started")
        if r.get("rss_kb") is not None:
            typer.echo(f"  memory: {r['rss_kb'] / 1024:.0f} MB resident, peak "
                       f"{(r.get('hwm_kb') or 0) / 1024:.0f} MB (the probes' compile)")
        for s in r["sessions"]:
            cmd = " ".join(s.get("argv") or [])[:60].encode("unicode_escape").decode()
            typer.echo(f"    {s['session']} {s['kind']:8} {s['state']:8} root {s['root_pid']}"
                       f" {s['members']} procs {s['events']} events  {cmd}")


@app.command()
def reload() -> None:
    """Make the running daemon re-read its configuration (like SIGHUP), and say how it
    went: a bad file is refused and the configuration in force stays."""
    from service.control import ControlError, collectors

    try:
        replies = [r for r in collectors(op="reload")]
    except ControlError as e:
        raise _fail(str(e), 1) from None
    daemons = [r for r in replies if r.get("ok") or "no configuration file" not in
               str(r.get("error"))]
    if not daemons:
        raise _fail("no agentwatch daemon is running", 1)
    code = 0
    for r in daemons:
        if r.get("ok"):
            typer.echo(f"agentwatch: {r['result']}")
        else:
            typer.echo(f"agentwatch: {r['error']}", err=True)
            code = 1
    raise typer.Exit(code)


@app.command()
def attach(
    pid: Annotated[int, typer.Argument(help="Root of the running tree to adopt.")],
    events: EventsOpt = None,
    alerts: AlertsOpt = None,
    config: ConfigOpt = None,
    mode: ModeOpt = None,
) -> None:
    """Adopt a running process tree as a session; runs until the tree is gone."""
    from collector.sessions import SessionError
    from service import daemon as d

    detection = _detection(config, mode)
    try:
        code = d.attach(pid, events, detection, alerts, config)
    except (SetupError, SinkError, SessionError) as e:
        raise _fail(str(e), 1) from None
    raise typer.Exit(code)


@app.command()
def replay(
    recording: Annotated[str, typer.Argument(metavar="EVENTS.jsonl",
                                             help="Events recorded with --events.")],
    config: ConfigOpt = None,
    diff: Annotated[str | None, typer.Option(
        "--diff", metavar="FILE",
        help="A second configuration: print the alerts that appear and disappear.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Alerts as JSON Lines.")] = False,
) -> None:
    """Run the detectors over a recording and print the alerts (no root needed)."""
    from service.replay import ReplayError, alert_identity
    from service.replay import replay as do_replay
    from service.sinks import alert_line

    base = _detection(config, None)
    try:
        alerts, report = do_replay(recording, base)
        other = do_replay(recording, _detection(diff, None))[0] if diff else None
    except ReplayError as e:
        raise _fail(str(e), 2) from None
    if report.skipped:
        typer.echo(f"agentwatch: {report.skipped} of {report.lines} lines skipped; first: "
                   f"{report.problems[0]}", err=True)
    if other is None:
        for a in alerts:
            typer.echo(a.to_json().decode() if json_output else alert_line(a))
        typer.echo(f"agentwatch: {len(alerts)} alerts from {report.events} events", err=True)
        return
    before = {alert_identity(a): a for a in alerts}
    after = {alert_identity(a): a for a in other}
    gone = [a for k, a in before.items() if k not in after]
    new = [a for k, a in after.items() if k not in before]
    for sign, group in (("-", gone), ("+", new)):
        for a in group:
            typer.echo(f"{sign} " + (a.to_json().decode() if json_output else alert_line(a)))
    typer.echo(f"agentwatch: {len(gone)} alerts disappear, {len(new)} appear "
               f"({config or 'defaults'} -> {diff})", err=True)


@app.command()
def detectors(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """List the detector catalogue with its defaults."""
    import orjson

    from detectors.base import REGISTRY
    from detectors.config import defaults

    cfg = defaults()
    for did, d in cfg.detectors.items():
        spec = REGISTRY[did].spec
        if json_output:
            typer.echo(orjson.dumps({"id": did, "title": spec.title,
                                     "description": spec.description,
                                     "severity": d.severity, "action": d.action,
                                     "mitre": list(spec.mitre), "params": d.params}).decode())
        else:
            typer.echo(f"{did:26} {d.severity:8} {d.action:6} {spec.title}")


@config_app.command("check")
def config_check(path: Annotated[str, typer.Argument(metavar="FILE")]) -> None:
    """Validate a configuration file: exit 0 if it is good, 2 with the key and reason."""
    cfg = _detection(path, None)
    changed = sum(1 for d in cfg.detectors.values() if not d.enabled)
    typer.echo(f"{path}: ok (mode {cfg.mode}, {len(cfg.detectors)} detectors, "
               f"{changed} disabled)")


@config_app.command("defaults")
def config_defaults() -> None:
    """Print the full default configuration as TOML."""
    from detectors.config import defaults_toml

    typer.echo(defaults_toml(), nl=False)


SessionArg = Annotated[str, typer.Argument(metavar="ID", help="Session id (16 hex digits).")]


@session_app.command("list")
def session_list(
    json_output: Annotated[bool, typer.Option("--json", help="JSON Lines.")] = False,
) -> None:
    """Sessions watched by the agentwatch processes running on this host."""
    import orjson

    from service.control import ControlError, list_sessions

    try:
        sessions = list_sessions()
    except ControlError as e:
        raise _fail(str(e), 1) from None
    for s in sessions:
        if json_output:
            typer.echo(orjson.dumps(s).decode())
        else:
            cmd = " ".join(s.get("argv") or [])[:60].encode("unicode_escape").decode()
            typer.echo(f"{s['session']}  {s['kind']:8} {s['state']:8} root {s['root_pid']:<7} "
                       f"{s['members']:>4} procs  {cmd}")
    if not sessions and not json_output:
        typer.echo("agentwatch: no running sessions", err=True)


def _session_op(op: str, session: str) -> None:
    from service.control import ControlError, act

    try:
        typer.echo(f"session {session}: {act(op, session)}")
    except ControlError as e:
        raise _fail(str(e), 1) from None


@session_app.command("freeze")
def session_freeze(session: SessionArg) -> None:
    """Stop every process of a session (cgroup freeze, else SIGSTOP)."""
    _session_op("freeze", session)


@session_app.command("thaw")
def session_thaw(session: SessionArg) -> None:
    """Let a frozen session run again."""
    _session_op("thaw", session)


@session_app.command("kill")
def session_kill(session: SessionArg) -> None:
    """Kill every process of a session."""
    _session_op("kill", session)


@sensor_app.command("status")
def sensor_status(json_output: JsonOpt = False) -> None:
    """The pinned probe sets and whether an agentwatch reads them now."""
    import json as _json
    from pathlib import Path

    from probes import pins
    from service.paths import pin_root, pin_state

    root = pin_root()
    if root is None:
        raise _fail("pinning is off ($AGENTWATCH_PIN_ROOT=off)", 1)
    sets = pins.describe(Path(root), pin_state())
    active = pins.reader_active(Path(root))
    if json_output:
        typer.echo(_json.dumps({"root": root, "reader": active, "sets": sets}))
        return
    if not sets:
        typer.echo(f"no pinned probes under {root}")
        return
    for entry in sets:
        typer.echo(f"{root}/{entry['build']}: " + (
            f"{entry['maps']} maps, {entry['links']} links, pinned by pid {entry['creator']}"
            if entry["described"] else "not described here (another run directory?)")
            + ("; read now" if active else "; no reader"))


@sensor_app.command("unload")
def sensor_unload(force: Annotated[bool, typer.Option(
        "--force", help="Unload even while an agentwatch reads the pins.")] = False) -> None:
    """Remove the pinned probes: the kernel rules stop (what fail_closed holds is released)."""
    from pathlib import Path

    from probes import pins
    from service.paths import pin_root, pin_state

    root = pin_root()
    if root is None:
        raise _fail("pinning is off ($AGENTWATCH_PIN_ROOT=off)", 1)
    if pins.reader_active(Path(root)) and not force:
        raise _fail(f"an agentwatch reads the pinned probes under {root} now: stop it "
                    "first (or --force)", 1)
    gone = pins.unload(Path(root), pin_state())
    typer.echo(f"removed {len(gone)} pinned probe sets from {root}" if gone else
               f"no pinned probes under {root}")


@app.command()
def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
) -> None:
    """Check, by trying each, what this host's kernel lets agentwatch do."""
    from service import doctor as doc

    raise typer.Exit(doc.main(json_output=json_output))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
