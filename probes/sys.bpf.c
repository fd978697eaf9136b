/* sys: one generic probe pair for many syscalls, driven by a table user space fills.
 *
 * Traces: every syscall of probes/syscalls.py's table (file system changes, namespaces and
 * mounts, credentials, modules and bpf, ptrace and signals, sockets, dup), routed here by
 * the syscall dispatcher (dispatch.bpf.c: raw sys_enter/sys_exit, `sys_route[nr]` ==
 * AW_RT_SYS), 32-bit doors included (their arguments decoded by aw_call_decode), and every
 * 32-bit call of a task the compat rule kills. The OTHER route's first-use records of calls
 * outside the table are this record too (AW_SF_FIRST_USE, raw arguments only).
 * `sys_spec[nr]`, filled by user space at load time, says what to copy besides the six raw
 * arguments: up to three user strings (two of up to AW_PATH_MAX bytes, a third of up to
 * AW_SYS_STR2_MAX), one "blob" (a socket address, a send's first bytes, capset's data, a
 * small struct; accept's peer and socketpair's fds are read at exit, where the kernel has
 * written them), and an optional filter (ioctl: only TIOCSTI/TIOCLINUX; fcntl: only
 * F_DUPFD/F_DUPFD_CLOEXEC). Entry state is kept per thread; the event is sent at exit with
 * the return value, so refused attempts (EPERM, EROFS, ENOENT) are seen too. This file holds
 * the table's C side, the record, the maps and the argument readers; the programs and the
 * kernel rules follow in sys_progs.bpf.c (the loader concatenates the two).
 *
 * Cannot see: strings past their bounds; anything a racing thread changes between our read at entry
 * and the kernel's own copy. Sends: a send with a destination address is always
 * reported; one without (a connected socket) only when its first bytes look like a DNS
 * query, since its destination was seen at connect(), or under aw_sockw.h's rule for a
 * process flagged AW_PF_SOCKW, whose write()/writev() on sockets also come here (others'
 * are quiet). Such sends carry the socket's inet peer (include/aw_peer.h). Payload bytes are copied only to find a DNS query name (at most
 * AW_SYS_PAYLOAD_MAX bytes, only for destination port 53 or no destination).
 *
 * Cost: unwatched, nothing here (the dispatcher's one hash lookup). Watched: an array
 * lookup, a 128-byte kernel read (the saved registers), the strings, a per-thread entry allocated on use (BPF_F_NO_PREALLOC), and a
 * ring-buffer copy of the bytes used.
 */
#include "agentwatch.h"
#include "aw_resolve.h"
#include "aw_peer.h"
#define AW_HAVE_SYS 1

#define AW_SYS_NARGS 6
#define AW_SYS_SPECS AW_NR_MAX      /* syscall numbers below this can be traced */
#define AW_SYS_STR2_MAX 256         /* third string (mount's fstype) */
#define AW_SYS_PAYLOAD_MAX 320      /* a DNS header and the longest name fit */
#define AW_SYS_STRS (2 * AW_PATH_MAX + AW_SYS_STR2_MAX)
#define AW_SYS_BLOB_MAX (AW_SOCKADDR_MAX + AW_SYS_PAYLOAD_MAX)
#define AW_SYS_DATA (AW_SYS_STRS + AW_SYS_BLOB_MAX)

/* What to copy besides the arguments (struct aw_sys_spec.blob). */
#define AW_BLOB_NONE 0
#define AW_BLOB_SOCKADDR 1       /* sockaddr at arg a, its length in arg b (bind) */
#define AW_BLOB_SOCKADDR_EXIT 2  /* at exit: sockaddr at arg a, its length at *(int *)arg b */
#define AW_BLOB_SENDTO 3         /* sockaddr at args 4/5, payload at args 1/2 */
#define AW_BLOB_MSGHDR 4         /* struct user_msghdr at arg 1: msg_name, iov[0]'s bytes */
#define AW_BLOB_CAPSET 5         /* 8-byte header at arg 0, 24 bytes of data at arg 1 */
#define AW_BLOB_FDS_EXIT 6       /* at exit, on success: int[2] at arg a (socketpair) */
#define AW_BLOB_RAW 7            /* blob_size bytes at arg a */
#define AW_BLOB_SOCKWRITE 8      /* write() on a socket: payload at args 1/2 (aw_sockw.h) */
#define AW_BLOB_SOCKWRITEV 9     /* writev() on a socket: iov[0] of the iovec at arg 1 */

#define AW_NOARG 0xff

/* aw_sys.sys_flags */
#define AW_SF_STR_FAULT 0x1      /* a string argument could not be read */
#define AW_SF_BLOB_FAULT 0x2     /* the blob (or part of it) could not be read */
#define AW_SF_PAYLOAD 0x4        /* payload bytes follow the sockaddr area of the blob */
#define AW_SF_NO_ENTRY 0x8       /* refused before sys_enter (seccomp): seen at exit only */
#define AW_SF_FIRST_USE 0x10     /* a call outside the table, first used by its session */
#define AW_SF_SECCOMP_KILLED 0x20 /* a seccomp filter killed the caller (SIGSYS) at this call */
#define AW_SF_FD_FILE 0x40       /* dup family: the new fd's file was read at exit ... */
#define AW_SF_FD_SOCKET 0x80     /* ... and it is a socket */
#define AW_SF_FD_UNIX 0x100      /* ... of AF_UNIX */

/* One per syscall number, written by user space (probes/syscalls.py). */
struct aw_sys_spec {
    u8 on;          /* 1: this number is traced */
    u8 nargs;       /* arguments the syscall takes; the others are zeroed */
    u8 str0;        /* argument index of each user string to copy, AW_NOARG for none */
    u8 str1;
    u8 str2;        /* bounded by AW_SYS_STR2_MAX */
    u8 blob;        /* AW_BLOB_* */
    u8 blob_a;      /* argument indexes the blob reader uses */
    u8 blob_b;
    u16 blob_size;  /* AW_BLOB_RAW: bytes to copy (at most AW_SOCKADDR_MAX) */
    u8 filter_arg;  /* AW_NOARG: always; else only if (arg & filter_mask) is one of v1-v4 */
    u8 enforce;     /* AW_SE_*: the kernel may kill for this call (0: never) */
    u8 _pad[4];
    u64 filter_mask;
    u64 filter_v1;
    u64 filter_v2;
    u64 filter_v3;
    u64 filter_v4;
};

#define AW_UNSHARE_NEW (AW_CLONE_NEW | AW_CLONE_NEWTIME)

/* The record: data[] holds the strings, packed (str0, str1, str2), then the blob. For
 * socket blobs the sockaddr area is AW_SOCKADDR_MAX bytes when a payload follows it. */
struct aw_sys {
    AW_HDR_FIELDS
    s64 ret;
    u64 arg0;          /* raw arguments as the kernel got them */
    u64 arg1;
    u64 arg2;
    u64 arg3;
    u64 arg4;
    u64 arg5;
    u32 nr;            /* x86_64 syscall number */
    u32 sys_flags;     /* AW_SF_* */
    u32 str0_len;      /* bytes of each string in data[], NUL included; 0: none */
    u32 str1_len;
    u32 str2_len;
    u32 blob_len;      /* bytes of data[] after the strings */
    u32 sa_len;        /* sockaddr bytes copied (start of the blob) */
    u32 addrlen;       /* sockaddr length as passed, or as the kernel returned it (accept) */
    u32 payload_len;   /* payload bytes copied, at blob + AW_SOCKADDR_MAX */
    u32 payload_size;  /* bytes the process asked to send (first iovec for sendmsg) */
    char data[AW_SYS_DATA];
};

BPF_ARRAY(sys_spec, struct aw_sys_spec, AW_SYS_SPECS);
BPF_F_TABLE("hash", u32, struct aw_sys, sys_inflight, AW_MAX_INFLIGHT, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(sys_scratch, struct aw_sys, 1);

/* Calls outside the table, per session: (session, number, ABI) -> uses. LRU: a long
 * session's oldest entries may go, and their next use is reported again. */
struct aw_seen_key {
    u64 session;
    u32 nr;    /* as aw_call.nr */
    u32 abi;
};
BPF_TABLE("lru_hash", struct aw_seen_key, u64, sys_seen, 16384);

static __always_inline u64 aw_sys_arg(const struct aw_sys *rec, u32 i)
{
    const u64 *a = &rec->arg0;
    if (i >= AW_SYS_NARGS)
        return 0;
    return a[i];
}

/* Copy a user string to data[off]; returns the bytes used. `max` is a constant once
 * inlined; off must already be bounded by the caller. */
static __always_inline u32 aw_sys_str(struct aw_sys *rec, u64 off, u32 idx, u32 max)
{
    if (idx >= AW_SYS_NARGS)
        return 0;
    u64 ptr = aw_sys_arg(rec, idx);
    if (!ptr)
        return 0;  /* NULL: no string (mount's source on a remount, for instance) */
    long n = bpf_probe_read_user_str(&rec->data[off], max, (void *)ptr);
    if (n < 0) {
        rec->sys_flags |= AW_SF_STR_FAULT;
        return 0;
    }
    return n;
}

/* Bytes of data[] used by the strings: where the blob starts (bounded for the verifier). */
static __always_inline u64 aw_sys_blob_off(const struct aw_sys *rec)
{
    u64 off = (u64)rec->str0_len + rec->str1_len + rec->str2_len;
    if (off > AW_SYS_STRS)
        off = AW_SYS_STRS;
    /* Hand the verifier the clamped register (clang may keep an unclamped copy). */
    asm volatile("" : "+r"(off));
    if (off > AW_SYS_STRS)
        off = AW_SYS_STRS;
    return off;
}

/* Copy up to AW_SOCKADDR_MAX bytes of a sockaddr to the blob start. */
static __always_inline void aw_sys_sockaddr(struct aw_sys *rec, u64 boff, u64 ptr, u64 len)
{
    if (!ptr || !len)
        return;
    if (len > AW_SOCKADDR_MAX)
        len = AW_SOCKADDR_MAX;
    asm volatile("" : "+r"(len));
    if (len == 0 || len > AW_SOCKADDR_MAX)
        return;
    if (bpf_probe_read_user(&rec->data[boff], len, (void *)ptr) != 0) {
        rec->sys_flags |= AW_SF_BLOB_FAULT;
        return;
    }
    rec->sa_len = len;
    rec->blob_len = len;
}

/* A DNS query header: QR=0, opcode QUERY, one question, no answer or authority records. */
static __always_inline int aw_dns_header(const u8 *h)
{
    return (h[2] & 0xf8) == 0 && h[4] == 0 && h[5] == 1 && h[6] == 0 && h[7] == 0 &&
           h[8] == 0 && h[9] == 0;
}

/* A send's first bytes. With a destination: copied only for port 53 (AF_INET/AF_INET6).
 * Without one (connected socket): returns 0, so that no event is sent, unless the bytes
 * look like a DNS query (over UDP, or over TCP with its 2-byte length first). */
static __always_inline int aw_sys_payload(struct aw_sys *rec, u64 boff, u64 buf, u64 len)
{
    rec->payload_size = len > 0xffffffffULL ? 0xffffffff : len;
    u8 *blob = (u8 *)&rec->data[boff];
    u8 *pl = blob + AW_SOCKADDR_MAX;
    if (rec->addrlen) {
        /* a destination: always reported; its payload only for port 53 */
        u16 family = *(u16 *)blob;
        if (rec->sa_len < 4 || (family != 2 /* AF_INET */ && family != 10 /* AF_INET6 */) ||
            blob[2] != 0 || blob[3] != 53 || !buf || len == 0)
            return 1;
    } else {
        /* a connected socket: look at the header before copying more */
        if (!buf || len < 17 || bpf_probe_read_user(pl, 14, (void *)buf) != 0)
            return 0;
        u32 tcp_len = ((u32)pl[0] << 8) | pl[1];
        if (!aw_dns_header(pl) && !(tcp_len + 2 == len && aw_dns_header(pl + 2)))
            return 0;
    }
    if (len > AW_SYS_PAYLOAD_MAX)
        len = AW_SYS_PAYLOAD_MAX;
    asm volatile("" : "+r"(len));
    if (len == 0 || len > AW_SYS_PAYLOAD_MAX)
        return 1;
    if (bpf_probe_read_user(pl, len, (void *)buf) != 0) {
        rec->sys_flags |= AW_SF_BLOB_FAULT;
        return 1;
    }
    rec->payload_len = len;
    rec->sys_flags |= AW_SF_PAYLOAD;
    rec->blob_len = AW_SOCKADDR_MAX + len;
    return 1;
}

/* A send without destination on a connected socket (send, sendmsg, write, writev) of a
 * process flagged AW_PF_SOCKW that is not a DNS query: reported under aw_sockw_due's rule
 * (include/aw_sockw.h). Returns the socket when it is to be reported, else NULL. `sk`:
 * the socket when the caller has it (else it is found from `fd`, flagged processes only). */
static __always_inline void *aw_sys_sockw(struct aw_sys *rec, s64 fd, void *sk)
{
    struct aw_proc *p = aw_current((u64)rec->pid << 32);
    if (!p || !(p->flags & AW_PF_SOCKW))
        return 0;
    if (!sk)
        sk = aw_fd_sock(bpf_get_current_task_btf(), fd);
    if (!sk || !aw_sockw_due(p->session, rec->pid, fd))
        return 0;
    return sk;
}

/* The connected inet peer of socket `sk` as the record's sockaddr (a send without
 * destination: where it goes), unless the payload's bytes already hold the blob. */
static __always_inline void aw_sys_peer(struct aw_sys *rec, u64 boff, void *sk)
{
    if (!sk || boff > AW_SYS_STRS)
        return;
    u32 n = aw_sock_peer_addr(sk, (u8 *)&rec->data[boff]);
    if (!n)
        return;
    rec->sa_len = n;
    if (rec->blob_len < n)
        rec->blob_len = n;
}

/* send/sendmsg after aw_sys_payload: `dns` its answer. With a destination: reported (as
 * before). Without: a DNS query is reported, with the socket's peer; another send only as
 * aw_sys_sockw says. Returns 0 when the call is not to be reported. */
static __always_inline int aw_sys_connected(struct aw_sys *rec, u64 boff, int dns)
{
    if (rec->addrlen)
        return 1;
    void *sk = 0;
    if (dns)
        sk = aw_fd_sock(bpf_get_current_task_btf(), (s32)rec->arg0);
    else if (!(sk = aw_sys_sockw(rec, (s32)rec->arg0, 0)))
        return 0;
    aw_sys_peer(rec, boff, sk);
    return 1;
}

/* struct user_msghdr's first fields (include/linux/socket.h). */
struct aw_msghdr {
    u64 name;
    s32 namelen;
    u32 _pad;
    u64 iov;
    u64 iovlen;
};

/* The blob read at entry; returns 0 when the syscall is not to be reported. */
static __always_inline int aw_sys_blob_enter(struct aw_sys *rec, const struct aw_sys_spec *spec)
{
    u64 boff = aw_sys_blob_off(rec);
    u32 kind = spec->blob;
    if (kind == AW_BLOB_SOCKADDR) {
        u64 len = (u32)aw_sys_arg(rec, spec->blob_b);
        rec->addrlen = len;
        aw_sys_sockaddr(rec, boff, aw_sys_arg(rec, spec->blob_a), len);
    } else if (kind == AW_BLOB_SOCKADDR_EXIT) {
        /* the buffer's size, as passed in *addrlen: bounds the read at exit */
        u64 lenp = aw_sys_arg(rec, spec->blob_b);
        u32 cap = 0;
        if (lenp)
            bpf_probe_read_user(&cap, sizeof(cap), (void *)lenp);
        rec->addrlen = cap;
    } else if (kind == AW_BLOB_SENDTO) {
        u64 addr = rec->arg4, len = (u32)rec->arg5;
        rec->addrlen = addr ? len : 0;
        aw_sys_sockaddr(rec, boff, addr, rec->addrlen);
        return aw_sys_connected(rec, boff, aw_sys_payload(rec, boff, rec->arg1, rec->arg2));
    } else if (kind == AW_BLOB_MSGHDR) {
        struct aw_msghdr m = {};
        if (bpf_probe_read_user(&m, sizeof(m), (void *)rec->arg1) != 0) {
            rec->sys_flags |= AW_SF_BLOB_FAULT;
            return 1;
        }
        rec->addrlen = m.name ? (u32)m.namelen : 0;
        aw_sys_sockaddr(rec, boff, m.name, rec->addrlen);
        u64 iov[2] = {};  /* struct iovec { void *base; size_t len; } */
        if (m.iovlen == 0 || !m.iov || bpf_probe_read_user(iov, sizeof(iov), (void *)m.iov) != 0)
            iov[0] = iov[1] = 0;
        return aw_sys_connected(rec, boff, aw_sys_payload(rec, boff, iov[0], iov[1]));
    } else if (kind == AW_BLOB_SOCKWRITE || kind == AW_BLOB_SOCKWRITEV) {
        /* only a flagged process's writes come here (dispatch.bpf.c); files, pipes and
         * terminals are most of them: the fd's type first */
        void *sk = aw_fd_sock(bpf_get_current_task_btf(), (s32)rec->arg0);
        if (!sk)
            return 0;
        u64 buf = rec->arg1, len = rec->arg2;
        if (kind == AW_BLOB_SOCKWRITEV) {
            u64 iov[2] = {};
            if (!len || !buf || bpf_probe_read_user(iov, sizeof(iov), (void *)buf) != 0)
                iov[0] = iov[1] = 0;
            buf = iov[0];
            len = iov[1];
        }
        rec->addrlen = 0;
        if (!aw_sys_payload(rec, boff, buf, len) && !aw_sys_sockw(rec, (s32)rec->arg0, sk))
            return 0;
        aw_sys_peer(rec, boff, sk);
        return 1;
    } else if (kind == AW_BLOB_CAPSET) {
        u8 *blob = (u8 *)&rec->data[boff];
        if (bpf_probe_read_user(blob, 8, (void *)rec->arg0) != 0 ||
            bpf_probe_read_user(blob + 8, 24, (void *)rec->arg1) != 0)
            rec->sys_flags |= AW_SF_BLOB_FAULT;
        else
            rec->blob_len = 32;
    } else if (kind == AW_BLOB_RAW) {
        u64 ptr = aw_sys_arg(rec, spec->blob_a);
        u64 n = spec->blob_size;
        if (n > AW_SOCKADDR_MAX)
            n = AW_SOCKADDR_MAX;
        asm volatile("" : "+r"(n));
        if (ptr && n > 0 && n <= AW_SOCKADDR_MAX) {
            if (bpf_probe_read_user(&rec->data[boff], n, (void *)ptr) != 0)
                rec->sys_flags |= AW_SF_BLOB_FAULT;
            else
                rec->blob_len = n;
        }
    }
    return 1;
}

/* The arguments the syscall does not take zeroed, then the spec's filter (ioctl,
 * fcntl): 0 when the call is not to be reported. */
static __always_inline int aw_sys_keep(struct aw_sys *rec, const struct aw_sys_spec *spec)
{
    u64 *a = &rec->arg0;
    u32 nargs = spec->nargs;
#pragma unroll
    for (int i = 0; i < AW_SYS_NARGS; i++)
        if (i >= nargs)
            a[i] = 0;
    if (spec->filter_arg < AW_SYS_NARGS) {
        u64 v = aw_sys_arg(rec, spec->filter_arg) & spec->filter_mask;
        if (v != spec->filter_v1 && v != spec->filter_v2 && v != spec->filter_v3 &&
            v != spec->filter_v4)
            return 0;
    }
    return 1;
}

/* A fresh record's return value, flags and blob bookkeeping (the scratch is reused). */
static __always_inline void aw_sys_clear(struct aw_sys *rec, long ret, u32 flags)
{
    rec->ret = ret;
    rec->sys_flags = flags;
    rec->blob_len = 0;
    rec->sa_len = 0;
    rec->addrlen = 0;
    rec->payload_len = 0;
    rec->payload_size = 0;
}

/* Strings, packed: each offset is clamped to what the previous ones can use. */
static __always_inline void aw_sys_strings(struct aw_sys *rec, const struct aw_sys_spec *spec)
{
    u64 n0 = aw_sys_str(rec, 0, spec->str0, AW_PATH_MAX);
    if (n0 > AW_PATH_MAX)
        n0 = AW_PATH_MAX;
    asm volatile("" : "+r"(n0));
    if (n0 > AW_PATH_MAX)
        n0 = AW_PATH_MAX;
    rec->str0_len = n0;
    u64 n1 = aw_sys_str(rec, n0, spec->str1, AW_PATH_MAX);
    if (n1 > AW_PATH_MAX)
        n1 = AW_PATH_MAX;
    asm volatile("" : "+r"(n1));
    if (n1 > AW_PATH_MAX)
        n1 = AW_PATH_MAX;
    rec->str1_len = n1;
    u64 off2 = n0 + n1;
    rec->str2_len = aw_sys_str(rec, off2, spec->str2, AW_SYS_STR2_MAX);
}
