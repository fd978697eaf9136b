/* sys, part two: the generic syscall probe's programs. The loader concatenates this file
 * right after sys.bpf.c (its table, record, maps and argument readers: see the opening
 * comment there for what the probe traces, cannot see and costs).
 *
 * Here: the kernel rules judged at a call's entry (the AW_SE_* checks of sys_spec[nr],
 * enabled by AW_EN_* bits that response/enforce.py writes), the inet fd bookkeeping of the
 * reverse-shell rule, aw_sys_enter, aw_sys_exit, the path of calls refused before their
 * entry (seccomp), and the close probes attached only with AW_EN_REVSHELL.
 */
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
    aw_fail_closed(p);
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
