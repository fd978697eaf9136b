"""Decoder for the generic syscall probe's records (sys.bpf.c, table in probes/syscalls.py).

Paths and strings are the bytes the process passed, decoded like every kernel string
(`collector.events.text`). Payload bytes are never put in an event: only the DNS query
name found in them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.decode.net import decode_sockaddr
from collector.dns import dns_query
from collector.events import Event, SyscallEvent, errno_name, text
from probes.compat import name_of
from probes.layout import Header
from probes.linux import ADDRESS_FAMILIES, KINDS, STRING_KINDS, RawDecoder, capset, identity
from probes.syscalls import (
    AW_EV_SYSCALL,
    AW_SOCKADDR_MAX,
    BLOB_CAPSET,
    BLOB_FDS_EXIT,
    BLOB_MSGHDR,
    BLOB_RAW,
    BLOB_SENDTO,
    BLOB_SOCKWRITE,
    BLOB_SOCKWRITEV,
    OPEN_CALLS,
    SF_BLOB_FAULT,
    SF_FD_FILE,
    SF_FD_SOCKET,
    SF_FD_UNIX,
    SF_FIRST_USE,
    SF_NO_ENTRY,
    SF_PAYLOAD,
    SF_SECCOMP_KILLED,
    SF_STR_FAULT,
    SOCKADDR_BLOBS,
    SOCKET_WRITES,
    STRS_MAX,
    SYSCALL,
    SYSCALLS,
    Syscall,
)

_SEND_BLOBS = (BLOB_SENDTO, BLOB_MSGHDR, BLOB_SOCKWRITE, BLOB_SOCKWRITEV)
_SYS = SYSCALL.struct
_TAIL = SYSCALL.fixed_size


@dataclass(frozen=True)
class _Plan:
    """A syscall's decoding, computed once."""

    name: str
    values: tuple[tuple[int, str, str, Callable[[int], Any]], ...]  # index, name, kind, fn
    slots: dict[int, int]          # argument index -> string slot
    path_args: tuple[str, ...]
    blob: int
    raw: RawDecoder | None


def _plan(s: Syscall) -> _Plan:
    values = tuple((i, n, k, KINDS.get(k, identity)) for i, (n, k) in enumerate(s.args)
                   if k != "ptr")
    return _Plan(s.name, values, {idx: slot for slot, idx in enumerate(s.strings)},
                 s.path_args, s.blob, s.raw)


_PLANS = {s.nr: _plan(s) for s in (*SYSCALLS, *OPEN_CALLS, *SOCKET_WRITES)}


def _family_name(name: str) -> str:
    """decode_sockaddr names four families; name the others too."""
    if name[3:].isdigit():
        return ADDRESS_FAMILIES.get(int(name[3:]), name)
    return name


def decode_syscall(hdr: Header, data: bytes) -> Event:
    t = _SYS.unpack_from(data)
    ret, raw_args, nr, sf = t[12], t[13:19], t[19], t[20]
    lens, blob_len, sa_len, addrlen, payload_len, payload_size = t[21:24], *t[24:29]
    tail = data[_TAIL:]
    strings: list[str | None] = []
    off = 0
    for n in lens:
        raw = tail[off:off + n]  # empty: no string (NULL, unreadable, or past the record)
        strings.append(text(raw.split(b"\0", 1)[0]) if raw else None)
        off += n
    off = min(off, STRS_MAX)
    blob = tail[off:off + blob_len]

    plan = _PLANS.get(nr)
    args: dict[str, Any] = {}
    if plan is None:  # outside the table (a first use): raw arguments
        name = name_of(nr)
        args = {f"arg{i}": v for i, v in enumerate(raw_args)}
        path = path2 = None
    else:
        name = plan.name
        for i, arg, kind, fn in plan.values:
            if kind in STRING_KINDS:
                slot = plan.slots[i]
                args[arg] = strings[slot] if slot < len(strings) else None
                continue
            args[arg] = fn(raw_args[i])
            if kind == "perm":
                mode = args[arg]
                args["setuid"] = bool(mode & 0o4000)
                args["setgid"] = bool(mode & 0o2000)
        paths = [args.get(p) for p in plan.path_args] + [None, None]
        path, path2 = paths[0], paths[1]

    family = address = query = None
    port = None
    if plan is not None and blob:
        blob_kind = plan.blob
        if blob_kind in SOCKADDR_BLOBS:
            if sa_len:
                fam, address, port = decode_sockaddr(blob[:sa_len], sa_len)
                family = _family_name(fam)
                if not addrlen and blob_kind in _SEND_BLOBS:
                    args["connected"] = True  # the connected socket's peer, read by the kernel
            if sf & SF_PAYLOAD:
                payload = blob[AW_SOCKADDR_MAX:AW_SOCKADDR_MAX + payload_len]
                query = dns_query(payload, payload_size)
        elif blob_kind == BLOB_CAPSET:
            capset(args, blob)
        elif blob_kind == BLOB_FDS_EXIT and len(blob) >= 8:
            args["fds"] = list(struct.unpack_from("<ii", blob))
        elif blob_kind == BLOB_RAW and plan.raw is not None:
            plan.raw(args, blob)
    if sf & SF_FD_FILE:  # dup family: what the new fd is, as the kernel read it
        args["socket"] = bool(sf & SF_FD_SOCKET)
        newfd = args.get("newfd", ret)
        if sf & SF_FD_SOCKET and isinstance(newfd, int) and 0 <= newfd <= 2:
            args["unix_socket"] = bool(sf & SF_FD_UNIX)  # on stdio (as the table says it)
    return SyscallEvent(
        **hdr, ret=ret, error=errno_name(ret), syscall=name, args=args, path=path,
        path2=path2, fault=bool(sf & (SF_STR_FAULT | SF_BLOB_FAULT)), family=family,
        address=address, port=port, dns_query=query, refused_at_entry=bool(sf & SF_NO_ENTRY),
        first_use=bool(sf & SF_FIRST_USE), seccomp_killed=bool(sf & SF_SECCOMP_KILLED),
    )


DECODERS = {AW_EV_SYSCALL: (SYSCALL, decode_syscall)}
