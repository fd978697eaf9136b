"""Hostile and broken input, property-based (hypothesis): kernel records, configuration
and recordings, random or cut short. Each gives a clean result or the module's own clear
error (DecodeError, ConfigError, ValueError/ReplayError with a reason), never another
exception; what decodes always serialises to one valid JSON line."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.decode import _DISPATCH, _HDR, DecodeError, RecordDecoder
from detectors.config import ConfigError, load, parse
from service.replay import ReadReport, parse_line, read_events

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
DECODER = RecordDecoder()
TYPES = sorted(_DISPATCH)


def _check_event(ev: object) -> None:
    line = ev.to_json()  # type: ignore[attr-defined]
    assert b"\n" not in line
    obj = orjson.loads(line)
    assert isinstance(obj, dict) and obj["kind"]


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        ev = DECODER.decode(data)
    except DecodeError:
        return
    _check_event(ev)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A header with a known type and a body of random bytes, of the type's full size or
    cut short or longer: the shape of real records, with hostile contents."""
    typ = draw(st.sampled_from(TYPES))
    fixed = _DISPATCH[typ][0]
    size = draw(st.integers(0, fixed + 300))
    body = draw(st.binary(min_size=size, max_size=size))
    hdr = bytearray(body[: _HDR.size].ljust(_HDR.size, b"\0"))
    struct.pack_into("<II", hdr, 0, typ, size)  # type, size
    return bytes(hdr) + body[_HDR.size:]


@SETTINGS
@given(records())
def test_records_with_hostile_contents_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        ev = DECODER.decode(data)
    except DecodeError:
        return
    _check_event(ev)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)

detector_ids = st.sampled_from(["namespace_escape", "canary_touch", "fork_bomb",
                                "egress_violation", "no_such_detector"])
detector_tables = st.dictionaries(
    st.sampled_from(["enabled", "action", "severity", "exceptions", "paths", "allow",
                     "max_forks", "kill_count", "bogus"]), json_values, max_size=4)
configs = st.dictionaries(
    st.sampled_from(["mode", "fold_window", "kernel_enforcement", "egress_enforcement",
                     "detectors", "other"]),
    json_values | st.dictionaries(detector_ids, detector_tables | json_values, max_size=3),
    max_size=4)


@SETTINGS
@given(configs)
def test_config_structures_load_or_raise_config_error(data: dict[str, object]) -> None:
    try:
        cfg = parse(data, "<hypothesis>")
    except ConfigError as e:
        assert str(e).startswith("<hypothesis>: ")
        return
    assert cfg.mode in ("monitor", "enforce")


@SETTINGS
@given(st.binary(max_size=400))
def test_config_files_of_any_bytes_load_or_raise_config_error(tmp_path_factory: object,
                                                              data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("cfg")) / "c.toml"  # type: ignore[attr-defined]
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load(path)


@SETTINGS
@given(st.binary(max_size=300))
def test_recorded_lines_parse_or_raise_value_error(raw: bytes) -> None:
    try:
        ev = parse_line(raw)
    except ValueError:
        return
    _check_event(ev)


event_like = st.fixed_dictionaries(
    {"v": st.just(1), "ts": st.integers(0, 2**63), "pid": st.integers(0, 2**22),
     "session": st.none() | st.text(max_size=16),
     "kind": st.sampled_from(["exec", "fork", "exit", "open", "connect", "syscall", "loss",
                              "session", "alert", "bogus"])},
    optional={"comm": json_values, "path": json_values, "argv": json_values,
              "ret": json_values, "args": json_values, "filename": json_values,
              "detector": json_values, "severity": json_values, "action": json_values,
              "summary": json_values, "syscall": json_values, "flags": json_values})


@SETTINGS
@given(event_like)
def test_event_shaped_lines_parse_or_raise_value_error(obj: dict[str, object]) -> None:
    try:
        ev = parse_line(orjson.dumps(obj))
    except ValueError:
        return
    _check_event(ev)


@SETTINGS
@given(st.lists(st.binary(max_size=120), max_size=20), st.integers(0, 200))
def test_a_recording_cut_anywhere_is_read_without_raising(
        tmp_path_factory: object, lines: list[bytes], cut: int) -> None:
    good = (b'{"v":1,"ts":1,"kind":"exec","session":"00000000000000aa","pid":2,"ret":0,'
            b'"filename":"/bin/true","argv":["true"]}')
    data = b"\n".join([good, *lines, good])
    path = Path(tmp_path_factory.mktemp("rec")) / "r.jsonl"  # type: ignore[attr-defined]
    path.write_bytes(data[: max(0, len(data) - cut)])
    report = ReadReport()
    events = list(read_events(path, report))
    assert report.events == len(events)
    assert report.events + report.skipped <= report.lines


def test_hypothesis_is_installed_for_ci() -> None:
    import hypothesis

    assert hypothesis.__version__, "the property tests need hypothesis (test extras)"


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
