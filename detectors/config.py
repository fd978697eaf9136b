"""Configuration: TOML, every value with a built-in default, strict validation.

    mode = "monitor"                 # or "enforce"
    fold_window = 60.0               # seconds: repeats of one alert within it are folded
    kernel_enforcement = true        # enforce mode: the kernel kills at syscall entry
    egress_enforcement = true        # enforce mode: cgroup programs refuse connects/sends
    fail_closed = false              # enforce mode: no reader, new sessions held (SIGSTOP)

    [detectors.credential_read]
    enabled = true
    action = "alert"                 # alert | freeze | kill
    severity = "high"                # info | low | medium | high | critical
    paths = ["~/.ssh/id_*", ...]     # a detector's own knobs: same type as the default

    [[detectors.credential_read.exceptions]]
    exe = "/usr/bin/ssh"             # glob on the process's executable
    argv = "ssh *"                   # glob on the joined command line
    path = "~/.ssh/known_hosts"      # glob on the event's path

A bad file is rejected with the file, the key and the reason (ConfigError), never a
traceback; `defaults_toml()` prints the whole default configuration.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors.base import ACTIONS, REGISTRY, SEVERITIES

MODES = ("monitor", "enforce")
EXCEPTION_KEYS = ("exe", "argv", "path")


class ConfigError(ValueError):
    def __init__(self, where: str, key: str, reason: str) -> None:
        super().__init__(f"{where}: {key}: {reason}")
        self.where, self.key, self.reason = where, key, reason


@dataclass
class DetectorConfig:
    enabled: bool
    action: str
    severity: str
    params: dict[str, Any]
    exceptions: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Config:
    mode: str = "monitor"
    fold_window: float = 60.0
    kernel_enforcement: bool = True
    egress_enforcement: bool = True
    fail_closed: bool = False
    detectors: dict[str, DetectorConfig] = field(default_factory=dict)
    source: str = "<built-in defaults>"


def defaults() -> Config:
    _load_catalogue()
    return Config(detectors={
        did: DetectorConfig(True, cls.spec.action, cls.spec.severity,
                            {k: _copy(v) for k, v in cls.spec.params.items()},
                            [dict(e) for e in cls.spec.exceptions])
        for did, cls in sorted(REGISTRY.items())
    })


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v


def _load_catalogue() -> None:
    import detectors.catalog  # noqa: F401  (registers every detector)


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list of strings"
    return type(v).__name__


def _check_value(where: str, key: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
    else:
        ok = False
    if not ok:
        raise ConfigError(where, key, f"expected {_type_name(default)}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ConfigError(where, key, f"must not be negative, got {value!r}")
    return value


def parse(data: dict[str, Any], where: str) -> Config:
    cfg = defaults()
    cfg.source = where
    for key, value in data.items():
        if key == "mode":
            if value not in MODES:
                raise ConfigError(where, "mode", f"expected one of {', '.join(MODES)}, "
                                  f"got {value!r}")
            cfg.mode = value
        elif key == "fold_window":
            cfg.fold_window = _check_value(where, key, 60.0, value)
        elif key in ("kernel_enforcement", "egress_enforcement"):
            setattr(cfg, key, _check_value(where, key, True, value))
        elif key == "fail_closed":
            cfg.fail_closed = _check_value(where, key, False, value)
        elif key == "detectors":
            if not isinstance(value, dict):
                raise ConfigError(where, key, "expected a table of detectors")
            for did, table in value.items():
                _parse_detector(cfg, where, did, table)
        else:
            raise ConfigError(where, key, "unknown key (expected mode, fold_window, "
                              "kernel_enforcement, egress_enforcement, fail_closed, "
                              "detectors)")
    return cfg


def _parse_detector(cfg: Config, where: str, did: str, table: Any) -> None:
    base = f"detectors.{did}"
    if did not in cfg.detectors:
        raise ConfigError(where, base, "no such detector (`agentwatch detectors` lists them)")
    if not isinstance(table, dict):
        raise ConfigError(where, base, "expected a table")
    d = cfg.detectors[did]
    for key, value in table.items():
        k = f"{base}.{key}"
        if key == "enabled":
            d.enabled = _check_value(where, k, True, value)
        elif key == "action":
            if value not in ACTIONS:
                raise ConfigError(where, k, f"expected one of {', '.join(ACTIONS)}, "
                                  f"got {value!r}")
            d.action = value
        elif key == "severity":
            if value not in SEVERITIES:
                raise ConfigError(where, k, f"expected one of {', '.join(SEVERITIES)}, "
                                  f"got {value!r}")
            d.severity = value
        elif key == "exceptions":
            if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
                raise ConfigError(where, k, "expected an array of tables "
                                  "([[" + k + "]])")
            for i, exc in enumerate(value):
                bad = set(exc) - set(EXCEPTION_KEYS)
                if bad or not exc:
                    raise ConfigError(where, f"{k}[{i}]", "an exception has one or more of "
                                      f"{', '.join(EXCEPTION_KEYS)}; got {sorted(exc)}")
                for ek, ev in exc.items():
                    if not isinstance(ev, str):
                        raise ConfigError(where, f"{k}[{i}].{ek}", f"expected a string "
                                          f"glob, got {ev!r}")
            d.exceptions = [dict(x) for x in value]
        elif key in d.params:
            d.params[key] = _check_value(where, k, d.params[key], value)
        else:
            known = ", ".join(["enabled", "action", "severity", "exceptions", *d.params])
            raise ConfigError(where, k, f"unknown key (this detector has: {known})")


def load(path: str | Path | None) -> Config:
    """The configuration in `path`, or the built-in defaults for None."""
    if path is None:
        return defaults()
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(where, "-", f"cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(where, "-", f"not UTF-8 text ({e.reason} at byte {e.start})") \
            from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(where, "-", f"not valid TOML: {e}") from None
    return parse(data, where)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        if not v:
            return "[]"
        return "[\n" + "".join(f"    {_toml_value(x)},\n" for x in v) + "]"
    raise TypeError(type(v))


def defaults_toml() -> str:
    cfg = defaults()
    lines = ["# agentwatch configuration: every value below is the built-in default.",
             '# mode: "monitor" (alert only) or "enforce" (carry out the actions).',
             f"mode = {_toml_value(cfg.mode)}",
             "# seconds: repeats of an alert (same detector, session, key) within it are "
             "folded",
             f"fold_window = {_toml_value(cfg.fold_window)}",
             "# enforce mode: the kernel kills at the entry of calls it can judge alone "
             "(docs/response.md)",
             f"kernel_enforcement = {_toml_value(cfg.kernel_enforcement)}",
             "# enforce mode: sessions with their own cgroup may only connect/send to "
             "egress_violation's allow list",
             f"egress_enforcement = {_toml_value(cfg.egress_enforcement)}",
             "# enforce mode: while no agentwatch daemon reads the kernel's events (it "
             "crashed, is restarting),",
             "# the processes of sessions that begin are stopped until one does "
             "(docs/response.md)",
             f"fail_closed = {_toml_value(cfg.fail_closed)}", ""]
    for did, d in cfg.detectors.items():
        spec = REGISTRY[did].spec
        lines.append(f"# {spec.title}: {spec.description}")
        lines.append(f"[detectors.{did}]")
        lines.append(f"enabled = {_toml_value(d.enabled)}")
        lines.append(f"action = {_toml_value(d.action)}")
        lines.append(f"severity = {_toml_value(d.severity)}")
        for k, v in d.params.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
        for exc in d.exceptions:
            lines.append(f"[[detectors.{did}.exceptions]]  # built in; a configured list "
                         "replaces it")
            for k, v in exc.items():
                lines.append(f"{k} = {_toml_value(v)}")
            lines.append("")
    return "\n".join(lines)
