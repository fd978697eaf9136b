"""Decoder for uring.bpf.c's records: io_uring operations as the events detectors know.

An OPENAT/OPENAT2 becomes an `open` event (syscall openat/openat2), a CONNECT a `connect`
event, the SEND family (SEND, SEND_ZC, SENDMSG, SENDMSG_ZC) a `syscall` event named
sendto or sendmsg with its destination where it has one; each with `via: "io_uring"` and
an `io_uring` object (op, SQE flags, whether the result is known, who completed it).
Every other op is an `io_uring` event with its name. The detectors need not know
io_uring: an open is an open.
"""

from __future__ import annotations

from typing import Any

from collector.decode.file import flag_names
from collector.decode.net import decode_sockaddr
from collector.events import (
    ConnectEvent,
    Event,
    OpenEvent,
    SyscallEvent,
    UringEvent,
    errno_name,
    text,
)
from probes.layout import Header
from probes.linux import ADDRESS_FAMILIES, KINDS
from probes.uring import (
    AT_FDCWD,
    AW_EV_URING,
    CONNECT,
    IOSQE_FIXED_FILE,
    NEEDS_FILE,
    OPENS,
    SENDS,
    SQE_FLAGS,
    UF_ADDR_FAULT,
    UF_ADDR_RACE,
    UF_CQE_SKIP,
    UF_HAS_ADDR,
    UF_HAS_LEN,
    UF_HAS_PATH,
    UF_NO_BTF,
    UF_NO_FD,
    UF_NO_SLOT,
    UF_PATH_FAULT,
    UF_PREP_FAILED,
    UF_RESULT,
    UF_STALE,
    UF_USER_COPY,
    URING,
    op_name,
)

_URING = URING.struct
_ADDR = URING.offsets["addr"]
_TAIL = URING.fixed_size
_MSG_FLAGS = KINDS["msg_flags"]


def _result(uf: int) -> str:
    if uf & UF_PREP_FAILED:
        return "prep_failed"          # refused before it was issued; ret is the error
    if uf & UF_RESULT:
        return "complete"
    if uf & UF_CQE_SKIP:
        return "cqe_skipped"          # IOSQE_CQE_SKIP_SUCCESS: no completion on success
    if uf & UF_NO_SLOT:
        return "table_full"           # the kernel's in-flight table was full
    if uf & UF_STALE:
        return "not_seen"             # its completion was never traced
    return "unknown"


def _sqe_flags(req_flags: int) -> list[str]:
    return [name for bit, name in SQE_FLAGS if req_flags & bit]


def decode_uring(hdr: Header, data: bytes) -> Event:
    t = _URING.unpack_from(data)
    (res, user_data, req_flags, _ring, op_flags, mode, resolve, length, count, fd, dfd,
     file_slot, ctid, _cpid, uf, path_len, addrlen, opcode, sq_thread, _addr) = t[12:32]
    result = _result(uf)
    known = result in ("complete", "prep_failed")
    ret = res if known else 0
    info: dict[str, Any] = {
        "op": op_name(opcode), "opcode": opcode, "user_data": user_data,
        "sqe_flags": _sqe_flags(req_flags), "fixed_file": bool(req_flags & IOSQE_FIXED_FILE),
        "sq_thread": bool(sq_thread), "result": result,
        "completed_by": ctid if uf & UF_RESULT and not uf & UF_PREP_FAILED else None,
    }
    if count:
        # a bulk op: this process's ops of this kind so far (sent at the 1st, 2nd, 4th ...
        # 1024th, then every 1024th; those between are counted in the kernel, not sent)
        info["count"] = count
    if uf & UF_NO_BTF:
        info["unreadable"] = True     # this kernel's BTF lacks the op's fields
    if uf & (UF_HAS_PATH | UF_HAS_ADDR):
        # the path or address as the kernel copied it at prep, or (prep failed, or no
        # kernel copy matched) as the process's memory held it just after
        info["copy"] = "process" if uf & UF_USER_COPY else "kernel"
    if uf & UF_ADDR_RACE:
        info["addr_race"] = True      # the process's buffer no longer held what was used
    common: dict[str, Any] = {**hdr, "ret": ret, "error": errno_name(ret), "via": "io_uring",
                              "io_uring": info}

    if opcode in OPENS:
        path = ""
        if uf & UF_HAS_PATH:
            path = text(data[_TAIL:_TAIL + path_len].split(b"\0", 1)[0])
        info["direct_slot"] = file_slot - 1 if file_slot else None  # a registered slot
        if uf & UF_PREP_FAILED:
            info["dfd_unknown"] = True  # the failed SQE's fd is not in the tracepoint
        return OpenEvent(
            **common, syscall=OPENS[opcode], path=path, raw_path=path,
            dfd=None if dfd == AT_FDCWD else dfd, flags=op_flags,
            flag_names=flag_names(op_flags), mode=mode, resolve=resolve,
            fault=bool(uf & (UF_PATH_FAULT | UF_NO_BTF)))

    family, address, port = "AF_UNSPEC", None, None
    if uf & UF_HAS_ADDR:
        raw = data[_ADDR:_ADDR + min(addrlen, len(data) - _ADDR)]
        family, address, port = decode_sockaddr(raw, addrlen)
        if family[3:].isdigit():
            family = ADDRESS_FAMILIES.get(int(family[3:]), family)
    fd_or_none = None if uf & UF_NO_FD else fd
    if opcode == CONNECT:
        return ConnectEvent(**common, fd=fd if fd_or_none is not None else -1,
                            family=family, address=address, port=port, addrlen=addrlen)
    if opcode in SENDS:
        args: dict[str, Any] = {"fd": fd_or_none, "len": length if uf & UF_HAS_LEN else None,
                                "flags": _MSG_FLAGS(op_flags)}
        if uf & UF_HAS_ADDR:
            args["addrlen"] = addrlen
        return SyscallEvent(
            **common, syscall=SENDS[opcode], args=args, family=family if uf & UF_HAS_ADDR else None,
            address=address, port=port, fault=bool(uf & (UF_ADDR_FAULT | UF_NO_BTF)))
    return UringEvent(
        **common, op=op_name(opcode),
        fd=fd_or_none if opcode in NEEDS_FILE else None,
        len=length if uf & UF_HAS_LEN else None)


DECODERS = {AW_EV_URING: (URING, decode_uring)}
