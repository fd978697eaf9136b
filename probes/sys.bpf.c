/* sys: one generic probe pair for many syscalls, driven by a table user space fills.
 *
 * Traces: syscalls:sys_enter_X and sys_exit_X for every syscall X of probes/syscalls.py's table
 * whose tracepoints exist here: the loader attaches `aw_sys_enter` and `aw_sys_exit` to each
 * (file system changes, namespaces and mounts, credentials, modules and bpf, ptrace and
 * signals, sockets, dup). On x86_64 every sys_enter context is `__syscall_nr` at offset 8
 * and the six arguments as u64 from 16; sys_exit is the nr at 8 and `ret` at 16.
 * `sys_spec[nr]`, filled by user space at load time, says what to copy besides the six raw
 * arguments: up to three user strings (two of up to AW_PATH_MAX bytes, a third of up to
 * AW_SYS_STR2_MAX), one "blob" (a socket address, a send's first bytes, capset's data, a
 * small struct; accept's peer and socketpair's fds are read at exit, where the kernel has
 * written them), and an optional filter (ioctl: only TIOCSTI/TIOCLINUX; fcntl: only
 * F_DUPFD/F_DUPFD_CLOEXEC). Entry state is kept per thread; the event is sent at exit with
 * the return value, so refused attempts (EPERM, EROFS, ENOENT) are seen too.
 *
 * Cannot see: 32-bit (ia32, x32) syscalls, for which syscall tracepoints never fire;
 * strings past their bounds; anything a racing thread changes between our read at entry
 * and the kernel's own copy. Sends: a send with a destination address is always
 * reported; one without (a connected socket) only when its first bytes look like a DNS
 * query, since its destination was seen at connect(). write()/writev() on sockets are not
 * traced. Payload bytes are copied only to find a DNS query name (at most
 * AW_SYS_PAYLOAD_MAX bytes, only for destination port 53 or no destination).
 *
 * Cost: unwatched, one hash lookup at entry and one at exit, on the listed syscalls only
 * (opens, reads and writes are not among them). Watched: an array lookup, a 48-byte
 * kernel read, the strings, a per-thread entry allocated on use (BPF_F_NO_PREALLOC), and a
 * ring-buffer copy of the bytes used.
 */
#include "agentwatch.h"
#define AW_HAVE_SYS 1

#define AW_SYS_NARGS 6
#define AW_SYS_SPECS 512            /* syscall numbers below this can be traced */
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

#define AW_NOARG 0xff

/* aw_sys.sys_flags */
#define AW_SF_STR_FAULT 0x1      /* a string argument could not be read */
#define AW_SF_BLOB_FAULT 0x2     /* the blob (or part of it) could not be read */
#define AW_SF_PAYLOAD 0x4        /* payload bytes follow the sockaddr area of the blob */
#define AW_SF_NO_ENTRY 0x8       /* refused before sys_enter (seccomp): seen at exit only */

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
    u8 filter_arg;  /* AW_NOARG: always; else only if (arg & filter_mask) is v1 or v2 */
    u8 enforce;     /* AW_SE_*: the kernel may kill for this call (0: never) */
    u8 _pad[4];
    u64 filter_mask;
    u64 filter_v1;
    u64 filter_v2;
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
        return aw_sys_payload(rec, boff, rec->arg1, rec->arg2);
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
            return aw_sys_payload(rec, boff, 0, 0);
        return aw_sys_payload(rec, boff, iov[0], iov[1]);
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

/* Is the caller in the host's pid namespace (so that the pids it names are host pids)? */
static __always_inline int aw_host_pidns(void)
{
    u32 dkey = AW_CFG_PIDNS_DEV, ikey = AW_CFG_PIDNS_INO;
    u64 *dev = config.lookup(&dkey);
    u64 *ino = config.lookup(&ikey);
    if (!dev || !ino || !*ino)
        return 0;
    struct bpf_pidns_info ns = {};
    return bpf_get_ns_current_pid_tgid(*dev, *ino, &ns, sizeof(ns)) == 0;
}

/* ptrace or process_vm_* of `target`: a violation when the caller is in the host's pid
 * namespace (so `target` is a host pid) and `target` is not a process of its session.
 * From inside a sandbox's own pid namespace only its own processes can be named: left to
 * user space. */
static __always_inline u32 aw_target_outside(const struct aw_proc *p, u64 id, u64 target)
{
    u32 t = target;
    if (t == 0 || t == (u32)id || t == (u32)(id >> 32))
        return 0;
    if (!aw_host_pidns())
        return 0;
    struct aw_proc *tp = watched.lookup(&t);
    if (tp && tp->session == p->session)
        return 0;
    return AW_WHY_PTRACE;
}

/* A signal or pidfd aimed at agentwatch (`protected`): kill(pid | -pgid | -1, sig != 0),
 * tkill(tid, sig), tgkill(tgid, tid, sig), pidfd_open(pid). Only from the host's pid
 * namespace: inside a sandbox's own, agentwatch has no pid and the numbers mean others.
 * The call itself still runs (a tracepoint cannot refuse it): the sender dies before it
 * returns, but a SIGKILL it sent reaches its target all the same. */
static __always_inline u32 aw_signal_violation(const struct aw_sys *rec, u32 nr)
{
    s64 target = (s64)(s32)rec->arg0;
    u64 sig = nr == 234 /* tgkill */ ? rec->arg2 : rec->arg1;
    if (nr != 434 /* pidfd_open */ && sig == 0)
        return 0;  /* signal 0: an existence probe, nothing is delivered */
    if (!aw_host_pidns())
        return 0;
    if (nr == 62 /* kill */ && target == -1)
        return AW_WHY_MONITOR;
    if (target < 0)
        target = -target;
    u32 t = target;
    return protected.lookup(&t) ? AW_WHY_MONITOR : 0;
}

/* Does this call get the process killed at entry? The why code, or 0. */
static __always_inline u32 aw_sys_violation(const struct aw_sys *rec,
                                            const struct aw_sys_spec *spec,
                                            const struct aw_proc *p, u64 id)
{
    u32 cls = spec->enforce;
    if (!cls)
        return 0;
    u64 mask = aw_enforce_mask(p);
    if (!mask)
        return 0;
    int exempt = (p->flags & AW_PF_EXEMPT) != 0;
    switch (cls) {
    case AW_SE_TAMPER:
        return (mask & AW_EN_TAMPER) ? AW_WHY_TAMPER : 0;
    case AW_SE_NS_JOIN:
        return (mask & AW_EN_NS) ? AW_WHY_NS : 0;
    case AW_SE_NS_NEW:
        return ((mask & AW_EN_NS) && (rec->arg0 & AW_UNSHARE_NEW) && !exempt) ? AW_WHY_NS : 0;
    case AW_SE_MOUNT:
        return (mask & AW_EN_MOUNT) ? AW_WHY_MOUNT : 0;
    case AW_SE_MOUNT_EXEMPT:
        return ((mask & AW_EN_MOUNT) && !exempt) ? AW_WHY_MOUNT : 0;
    case AW_SE_PTRACE: {
        if (!(mask & AW_EN_PTRACE))
            return 0;
        u64 req = rec->arg0;
        if (!AW_PTRACE_KILLS(req))  /* attach, seize, poke, set regs (probes/rules.py) */
            return 0;
        return aw_target_outside(p, id, rec->arg1);
    }
    case AW_SE_PROCESS_VM:
        return (mask & AW_EN_PTRACE) ? aw_target_outside(p, id, rec->arg0) : 0;
    case AW_SE_SIGNAL:
        return (mask & AW_EN_MONITOR) ? aw_signal_violation(rec, rec->nr) : 0;
    }
    return 0;
}

/* At a successful exit: keep `inet_fds` up to date; 1 when an inet socket was just
 * dup'ed onto fd 0, 1 or 2 (a reverse shell's stdio). */
static __always_inline int aw_inet_fds(const struct aw_sys *rec, u32 nr, long ret)
{
    u32 tgid = rec->pid;
    struct aw_fdset *set = inet_fds.lookup(&tgid);
    if (nr == 41 /* socket */) {
        u64 family = rec->arg0;
        if (family != 2 /* AF_INET */ && family != 10 /* AF_INET6 */) {
            aw_fd_mark(set, ret, 0);
            return 0;
        }
        if (!set) {
            struct aw_fdset empty = {};
            inet_fds.update(&tgid, &empty);
            set = inet_fds.lookup(&tgid);
        }
        aw_fd_mark(set, ret, 1);
        return 0;
    }
    if (!set)
        return 0;
    u64 old, newfd;
    if (nr == 43 || nr == 288) {  /* accept, accept4: inet if the listener is */
        aw_fd_mark(set, ret, aw_fd_is_inet(set, rec->arg0));
        return 0;
    } else if (nr == 32 || nr == 72) {  /* dup, fcntl(F_DUPFD*) (the only ones traced) */
        old = rec->arg0;
        newfd = ret;
    } else if (nr == 33 || nr == 292) {  /* dup2, dup3 */
        old = rec->arg0;
        newfd = rec->arg1;
    } else {
        return 0;
    }
    int inet = aw_fd_is_inet(set, old);
    aw_fd_mark(set, newfd, inet);
    return inet && newfd <= 2 && old != newfd;
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
        if (v != spec->filter_v1 && v != spec->filter_v2)
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

/* A traced syscall of a watched process that returns an error without its entry having
 * been seen: a seccomp filter (sandbox-runtime's, Docker's) refused it before the
 * sys_enter tracepoint runs, and only sys_exit fires. Sandboxes refuse exactly the calls
 * an escape needs (unshare, mount, AF_UNIX sockets...), so the attempt is reported: the
 * arguments are read from the user registers saved at syscall entry (x86_64 pt_regs,
 * found with bpf_task_pt_regs; the syscall did not run, so they are as the process
 * passed them), the strings from its memory. No kill in the kernel: the call did not happen. */
static __always_inline int aw_sys_refused(void *ctx)
{
    long ret = *(long *)(ctx + 16);
    if (ret >= 0 || ret < -4095)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    /* killed at this call's entry: its record went to the enforced ring there */
    if (!p || (p->flags & AW_PF_KILLED))
        return 0;
    u32 nr = *(int *)(ctx + 8);
    struct aw_sys_spec *spec = sys_spec.lookup(&nr);
    /* a call with a blob may have been seen at entry and dropped there on purpose (a
     * send on a connected socket that is not DNS): not knowable here, so not reported */
    if (!spec || !spec->on || spec->blob != AW_BLOB_NONE)
        return 0;
    u32 zero = 0;
    struct aw_sys *rec = sys_scratch.lookup(&zero);
    if (!rec)
        return 0;
    /* the user registers saved at syscall entry (x86_64 struct pt_regs, as u64 words:
     * r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax) */
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    void *regs = (void *)bpf_task_pt_regs(task);
    u64 w[16] = {};
    if (!regs || bpf_probe_read_kernel(w, sizeof(w), regs) != 0)
        return 0;
    u64 *a = &rec->arg0;
    a[0] = w[14];  /* di */
    a[1] = w[13];  /* si */
    a[2] = w[12];  /* dx */
    a[3] = w[7];   /* r10 */
    a[4] = w[9];   /* r8 */
    a[5] = w[8];   /* r9 */
    if (!aw_sys_keep(rec, spec))
        return 0;
    aw_fill_hdr((struct aw_hdr *)rec, AW_EV_SYSCALL, p, id);
    rec->nr = nr;
    aw_sys_clear(rec, ret, AW_SF_NO_ENTRY);
    aw_sys_strings(rec, spec);
    u64 used = aw_sys_blob_off(rec);
    aw_submit(rec, offsetof(struct aw_sys, data) + used, sizeof(*rec));
    return 0;
}

int aw_sys_enter(void *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    u32 nr = *(int *)(ctx + 8);
    struct aw_sys_spec *spec = sys_spec.lookup(&nr);
    if (!spec || !spec->on)
        return 0;
    u32 zero = 0;
    struct aw_sys *rec = sys_scratch.lookup(&zero);
    if (!rec)
        return 0;
    /* A helper read, not ctx loads: the kernel refuses to attach a program whose ctx
     * loads reach past the tracepoint's last field (setuid has one argument). The
     * context is always six u64 wide for BPF, so the read stays in bounds. */
    u64 *a = &rec->arg0;
    if (bpf_probe_read_kernel(a, AW_SYS_NARGS * sizeof(u64), ctx + 16) != 0)
        return 0;
    if (!aw_sys_keep(rec, spec))
        return 0;
    aw_fill_hdr((struct aw_hdr *)rec, AW_EV_SYSCALL, p, id);
    rec->nr = nr;
    u32 why = aw_sys_violation(rec, spec, p, id);
    if (why)
        aw_kill_current((struct aw_hdr *)rec, why, p);  /* first; the record follows */
    aw_sys_clear(rec, 0, 0);

    aw_sys_strings(rec, spec);

    if (spec->blob != AW_BLOB_NONE && !aw_sys_blob_enter(rec, spec) && !why)
        return 0;
    if (why) {
        u64 used = (u64)aw_sys_blob_off(rec) + rec->blob_len;
        aw_submit_enforced(rec, offsetof(struct aw_sys, data) + used, sizeof(*rec));
        return 0;
    }
    u32 tid = id;
    if (sys_inflight.update(&tid, rec) != 0)
        aw_count_lost(AW_LOST_INFLIGHT);
    return 0;
}

int aw_sys_exit(void *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct aw_sys *rec = sys_inflight.lookup(&tid);
    if (!rec)
        return aw_sys_refused(ctx);
    u32 nr = *(int *)(ctx + 8);
    if (rec->nr != nr) {
        /* not this syscall's entry (changed under a tracer, or left over): its event is
         * lost, and counted */
        sys_inflight.delete(&tid);
        aw_count_lost(AW_LOST_INFLIGHT);
        return 0;
    }
    long ret = *(long *)(ctx + 16);
    rec->ret = ret;
    u32 why = 0;
    /* socket, accept, accept4, dup, dup2, dup3, fcntl: the calls inet_fds follows */
    if (ret >= 0 && (nr == 41 || nr == 43 || nr == 288 || nr == 32 || nr == 33 ||
                     nr == 292 || nr == 72)) {
        struct aw_proc *p = aw_current(bpf_get_current_pid_tgid());
        if (p && (aw_enforce_mask(p) & AW_EN_REVSHELL) && aw_inet_fds(rec, nr, ret)) {
            aw_kill_current((struct aw_hdr *)rec, AW_WHY_REVSHELL, p);
            why = AW_WHY_REVSHELL;
        }
    }
    struct aw_sys_spec *spec = sys_spec.lookup(&nr);
    if (spec && ret >= 0) {
        u64 boff = aw_sys_blob_off(rec);
        if (spec->blob == AW_BLOB_SOCKADDR_EXIT) {
            u64 lenp = aw_sys_arg(rec, spec->blob_b);
            u32 len = 0;
            if (lenp && bpf_probe_read_user(&len, sizeof(len), (void *)lenp) == 0) {
                /* the kernel wrote the peer's full length; it copied at most the buffer */
                u64 n = len < rec->addrlen ? len : rec->addrlen;
                rec->addrlen = len;
                aw_sys_sockaddr(rec, boff, aw_sys_arg(rec, spec->blob_a), n);
            }
        } else if (spec->blob == AW_BLOB_FDS_EXIT) {
            u64 ptr = aw_sys_arg(rec, spec->blob_a);
            if (ptr && bpf_probe_read_user(&rec->data[boff], 8, (void *)ptr) == 0)
                rec->blob_len = 8;
            else
                rec->sys_flags |= AW_SF_BLOB_FAULT;
        }
    }
    u64 used = (u64)aw_sys_blob_off(rec) + rec->blob_len;
    if (why)
        aw_submit_enforced(rec, offsetof(struct aw_sys, data) + used, sizeof(*rec));
    else
        aw_submit(rec, offsetof(struct aw_sys, data) + used, sizeof(*rec));
    sys_inflight.delete(&tid);
    return 0;
}

/* close() and close_range(): attached only with AW_EN_REVSHELL (response/enforce.py). */
int aw_fd_close(void *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct aw_fdset *set = inet_fds.lookup(&tgid);
    if (set)
        aw_fd_mark(set, *(u64 *)(ctx + 16), 0);
    return 0;
}

int aw_fd_close_range(void *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct aw_fdset *set = inet_fds.lookup(&tgid);
    if (!set)
        return 0;
    u64 first = *(u64 *)(ctx + 16), last = *(u64 *)(ctx + 24), flags = *(u64 *)(ctx + 32);
    if (flags & 4 /* CLOSE_RANGE_CLOEXEC: closed at exec, where the set is emptied */)
        return 0;
    for (u32 i = 0; i < AW_FDSET_MAX / 64; i++) {
        u64 lo = (u64)i * 64, hi = lo + 63;
        if (hi < first || lo > last)
            continue;
        u64 mask = ~0ULL;
        if (first > lo)
            mask &= ~0ULL << (first - lo);
        if (last < hi)
            mask &= ~0ULL >> (hi - last);
        set->w[i] &= ~mask;
    }
    return 0;
}
