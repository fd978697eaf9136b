/* file: opens by watched sessions.
 *
 * Traces: syscalls:sys_{enter,exit}_{open,openat,openat2}. The path, flags and mode are
 * read at entry and kept per thread; the event is sent at exit with the return value
 * (the new fd or -errno), so denied attempts are seen too.
 *
 * Cannot see: the path is the one the process passed (relative paths are relative to its
 * cwd or dirfd; resolving them is user space's job), read at entry, so a racing thread
 * can change the buffer between our read and the kernel's. Opens through io_uring do not
 * go through these syscalls: uring.bpf.c reports them.
 *
 * Cost: unwatched, one hash lookup at entry and a task-storage lookup at exit (a pointer
 * in the task, no hashing); watched, one user string read into the thread's own in-flight
 * record and a ring-buffer copy of the path's length.
 *
 * The in-flight record lives in task-local storage (BPF_TASK_STORAGE), made on a thread's
 * first watched open and freed with the thread: the entry writes the record in place and
 * the exit sends it, with no per-call allocation, 4 KiB copy or hash update as a
 * (tid -> record) hash map needs (bench/README.md: that was a third of the watched cost).
 * A record is in flight while its `type` is AW_EV_OPEN (0 in a new or finished one).
 */
#include "agentwatch.h"

#define AW_OPEN_SYS_OPEN 0
#define AW_OPEN_SYS_OPENAT 1
#define AW_OPEN_SYS_OPENAT2 2

#define AW_OF_PATH_FAULT 0x1
#define AW_OF_HOW_FAULT 0x2

struct aw_open {
    AW_HDR_FIELDS
    s64 ret;
    s32 dfd;
    u32 syscall;   /* AW_OPEN_SYS_* */
    u64 flags;     /* O_* */
    u64 mode;
    u64 resolve;   /* openat2 RESOLVE_* */
    u32 path_len;  /* bytes of path, NUL included */
    u32 open_flags;  /* AW_OF_* */
    char path[AW_PATH_MAX];
};

BPF_TASK_STORAGE(open_inflight, struct aw_open);
#ifdef AW_LAYOUT_CHECK
BPF_ARRAY(layout_open, struct aw_open, 1);  /* tests/test_layout.py: task storage has no ctypes view */
#endif

static __always_inline int aw_open_enter(u32 sys, int dfd, const char *path, u64 flags,
                                         u64 mode, u64 resolve, u32 of)
{
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    struct aw_open *rec = open_inflight.task_storage_get(bpf_get_current_task_btf(), 0,
                                                         BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!rec) {
        aw_count_lost(AW_LOST_INFLIGHT);
        return 0;
    }
    aw_fill_hdr((struct aw_hdr *)rec, AW_EV_OPEN, p, id);
    rec->ret = 0;
    rec->dfd = dfd;
    rec->syscall = sys;
    rec->flags = flags;
    rec->mode = mode;
    rec->resolve = resolve;
    rec->open_flags = of;
    long n = bpf_probe_read_user_str(rec->path, sizeof(rec->path), path);
    if (n < 0) {
        n = 0;
        rec->open_flags |= AW_OF_PATH_FAULT;
    }
    rec->path_len = n;
    if (aw_enforce_mask(p) & AW_EN_PATHS) {
        u32 why = aw_path_denied(rec->path, sizeof(rec->path));
        if (why) {
            aw_kill_current((struct aw_hdr *)rec, why, p);
            aw_submit_enforced(rec, offsetof(struct aw_open, path) + rec->path_len,
                               sizeof(*rec));
            rec->type = 0;
            return 0;
        }
    }
    return 0;  /* in flight: rec->type is AW_EV_OPEN until the exit sends it */
}

static __always_inline int aw_open_exit(long ret)
{
    struct aw_open *rec = open_inflight.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    if (!rec || rec->type != AW_EV_OPEN)
        return 0;
    rec->ret = ret;
    aw_submit(rec, offsetof(struct aw_open, path) + rec->path_len, sizeof(*rec));
    rec->type = 0;
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return aw_open_enter(AW_OPEN_SYS_OPEN, AT_FDCWD, args->filename, (u32)args->flags,
                         args->mode, 0, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return aw_open_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return aw_open_enter(AW_OPEN_SYS_OPENAT, args->dfd, args->filename, (u32)args->flags,
                         args->mode, 0, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return aw_open_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 how[3] = {};  /* struct open_how { u64 flags; u64 mode; u64 resolve; } */
    u32 of = 0;
    if (bpf_probe_read_user(how, sizeof(how), (void *)args->how) != 0)
        of = AW_OF_HOW_FAULT;
    return aw_open_enter(AW_OPEN_SYS_OPENAT2, args->dfd, args->filename, how[0], how[1],
                         how[2], of);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return aw_open_exit(args->ret); }
