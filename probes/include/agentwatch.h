/* agentwatch: what every probe shares.
 *
 * - the event header every ring-buffer record starts with (type code, size, time,
 *   session, process ids, credentials, cgroup, comm): one dispatch on `type` in user space;
 * - `watched`: the kernel's set of watched thread groups (session filter). Children are
 *   added at sched_process_fork, in the parent's context, before the child can run, so a
 *   process that forks at once cannot escape; entries go at sched_process_exit;
 * - the ring buffer and `lost`, the per-CPU counters of every record the kernel could not
 *   deliver (ring buffer full, in-flight table full, child not trackable). User space
 *   reports every one of them: nothing is dropped silently.
 *
 * Structs are flat (BCC derives ctypes from map leaf types, and the Python decoders are
 * checked against these layouts by tests/test_layout.py). Kernel structs are read only at
 * offsets taken from the running kernel's BTF (AW_OFF_* defines, passed in by the loader),
 * never through the headers BCC compiles against, which may belong to another kernel
 * (include/aw_dispatch.h, include/aw_resolve.h; probes/btf.py).
 */
#ifndef AGENTWATCH_H
#define AGENTWATCH_H

#include <uapi/linux/ptrace.h>
/* CLONE_* only: the uapi header, not <linux/sched.h>, whose tree of kernel headers took
 * ~0.3 s of the ~1.9 s compile (start-up, docs/performance.md) */
#include <uapi/linux/sched.h>

#ifndef AT_FDCWD
#define AT_FDCWD -100
#endif

#ifndef AW_RINGBUF_PAGES
#define AW_RINGBUF_PAGES 1024 /* 4 MiB */
#endif
#ifndef AW_MAX_PROCS
#define AW_MAX_PROCS 65536
#endif
/* Ring-buffer wake-ups: each CPU wakes the reader at most once per AW_WAKE_NS; records in
 * between are sent with BPF_RB_NO_WAKEUP. A wake-up is an irq_work (a self-IPI, a VM exit on
 * a VM) in the traced process's context, paid per record when the reader keeps up. The
 * reader polls again within 1 ms while records flow (collector/ingest.py,
 * ACTIVE_POLL_MS), so a record never waits longer than that; the first record after a
 * quiet spell (> AW_WAKE_NS since this CPU's last wake-up) wakes the reader at once.
 * 250 µs: at most 4000 wake-ups a second per CPU, well under 0.1 µs per event at the
 * rates where batching matters. */
#ifndef AW_WAKE_NS
#define AW_WAKE_NS 250000ULL
#endif
#ifndef AW_MAX_INFLIGHT
#define AW_MAX_INFLIGHT 16384
#endif

#define AW_PATH_MAX 4096          /* PATH_MAX, NUL included */
#define AW_ARGV_BYTES 4096        /* argv bytes copied per exec (bound) */
#define AW_ARGV_MAX 64            /* argv entries copied per exec (bound) */
#define AW_SOCKADDR_MAX 128       /* sizeof(struct sockaddr_storage) */

/* Event type codes (user space: one decoder per code in collector/decode/). */
enum aw_type {
    AW_EV_EXEC = 1,
    AW_EV_FORK = 2,
    AW_EV_EXIT = 3,
    AW_EV_OPEN = 4,
    AW_EV_CONNECT = 5,
    AW_EV_SYSCALL = 6,  /* the generic syscall probe (sys.bpf.c, table in probes/syscalls.py) */
    AW_EV_SESSION = 7,  /* session start (launcher adopted) / end (last process gone) */
    AW_EV_URING = 8,    /* an io_uring operation (uring.bpf.c) */
    AW_EV_MAX = 9,
};

/* Loss counter slots: the event type that was lost, plus these causes. */
enum aw_lost {
    AW_LOST_ENFORCED = 13,  /* a kernel kill's record found the `enforced` ring full */
    AW_LOST_INFLIGHT = 14,  /* entry state could not be stored: the event is lost */
    AW_LOST_UNTRACKED = 15, /* a watched process forked but `watched` was full */
    AW_LOST_SLOTS = 16,
};

/* Common header, flattened into every record (BCC wants flat structs). */
#define AW_HDR_FIELDS \
    u32 type;       /* enum aw_type */ \
    u32 size;       /* bytes of this record, header included */ \
    u64 ts;         /* bpf_ktime_get_boot_ns() at syscall entry */ \
    u64 session;    /* session id, from `watched` */ \
    u32 pid;        /* thread group id (global pid namespace) */ \
    u32 tid;        /* thread id */ \
    u32 ppid;       /* parent's tgid as recorded at fork */ \
    u32 uid;        /* kernel uid (init user namespace) */ \
    u32 gid; \
    u32 hdr_flags;  /* AW_HF_*: the process's phase when the syscall began */ \
    u64 cgroup;     /* cgroup v2 id */ \
    char comm[16];

struct aw_hdr { AW_HDR_FIELDS };

/* A watched thread group (or a kernel-made thread's own entry, see proc.bpf.c). */
struct aw_proc {
    u64 session;
    u32 ppid;
    u32 flags;        /* AW_PF_* */
    s32 exit_code;    /* exit_group()/exit() argument, valid with AW_PF_EXIT_CODE */
    s32 exit_signal;  /* fatal signal taken, valid with AW_PF_EXIT_SIGNAL */
};

#define AW_PF_EXIT_CODE   0x1
#define AW_PF_EXIT_SIGNAL 0x2
#define AW_PF_SETUP       0x20  /* a sandbox launcher (or its child) building the sandbox */
#define AW_PF_NESTED      0x40  /* a launcher exec'd by a sandboxed payload, not by setup */
#define AW_PF_SANDBOXED   0x80  /* exec'd by a setup-phase process: a sandbox's payload */
#define AW_PF_EXEMPT      0x100 /* its comm is in `exempt_comms` (sandbox-runtime's helper):
                                   may create namespaces and mount */
#define AW_PF_KILLED      0x200 /* killed by aw_kill_current: its exit goes to `enforced` */
/* AW_PF_HELD 0x400 (fail_closed): in agentwatch_rules.h, user space reads it too */

/* Event header flags (hdr_flags). */
#define AW_HF_SETUP  0x1
#define AW_HF_NESTED 0x2
#define AW_HF_KILLED 0x4  /* the kernel sent SIGKILL at this call's entry; bits 8-15: why */
#define AW_HF_DENIED 0x8  /* a cgroup egress program refused this connect or send */
#define AW_HF_COMPAT 0x10 /* a 32-bit syscall (ia32 int 0x80, sysenter; x32) */

/* Session kinds (sessions map, session records). */
#define AW_SK_RUN 1
#define AW_SK_LAUNCHER 2
#define AW_SK_ATTACH 3

/* One per session: how many of its thread groups are alive. The last exit sends the
 * session's end record, so sessions end even when no user-space process waits on them. */
struct aw_session {
    s64 live;
    u32 root;  /* tgid of the session's first process */
    u32 kind;  /* AW_SK_* */
};

/* The kernel rules' numbers shared with Python (AW_CFG_*, AW_EN_*, AW_WHY_*, AW_SE_*,
 * AW_DENY_DIR, map limits): generated from probes/rules.py. */
#include "agentwatch_rules.h"

/* CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}; clone3 and unshare add CLONE_NEWTIME (0x80,
 * which in clone() is part of the exit signal) */
#define AW_CLONE_NEW 0x7E020000ULL
#define AW_CLONE_NEWTIME 0x80ULL

struct aw_comm { char name[16]; };

BPF_RINGBUF_OUTPUT(events, AW_RINGBUF_PAGES);
BPF_HASH(watched, u32, struct aw_proc, AW_MAX_PROCS);
BPF_PERCPU_ARRAY(lost, u64, AW_LOST_SLOTS);
BPF_HASH(sessions, u64, struct aw_session, 8192);
BPF_HASH(launchers, struct aw_comm, u32, 64);  /* comm -> 1, set by user space */
BPF_ARRAY(config, u64, AW_CFG_SLOTS);
BPF_PERCPU_ARRAY(wake_at, u64, 1);  /* per CPU: boot ns of its last wake-up of the reader */
BPF_RINGBUF_OUTPUT(enforced, 64);                  /* 256 KiB: kernel kills only */
BPF_HASH(deny_paths, u64, u32, 4096);               /* FNV-1a 64 of a path -> AW_WHY_* */
/* (dev, inode) of a denied file -> AW_WHY_*: checked at an open's exit on the file the
 * kernel opened, whatever name reached it (file.bpf.c, response/enforce.py) */
struct aw_inode_key { u64 ino; u32 dev; u32 pad; };
BPF_HASH(deny_inodes, struct aw_inode_key, u32, AW_DENY_INODES_MAX);
BPF_HASH(exempt_comms, struct aw_comm, u32, 16);    /* comm -> 1 */
BPF_HASH(protected, u32, u32, AW_PROTECTED_MAX);    /* agentwatch's pids and tids -> 1 */

/* With AW_EN_REVSHELL: which fds (below AW_FDSET_MAX) of a watched thread group are
 * AF_INET/AF_INET6 sockets. Set at socket()/accept() exit, copied by dup*, cleared at
 * close()/close_range() (probes attached only then), emptied at exec, copied at fork. */
#define AW_FDSET_MAX 1024
struct aw_fdset { u64 w[AW_FDSET_MAX / 64]; };
BPF_F_TABLE("hash", u32, struct aw_fdset, inet_fds, AW_MAX_PROCS, BPF_F_NO_PREALLOC);

static __always_inline void aw_count_lost(u32 slot)
{
    u64 *n = lost.lookup(&slot);
    if (n)
        (*n)++;  /* per-CPU slot: no atomic needed */
}

/* The watched entry of the current thread group, or NULL: the filter every probe runs
 * first. Unwatched processes pay for this one hash lookup and nothing else. */
static __always_inline struct aw_proc *aw_current(u64 pid_tgid)
{
    u32 tgid = pid_tgid >> 32;
    return watched.lookup(&tgid);
}

#ifndef AW_OFF_task_struct__thread_info__status
#error "AW_OFF_task_struct__thread_info__status (task_struct.thread_info.status, from BTF) is not defined"
#endif

/* Is the current task in a 32-bit (ia32) syscall? TS_COMPAT in thread_info.status, set
 * from the syscall's entry until the return to user space; the offset comes from the
 * running kernel's BTF (the loader passes AW_OFF_task_struct__thread_info__status). */
static __always_inline u32 aw_task_compat(void)
{
    struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
    u32 status = 0;
    bpf_probe_read_kernel(&status, sizeof(status), (void *)t + AW_OFF_task_struct__thread_info__status);
    return status & 0x2 /* TS_COMPAT */;
}

static __always_inline void aw_fill_hdr(struct aw_hdr *h, u32 type, const struct aw_proc *p,
                                        u64 pid_tgid)
{
    u64 ugid = bpf_get_current_uid_gid();
    h->type = type;
    h->size = 0;
    h->ts = bpf_ktime_get_boot_ns();
    h->session = p->session;
    h->pid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->ppid = p->ppid;
    h->uid = (u32)ugid;
    h->gid = ugid >> 32;
    h->hdr_flags = ((p->flags & AW_PF_SETUP) ? AW_HF_SETUP : 0) |
                   ((p->flags & AW_PF_NESTED) ? AW_HF_NESTED : 0) |
                   (aw_task_compat() ? AW_HF_COMPAT : 0);
    h->cgroup = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* A thread group joined or left a session: keep the live count (returned on a join);
 * the last one out sends the session's end record. */
static __always_inline s64 aw_session_join(u64 session)
{
    struct aw_session *s = sessions.lookup(&session);
    if (!s)
        return 0;
    return __sync_fetch_and_add(&s->live, 1) + 1;  /* the session's live count now */
}

/* Send a finished record of `size` bytes; `max` (a constant once inlined) bounds it for
 * the verifier. To `events` (a full ring is counted against the record's type), or to
 * `enforced` (the kernel's kills and their exits; its own loss slot). */
/* BPF_RB_FORCE_WAKEUP when this CPU has not woken the reader for AW_WAKE_NS, else
 * BPF_RB_NO_WAKEUP (see AW_WAKE_NS). FORCE rather than the default: the default wakes only
 * when the reader had consumed everything, which NO_WAKEUP records left unread defeat. */
static __always_inline u64 aw_wake_flag(void)
{
    u32 zero = 0;
    u64 *last = wake_at.lookup(&zero);
    if (!last)
        return 0;
    u64 now = bpf_ktime_get_boot_ns();
    if (now - *last < AW_WAKE_NS)
        return BPF_RB_NO_WAKEUP;
    *last = now;
    return BPF_RB_FORCE_WAKEUP;
}

static __always_inline void aw_submit_to(void *rec, u32 size, u32 max, int to_enforced)
{
    struct aw_hdr *h = rec;
    u64 sz = size;
    if (sz > max)
        sz = max;
    /* Hand the verifier the clamped register: clang may otherwise pass an unclamped copy. */
    asm volatile("" : "+r"(sz));
    if (sz > max)
        return;
    h->size = sz;
    if (to_enforced) {
        if (enforced.ringbuf_output(rec, sz, 0) != 0)
            aw_count_lost(AW_LOST_ENFORCED);
    } else if (events.ringbuf_output(rec, sz, aw_wake_flag()) != 0) {
        aw_count_lost(h->type);
    }
}

static __always_inline void aw_submit(void *rec, u32 size, u32 max)
{
    aw_submit_to(rec, size, max, 0);
}

/* The enforcement bits that apply to this process now (0 during its sandbox's own setup,
 * as for the detectors: a nested launcher's setup is not exempt). */
static __always_inline u64 aw_enforce_mask(const struct aw_proc *p)
{
    if ((p->flags & AW_PF_SETUP) && !(p->flags & AW_PF_NESTED))
        return 0;
    u32 key = AW_CFG_ENFORCE;
    u64 *mask = config.lookup(&key);
    return mask ? *mask : 0;
}

/* SIGKILL to the current process, and the record marked with why; the process's exit
 * record will go to the `enforced` ring too (AW_PF_KILLED). */
static __always_inline void aw_kill_current(struct aw_hdr *h, u32 why, struct aw_proc *p)
{
    bpf_send_signal(9);
    h->hdr_flags |= AW_HF_KILLED | (why << 8);
    p->flags |= AW_PF_KILLED;
}

static __always_inline void aw_submit_enforced(void *rec, u32 size, u32 max)
{
    aw_submit_to(rec, size, max, 1);
}

/* A record user space cannot do without (a session's start or end: without its end a
 * session would never end): the events ring, or the `enforced` ring when the events ring
 * is full (a fork bomb's exits), counted as lost only if both are. */
static __always_inline void aw_submit_vital(void *rec, u32 size)
{
    struct aw_hdr *h = rec;
    h->size = size;
    if (events.ringbuf_output(rec, size, aw_wake_flag()) == 0)
        return;
    if (enforced.ringbuf_output(rec, size, 0) != 0)
        aw_count_lost(h->type);
}

/* Is the absolute path in s (NUL-terminated within max bytes) or one of its directories
 * in `deny_paths`? The why code, or 0. FNV-1a 64 of each prefix ending before a '/' is
 * looked up (entries with AW_DENY_DIR cover what is below them), then of the whole path.
 * Literal comparison only: relative paths, "..", "//" and symlinks are user space's. */
static __always_inline u32 aw_path_deny_value(const char *s, u32 max);
static __always_inline u32 aw_path_denied(const char *s, u32 max)
{
    return aw_path_deny_value(s, max) & 0xff;
}

/* A listing (AW_DENY_LIST): a read-only open, no O_CREAT/O_TRUNC, of what turns out to be
 * a directory (S_IFDIR mode). At a call's entry (mode 0: not known yet) only an open that
 * asks for a directory (O_DIRECTORY, as opendir, find and du make them) waits for the
 * exit: `cat /sys/fs/bpf/x` or /proc/<pid>/fd/N (a magic link to the file itself) is
 * judged at once on its literal path. */
static __always_inline int aw_deny_is_listing(u32 v, u64 oflags, u32 mode)
{
    if (!(v & AW_DENY_LIST) || (oflags & 3) != 0 || (oflags & (0100 | 01000)))
        return 0;
    if (mode == 0)
        return (oflags & 0200000) != 0;
    return (mode & 0170000) == 0040000;
}

/* As aw_path_denied, the whole map value: why | AW_DENY_* flags */
static __always_inline u32 aw_path_deny_value(const char *s, u32 max)
{
    if (s[0] != '/')
        return 0;
    u64 h = AW_FNV_OFFSET;
    for (u32 i = 0; i < AW_HASH_MAX && i < max; i++) {
        u8 c = s[i];
        if (c == 0 || (c == '/' && i > 0)) {
            u32 *v = deny_paths.lookup(&h);
            if (v && (c == 0 || (*v & AW_DENY_DIR)))
                return *v;
            if (c == 0)
                return 0;
        }
        h ^= c;
        h *= AW_FNV_PRIME;
    }
    return 0;
}

/* fail_closed. The ring reader (the daemon, or `run` on pinned probes) writes its
 * heartbeat (AW_CFG_HEARTBEAT, boot ns) at each poll; with AW_CFG_FAIL_CLOSED set (enforce
 * mode's `fail_closed`), no heartbeat for that long means no reader: a session that
 * begins then (a launcher adopted by the kernel) is marked AW_PF_HELD (inherited at fork),
 * and its processes are stopped (SIGSTOP) at their syscalls while no reader is back. The
 * reader that takes over clears the flag and sends SIGCONT (collector/sessions.py); a
 * held process that makes a call once a reader is back clears its own flag. */
static __always_inline int aw_reader_absent(void)
{
    u32 key = AW_CFG_FAIL_CLOSED;
    u64 *grace = config.lookup(&key);
    if (!grace || !*grace)
        return 0;
    key = AW_CFG_HEARTBEAT;
    u64 *beat = config.lookup(&key);
    u64 last = beat ? *beat : 0;
    return bpf_ktime_get_boot_ns() - last > *grace;
}

static __always_inline void aw_count_held(void)
{
    u32 key = AW_CFG_HELD;
    u64 *n = config.lookup(&key);
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* A new session's first process: AW_PF_HELD when no reader reads the rings, else 0. */
static __always_inline u32 aw_fail_closed_flags(void)
{
    if (!aw_reader_absent())
        return 0;
    aw_count_held();
    return AW_PF_HELD;
}

/* At a watched process's syscall: stop it if its session is held and no reader is back
 * (1), else release it (0). */
static __always_inline int aw_fail_closed(struct aw_proc *p)
{
    if (!(p->flags & AW_PF_HELD))
        return 0;
    if (!aw_reader_absent()) {
        p->flags &= ~AW_PF_HELD;
        return 0;
    }
    bpf_send_signal(19 /* SIGSTOP */);
    aw_count_held();
    return 1;
}

static __always_inline int aw_fd_is_inet(const struct aw_fdset *set, u64 fd)
{
    if (!set || fd >= AW_FDSET_MAX)
        return 0;
    return (set->w[(fd / 64) & (AW_FDSET_MAX / 64 - 1)] >> (fd % 64)) & 1;
}

static __always_inline void aw_fd_mark(struct aw_fdset *set, u64 fd, int on)
{
    if (!set || fd >= AW_FDSET_MAX)
        return;
    u64 bit = 1ULL << (fd % 64);
    u64 *w = &set->w[(fd / 64) & (AW_FDSET_MAX / 64 - 1)];
    if (on)
        *w |= bit;
    else
        *w &= ~bit;
}

#endif /* AGENTWATCH_H */
