/* proc: process lifecycle of watched sessions, and the session filter itself.
 *
 * Traces: clone, clone3, fork, vfork (routed by the syscall dispatcher, dispatch.bpf.c,
 * like execve, execveat, exit and exit_group), sched:sched_process_fork (adds the child to
 * `watched` in the parent's context, before the child runs), execve and execveat (filename
 * and argv read at entry, the event sent at exit with the return value),
 * sched:sched_process_exit (group exit: the event, then the entry leaves `watched`), exit
 * and exit_group and
 * signal:signal_deliver (exit code or fatal signal, kept in the `watched` entry).
 *
 * Cannot see: argv past AW_ARGV_MAX entries or AW_ARGV_BYTES bytes (flagged truncated);
 * argv and filename are read at entry, so a racing thread can change them before the
 * kernel copies them (the entry value is what is reported). An exit caused by the kernel
 * without a signal (e.g. OOM kill delivers SIGKILL, which is seen) is reported with no code.
 *
 * Cost: one hash lookup per traced syscall of an unwatched process; for a watched exec,
 * up to AW_ARGV_MAX+1 user reads and a ~12 KiB copy.
 */
#include "agentwatch.h"
#include "aw_stdio.h"

struct aw_fork {
    AW_HDR_FIELDS
    s64 ret;          /* clone()'s return in the parent: child pid in its pid ns, or -errno */
    u64 clone_flags;  /* 0 for fork(), CLONE_VM|CLONE_VFORK for vfork() (plus SIGCHLD) */
    u32 child_pid;    /* global pid (tid for CLONE_THREAD) from sched_process_fork */
    u32 _pad;
};

#define AW_XF_FILENAME_FAULT 0x1
#define AW_XF_ARGV_FAULT     0x2
#define AW_XF_ARGV_TRUNC     0x4   /* more entries or bytes than the bounds */
#define AW_XF_ARG_CUT        0x8   /* one argument longer than AW_ARGV_BYTES */

#define AW_EXEC_DATA (AW_PATH_MAX + 2 * AW_ARGV_BYTES)

struct aw_exec {
    AW_HDR_FIELDS
    s64 ret;
    s32 dfd;           /* execveat dirfd; AT_FDCWD for execve */
    u32 at_flags;      /* execveat flags (AT_EMPTY_PATH, ...) */
    u32 filename_len;  /* bytes of data[] holding the filename, NUL included */
    u32 argv_len;      /* bytes of NUL-separated argv after the filename */
    u32 argc;          /* entries copied */
    u32 exec_flags;    /* AW_XF_* */
    /* fds 0, 1, 2 of the new image (include/aw_stdio.h), read at a successful exec */
    AW_STDIO_FIELDS(0) AW_STDIO_FIELDS(1) AW_STDIO_FIELDS(2)
    char data[AW_EXEC_DATA];
};

struct aw_exit {
    AW_HDR_FIELDS
    s32 exit_code;
    s32 exit_signal;
    u32 exit_flags;  /* AW_PF_EXIT_CODE / AW_PF_EXIT_SIGNAL / AW_EF_CORE */
    u32 _pad;
};
#define AW_EF_CORE 0x100

/* Session start (a launcher adopted in the kernel) or end (its last process exited). */
struct aw_session_rec {
    AW_HDR_FIELDS
    u32 phase;  /* 1 start, 2 end */
    u32 kind;   /* AW_SK_* */
    u32 root;
    u32 _pad;
};
#define AW_SESSION_START 1
#define AW_SESSION_END 2

#ifdef AW_LAYOUT_CHECK
/* Only for tests/test_layout.py: exposes these records' layouts to BCC's ctypes. */
BPF_ARRAY(layout_exit, struct aw_exit, 1);
BPF_ARRAY(layout_session, struct aw_session_rec, 1);
#endif

static __always_inline void aw_session_record(struct aw_proc *p, u64 id, u32 phase,
                                              u32 kind, u32 root)
{
    struct aw_session_rec rec = {};
    aw_fill_hdr((struct aw_hdr *)&rec, AW_EV_SESSION, p, id);
    rec.phase = phase;
    rec.kind = kind;
    rec.root = root;
    /* A start goes through `enforced`, which floods cannot fill and which user space
     * reads first: a session whose start was lost would be unknown to user space, which
     * could then neither judge nor kill it. An end stays behind the session's events,
     * unless the events ring is full (a fork bomb's exits): then `enforced` too. */
    if (phase == AW_SESSION_START)
        aw_submit_enforced(&rec, sizeof(rec), sizeof(rec));
    else
        aw_submit_vital(&rec, sizeof(rec));
}

/* A thread group of the session is gone; the last one sends the session's end record. */
static __always_inline void aw_session_leave(struct aw_proc *p, u64 id)
{
    u64 session = p->session;
    struct aw_session *s = sessions.lookup(&session);
    if (!s)
        return;
    if (__sync_fetch_and_add(&s->live, -1) == 1) {
        aw_session_record(p, id, AW_SESSION_END, s->kind, s->root);
        sessions.delete(&session);
    }
}

BPF_HASH(fork_inflight, u32, struct aw_fork, AW_MAX_INFLIGHT);
/* Keyed by tgid, not tid: a successful exec from a non-leader thread returns as the
 * leader (its tid becomes the tgid). Execs are rare: allocate on use. */
BPF_F_TABLE("hash", u32, struct aw_exec, exec_inflight, 1024, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(exec_scratch, struct aw_exec, 1);

/* ---------------------------------------------------------------- fork / clone */

static __always_inline int aw_fork_enter(u64 clone_flags, u64 new_ns)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    struct aw_fork rec = {};
    aw_fill_hdr((struct aw_hdr *)&rec, AW_EV_FORK, p, id);
    rec.clone_flags = clone_flags;
    if ((clone_flags & new_ns) && !(p->flags & AW_PF_EXEMPT) &&
        (aw_enforce_mask(p) & AW_EN_NS)) {
        /* the child is still made (in `watched`, for user space to kill) */
        aw_kill_current((struct aw_hdr *)&rec, AW_WHY_NS, p);
        aw_submit_enforced(&rec, sizeof(rec), sizeof(rec));
        return 0;
    }
    u32 tid = id;
    if (fork_inflight.update(&tid, &rec) != 0)
        aw_count_lost(AW_LOST_INFLIGHT);
    return 0;
}

static __always_inline int aw_fork_exit(long ret)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct aw_fork *rec = fork_inflight.lookup(&tid);
    if (!rec)
        return 0;  /* unwatched, or the child's own return from clone */
    rec->ret = ret;
    if (rec->hdr_flags & AW_HF_KILLED)  /* past the session's process limit */
        aw_submit_enforced(rec, sizeof(*rec), sizeof(*rec));
    else
        aw_submit(rec, sizeof(*rec), sizeof(*rec));
    fork_inflight.delete(&tid);
    return 0;
}

/* Route programs of the syscall dispatcher (dispatch.bpf.c): clone (56), fork (57),
 * vfork (58), clone3 (435). clone's flags are its first argument in both ABIs. */
int aw_rt_fork_enter(struct bpf_raw_tracepoint_args *ctx)
{
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    if (c.nr == 56)
        return aw_fork_enter(c.a[0], AW_CLONE_NEW);
    if (c.nr == 57)
        return aw_fork_enter(0, 0);
    if (c.nr == 58)
        return aw_fork_enter(CLONE_VFORK | CLONE_VM, 0);
    u64 flags = 0;  /* struct clone_args starts with u64 flags */
    bpf_probe_read_user(&flags, sizeof(flags), (void *)c.a[0]);
    return aw_fork_enter(flags, AW_CLONE_NEW | AW_CLONE_NEWTIME);
}

int aw_rt_fork_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return aw_fork_exit(ctx->args[1]);
}

/* A fork bomb, decided in the kernel: the fork that takes the session past
 * AW_CFG_FORK_MAX live processes (thread groups, as sessions.live counts them) kills the
 * forking process at once; its record (and so the kill) goes to the enforced ring from
 * the clone's exit. Each further fork of the bomb's other processes does the same, and
 * user space kills the whole tree when the first record arrives. */
static __always_inline void aw_fork_limit(struct aw_proc *p, struct aw_fork *f, s64 live)
{
    u32 key = AW_CFG_FORK_MAX;
    u64 *max = config.lookup(&key);
    if (max && *max && live > (s64)*max)
        aw_kill_current((struct aw_hdr *)f, AW_WHY_FORKBOMB, p);
}

/* The session filter's inheritance: runs in the parent, before the child is woken. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    u32 tid = id;
    u32 child = args->child_pid;
    u64 flags = 0;
    struct aw_fork *f = fork_inflight.lookup(&tid);
    if (f) {
        f->child_pid = child;
        flags = f->clone_flags;
    }
    if (flags & CLONE_THREAD)
        return 0;  /* same thread group: already watched through its tgid */
    struct aw_proc c = {};
    c.session = p->session;
    c.ppid = (flags & CLONE_PARENT) ? p->ppid : (u32)(id >> 32);
    /* Without clone flags (a kernel-made thread such as an io_uring worker) the task is
     * added under its own id; sched_process_exit removes such entries. */
    /* the phase is inherited */
    c.flags = p->flags & (AW_PF_SETUP | AW_PF_NESTED | AW_PF_SANDBOXED | AW_PF_EXEMPT |
                      AW_PF_HELD | AW_PF_SOCKW);  /* the child has the sockets too */
    if (watched.update(&child, &c) != 0) {
        aw_count_lost(AW_LOST_UNTRACKED);
    } else {
        s64 live = aw_session_join(p->session);
        if (f && !(p->flags & AW_PF_KILLED) && (aw_enforce_mask(p) & AW_EN_FORKBOMB))
            aw_fork_limit(p, f, live);
        u32 tgid = id >> 32;
        struct aw_fdset *set = inet_fds.lookup(&tgid);
        if (set && (flags & CLONE_FILES))
            inet_fds.delete(&tgid);  /* one fd table, two processes: no longer tracked */
        else if (set)
            inet_fds.update(&child, set);  /* the child's fd table is a copy */
    }
    return 0;
}

/* Sandbox launchers. Runs after every successful exec on the host (execs are rare).
 * - a watched process exec'ing a launcher enters the setup phase (its children inherit
 *   it); a setup-phase process exec'ing anything else is the sandboxed payload: setup
 *   ends for it. A launcher exec'd by a payload is marked nested, not trusted as setup.
 * - with AW_CFG_ADOPT_LAUNCHERS, an unwatched launcher starts a new session. */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_comm comm = {};
    bpf_get_current_comm(&comm.name, sizeof(comm.name));
    u32 *is_launcher = launchers.lookup(&comm);
    struct aw_proc *p = aw_current(id);
    if (p) {
        u32 self = id >> 32;
        inet_fds.delete(&self);  /* close-on-exec fds are gone; inherited ones forgotten */
        /* sandbox-runtime's helper (by name: user space still checks its path) */
        if (exempt_comms.lookup(&comm))
            p->flags |= AW_PF_EXEMPT;
        else
            p->flags &= ~AW_PF_EXEMPT;
        if (is_launcher) {
            if (p->flags & AW_PF_SANDBOXED)
                p->flags |= AW_PF_NESTED;
            p->flags |= AW_PF_SETUP;
        } else if (p->flags & AW_PF_SETUP) {
            p->flags = (p->flags & ~AW_PF_SETUP) | AW_PF_SANDBOXED;
        }
        return 0;
    }
    if (!is_launcher)
        return 0;
    u32 key = AW_CFG_ADOPT_LAUNCHERS;
    u64 *adopt = config.lookup(&key);
    if (!adopt || !*adopt)
        return 0;
    u32 tgid = id >> 32;
    struct aw_proc np = {};
    np.session = (((u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32()) >> 1 | 1;
    np.flags = AW_PF_SETUP | aw_fail_closed_flags();
    struct aw_session s = {};
    s.live = 1;
    s.root = tgid;
    s.kind = AW_SK_LAUNCHER;
    if (sessions.update(&np.session, &s) != 0 || watched.update(&tgid, &np) != 0) {
        aw_count_lost(AW_LOST_UNTRACKED);
        sessions.delete(&np.session);
        return 0;
    }
    aw_session_record(&np, id, AW_SESSION_START, AW_SK_LAUNCHER, tgid);
    return 0;
}

/* ---------------------------------------------------------------- exec */

static __always_inline int aw_exec_enter(int dfd, const char *filename, u64 argv,
                                         u32 at_flags, int compat)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    u32 zero = 0;
    struct aw_exec *rec = exec_scratch.lookup(&zero);
    if (!rec)
        return 0;
    aw_fill_hdr((struct aw_hdr *)rec, AW_EV_EXEC, p, id);
    rec->ret = 0;
    rec->dfd = dfd;
    rec->at_flags = at_flags;
    rec->exec_flags = 0;

    long n = bpf_probe_read_user_str(rec->data, AW_PATH_MAX, filename);
    if (n < 0) {
        n = 0;
        rec->exec_flags |= AW_XF_FILENAME_FAULT;
    }
    u32 fn_len = n;
    u32 off = fn_len;
    u32 argc = 0;
    for (int i = 0; i < AW_ARGV_MAX; i++) {
        const char *arg = NULL;  /* argv: 32-bit pointers for a compat execve */
        long err = compat ? bpf_probe_read_user(&arg, 4, (void *)(argv + i * 4))
                          : bpf_probe_read_user(&arg, 8, (void *)(argv + i * 8));
        if (err != 0) {
            rec->exec_flags |= AW_XF_ARGV_FAULT;
            break;
        }
        if (!arg)
            break;
        if (off - fn_len >= AW_ARGV_BYTES) {
            rec->exec_flags |= AW_XF_ARGV_TRUNC;
            break;
        }
        /* off < AW_PATH_MAX + AW_ARGV_BYTES here; the mask proves it to the verifier. */
        long m = bpf_probe_read_user_str(&rec->data[off & (AW_PATH_MAX + AW_ARGV_BYTES - 1)],
                                         AW_ARGV_BYTES, arg);
        if (m < 0) {
            rec->exec_flags |= AW_XF_ARGV_FAULT;
            break;
        }
        if (m == AW_ARGV_BYTES)
            rec->exec_flags |= AW_XF_ARG_CUT;
        off += m;
        argc++;
    }
    if (argc == AW_ARGV_MAX) {
        const char *more = NULL;
        if (compat)
            bpf_probe_read_user(&more, 4, (void *)(argv + AW_ARGV_MAX * 4));
        else
            bpf_probe_read_user(&more, 8, (void *)(argv + AW_ARGV_MAX * 8));
        if (more)
            rec->exec_flags |= AW_XF_ARGV_TRUNC;
    }
    rec->filename_len = fn_len;
    rec->argv_len = off - fn_len;
    rec->argc = argc;
    u32 tgid = id >> 32;
    if (exec_inflight.update(&tgid, rec) != 0)
        aw_count_lost(AW_LOST_INFLIGHT);
    return 0;
}

static __always_inline int aw_exec_exit(long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct aw_exec *rec = exec_inflight.lookup(&tgid);
    if (!rec)
        return 0;
    if (ret != 0 && rec->tid != (u32)id)
        return 0;  /* another thread's exec is in flight under this tgid */
    rec->ret = ret;
    if (ret == 0) {
        /* The new image: its comm, and exit info cleared (de_thread's SIGKILLs to the
         * other threads were not the process's death). */
        bpf_get_current_comm(&rec->comm, sizeof(rec->comm));
        rec->tid = (u32)id;
        struct aw_proc *p = watched.lookup(&tgid);
        if (p) {
            p->flags &= ~(AW_PF_EXIT_CODE | AW_PF_EXIT_SIGNAL);
            /* sched_process_exec has set the new image's phase */
            rec->hdr_flags = ((p->flags & AW_PF_SETUP) ? AW_HF_SETUP : 0) |
                             ((p->flags & AW_PF_NESTED) ? AW_HF_NESTED : 0);
        }
    }
    struct aw_stdio_fd *io = (struct aw_stdio_fd *)&rec->s0_ino;
    __builtin_memset(io, 0, 3 * sizeof(*io));
    int killed = 0;
    if (ret == 0 && aw_stdio_read((void *)bpf_get_current_task_btf(), io)) {
        /* an inet socket on fd 0-2 of a new image, however it got there (inherited,
         * dup'ed or placed before the exec): the reverse-shell rule */
        struct aw_proc *p = watched.lookup(&tgid);
        if (p && !(p->flags & AW_PF_EXEMPT) && (aw_enforce_mask(p) & AW_EN_REVSHELL)) {
            aw_kill_current((struct aw_hdr *)rec, AW_WHY_REVSHELL, p);
            killed = 1;
        }
    }
    u32 sz = offsetof(struct aw_exec, data) + rec->filename_len + rec->argv_len;
    if (killed)
        aw_submit_enforced(rec, sz, sizeof(*rec));
    else
        aw_submit(rec, sz, sizeof(*rec));
    exec_inflight.delete(&tgid);
    return 0;
}

/* Route programs of the syscall dispatcher: execve (59), execveat (322). */
int aw_rt_exec_enter(struct bpf_raw_tracepoint_args *ctx)
{
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    int compat = c.abi == AW_ABI_IA32;
    if (c.nr == 59)
        return aw_exec_enter(AT_FDCWD, (const char *)c.a[0], c.a[1], 0, compat);
    return aw_exec_enter((int)c.a[0], (const char *)c.a[1], c.a[2], c.a[4], compat);
}

int aw_rt_exec_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return aw_exec_exit(ctx->args[1]);
}

/* ---------------------------------------------------------------- exit */

#define AW_GROUP_EXIT 0x10  /* exit_group() seen: later SIGKILLs are its consequence */

/* Route program of the syscall dispatcher: exit_group (231), exit (60): the exit code. */
int aw_rt_exit_enter(struct bpf_raw_tracepoint_args *ctx)
{
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    struct aw_proc *p = aw_current(bpf_get_current_pid_tgid());
    if (!p)
        return 0;
    if (c.nr == 231 && !(p->flags & AW_PF_EXIT_SIGNAL)) {
        p->exit_code = c.a[0];
        p->flags |= AW_PF_EXIT_CODE | AW_GROUP_EXIT;
    } else if (c.nr == 60 && !(p->flags & (AW_PF_EXIT_SIGNAL | AW_GROUP_EXIT))) {
        p->exit_code = c.a[0];
        p->flags |= AW_PF_EXIT_CODE;
    }
    return 0;
}

/* Signals whose default action is not to terminate: CHLD CONT STOP TSTP TTIN TTOU URG WINCH */
#define AW_NONFATAL ((1ULL << 17) | (1ULL << 18) | (1ULL << 19) | (1ULL << 20) | \
                     (1ULL << 21) | (1ULL << 22) | (1ULL << 23) | (1ULL << 28))
/* QUIT ILL TRAP ABRT BUS FPE SEGV XCPU XFSZ SYS dump core by default */
#define AW_COREDUMP ((1ULL << 3) | (1ULL << 4) | (1ULL << 5) | (1ULL << 6) | (1ULL << 7) | \
                     (1ULL << 8) | (1ULL << 11) | (1ULL << 24) | (1ULL << 25) | (1ULL << 31))

TRACEPOINT_PROBE(signal, signal_deliver)
{
    int sig = args->sig;
    if (sig <= 0 || sig > 64 || args->sa_handler != 0 /* SIG_DFL */)
        return 0;
    if (sig < 64 && (AW_NONFATAL & (1ULL << sig)))
        return 0;
    struct aw_proc *p = aw_current(bpf_get_current_pid_tgid());
    if (!p || (p->flags & (AW_PF_EXIT_SIGNAL | AW_GROUP_EXIT)))
        return 0;  /* first cause wins: group exits deliver SIGKILL to the other threads */
    p->exit_signal = sig;
    p->flags |= AW_PF_EXIT_SIGNAL | AW_GROUP_EXIT;
    if (sig < 64 && (AW_COREDUMP & (1ULL << sig)))
        p->flags |= AW_EF_CORE;
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    u32 tid = id, tgid = id >> 32;
    if (tid != tgid && watched.delete(&tid) == 0)
        aw_session_leave(p, id);  /* entry of a thread made without known clone flags */
#ifdef AW_HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if (tid != tgid)
        return 0;  /* older kernels: the leader's exit stands for the group */
#endif
    struct aw_exit rec = {};
    aw_fill_hdr((struct aw_hdr *)&rec, AW_EV_EXIT, p, id);
    rec.exit_code = p->exit_code;
    rec.exit_signal = p->exit_signal;
    rec.exit_flags = p->flags & (AW_PF_EXIT_CODE | AW_PF_EXIT_SIGNAL | AW_EF_CORE);
    if (p->flags & AW_PF_KILLED)
        aw_submit_enforced(&rec, sizeof(rec), sizeof(rec));  /* the kill's end, not lost */
    else
        aw_submit(&rec, sizeof(rec), sizeof(rec));
    aw_session_leave(p, id);
    watched.delete(&tgid);
    inet_fds.delete(&tgid);
    return 0;
}
