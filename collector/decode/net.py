"""Decoders for net.bpf.c's connect records and the socket addresses in them."""

from __future__ import annotations

import ipaddress
import socket
import struct

from collector.events import ConnectEvent, Event, errno_name, text
from probes.layout import Header
from probes.net import AW_EV_CONNECT, AW_PEERF_SESSION, AW_SOCKADDR_MAX, CONNECT

_CONNECT = CONNECT.struct
_TAIL = CONNECT.fixed_size
_FAMILIES = {socket.AF_UNSPEC: "AF_UNSPEC", socket.AF_UNIX: "AF_UNIX",
             socket.AF_INET: "AF_INET", socket.AF_INET6: "AF_INET6"}


def decode_sockaddr(raw: bytes, addrlen: int) -> tuple[str, str | None, int | None]:
    """(family name, address, port) from a struct sockaddr as the process passed it."""
    raw = raw[:max(0, min(addrlen, len(raw)))]
    if len(raw) < 2:
        return "AF_UNSPEC", None, None
    family = struct.unpack_from("=H", raw)[0]
    name = _FAMILIES.get(family, f"AF_{family}")
    if family == socket.AF_INET and len(raw) >= 8:
        port = struct.unpack_from("!H", raw, 2)[0]
        return name, str(ipaddress.IPv4Address(raw[4:8])), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        port = struct.unpack_from("!H", raw, 2)[0]
        addr = str(ipaddress.IPv6Address(raw[8:24]))
        if len(raw) >= 28:
            scope = struct.unpack_from("=I", raw, 24)[0]
            if scope:
                addr += f"%{scope}"
        return name, addr, port
    if family == socket.AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":  # abstract namespace: the name is every byte, NULs included
            return name, "@" + text(path[1:]), None
        return name, text(path.split(b"\0", 1)[0]), None
    return name, None, None


def decode_connect(hdr: Header, data: bytes) -> Event:
    t = _CONNECT.unpack_from(data)
    ret, fd, addrlen, peer_pid, peer_flags = t[12:17]
    family, address, port = decode_sockaddr(data[_TAIL:_TAIL + AW_SOCKADDR_MAX], addrlen)
    named = peer_pid > 0  # a connected unix socket whose peer the kernel named
    return ConnectEvent(**hdr, ret=ret, error=errno_name(ret), fd=fd, family=family,
                        address=address, port=port, addrlen=addrlen,
                        peer_pid=peer_pid if named else None,
                        peer_in_session=bool(peer_flags & AW_PEERF_SESSION) if named else None)


DECODERS = {AW_EV_CONNECT: (CONNECT, decode_connect)}
