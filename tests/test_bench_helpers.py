"""Pure tests of the benchmark helpers and of the bulk ring-buffer reader (no BPF):
the zero-loss rate search, the parsing of peer tracers' output, and RingReader walking a
ring laid out in a memfd the way the kernel lays out a BPF ring buffer."""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

import pytest

from bench.peers import EXEC_PEERS, OPEN_PEERS, count_lost, count_matching, exec_exit_pairs
from bench.rates import Step, zero_loss_search
from collector.ringbuf import BUSY, DISCARD, RingReader


# ---------------------------------------------------------------------- rate search
def fake_tracer(capacity: float, generator_max: float = 1e12):  # type: ignore[no-untyped-def]
    """A tracer that delivers everything up to `capacity` events/s, on a generator that
    cannot go past `generator_max`."""
    asked: list[float] = []

    def measure(rate: float) -> Step:
        asked.append(rate)
        achieved = min(rate, generator_max)
        generated = int(achieved * 2)
        lost = 0 if achieved <= capacity else int((achieved - capacity) * 2)
        return Step(offered=rate, generated=generated, seconds=2.0,
                    delivered=generated - lost, lost=lost, cpu_s=1.0)
    return measure, asked


def test_search_doubles_until_loss_then_bisects() -> None:
    measure, asked = fake_tracer(capacity=100_000)
    s = zero_loss_search(measure, start=16_000, ceiling=10_000_000, bisections=1)
    assert asked == [16_000, 32_000, 64_000, 128_000, 96_000]
    assert s.limited_by == "loss"
    assert s.best is not None and s.best.offered == 96_000


def test_search_stops_at_a_saturated_generator() -> None:
    measure, asked = fake_tracer(capacity=1e9, generator_max=50_000)
    s = zero_loss_search(measure, start=16_000, ceiling=10_000_000)
    assert asked == [16_000, 32_000, 64_000]
    assert s.limited_by == "generator"
    assert s.best is not None and s.best.achieved == pytest.approx(50_000)


def test_search_reports_nothing_when_the_first_step_loses() -> None:
    measure, _ = fake_tracer(capacity=1_000)
    s = zero_loss_search(measure, start=16_000, ceiling=1e6, bisections=0)
    assert s.best is None and s.limited_by == "loss"


def test_a_step_missing_events_is_not_zero_loss() -> None:
    assert not Step(offered=1, generated=10, seconds=1, delivered=9, lost=0).zero_loss
    assert Step(offered=1, generated=10, seconds=1, delivered=10, lost=0).zero_loss


def test_cpu_share_counts_the_catching_up() -> None:
    s = Step(offered=1, generated=1, seconds=2.0, delivered=1, lost=0, cpu_s=1.5, wall_s=3.0)
    assert s.cpu_share == pytest.approx(0.5)


# ---------------------------------------------------------------------- peer output
def test_count_lost_reads_every_phrasing() -> None:
    err = (b"Possibly lost 12 samples\nLost 3 events on CPU #1!\nsomething else\n"
           b"Possibly lost 5 samples\n")
    assert count_lost(err) == 20
    assert count_lost(b"") == 0


def test_count_matching_skips_loss_notices(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.write_bytes(b"PID COMM FD ERR PATH\n1 a 3 0 /dev/null\n1 a 3 0 /etc/x\n"
                    b"Lost 7 events\n\n1 a 3 0 /dev/null\n")
    lines, matched = count_matching(out, OPEN_PEERS["opensnoop"].match)
    assert (lines, matched) == (4, 2)


def test_bpftrace_exec_pairs(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.write_bytes(b"Attaching 2 probes...\nexec 10\nexit 10\nexec 11\nexit 9\nexec 12\n"
                    b"exit 12\n")
    assert exec_exit_pairs(out) == (3, 2)
    assert EXEC_PEERS["bpftrace-exec"].match(b"exec 10\n")


def test_peer_commands_name_the_pid() -> None:
    argv = OPEN_PEERS["bpftrace"].argv(4242, Path("/tmp/out"))
    assert argv[:3] == ["bpftrace", "-o", "/tmp/out"] and "pid == 4242" in argv[-1]
    assert OPEN_PEERS["opensnoop"].argv(7, Path("x")) == ["opensnoop", "-p", "7"]


# ---------------------------------------------------------------------- RingReader
class FakeRing:
    """A BPF ring buffer's pages in a memfd: consumer page, producer page, then the data
    pages twice (the kernel maps them twice in a row; here each write goes to both)."""

    def __init__(self, size: int = 4 * mmap.PAGESIZE) -> None:
        self.size, page = size, mmap.PAGESIZE
        self.fd = os.memfd_create("ring")
        os.ftruncate(self.fd, 2 * page + 2 * size)
        self.mm = mmap.mmap(self.fd, 2 * page + 2 * size)
        self.data = 2 * page
        self.prod = 0

    def put(self, payload: bytes, flags: int = 0) -> None:
        rec = struct.pack("<II", len(payload) | flags, 0) + payload
        rec += b"\0" * (-len(rec) % 8)
        for i, b in enumerate(rec):
            at = (self.prod + i) % self.size
            self.mm[self.data + at] = b
            self.mm[self.data + self.size + at] = b
        self.prod += len(rec)
        struct.pack_into("<Q", self.mm, mmap.PAGESIZE, self.prod)

    def consumer(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, 0)[0])

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)


@pytest.fixture
def ring():  # type: ignore[no-untyped-def]
    fake = FakeRing()
    reader = _reader(fake)
    yield fake, reader
    reader.close()
    fake.close()


def _reader(fake: FakeRing) -> RingReader:
    """RingReader maps the producer page at offset PAGESIZE; in the memfd the consumer
    page comes first, as in the kernel's mapping."""
    return RingReader(fake.fd, fake.size)


def test_reader_hands_out_records_in_order(ring) -> None:  # type: ignore[no-untyped-def]
    fake, reader = ring
    for i in range(5):
        fake.put(f"record {i}".encode())
    got: list[bytes] = []
    assert reader.read(got.append, 100) == 5
    assert got == [f"record {i}".encode() for i in range(5)]
    assert reader.pending() == 0 and fake.consumer() == fake.prod


def test_reader_respects_its_budget(ring) -> None:  # type: ignore[no-untyped-def]
    fake, reader = ring
    for i in range(10):
        fake.put(bytes([i]) * 13)
    got: list[bytes] = []
    assert reader.read(got.append, 4) == 4
    assert reader.read(got.append, 100) == 6
    assert [g[0] for g in got] == list(range(10))


def test_reader_skips_discarded_and_stops_at_busy(ring) -> None:  # type: ignore[no-untyped-def]
    fake, reader = ring
    fake.put(b"kept")
    fake.put(b"thrown away", DISCARD)
    fake.put(b"also kept")
    fake.put(b"not committed yet", BUSY)
    fake.put(b"after the busy one")
    got: list[bytes] = []
    assert reader.read(got.append, 100) == 2
    assert got == [b"kept", b"also kept"]
    assert reader.pending() > 0  # the busy record and what follows stay


def test_reader_reads_a_record_across_the_wrap(ring) -> None:  # type: ignore[no-untyped-def]
    fake, reader = ring
    big = bytes(range(256)) * 10  # 2560 bytes
    got: list[bytes] = []
    for _ in range(20):  # 20 x 2568 bytes: several laps of a 16 KiB ring
        fake.put(big)
        assert reader.read(got.append, 10) == 1
    assert got == [big] * 20


def test_reader_maps_the_data_once_and_joins_a_wrapped_record(ring) -> None:  # type: ignore[no-untyped-def]
    """The data pages are mapped once (the kernel's second copy would double the ring's
    share of RSS): a wrapped record's tail is read from the start of the data pages,
    never from the second copy (scribbled over here)."""
    fake, reader = ring
    assert len(reader._data) == mmap.PAGESIZE + fake.size
    big = bytes(range(251)) * 11
    got: list[bytes] = []
    for _ in range(15):
        fake.put(big)
        second = fake.data + fake.size
        fake.mm[second:second + fake.size] = b"\xff" * fake.size
        assert reader.read(got.append, 10) == 1
    assert got == [big] * 15


def test_reader_survives_a_raising_handler(ring) -> None:  # type: ignore[no-untyped-def]
    fake, reader = ring
    fake.put(b"boom")
    fake.put(b"next")

    def handle(b: bytes) -> None:
        raise ValueError(b)
    with pytest.raises(ValueError):
        reader.read(handle, 100)
    got: list[bytes] = []
    assert reader.read(got.append, 100) == 1 and got == [b"next"]  # not "boom" again


def test_reader_refuses_a_size_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        RingReader(-1, 3 * mmap.PAGESIZE)
