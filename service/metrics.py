"""Prometheus metrics (opt-in: `agentwatch daemon --metrics 127.0.0.1:9464`).

A minimal HTTP/1.0 endpoint served from the daemon's poll loop (non-blocking, one short
request at a time): `GET /metrics` answers the text exposition format; anything else 404.
Loopback by default; a client that does not send its request within 0.5 s is dropped.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.control import Controlled


class MetricsError(RuntimeError):
    pass


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsError(f"--metrics {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]") or "127.0.0.1", int(port)


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(c: Controlled) -> str:
    from service.control import status

    st = status(c, "daemon")
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, rows: list[tuple[dict[str, str], float]]
               ) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    metric("agentwatch_events_total", "counter", "Events delivered, by kind.",
           [({"kind": k}, n) for k, n in sorted(st["events"].items()) if k != "alert"])
    metric("agentwatch_alerts_total", "counter", "Alerts, by detector and severity.",
           [({"detector": a["detector"], "severity": a["severity"]}, a["count"])
            for a in st["alerts"]])
    metric("agentwatch_kills_total", "counter",
           "Processes killed: by the kernel at a call's entry, or by user space.",
           [({"by": by}, st["kills"].get(by, 0)) for by in ("kernel", "user space")])
    metric("agentwatch_lost_events_total", "counter",
           "Records the kernel could not deliver, by cause.",
           [({"cause": k}, n) for k, n in sorted(st["lost"].items())])
    metric("agentwatch_summarised_opens_total", "counter",
           "Opens no detector could use, counted in the kernel and reported in summary "
           "events instead of one event each (--events-level interest).",
           [({}, st.get("interest", {}).get("summarised", 0))])
    states: dict[str, int] = {"running": 0, "frozen": 0, "killed": 0}
    for s in c.sessions.values():
        if not s.ended:
            states[s.state] = states.get(s.state, 0) + 1
    metric("agentwatch_sessions", "gauge", "Sessions now, by state.",
           [({"state": k}, n) for k, n in states.items()])
    metric("agentwatch_sessions_started_total", "counter", "Sessions started.",
           [({}, st["sessions_started"])])
    fill = st["ring_fill"]
    metric("agentwatch_ringbuf_fill_ratio", "gauge",
           "How full the events ring buffer is (0..1).", [({}, fill if fill is not None
                                                           else float("nan"))])
    metric("agentwatch_unwritten_events_total", "counter",
           "Events or alerts a sink could not write.", [({}, st["unwritten"])])
    metric("agentwatch_uptime_seconds", "gauge", "Seconds since the daemon started.",
           [({}, st["uptime_s"])])
    if st.get("rss_kb") is not None:
        metric("agentwatch_resident_memory_bytes", "gauge",
               "The daemon's resident memory (VmRSS).", [({}, st["rss_kb"] * 1024)])
    return "\n".join(out) + "\n"


class MetricsServer:
    def __init__(self, collector: Controlled, address: str) -> None:
        self.collector = collector
        host, port = parse_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise MetricsError(f"metrics on {host}:{port}: {e.strerror}") from None
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    req = conn.recv(4096)
                    path = req.split(b" ", 2)[1] if req.count(b" ") >= 2 else b""
                    if req.startswith(b"GET ") and path.split(b"?")[0] == b"/metrics":
                        body = render(self.collector).encode()
                        head = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; "
                                b"version=0.0.4\r\n")
                    else:
                        body, head = b"not found\n", b"HTTP/1.0 404 Not Found\r\n"
                    conn.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode()
                                 + body)
                except OSError:
                    pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
