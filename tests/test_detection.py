"""The detector engine, its configuration and replay (no root: recorded events)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

from collector.events import Event, LossEvent, OpenEvent, SessionEvent
from detectors.base import Context, Detector, DetectorSpec, Finding, path_matches
from detectors.config import ConfigError, defaults, defaults_toml, load, parse
from detectors.engine import Engine, run_over
from service.replay import ReadReport, parse_line, read_events, replay

AW = str(Path(sys.executable).parent / "agentwatch")
S = "00000000000000aa"


def loss(ts: int, n: int = 3) -> LossEvent:
    return LossEvent(ts=ts, lost={"open": n}, total={"open": n})


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(("text", "key", "reason"), [
    (b'mode = "loud"', "mode", "expected one of monitor, enforce"),
    (b"fold_window = -1", "fold_window", "must not be negative"),
    (b"colour = true", "colour", "unknown key"),
    (b"[detectors.nope]\nenabled = false", "detectors.nope", "no such detector"),
    (b"[detectors.event_loss]\naction = 'explode'", "detectors.event_loss.action",
     "expected one of alert, freeze, kill"),
    (b"[detectors.event_loss]\nmin_lost = 'many'", "detectors.event_loss.min_lost",
     "expected an integer"),
    (b"[detectors.event_loss]\nmin_lost = true", "detectors.event_loss.min_lost",
     "expected an integer"),
    (b"[detectors.event_loss]\nthreshold = 3", "detectors.event_loss.threshold",
     "unknown key"),
    (b"[[detectors.event_loss.exceptions]]\nuser = 'x'",
     "detectors.event_loss.exceptions[0]", "an exception has"),
    (b"mode = ", "-", "not valid TOML"),
    (b"mode = '\xff'", "-", "not UTF-8"),
])
def test_bad_config_names_file_key_and_reason(tmp_path: Path, text: bytes, key: str,
                                              reason: str) -> None:
    f = tmp_path / "agentwatch.toml"
    f.write_bytes(text)
    with pytest.raises(ConfigError) as err:
        load(f)
    assert err.value.where == str(f) and err.value.key == key
    assert reason in err.value.reason


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_defaults_print_as_toml_that_parses_back_to_the_defaults() -> None:
    text = defaults_toml()
    cfg = parse(tomllib.loads(text), "defaults")
    assert cfg.mode == "monitor" and cfg.fold_window == 60.0
    assert {k: (d.enabled, d.action, d.severity, d.params) for k, d in cfg.detectors.items()} \
        == {k: (d.enabled, d.action, d.severity, d.params)
            for k, d in defaults().detectors.items()}


def test_overrides_apply(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('mode = "enforce"\nfold_window = 5\n[detectors.event_loss]\n'
                 'severity = "high"\nmin_lost = 10\n')
    cfg = load(f)
    d = cfg.detectors["event_loss"]
    assert cfg.mode == "enforce" and cfg.fold_window == 5.0
    assert d.severity == "high" and d.params["min_lost"] == 10


# ------------------------------------------------------------------------------ engine


def test_repeats_fold_into_one_alert_and_a_count() -> None:
    engine = Engine(defaults())
    alerts = run_over(engine, [loss(i * 10**9) for i in range(5)])
    first, folded = alerts
    assert first.detector == "event_loss" and not first.folded and first.count == 1
    assert folded.folded and folded.count == 4 and "repeated 4 more times" in folded.summary
    # every loss counted: the folded alert's `lost` is the sum of the four it stands for
    assert first.fields["lost"] + folded.fields["lost"] == 5 * 3
    assert first.action == {"requested": "alert", "taken": "alert", "result": "alerted"}


def test_a_new_window_alerts_again() -> None:
    cfg = defaults()
    cfg.fold_window = 1.0
    alerts = run_over(Engine(cfg), [loss(0), loss(10**8), loss(5 * 10**9)])
    assert [(a.folded, a.count) for a in alerts] == [(False, 1), (True, 1), (False, 1)]


def test_threshold_param_changes_the_outcome() -> None:
    cfg = defaults()
    cfg.detectors["event_loss"].params["min_lost"] = 100
    assert run_over(Engine(cfg), [loss(0, n=3)]) == []
    assert len(run_over(Engine(defaults()), [loss(0, n=3)])) == 1


class _Boom(Detector):
    spec = DetectorSpec(id="boom", title="Boom", description="raises", severity="low",
                        action="alert", mitre=(), output="boom", kinds=frozenset({"open"}))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        raise RuntimeError("bad detector")


class _Kill(Detector):
    spec = DetectorSpec(id="killer", title="Killer", description="always", severity="high",
                        action="kill", mitre=("T0000",), output="{what} happened",
                        kinds=frozenset({"open"}))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        yield Finding(key="k", fields={"what": "it", "path": getattr(ev, "path", None)})


def _engine_with(det: Detector, mode: str = "monitor",
                 exceptions: list[dict[str, str]] | None = None) -> Engine:
    from detectors.config import Config, DetectorConfig

    cfg = Config(mode=mode)
    engine = Engine(cfg)
    engine.detectors = [(det, DetectorConfig(True, det.spec.action, det.spec.severity, {},
                                             exceptions or []))]
    return engine


def _open(path: str, ts: int = 1) -> OpenEvent:
    return OpenEvent(ts=ts, session=S, pid=10, ret=3, syscall="openat", path=path,
                     raw_path=path, flags=0)


def test_a_failing_detector_is_disabled_with_an_alert_not_a_crash() -> None:
    engine = _engine_with(_Boom())
    alerts = engine.process(_open("/x"))
    assert len(alerts) == 1 and "failed and is disabled" in alerts[0].summary
    assert engine.disabled == {"boom": "RuntimeError: bad detector"}
    assert engine.process(_open("/y")) == []


def test_monitor_and_enforce_say_what_was_or_would_be_done() -> None:
    (a,) = _engine_with(_Kill()).process(_open("/x"))
    assert a.action["requested"] == "kill" and a.action["taken"] == "none"
    assert "monitor mode: would kill" in a.action["result"]
    (b,) = _engine_with(_Kill(), mode="enforce").process(_open("/x"))
    # enforce: left to the response engine (response/responder.py), which fills it in
    assert b.action["taken"] == "pending" and b.action["result"] == "pending"
    assert a.summary == "it happened | what=it path=/x" and a.mitre == ["T0000"]


def test_exceptions_by_path_suppress() -> None:
    engine = _engine_with(_Kill(), exceptions=[{"path": "/tmp/**"}])
    assert engine.process(_open("/tmp/a/b")) == []
    assert len(engine.process(_open("/etc/passwd"))) == 1


def test_summary_is_one_terminal_line_whatever_the_path() -> None:
    (a,) = _engine_with(_Kill()).process(_open("/tmp/evil\n\x1b[2Jname"))
    assert "\n" not in a.summary and "\x1b" not in a.summary
    assert "\\n" in a.summary and "\\x1b" in a.summary


def test_globs() -> None:
    assert path_matches("/home/ann/.ssh/id_rsa", ["~/.ssh/id_*"]) == "~/.ssh/id_*"
    assert path_matches("/root/.aws/credentials", ["~/.aws/credentials"])
    assert path_matches("/work/repo/a/b/.env", ["**/.env"])
    assert path_matches("/work/.env.local", ["**/.env"]) is None
    assert path_matches("/etc/cron.d/x", ["/etc/cron*/*"])
    assert path_matches("/etc/cron.d/x/y", ["/etc/cron*/*"]) is None
    # a newline is a legal byte of a name: it must not hide a path from `**`
    assert path_matches("/work/evil\n\x1b]0;x\x07/.env", ["**/.env"]) == "**/.env"
    assert path_matches("/etc/a\nb/c", ["/etc/**"]) == "/etc/**"
    assert path_matches("/etc/a\n/b", ["/etc/*"]) is None


# ------------------------------------------------------------------------------ replay


def _recording(tmp_path: Path) -> Path:
    lines = [
        SessionEvent(ts=1, session=S, pid=10, phase="start", root_pid=10, argv=["sh"],
                     cwd="/work"),
        loss(2 * 10**9), loss(3 * 10**9),
        SessionEvent(ts=4 * 10**9, session=S, pid=10, phase="end", root_pid=10),
    ]
    f = tmp_path / "rec.jsonl"
    f.write_bytes(b"".join(e.to_json() + b"\n" for e in lines))
    return f


def test_replay_is_deterministic(tmp_path: Path) -> None:
    rec = _recording(tmp_path)
    a1, r1 = replay(rec, defaults())
    a2, _ = replay(rec, defaults())
    assert [x.to_json() for x in a1] == [x.to_json() for x in a2]
    assert r1.events == 4 and r1.skipped == 0 and len(a1) == 2


@pytest.mark.parametrize("line", [
    b"not json", b"[1, 2]", b'{"kind": "nope"}', b'{"kind": "open", "ts": "x"}',
    b'{"kind": "open", "ts": 1, "session": "s", "pid": 1, "bogus": 2}',
    b'{"kind": "open", "ts": 1, "session": 5, "pid": 1}', b"\xff\xfe",
    b'{"v": 1, "ts": 1, "kind": "exit", "session": "s"',  # cut mid-line
])
def test_bad_recorded_lines_are_skipped_and_counted(tmp_path: Path, line: bytes) -> None:
    rec = _recording(tmp_path)
    rec.write_bytes(rec.read_bytes() + line + b"\n")
    report = ReadReport()
    events = list(read_events(rec, report))
    assert len(events) == 4 and report.skipped == 1
    assert report.problems[0].startswith(f"{rec}:5: ")
    with pytest.raises(ValueError):
        parse_line(line)


def test_replay_and_diff_from_the_command_line(tmp_path: Path) -> None:
    rec = _recording(tmp_path)
    out = subprocess.run([AW, "replay", str(rec), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    alerts = [orjson.loads(x) for x in out.stdout.splitlines()]
    assert [a["detector"] for a in alerts] == ["event_loss", "event_loss"]
    assert all(a["kind"] == "alert" and a["v"] == 1 for a in alerts)
    quiet = tmp_path / "quiet.toml"
    quiet.write_text("[detectors.event_loss]\nenabled = false\n")
    out = subprocess.run([AW, "replay", str(rec), "--diff", str(quiet)], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "2 alerts disappear, 0 appear" in out.stderr
    assert all(x.startswith("- ") for x in out.stdout.splitlines())
    bad = subprocess.run([AW, "replay", str(tmp_path / "absent.jsonl")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "cannot read" in bad.stderr
    assert "Traceback" not in bad.stderr + out.stderr


def test_config_commands(tmp_path: Path) -> None:
    out = subprocess.run([AW, "config", "defaults"], capture_output=True, text=True)
    assert out.returncode == 0 and tomllib.loads(out.stdout)["mode"] == "monitor"
    good = tmp_path / "good.toml"
    good.write_text(out.stdout)
    assert subprocess.run([AW, "config", "check", str(good)]).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[detectors.event_loss]\nmin_lost = -3\n")
    r = subprocess.run([AW, "config", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{bad}: detectors.event_loss.min_lost: must not be negative" in r.stderr
    listing = subprocess.run([AW, "detectors"], capture_output=True, text=True).stdout
    assert "event_loss" in listing


# ------------------------------------------------------------------------------ live


@pytest.mark.bpf
def test_live_losses_raise_an_event_loss_alert() -> None:
    """A real session floods a one-page ring buffer: the collector's loss event becomes an
    event_loss alert, written to the alert sink, while the session runs."""
    import os

    from tests.conftest import bpf_unavailable

    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from probes.loader import ProbeConfig
    from service.pipeline import Collector
    from service.run import run
    from service.sinks import MemorySink

    events, alerts = MemorySink(), MemorySink()
    c = Collector([events], ProbeConfig(ringbuf_pages=1), detection=defaults(),
                  alert_sinks=[alerts])
    c.start()
    try:
        res = run([sys.executable, "-c", "import os\nfor _ in range(20000):\n"
                   "    os.close(os.open('/dev/null', os.O_RDONLY))"],
                  collector=c, poll_ms=2000)
    finally:
        c.close()
    assert res.lost > 0
    found = [a for a in alerts.events if a.detector == "event_loss"]
    assert found and found[0].severity == "medium" and found[0].kind == "alert"
    assert found[0].fields["lost"] > 0 and "events lost" in found[0].summary
    assert not [e for e in events.events if e.kind == "alert"]  # alerts go to their sink


def test_event_loss_fixtures() -> None:
    fixtures = Path(__file__).parent / "fixtures" / "detectors" / "event_loss"
    alerts, _ = replay(fixtures / "positive.jsonl", defaults())
    (a,) = [x for x in alerts if x.detector == "event_loss"]
    assert a.severity == "medium" and a.fields["lost"] == 2505 and a.session is None
    assert replay(fixtures / "negative.jsonl", defaults())[0] == []


def test_detectors_do_no_io_and_import_no_kernel_libraries() -> None:
    """STYLE: a detector is a pure function; its modules import nothing that does I/O."""
    import ast

    root = Path(__file__).resolve().parent.parent / "detectors"
    banned = {"bcc", "psutil", "subprocess", "socket", "os", "shutil", "pathlib", "pyroute2"}
    for module in [root / "base.py", root / "engine.py", *sorted((root / "catalog").glob("*.py"))]:
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not set(names) & banned, f"{module.name} imports {names}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{module.name} calls open()"


# ------------------------------------------------------------------------------ kinds
def test_a_spec_without_event_kinds_is_rejected() -> None:
    from detectors.base import REGISTRY, register

    class _NoKinds(Detector):
        spec = DetectorSpec(id="no_kinds", title="No Kinds", description="-", severity="low",
                            action="alert", mitre=(), output="-", kinds=frozenset())

    with pytest.raises(ValueError, match="kinds"):
        register(_NoKinds)
    assert "no_kinds" not in REGISTRY
    with pytest.raises(TypeError):
        DetectorSpec(id="x", title="X", description="-", severity="low",  # type: ignore[call-arg]
                     action="alert", mitre=(), output="-")
    assert all(cls.spec.kinds for cls in REGISTRY.values())


def test_the_kind_filter_drops_no_event_a_detector_uses() -> None:
    """Every recorded fixture gives the same alerts with each detector called for its
    declared kinds only as with every detector called for every event."""
    from service.docs import EXAMPLE_PARAMS

    fixtures = sorted((Path(__file__).parent / "fixtures").rglob("*.jsonl"))
    assert fixtures
    for path in fixtures:
        events = list(read_events(path))
        for params in ({}, EXAMPLE_PARAMS):
            cfg = defaults()
            cfg.mode = "enforce"
            for did, p in params.items():
                cfg.detectors[did].params.update(p)
            filtered = Engine(cfg)
            every = Engine(cfg)
            all_detectors = list(range(len(every.detectors)))
            every._by_kind = {k: all_detectors for k in
                              {e.kind for e in events} | {"loss", "session"}}
            assert [a.to_json() for a in run_over(filtered, events)] == \
                [a.to_json() for a in run_over(every, events)], path
