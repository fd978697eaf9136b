/* file: opens by watched sessions.
 *
 * Traces: open, openat and openat2, routed by the syscall dispatcher (dispatch.bpf.c),
 * 32-bit doors included. The path, flags and mode are read at entry and kept per thread;
 * the event is sent at exit with the return value (the new fd or -errno), so denied
 * attempts are seen too.
 *
 * The file the kernel opened: at the exit of a successful open, the new fd's struct file
 * is read from the task's fd table and its path resolved by a bounded dentry walk across
 * mounts, with (dev, inode, mode) (include/aw_resolve.h, offsets from the running
 * kernel's BTF). The record carries both: the caller's string, then the resolved path.
 * With AW_EN_PATHS the opened file's (dev, inode) is looked up in `deny_inodes` and its
 * resolved path in `deny_paths`: a hardlink, bind mount, /proc/self/root/..., /dev/fd/N/...
 * or symlink to a denied file is killed there, before the process returns to user space.
 *
 * Cannot see: a failed open's path is only the caller's string (relative paths are
 * relative to its cwd or dirfd; resolving them is user space's job), read at entry, so a
 * racing thread can change the buffer between our read and the kernel's. Opens through
 * io_uring do not go through these syscalls: uring.bpf.c reports them.
 *
 * Cost: unwatched, one hash lookup at entry and a task-storage lookup at exit (a pointer
 * in the task, no hashing); watched, one user string read into the thread's own in-flight
 * record and a ring-buffer copy of the path's length, plus at a successful exit the walk
 * (docs/performance.md: its cost per component) and one hash lookup (`session_opens`,
 * include/aw_sockw.h: a read, then a write on a socket).
 *
 * The in-flight record lives in task-local storage (BPF_TASK_STORAGE), made on a thread's
 * first watched open and freed with the thread: the entry writes the record in place and
 * the exit sends it, with no per-call allocation, 4 KiB copy or hash update as a
 * (tid -> record) hash map needs (bench/README.md: that was a third of the watched cost).
 * A record is in flight while its `type` is AW_EV_OPEN (0 in a new or finished one).
 */
#include "agentwatch.h"
#include "aw_resolve.h"

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
    u32 path_len;  /* bytes of the caller's string in path, NUL included */
    u32 open_flags;  /* AW_OF_* */
    AW_RESOLVED_FIELDS  /* the opened file (r_path_len: bytes after the string) */
    /* the caller's string (path_len bytes), then the resolved path (r_path_len bytes) */
    char path[AW_PATH_MAX * 2];
};

/* the dentry walk's buffer, per thread (a per-CPU one could be reused by a preempting
 * task: syscall tracepoints may be preempted on recent kernels) */
struct aw_rscratch { char buf[AW_RESOLVE_SCRATCH]; };

BPF_TASK_STORAGE(open_inflight, struct aw_open);
BPF_TASK_STORAGE(open_scratch, struct aw_rscratch);
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
    __builtin_memset(&rec->r_ino, 0, sizeof(struct aw_resolved));
    long n = bpf_probe_read_user_str(rec->path, AW_PATH_MAX, path);
    if (n < 0) {
        n = 0;
        rec->open_flags |= AW_OF_PATH_FAULT;
    }
    rec->path_len = n;
    if (aw_enforce_mask(p) & AW_EN_PATHS) {
        u32 v = aw_path_deny_value(rec->path, AW_PATH_MAX);
        u32 why = aw_deny_is_listing(v, flags, 0) ? 0 : v & 0xff;  /* a listing: at exit */
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

/* Bytes of the caller's string in the record, read from memory: 0..AW_PATH_MAX for the
 * verifier, the same state whichever way the code came (see aw_resolve.h) */
static __always_inline u32 aw_open_plen(struct aw_open *rec)
{
    u32 plen = *(volatile u32 *)&rec->path_len;
    return plen > AW_PATH_MAX ? AW_PATH_MAX : plen;
}

/* An open relative to a directory fd on agentwatch's own /proc/<pid> (a protected pid:
 * the dirfd's procfs inode names it) that left procfs: a magic link followed out of it
 * (fd/N, map_files/N, root/..., cwd/...). The literal path check cannot see it (the
 * caller's string is relative), nor the resolved one (it is the linked file's). */
static __always_inline u32 aw_open_via_protected_dirfd(void *task, struct aw_open *rec,
                                                       struct aw_resolved *r)
{
#if defined(AW_HAVE_PROC_TARGET) && !defined(AW_NO_BTF)
    if (rec->dfd < 0 || r->r_magic == AW_PROC_SUPER_MAGIC)
        return 0;
    struct aw_resolved d = {};
    aw_fd_proc_target(task, rec->dfd, &d);
    u32 a = d.r_proc_pid, b = d.r_proc_tgid;
    if ((a && protected.lookup(&a)) || (b && protected.lookup(&b)))
        return AW_WHY_MONITOR;
#endif
    return 0;
}

/* At a successful open's exit: resolve fd `ret` into the record (after the caller's
 * string) and, with AW_EN_PATHS, kill for a denied (dev, inode) or resolved path. Returns
 * the why code of a kill (the record then went to `enforced`), or 0. */
static __always_inline u32 aw_open_resolve(struct aw_open *rec, long ret)
{
    struct aw_resolved *r = (struct aw_resolved *)&rec->r_ino;
    void *task = bpf_get_current_task_btf();
    struct aw_rscratch *sc = open_scratch.task_storage_get(task, 0,
                                                           BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!sc) {
        aw_count_lost(AW_LOST_INFLIGHT);
        return 0;
    }
    aw_resolve_fd(task, ret, sc->buf, r);
    u32 plen = aw_open_plen(rec);
    if (plen > AW_PATH_MAX)
        return 0;
    aw_resolved_copy(r, sc->buf, rec->path + plen);
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (p)
        aw_sockw_opened(p->session);  /* a read, then a write on a socket (aw_sockw.h) */
    if (!p || !(aw_enforce_mask(p) & AW_EN_PATHS))
        return 0;
    u32 flags = *(volatile u32 *)&r->r_flags;
    if (!(flags & AW_RF_OK))
        return 0;
    struct aw_inode_key key = {.ino = r->r_ino, .dev = r->r_dev};
    u32 *v = deny_inodes.lookup(&key);
    u32 dv = v ? *v : 0;
    u32 why = aw_deny_is_listing(dv, rec->flags, r->r_mode | 1) ? 0 : dv & 0xff;
    if (!why && !dv && *(volatile u32 *)&r->r_path_len &&
        !(flags & (AW_RF_TRUNCATED | AW_RF_UNREACHABLE))) {
        plen = aw_open_plen(rec);
        if (plen > AW_PATH_MAX)
            return 0;
        dv = aw_path_deny_value(rec->path + plen, AW_PATH_MAX);
        why = aw_deny_is_listing(dv, rec->flags, r->r_mode | 1) ? 0 : dv & 0xff;
    }
    if (!why && (aw_enforce_mask(p) & AW_EN_MONITOR))
        why = aw_open_via_protected_dirfd(task, rec, r);
    if (!why)
        return 0;
    aw_kill_current((struct aw_hdr *)rec, why, p);
    aw_submit_enforced(rec, offsetof(struct aw_open, path) + aw_open_plen(rec) +
                       *(volatile u32 *)&r->r_path_len, sizeof(*rec));
    return why;
}

/* Counted instead of sent (include/aw_interest.h says when): 1 when counted. */
#define AW_O_ACCMODE 03
#define AW_O_NOT_READ_ONLY (0100 | 01000 | 02000 | 020000000 | 010000000)  /* CREAT TRUNC
                                                    APPEND TMPFILE PATH */
#define AW_RF_NOT_BORING (AW_RF_TRUNCATED | AW_RF_UNREACHABLE | AW_RF_DISCONNECTED | \
                          AW_RF_DELETED | AW_RF_NO_BTF | AW_RF_FAULT)
static __always_inline int aw_open_counted(struct aw_open *rec, long ret)
{
    if ((rec->flags & (AW_O_ACCMODE | AW_O_NOT_READ_ONLY)) || rec->open_flags ||
        (rec->hdr_flags & (AW_HF_SETUP | AW_HF_COMPAT)))
        return 0;
    struct aw_rscratch *sc = open_scratch.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    if (!sc)
        return 0;
    struct aw_iscratch *key = (struct aw_iscratch *)sc->buf;
    u32 plen = aw_open_plen(rec);  /* the caller's string, NUL included */
    if (plen < 2 || plen > AW_IPFX)
        return 0;
    u64 session = rec->session;
    u32 root = 0, what = AW_IW_FAILED;
    if (ret >= 0) {
        u32 rf = *(volatile u32 *)&rec->r_flags;
        u32 fmt = rec->r_mode & 0170000;
        u64 magic = rec->r_magic;
        u32 rlen = *(volatile u32 *)&rec->r_path_len;
        if (!(rf & AW_RF_OK) || (rf & AW_RF_NOT_BORING) || rlen < 2 || rlen > AW_IPFX)
            return 0;
        /* regular files only: a directory's fd is a dirfd that later *at calls name, and
         * user space resolves those through its table of the process's fds (collector/
         * proctable.py), which a directory open not sent would leave stale */
        if (fmt != 0100000)
            return 0;
        what = AW_IW_FILE;
        if (magic == 0x9fa0 /* procfs */ || magic == 0x62656572 /* sysfs */ ||
            magic == 0x63677270 || magic == 0x27e0eb /* cgroup2, cgroup */ ||
            magic == 0xcafe4a11 /* bpffs */ || magic == 0x64626720 /* debugfs */ ||
            magic == 0x74726163 /* tracefs */ || magic == 0x73636673 /* securityfs */)
            return 0;
        root = aw_interest_root(key, session, rec->path + plen, rlen - 1);
        if (!root)
            return 0;
        if (rec->path[0] == '/') {  /* the caller's spelling must be boring too */
            if (!aw_interest_same(key, rec->path, plen - 1) &&
                !aw_interest_root(key, session, rec->path, plen - 1))
                return 0;
        } else if (!aw_interest_suffix(key, rec->path, plen - 1, rec->path + plen,
                                       rlen - 1)) {
            return 0;
        }
    } else {
        if (rec->path[0] != '/')
            return 0;
        root = aw_interest_root(key, session, rec->path, plen - 1);
        if (!root)
            return 0;
    }
    return aw_interest_count(session, rec->pid, root, what, rec->ts);
}

static __always_inline int aw_open_exit(long ret)
{
    struct aw_open *rec = open_inflight.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    if (!rec || rec->type != AW_EV_OPEN)
        return 0;
    rec->ret = ret;
    if (ret >= 0 && aw_open_resolve(rec, ret)) {
        rec->type = 0;
        return 0;
    }
    return 0;  /* the interest filter sends or counts it (aw_rt_open_filter) */
}

/* The second half of the open's exit, a program of its own for the verifier's sake: the
 * dentry walk and the interest filter's path scans do not fit in one program's bounds.
 * `filter` 0: send (the filter program is not loaded). */
static __always_inline int aw_open_send(int filter)
{
    struct aw_open *rec = open_inflight.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    if (!rec || rec->type != AW_EV_OPEN)
        return 0;
    if (filter && aw_open_counted(rec, rec->ret)) {
        rec->type = 0;
        return 0;
    }
    u32 size = offsetof(struct aw_open, path) + rec->path_len + rec->r_path_len;
    aw_submit(rec, size, sizeof(*rec));
    rec->type = 0;
    return 0;
}

/* Route programs of the syscall dispatcher (dispatch.bpf.c): open (2), openat (257),
 * openat2 (437), whichever door they came through (aw_call_decode). */
int aw_rt_open_enter(struct bpf_raw_tracepoint_args *ctx)
{
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    if (c.nr == 2)
        return aw_open_enter(AW_OPEN_SYS_OPEN, AT_FDCWD, (const char *)c.a[0], (u32)c.a[1],
                             c.a[2], 0, 0);
    if (c.nr == 257)
        return aw_open_enter(AW_OPEN_SYS_OPENAT, (int)c.a[0], (const char *)c.a[1],
                             (u32)c.a[2], c.a[3], 0, 0);
    u64 how[3] = {};  /* struct open_how { u64 flags; u64 mode; u64 resolve; } */
    u32 of = 0;
    if (bpf_probe_read_user(how, sizeof(how), (void *)c.a[2]) != 0)
        of = AW_OF_HOW_FAULT;
    return aw_open_enter(AW_OPEN_SYS_OPENAT2, (int)c.a[0], (const char *)c.a[1], how[0],
                         how[1], how[2], of);
}

int aw_rt_open_exit(struct bpf_raw_tracepoint_args *ctx)
{
    aw_open_exit(ctx->args[1]);
    exit_routes.call(ctx, AW_RT_OPEN_FILTER);
    return aw_open_send(0);  /* the filter is not loaded: send */
}

int aw_rt_open_filter(struct bpf_raw_tracepoint_args *ctx)
{
    return aw_open_send(1);
}
