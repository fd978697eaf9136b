/* uring: io_uring operations of watched sessions.
 *
 * Traces: io_uring:io_uring_submit_req (a request passed the kernel's prep: its arguments
 * are in the kernel's `struct io_kiocb` now), io_uring:io_uring_complete (its result,
 * joined by the request pointer) and io_uring:io_uring_req_failed (prep refused it: no
 * submit_req fires, the SQE's fields are in the tracepoint).
 *
 * Who: the submitting task is the io_uring_enter() caller or the ring's SQPOLL thread
 * (iou-sqp-<pid>), a thread of the process that made the ring; io-wq workers
 * (iou-wrk-<pid>) are threads of the submitter's process too. So `watched` by tgid
 * covers all of them; completions are matched by the request, whoever posts them.
 *
 * What: opcode, the SQE's flags (the low byte of the request's flags), fd (a registered
 * file's index when IOSQE_FIXED_FILE), user_data; for OPENAT/OPENAT2 the dfd, open_how
 * and the path from the kernel's own copy (`struct filename`, taken at prep: no race
 * with the process's memory), and a direct-descriptor slot; for CONNECT and the SEND
 * family the socket address from the kernel's copy (`io_async_msghdr.addr`) and the
 * length. Offsets come from the running kernel's BTF (probes/uring.py, groups of
 * -DAW_OFF_* plus -DAW_URING_<GROUP>); a group this kernel lacks leaves its ops with
 * AW_UF_NO_BTF set, never a guess.
 *
 * The record waits in `uring_inflight` (keyed by the request; an open's path apart in
 * `uring_paths`) until its completion; an
 * op submitted with IOSQE_CQE_SKIP_SUCCESS, or when the table is full, is sent at once
 * without a result (AW_UF_CQE_SKIP / AW_UF_NO_SLOT). A completion whose ring or user_data
 * differs from the entry's (a request pointer reused by an unwatched ring) sends the old
 * entry without result (AW_UF_STALE). Multishot ops report their first completion.
 *
 * Cost (bpf_stats, run_time_ns per run, on the 2-core VM under other load): unwatched,
 * one hash lookup at submit and one (request-keyed) at completion, ~0.19 us per op; a
 * watched bulk op that is counted, not sent, ~0.27 us; a watched NOP sent in full
 * ~0.86 us; a watched OPENAT ~2.4 us (the 4 KiB path kept, then sent).
 */
#include "agentwatch.h"

#ifndef AW_URING_INFLIGHT
#define AW_URING_INFLIGHT 4096
#endif

/* IORING_OP_* (uapi/linux/io_uring.h: ABI) */
#define AW_IOP_SENDMSG 9
#define AW_IOP_CONNECT 16
#define AW_IOP_OPENAT 18
#define AW_IOP_READ_FIXED 4
#define AW_IOP_WRITE_FIXED 5
#define AW_IOP_READ 22
#define AW_IOP_WRITE 23
#define AW_IOP_SEND 26
#define AW_IOP_OPENAT2 28
#define AW_IOP_SEND_ZC 47
#define AW_IOP_SENDMSG_ZC 48

#define AW_REQ_F_CQE_SKIP 0x40ULL  /* REQ_F_CQE_SKIP = IOSQE_CQE_SKIP_SUCCESS (bit 6) */

/* aw_uring.uflags */
#define AW_UF_RESULT      0x1    /* res is the completion's */
#define AW_UF_CQE_SKIP    0x2    /* IOSQE_CQE_SKIP_SUCCESS: sent at submit, no result */
#define AW_UF_NO_SLOT     0x4    /* uring_inflight full: sent at submit, no result */
#define AW_UF_STALE       0x8    /* its completion was never seen (request reused) */
#define AW_UF_PREP_FAILED 0x10   /* refused at prep: res is the error, fields from the SQE */
#define AW_UF_NO_BTF      0x20   /* this op's fields have no offsets on this kernel */
#define AW_UF_PATH_FAULT  0x40   /* the path could not be read */
#define AW_UF_ADDR_FAULT  0x80   /* the socket address could not be read */
#define AW_UF_HAS_ADDR    0x100  /* addr holds a destination (addrlen bytes) */
#define AW_UF_USER_COPY   0x200  /* path/address read from the process's memory (prep
                                    failed: the kernel made no copy) */
#define AW_UF_HAS_PATH    0x400  /* an open: path, dfd, flags, mode, resolve are valid */
#define AW_UF_HAS_LEN     0x800  /* len is the op's byte count */
#define AW_UF_NO_FD       0x1000 /* fd unknown (prep failed before the SQE's fd was kept) */
#define AW_UF_ADDR_RACE   0x2000 /* the process's address buffer differs from the kernel's
                                    copy (changed after prep), or no copy was matched */

/* The record's fields after the header; `struct aw_uring` adds the path. */
#define AW_URING_FIELDS \
    s64 res;         /* the completion's result (with AW_UF_RESULT): an fd, a count */ \
    u64 user_data; \
    u64 req_flags;   /* REQ_F_*: the low byte is the SQE's IOSQE_* flags */ \
    u64 ring;        /* the ring (struct io_ring_ctx *): the join's check, not reported */ \
    u64 op_flags;    /* open_how.flags for opens, msg_flags for sends */ \
    u64 mode; \
    u64 resolve;     /* open_how.resolve (OPENAT2) */ \
    u64 len;         /* bytes to send / read / write (with AW_UF_HAS_LEN) */ \
    u64 count;       /* bulk ops: this thread group's ops of this kind so far */ \
    s32 fd;          /* the SQE's fd: a registered file's index with IOSQE_FIXED_FILE */ \
    s32 dfd;         /* opens: the directory fd */ \
    u32 file_slot;   /* opens: direct-descriptor slot + 1 (0: a normal fd) */ \
    u32 ctid;        /* the thread that posted the completion */ \
    u32 cpid;        /* its thread group */ \
    u32 uflags;      /* AW_UF_* */ \
    u32 path_len;    /* bytes of path, NUL included */ \
    u16 addrlen;     /* bytes of addr */ \
    u8 opcode;       /* IORING_OP_* */ \
    u8 sq_thread;    /* submitted by the ring's SQPOLL thread */ \
    u8 addr[AW_SOCKADDR_MAX];

struct aw_uring { AW_HDR_FIELDS AW_URING_FIELDS char path[AW_PATH_MAX]; };
struct aw_uring_fixed { AW_HDR_FIELDS AW_URING_FIELDS };  /* the same without the path */
struct aw_uring_path { char path[AW_PATH_MAX]; };

#ifndef AW_URING_PATHS
#define AW_URING_PATHS 1024
#endif

/* In flight, by request: the fixed part for every op (preallocated: no allocation per
 * op), the path apart for opens only (allocated when used), so that an op without a
 * path copies ~300 bytes, not 4 KiB, into the table. */
BPF_HASH(uring_inflight, u64, struct aw_uring_fixed, AW_URING_INFLIGHT);
BPF_F_TABLE("hash", u64, struct aw_uring_path, uring_paths, AW_URING_PATHS,
            BPF_F_NO_PREALLOC);
#ifdef AW_LAYOUT_CHECK
BPF_ARRAY(layout_uring, struct aw_uring, 1);  /* tests/test_layout.py */
#endif
BPF_PERCPU_ARRAY(uring_scratch, struct aw_uring, 1);

#define AW_RK(dst, base, off) \
    bpf_probe_read_kernel(&(dst), sizeof(dst), (const char *)(base) + (off))

static __always_inline void aw_uring_copy_addr(struct aw_uring *rec, const void *src,
                                               u64 len, int user)
{
    if (len > AW_SOCKADDR_MAX)
        len = AW_SOCKADDR_MAX;
    asm volatile("" : "+r"(len));
    if (len == 0 || len > AW_SOCKADDR_MAX)
        return;
    long err = user ? bpf_probe_read_user(rec->addr, len, src)
                    : bpf_probe_read_kernel(rec->addr, len, src);
    if (err) {
        rec->uflags |= AW_UF_ADDR_FAULT;
        return;
    }
    rec->addrlen = len;
    rec->uflags |= AW_UF_HAS_ADDR;
}

/* OPENAT/OPENAT2 after prep: struct io_open in the request's command area. */
static __always_inline void aw_uring_open_args(struct aw_uring *rec, const void *req)
{
#if defined(AW_URING_REQ) && defined(AW_URING_OPEN)
    const char *cmd = (const char *)req + AW_OFF_io_kiocb__cmd;
    AW_RK(rec->dfd, cmd, AW_OFF_io_open__dfd);
    AW_RK(rec->file_slot, cmd, AW_OFF_io_open__file_slot);
    AW_RK(rec->op_flags, cmd, AW_OFF_io_open__how__flags);
    AW_RK(rec->mode, cmd, AW_OFF_io_open__how__mode);
    AW_RK(rec->resolve, cmd, AW_OFF_io_open__how__resolve);
    rec->uflags |= AW_UF_HAS_PATH;
    const void *fname = NULL;
    const char *name = NULL;
    long n = -1;
    if (AW_RK(fname, cmd, AW_OFF_io_open__filename) == 0 && fname &&
        AW_RK(name, fname, AW_OFF_filename__name) == 0 && name)
        n = bpf_probe_read_kernel_str(rec->path, sizeof(rec->path), name);
    if (n < 0) {
        n = 0;
        rec->uflags |= AW_UF_PATH_FAULT;
    }
    rec->path_len = n;
#else
    rec->uflags |= AW_UF_NO_BTF;
#endif
}

/* CONNECT's kernel copy of the address: newer kernels (and stable backports of
 * "io_uring/net: Avoid msghdr on op_connect/op_bind async data", 2026) keep a bare
 * sockaddr_storage as the request's async data, older ones an io_async_msghdr with the
 * address at .addr; no struct layout tells them apart. Both candidates are read and
 * compared with the process's buffer (read right after prep): the one that matches
 * teaches `uring_learned` which layout this kernel has, and from then on the learned
 * candidate is reported even when the process changed its buffer after the kernel's
 * copy (AW_UF_ADDR_RACE). Before anything is learned a mismatch reports the process's
 * buffer, flagged. */
struct aw_uring_addrs {
    u64 u[AW_SOCKADDR_MAX / 8];   /* the process's buffer */
    u64 k0[AW_SOCKADDR_MAX / 8];  /* async data + 0 (sockaddr_storage) */
    u64 k1[AW_SOCKADDR_MAX / 8];  /* async data + io_async_msghdr.addr */
};
BPF_PERCPU_ARRAY(uring_addrs, struct aw_uring_addrs, 1);
BPF_ARRAY(uring_learned, u32, 1);  /* 0 unknown, 1 async+0, 2 io_async_msghdr.addr */

#define AW_UL_BARE 1
#define AW_UL_MSGHDR 2

static __always_inline int aw_uring_same(const u64 *a, const u64 *b)
{
    u64 diff = 0;
    for (int i = 0; i < AW_SOCKADDR_MAX / 8; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

#if defined(AW_URING_REQ) && defined(AW_URING_NET)
static __always_inline void aw_uring_connect_addr(struct aw_uring *rec, const char *cmd,
                                                  const char *io)
{
    s32 alen = 0;
    const void *uaddr = NULL;
    AW_RK(alen, cmd, AW_OFF_io_connect__addr_len);
    AW_RK(uaddr, cmd, AW_OFF_io_connect__addr);
    u32 zero = 0;
    struct aw_uring_addrs *s = uring_addrs.lookup(&zero);
    u32 *learned = uring_learned.lookup(&zero);
    if (!s || !learned || alen <= 0)
        return;
    u64 len = alen;
    if (len > AW_SOCKADDR_MAX)
        len = AW_SOCKADDR_MAX;
    asm volatile("" : "+r"(len));
    if (len == 0 || len > AW_SOCKADDR_MAX)
        return;
    __builtin_memset(s, 0, sizeof(*s));
    int ru = bpf_probe_read_user(s->u, len, uaddr) == 0;
    int r0 = io && bpf_probe_read_kernel(s->k0, len, io) == 0;
    int r1 = io && bpf_probe_read_kernel(s->k1, len, io + AW_OFF_io_async_msghdr__addr) == 0;
    int m0 = ru && r0 && aw_uring_same(s->u, s->k0);
    int m1 = ru && r1 && aw_uring_same(s->u, s->k1);
    if (m0 != m1)
        *learned = m0 ? AW_UL_BARE : AW_UL_MSGHDR;
    const u64 *pick = NULL;
    if (*learned == AW_UL_BARE && r0)
        pick = s->k0;
    else if (*learned == AW_UL_MSGHDR && r1)
        pick = s->k1;
    if (pick) {
        if (pick == s->k0 ? !m0 : !m1)
            rec->uflags |= AW_UF_ADDR_RACE;
    } else if (ru) {
        pick = s->u;
        rec->uflags |= AW_UF_USER_COPY | ((r0 || r1) ? AW_UF_ADDR_RACE : 0);
    } else {
        rec->uflags |= AW_UF_ADDR_FAULT;
        return;
    }
    __builtin_memcpy(rec->addr, pick, AW_SOCKADDR_MAX);
    rec->addrlen = len;
    rec->uflags |= AW_UF_HAS_ADDR;
}
#endif

/* CONNECT and the SEND family after prep: the kernel's copy of the address is in the
 * request's async data; struct io_connect / io_sr_msg in the command area. */
static __always_inline void aw_uring_net_args(struct aw_uring *rec, const void *req, u8 op)
{
#if defined(AW_URING_REQ) && defined(AW_URING_NET)
    const char *cmd = (const char *)req + AW_OFF_io_kiocb__cmd;
    const char *io = NULL;
    AW_RK(io, req, AW_OFF_io_kiocb__async_data);
    if (op == AW_IOP_CONNECT) {
        aw_uring_connect_addr(rec, cmd, io);
        return;
    }
    u32 msg_flags = 0;
    AW_RK(msg_flags, cmd, AW_OFF_io_sr_msg__msg_flags);
    rec->op_flags = msg_flags;
    if (op == AW_IOP_SEND || op == AW_IOP_SEND_ZC) {
        s32 len = 0;
        AW_RK(len, cmd, AW_OFF_io_sr_msg__len);
        rec->len = (u32)len;
        rec->uflags |= AW_UF_HAS_LEN;
    }
    if (!io)
        return;
    if (op == AW_IOP_SENDMSG || op == AW_IOP_SENDMSG_ZC) {
        u64 count = 0;
        if (AW_RK(count, io, AW_OFF_io_async_msghdr__msg__msg_iter__count) == 0) {
            rec->len = count;
            rec->uflags |= AW_UF_HAS_LEN;
        }
    }
    const void *name = NULL;
    s32 namelen = 0;
    AW_RK(name, io, AW_OFF_io_async_msghdr__msg__msg_name);
    AW_RK(namelen, io, AW_OFF_io_async_msghdr__msg__msg_namelen);
    if (name && namelen > 0)
        aw_uring_copy_addr(rec, io + AW_OFF_io_async_msghdr__addr, namelen, 0);
#else
    rec->uflags |= AW_UF_NO_BTF;
#endif
}

static __always_inline void aw_uring_rw_args(struct aw_uring *rec, const void *req)
{
#if defined(AW_URING_REQ) && defined(AW_URING_RW)
    u32 len = 0;
    if (AW_RK(len, (const char *)req + AW_OFF_io_kiocb__cmd, AW_OFF_io_rw__len) == 0) {
        rec->len = len;
        rec->uflags |= AW_UF_HAS_LEN;
    }
#endif
}

/* Bulk ops (AW_URING_BULK: a bit per opcode below 64, from probes/uring.py's BULK:
 * reads, writes, polls, timeouts, NOPs...) and sends without a destination carry nothing
 * a detector judges and cost a process nothing to repeat: a flood of them must not fill
 * the ring the opens and connects go through. Per thread group and opcode they are
 * counted in the kernel and reported at the 1st, 2nd, 4th ... 1024th op, then every
 * 1024th, with the count (rec->count); the ops in between are summarised, not sent. */
#ifndef AW_URING_BULK
#define AW_URING_BULK 0ULL
#endif
struct aw_uring_key { u32 tgid; u32 op; };
BPF_TABLE("lru_hash", struct aw_uring_key, u64, uring_bulk, 16384);

static __always_inline u64 aw_uring_bulk_count(u64 id, u8 op)
{
    struct aw_uring_key k = {.tgid = id >> 32, .op = op};
    u64 *n = uring_bulk.lookup(&k);
    u64 count = 1;
    if (n)
        count = __sync_fetch_and_add(n, 1) + 1;
    else
        uring_bulk.update(&k, &count);
    if (count <= 1024 ? (count & (count - 1)) == 0 : (count & 1023) == 0)
        return count;
    return 0;  /* counted, not sent */
}

static __always_inline struct aw_uring *aw_uring_new(struct aw_proc *p, u64 id, u64 ring,
                                                     u64 user_data, u8 op, u64 req_flags)
{
    u32 zero = 0;
    struct aw_uring *rec = uring_scratch.lookup(&zero);
    if (!rec)
        return NULL;
    aw_fill_hdr((struct aw_hdr *)rec, AW_EV_URING, p, id);
    rec->res = 0;
    rec->user_data = user_data;
    rec->req_flags = req_flags;
    rec->ring = ring;
    rec->op_flags = 0;
    rec->mode = 0;
    rec->resolve = 0;
    rec->len = 0;
    rec->count = 0;
    rec->fd = -1;
    rec->dfd = AT_FDCWD;
    rec->file_slot = 0;
    rec->ctid = 0;
    rec->cpid = 0;
    rec->uflags = 0;
    rec->path_len = 0;
    rec->addrlen = 0;
    rec->opcode = op;
    rec->sq_thread = 0;
    return rec;
}

static __always_inline void aw_uring_send(struct aw_uring *rec)
{
    aw_submit(rec, offsetof(struct aw_uring, path) + rec->path_len, sizeof(*rec));
}

/* io_uring_submit_req: the request passed prep and is about to be issued. */
static __always_inline int aw_uring_submit(u64 ring, u64 req, u64 user_data, u8 op,
                                           u64 req_flags, u8 sq_thread)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    u64 count = 0;
    if (op < 64 && ((AW_URING_BULK >> op) & 1)) {
        count = aw_uring_bulk_count(id, op);
        if (!count)
            return 0;
    }
    struct aw_uring *rec = aw_uring_new(p, id, ring, user_data, op, req_flags);
    if (!rec)
        return 0;
    rec->count = count;
    rec->sq_thread = sq_thread;
#ifdef AW_URING_REQ
    AW_RK(rec->fd, (const char *)req, AW_OFF_io_kiocb__cqe__fd);
#else
    rec->uflags |= AW_UF_NO_BTF | AW_UF_NO_FD;
#endif
    const void *r = (const void *)req;
    switch (op) {
    case AW_IOP_OPENAT:
    case AW_IOP_OPENAT2:
        aw_uring_open_args(rec, r);
        break;
    case AW_IOP_CONNECT:
    case AW_IOP_SEND:
    case AW_IOP_SENDMSG:
    case AW_IOP_SEND_ZC:
    case AW_IOP_SENDMSG_ZC:
        aw_uring_net_args(rec, r, op);
        if (op != AW_IOP_CONNECT && !(rec->uflags & (AW_UF_HAS_ADDR | AW_UF_NO_BTF))) {
            /* on a connected socket: judged at its connect, bulk like a read */
            rec->count = aw_uring_bulk_count(id, op);
            if (!rec->count)
                return 0;
        }
        break;
    case AW_IOP_READ:
    case AW_IOP_WRITE:
    case AW_IOP_READ_FIXED:
    case AW_IOP_WRITE_FIXED:
        aw_uring_rw_args(rec, r);
        break;
    default:
        break;
    }
    if ((op == AW_IOP_OPENAT || op == AW_IOP_OPENAT2) && rec->path_len &&
        (aw_enforce_mask(p) & AW_EN_PATHS)) {
        /* the kernel rule on literal paths (decoys, runtime sockets, agentwatch's own
         * files), as for open(): the submitter is killed before the op runs in a worker
         * or returns; its record goes to the enforced ring */
        u32 why = aw_path_denied(rec->path, sizeof(rec->path));
        if (why) {
            aw_kill_current((struct aw_hdr *)rec, why, p);
            aw_submit_enforced(rec, offsetof(struct aw_uring, path) + rec->path_len,
                               sizeof(*rec));
            return 0;
        }
    }
    if (req_flags & AW_REQ_F_CQE_SKIP) {
        rec->uflags |= AW_UF_CQE_SKIP;
        aw_uring_send(rec);
        return 0;
    }
    int has_path = rec->path_len > 0;
    if (has_path && uring_paths.update(&req, (struct aw_uring_path *)rec->path) != 0) {
        rec->uflags |= AW_UF_NO_SLOT;
        aw_uring_send(rec);
        return 0;
    }
    if (uring_inflight.update(&req, (struct aw_uring_fixed *)rec) != 0) {
        if (has_path)
            uring_paths.delete(&req);
        rec->uflags |= AW_UF_NO_SLOT;
        aw_uring_send(rec);
    }
    return 0;
}

/* io_uring_complete: the request's result, posted by whichever task completes it. */
static __always_inline int aw_uring_complete(u64 ring, u64 req, u64 user_data, s32 res)
{
    struct aw_uring_fixed *f = uring_inflight.lookup(&req);
    if (!f)
        return 0;
    u32 zero = 0;
    struct aw_uring *rec = uring_scratch.lookup(&zero);
    if (!rec)
        return 0;
    __builtin_memcpy(rec, f, sizeof(*f));
    uring_inflight.delete(&req);
    if (rec->ring != ring || rec->user_data != user_data) {
        rec->uflags |= AW_UF_STALE;
    } else {
        u64 id = bpf_get_current_pid_tgid();
        rec->res = res;
        rec->uflags |= AW_UF_RESULT;
        rec->ctid = (u32)id;
        rec->cpid = id >> 32;
    }
    if (rec->path_len > 0) {
        struct aw_uring_path *path = uring_paths.lookup(&req);
        u64 len = rec->path_len;
        if (len > AW_PATH_MAX)
            len = AW_PATH_MAX;
        asm volatile("" : "+r"(len));
        if (!path || len == 0 || len > AW_PATH_MAX ||
            bpf_probe_read_kernel(rec->path, len, path->path) != 0) {
            rec->path_len = 0;
            rec->uflags |= AW_UF_PATH_FAULT;
        }
        uring_paths.delete(&req);
    }
    aw_uring_send(rec);
    return 0;
}

/* io_uring_req_failed: prep refused the SQE (no submit_req): what the SQE said, read
 * from the tracepoint, and the path or address from the process's memory. */
static __always_inline int aw_uring_prep_failed(u64 ring, u64 req, u64 user_data, u8 op,
                                                u8 sqe_flags, u64 off, u64 addr, u32 len,
                                                u32 op_flags, u32 file_index, s32 error)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    struct aw_uring *old = uring_inflight.lookup(&req);
    if (old && old->ring == ring && old->user_data == user_data)
        return 0;  /* issued already: its completion reports the error */
    struct aw_uring *rec = aw_uring_new(p, id, ring, user_data, op, sqe_flags);
    if (!rec)
        return 0;
    rec->res = error;
    rec->uflags = AW_UF_PREP_FAILED | AW_UF_RESULT | AW_UF_NO_FD | AW_UF_USER_COPY;
    rec->ctid = (u32)id;
    rec->cpid = id >> 32;
    if (op == AW_IOP_OPENAT || op == AW_IOP_OPENAT2) {
        /* the SQE's fd (the dfd) is not in this tracepoint: dfd unknown */
        rec->uflags |= AW_UF_HAS_PATH;
        rec->dfd = AT_FDCWD;
        rec->file_slot = file_index;
        if (op == AW_IOP_OPENAT) {
            rec->op_flags = op_flags;
            rec->mode = len;
        } else {
            u64 how[3] = {};
            if (bpf_probe_read_user(how, sizeof(how), (const void *)off) == 0) {
                rec->op_flags = how[0];
                rec->mode = how[1];
                rec->resolve = how[2];
            }
        }
        long n = bpf_probe_read_user_str(rec->path, sizeof(rec->path), (const void *)addr);
        if (n < 0) {
            n = 0;
            rec->uflags |= AW_UF_PATH_FAULT;
        }
        rec->path_len = n;
    } else if (op == AW_IOP_CONNECT) {
        aw_uring_copy_addr(rec, (const void *)addr, off, 1);
    } else if (op == AW_IOP_SEND || op == AW_IOP_SEND_ZC) {
        rec->len = len;
        rec->op_flags = op_flags;
        rec->uflags |= AW_UF_HAS_LEN;
        if (off)  /* addr2: the destination; its length is the SQE's addr_len */
            aw_uring_copy_addr(rec, (const void *)off, file_index & 0xffff, 1);
    }
    aw_uring_send(rec);
    return 0;
}

TRACEPOINT_PROBE(io_uring, io_uring_submit_req)
{
    return aw_uring_submit((u64)args->ctx, (u64)args->req, args->user_data, args->opcode,
                           args->flags, args->sq_thread);
}

TRACEPOINT_PROBE(io_uring, io_uring_complete)
{
    return aw_uring_complete((u64)args->ctx, (u64)args->req, args->user_data, args->res);
}

TRACEPOINT_PROBE(io_uring, io_uring_req_failed)
{
    return aw_uring_prep_failed((u64)args->ctx, (u64)args->req, args->user_data,
                                args->opcode, args->flags, args->off, args->addr, args->len,
                                args->op_flags, args->file_index, args->error);
}
