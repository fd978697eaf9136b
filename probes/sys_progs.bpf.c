/* sys, part two: the generic syscall probe's programs. The loader concatenates this file
 * right after sys.bpf.c (its table, record, maps and argument readers: see the opening
 * comment there for what the probe traces, cannot see and costs).
 *
 * Here: the kernel rules judged at a call's entry (the AW_SE_* checks of sys_spec[nr],
 * enabled by AW_EN_* bits that response/enforce.py writes), the inet fd bookkeeping of the
 * reverse-shell rule, the route programs of the dispatcher (dispatch.bpf.c) for the table
 * (AW_RT_SYS), for calls outside it (AW_RT_OTHER: first use) and for close (AW_RT_CLOSE,
 * routed only with AW_EN_REVSHELL), and the path of calls refused before their entry
 * (seccomp).
 */
#include "aw_resolve.h"  /* aw_task_file, aw_proc_target (map-free) */
#include "aw_stdio.h"    /* aw_stdio_fd (map-free) */
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
/* pidfd_send_signal through a /proc/<pid> directory fd (the kernel accepts one as a
 * pidfd): the process is the fd's procfs inode's (aw_proc_target), host ids whatever the
 * caller's pid namespace. A pidfd from pidfd_open on a protected pid was killed there. */
static __always_inline u32 aw_pidfd_signal_violation(const struct aw_sys *rec)
{
#if defined(AW_HAVE_PROC_TARGET) && !defined(AW_NO_BTF)
    if (rec->arg1 == 0)
        return 0;  /* signal 0: an existence probe */
    struct aw_resolved r = {};
    aw_fd_proc_target(bpf_get_current_task_btf(), (s64)(s32)rec->arg0, &r);
    u32 a = r.r_proc_pid, b = r.r_proc_tgid;
    if ((a && protected.lookup(&a)) || (b && protected.lookup(&b)))
        return AW_WHY_MONITOR;
#endif
    return 0;
}

static __always_inline u32 aw_signal_violation(const struct aw_sys *rec, u32 nr)
{
    if (nr == 424 /* pidfd_send_signal */)
        return aw_pidfd_signal_violation(rec);
    s64 target = (s64)(s32)rec->arg0;
    /* tgkill, rt_tgsigqueueinfo: (tgid, tid, sig); kill, tkill, rt_sigqueueinfo: (pid, sig) */
    u64 sig = (nr == 234 || nr == 297) ? rec->arg2 : rec->arg1;
    if (nr == 72 /* fcntl */ || nr == 16 /* ioctl */) {
        /* the owner of a file's SIGIO/SIGURG: F_SETOWN (pid or -pgrp in arg 2),
         * F_SETOWN_EX (struct f_owner_ex { int type; int pid; } at arg 2), FIOSETOWN and
         * SIOCSPGRP (an int at arg 2) */
        u64 cmd = (u32)rec->arg1;
        s32 w[2] = {};
        if (nr == 72 && cmd == 8)
            target = (s32)rec->arg2;
        else if (nr == 72 && cmd == 15 &&
                 bpf_probe_read_user(w, sizeof(w), (void *)rec->arg2) == 0)
            target = w[1];
        else if (nr == 16 && (cmd == 0x8901 || cmd == 0x8902) &&
                 bpf_probe_read_user(w, sizeof(w[0]), (void *)rec->arg2) == 0)
            target = w[0];
        else
            return 0;
        sig = 1;  /* a signal will be sent to it */
    }
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
    case AW_SE_FORBIDDEN:
        return (mask & AW_EN_FORBIDDEN) ? AW_WHY_FORBIDDEN : 0;
    case AW_SE_FD_STEAL:
        return (mask & AW_EN_PTRACE) ? AW_WHY_PTRACE : 0;
    }
    return 0;
}

/* At a successful exit: keep `inet_fds` up to date; 1 when an inet socket was just
 * placed on fd 0, 1 or 2 (a reverse shell's stdio): dup'ed there, or made there by
 * socket() or accept() on a closed fd 0-2. */
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
        return ret <= 2;
    }
    if (!set)
        return 0;
    u64 old, newfd;
    if (nr == 43 || nr == 288) {  /* accept, accept4: inet if the listener is */
        int inet = aw_fd_is_inet(set, rec->arg0);
        aw_fd_mark(set, ret, inet);
        return inet && ret <= 2;
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

/* At a successful dup, dup2, dup3 or fcntl(F_DUPFD*): what the new fd is, read from the
 * fd table (the kernel's answer; user space's table of the process's fds misses the
 * opens the interest filter counted instead of sending, and closes, which are not
 * traced), so that a socket dup'ed onto stdio is known as one, and a file is not. */
static __always_inline void aw_sys_dup_kind(struct aw_sys *rec, u32 nr, long ret)
{
#if !defined(AW_NO_BTF) && !defined(AW_NO_STDIO)  /* else user space's table decides */
    s64 fd = (nr == 33 || nr == 292) ? (s64)rec->arg1 : ret;
    struct aw_stdio_fd o = {};
    aw_stdio_fd((void *)bpf_get_current_task_btf(), fd, &o);
    if (!(o.flags & AW_IO_FILE) || (o.flags & (AW_IO_FAULT | AW_IO_UNKNOWN)))
        return;
    rec->sys_flags |= AW_SF_FD_FILE;
    if (o.flags & AW_IO_SOCKET)
        rec->sys_flags |= AW_SF_FD_SOCKET | (o.family == 1 ? AW_SF_FD_UNIX : 0);
#endif
}

/* A traced syscall of a watched process that returns an error without its entry having
 * been seen: a seccomp filter (sandbox-runtime's, Docker's) refused it before the
 * sys_enter tracepoint runs, and only sys_exit fires. Sandboxes refuse exactly the calls
 * an escape needs (unshare, mount, AF_UNIX sockets...), so the attempt is reported: the
 * arguments are read from the user registers saved at syscall entry (x86_64 pt_regs,
 * found with bpf_task_pt_regs; the syscall did not run, so they are as the process
 * passed them), the strings from its memory. No kill in the kernel: the call did not happen. */
static __always_inline int aw_sys_refused(struct bpf_raw_tracepoint_args *ctx)
{
    long ret = ctx->args[1];
    if (ret >= 0 || ret < -4095)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    /* killed at this call's entry: its record went to the enforced ring there */
    if (!p || (p->flags & AW_PF_KILLED))
        return 0;
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], -1, &c) != 0)
        return 0;
    u32 nr = c.nr;
    struct aw_sys_spec *spec = nr < AW_SYS_SPECS ? sys_spec.lookup(&nr) : 0;
    /* a call with a blob may have been seen at entry and dropped there on purpose (a
     * send on a connected socket that is not DNS): not knowable here, so not reported */
    if (!spec || !spec->on || spec->blob != AW_BLOB_NONE)
        return 0;
    u32 zero = 0;
    struct aw_sys *rec = sys_scratch.lookup(&zero);
    if (!rec)
        return 0;
    /* the syscall did not run, so the saved registers are as the process passed them */
    u64 *a = &rec->arg0;
#pragma unroll
    for (int i = 0; i < AW_SYS_NARGS; i++)
        a[i] = c.a[i];
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

/* The record of a call at entry: what the table says to copy (raw arguments only for a
 * call outside it). The spec is copied so that a call with none can use defaults. */
static __always_inline struct aw_sys *aw_sys_begin(const struct aw_call *c,
                                                   struct aw_sys_spec *sp,
                                                   struct aw_proc *p, u64 id)
{
    u32 nr = c->nr;
    struct aw_sys_spec *spec = nr < AW_SYS_SPECS ? sys_spec.lookup(&nr) : 0;
    if (spec && spec->on) {
        __builtin_memcpy(sp, spec, sizeof(*sp));
    } else {
        __builtin_memset(sp, 0, sizeof(*sp));
        sp->nargs = AW_SYS_NARGS;
        sp->str0 = sp->str1 = sp->str2 = AW_NOARG;
        sp->blob_a = sp->blob_b = sp->filter_arg = AW_NOARG;
    }
    u32 zero = 0;
    struct aw_sys *rec = sys_scratch.lookup(&zero);
    if (!rec)
        return 0;
    u64 *a = &rec->arg0;
#pragma unroll
    for (int i = 0; i < AW_SYS_NARGS; i++)
        a[i] = c->a[i];
    aw_fill_hdr((struct aw_hdr *)rec, AW_EV_SYSCALL, p, id);
    if (c->abi != AW_ABI_NATIVE)
        rec->hdr_flags |= AW_HF_COMPAT;
    rec->nr = nr;
    return rec;
}

/* AW_RT_SYS at entry: the table's calls, and every 32-bit call the compat rule kills. */
int aw_rt_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    struct aw_sys_spec spec;
    struct aw_sys *rec = aw_sys_begin(&c, &spec, p, id);
    if (!rec)
        return 0;
    u32 why = 0;
    if (c.abi != AW_ABI_NATIVE && (aw_enforce_mask(p) & AW_EN_COMPAT))
        why = AW_WHY_COMPAT;
    else if (!spec.on || !aw_sys_keep(rec, &spec))
        return 0;
    else
        why = aw_sys_violation(rec, &spec, p, id);
    if (why)
        aw_kill_current((struct aw_hdr *)rec, why, p);  /* first; the record follows */
    aw_sys_clear(rec, 0, 0);

    aw_sys_strings(rec, &spec);

    if (spec.blob != AW_BLOB_NONE && !aw_sys_blob_enter(rec, &spec) && !why)
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

/* AW_RT_OTHER at entry: a call outside the table. Counted per (session, number) in
 * `sys_seen`; the first use by a session is an event (raw arguments, AW_SF_FIRST_USE). */
int aw_rt_other_enter(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    struct aw_seen_key key = {.session = p->session, .nr = c.nr, .abi = c.abi};
    u64 *n = sys_seen.lookup(&key);
    if (n) {
        __sync_fetch_and_add(n, 1);
        return 0;
    }
    u64 one = 1;
    if (sys_seen.insert(&key, &one) != 0)
        return 0;  /* another thread was first */
    struct aw_sys_spec spec;
    struct aw_sys *rec = aw_sys_begin(&c, &spec, p, id);
    if (!rec)
        return 0;
    aw_sys_clear(rec, 0, AW_SF_FIRST_USE);
    rec->str0_len = rec->str1_len = rec->str2_len = 0;
    aw_submit(rec, offsetof(struct aw_sys, data), sizeof(*rec));
    return 0;
}

int aw_rt_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct aw_sys *rec = sys_inflight.lookup(&tid);
    if (!rec)
        return aw_sys_refused(ctx);
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], -1, &c) != 0 || rec->nr != c.nr) {
        /* not this syscall's entry (changed under a tracer, or left over): its event is
         * lost, and counted */
        sys_inflight.delete(&tid);
        aw_count_lost(AW_LOST_INFLIGHT);
        return 0;
    }
    u32 nr = c.nr;
    long ret = ctx->args[1];
    rec->ret = ret;
    u32 why = 0;
    /* socket, accept, accept4, dup, dup2, dup3, fcntl: the calls inet_fds follows */
    if (ret >= 0 && (nr == 32 || nr == 33 || nr == 292 || nr == 72))
        aw_sys_dup_kind(rec, nr, ret);
    if (ret >= 0 && (nr == 41 || nr == 43 || nr == 288 || nr == 32 || nr == 33 ||
                     nr == 292 || nr == 72)) {
        struct aw_proc *p = aw_current(bpf_get_current_pid_tgid());
        if (p && (aw_enforce_mask(p) & AW_EN_REVSHELL) && aw_inet_fds(rec, nr, ret)) {
            aw_kill_current((struct aw_hdr *)rec, AW_WHY_REVSHELL, p);
            why = AW_WHY_REVSHELL;
        }
    }
    struct aw_sys_spec *spec = nr < AW_SYS_SPECS ? sys_spec.lookup(&nr) : 0;
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

/* A watched task killed by a seccomp filter (SIGSYS with si_code SYS_SECCOMP): the filter
 * refused the call by killing instead of by an error, so neither its entry nor its exit
 * tracepoint fired. sandbox-runtime's filter kills this way every 32-bit (ia32, x32)
 * syscall. The call is reported as refused_at_entry with seccomp_killed: the kernel has
 * restored the registers the process made the call with (syscall_rollback) and keeps
 * TS_COMPAT until after signal delivery, so it decodes like any other call. */
RAW_TRACEPOINT_PROBE(signal_deliver)
{
    if ((int)ctx->args[0] != 31 /* SIGSYS */)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    int code = 0;  /* kernel_siginfo: si_signo, si_errno, si_code */
    if (bpf_probe_read_kernel(&code, sizeof(code), (void *)ctx->args[1] + 8) != 0 ||
        code != 1 /* SYS_SECCOMP */)
        return 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    struct aw_call c = {};
    if (aw_call_decode((void *)bpf_task_pt_regs(task), -1, &c) != 0)
        return 0;
    struct aw_sys_spec spec;
    struct aw_sys *rec = aw_sys_begin(&c, &spec, p, id);
    if (!rec)
        return 0;
    aw_sys_clear(rec, 0, AW_SF_NO_ENTRY | AW_SF_SECCOMP_KILLED);
    if (!spec.on && (c.nr == 2 || c.nr == 257 || c.nr == 437)) {
        /* the opens have routes of their own, not table entries: their path */
        spec.on = 1;
        spec.str0 = c.nr == 2 ? 0 : 1;
    }
    if (spec.on && spec.blob == AW_BLOB_NONE) {
        aw_sys_strings(rec, &spec);
    } else {
        rec->str0_len = rec->str1_len = rec->str2_len = 0;
    }
    aw_submit(rec, offsetof(struct aw_sys, data) + aw_sys_blob_off(rec), sizeof(*rec));
    return 0;
}

/* AW_RT_CLOSE at entry: close (3) and close_range (436), routed here only while the
 * reverse-shell rule is on (response/enforce.py sets their route), so that no one else
 * pays for them: an inet fd closed leaves `inet_fds`. */
int aw_rt_close_enter(struct bpf_raw_tracepoint_args *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct aw_fdset *set = inet_fds.lookup(&tgid);
    if (!set)
        return 0;
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    if (c.nr == 3) {
        aw_fd_mark(set, (u32)c.a[0], 0);
        return 0;
    }
    u64 first = (u32)c.a[0], last = (u32)c.a[1], flags = c.a[2];
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
