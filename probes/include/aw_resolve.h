/* aw_resolve.h: the file the kernel actually opened, read from kernel memory.
 *
 * BCC compiles against headers of another kernel version (Debian 6.1 on a 6.18 kernel
 * here), so nothing in this file dereferences a kernel struct of those headers: every read
 * is bpf_probe_read_kernel at an offset from the running kernel's BTF, passed in as
 * -DAW_OFF_<struct>__<member>=N by probes/btf.py (RESOLVE_FIELDS lists them, the loader adds
 * the flags, tests/test_btf.py checks them against bpftool). Kernel pointers are `void *`.
 * Without BTF the loader passes -DAW_NO_BTF and every function here only sets
 * AW_RF_NO_BTF in the flags: the records say "unresolved" and user space falls back.
 *
 * Map-free (BCC rewrites map calls only in the main translation unit): callers pass the
 * output fields and a scratch buffer they own (task-local storage, so that a preempted
 * program's buffer is not reused on the same CPU: syscall tracepoints may be preempted on
 * this kernel). Usable from any program that has a task: the open's exit today, accept,
 * memfd_create, io_uring and the *at calls' dirfd / cwd (aw_resolve_cwd) later.
 *
 *   aw_task_file(task, fd)          struct file * of fd N: task->files->fdt->fd[N],
 *                                   bounds-checked against fdt->max_fds; NULL if none
 *   aw_inode_id(inode, r)           (dev, ino, i_mode, fs magic) of an inode
 *   aw_resolve_path(task, dentry, vfsmnt, scratch, r)
 *                                   the path as d_path shows it to `task`: a dentry walk
 *                                   up to task->fs->root, crossing mounts, bounded
 *   aw_resolve_file / aw_resolve_fd / aw_resolve_cwd    the above together
 *   aw_resolved_copy(r, scratch, out)   copy the path (NUL included) to out (AW_PATH_MAX
 *                                   bytes), or set r_path_len to 0
 *
 * The walk (as the kernel's prepend_path, and as Tetragon emulates it): names are prepended
 * right to left into scratch[0, AW_PATH_MAX); at a mount's root it continues at the
 * mount's mountpoint in the parent mount (struct mount is container_of its `mnt` member);
 * it stops at the task's root (path "/..."), at a mount that is its own parent (the file is
 * not reachable from the task's root: AW_RF_UNREACHABLE, the path is then relative to that
 * mount's root, as d_path prints it), at a dentry that is its own parent without being a
 * mount's root (pipes, sockets, anon inodes: AW_RF_DISCONNECTED, the path is the dentry's
 * name; user space names them from the fs magic, e.g. pipe:[ino]). Bounds: AW_RESOLVE_DEPTH
 * steps (components plus mount crossings) and AW_PATH_MAX bytes; past either the path is
 * the deepest part only, marked AW_RF_TRUNCATED. Never an unbounded loop.
 *
 * dev is the kernel's s_dev of the inode's super block: MAJOR << 20 | MINOR (the kernel's
 * dev_t), not glibc's encoding: user space converts os.stat().st_dev with
 * (os.major(d) << 20) | os.minor(d) (collector/decode/file.py, kernel_dev()).
 * Filesystems whose stat() reports another device than their super block (btrfs
 * subvolumes, overlayfs for non-directories with xino) do not compare equal.
 */
#ifndef AW_RESOLVE_H
#define AW_RESOLVE_H

#ifndef AW_PATH_MAX
#define AW_PATH_MAX 4096
#endif
#define AW_NAME_MAX 255          /* NAME_MAX: a longer d_name is refused */
#ifndef AW_RESOLVE_DEPTH
#define AW_RESOLVE_DEPTH 128     /* walk steps: components plus mount crossings */
#endif
#define AW_RESOLVE_SCRATCH (AW_PATH_MAX + AW_NAME_MAX + 1)

/* Resolve flags (r_flags) */
#define AW_RF_OK           0x1   /* a file was found and its path walked */
#define AW_RF_NO_FILE      0x2   /* no struct file at that fd (closed by another thread) */
#define AW_RF_TRUNCATED    0x4   /* depth or size bound hit: the path is its deepest part */
#define AW_RF_UNREACHABLE  0x8   /* not below the task's root: relative to a mount's root */
#define AW_RF_DISCONNECTED 0x10  /* a dentry without parent (pipe, socket, anon inode ...) */
#define AW_RF_DELETED      0x20  /* the dentry is unhashed: unlinked (d_path's "(deleted)") */
#define AW_RF_NO_BTF       0x40  /* compiled without offsets: nothing resolved */
#define AW_RF_FAULT        0x80  /* a kernel read failed mid-walk */

/* What a resolution yields, flattened into records (BCC wants flat structs): declare
 * AW_RESOLVED_FIELDS in a record, in this order, and pass (struct aw_resolved *)&rec->r_ino */
#define AW_RESOLVED_FIELDS \
    u64 r_ino;       /* inode->i_ino */ \
    u64 r_magic;     /* inode->i_sb->s_magic: the file system (pipefs, sockfs ...) */ \
    u32 r_dev;       /* inode->i_sb->s_dev: MAJOR << 20 | MINOR */ \
    u32 r_mode;      /* inode->i_mode: S_IFMT type and permission bits */ \
    u32 r_flags;     /* AW_RF_* */ \
    u32 r_path_len;  /* bytes of the resolved path, NUL included (0: none) */ \
    u32 r_start;     /* where the path starts in the scratch buffer (internal) */ \
    u32 r_pad; \
    u32 r_proc_pid;  /* a /proc file's process: its host-global id (a tid for task/<tid>) */ \
    u32 r_proc_tgid; /* ... and that task's thread group id (0: exited, or not /proc) */

struct aw_resolved { AW_RESOLVED_FIELDS };

#define AW_RD(dst, base, off) \
    bpf_probe_read_kernel(&(dst), sizeof(dst), (const char *)(base) + (off))

/* Several members in one kernel read (each bpf_probe_read_kernel costs ~20-40 ns): copy
 * base[lo, hi) into a stack window (at most AW_WIN bytes), then take members from it;
 * AW_WGET reads a member alone when this kernel's layout puts it outside the window. All
 * of it folds to constants at compile time. */
#define AW_MIN2(a, b) ((a) < (b) ? (a) : (b))
#define AW_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define AW_WIN 128
#define AW_WLEN(lo, hi) ((hi) - (lo) < AW_WIN ? (hi) - (lo) : AW_WIN)
#define AW_WREAD(win, base, lo, hi) \
    bpf_probe_read_kernel(win, AW_WLEN(lo, hi), (const char *)(base) + (lo))
#define AW_WGET(dst, win, lo, hi, base, off) \
    (((off) >= (lo) && (off) + sizeof(dst) <= (lo) + AW_WLEN(lo, hi)) \
     ? (__builtin_memcpy(&(dst), (win) + ((off) - (lo)), sizeof(dst)), 0) \
     : AW_RD(dst, base, off))

/* The windows: fdtable {max_fds, fd}; file {f_inode, f_path}; inode {i_mode, i_sb,
 * i_ino}; super_block {s_dev, s_magic}; dentry {d_parent, d_name}; struct mount
 * {mnt_parent, mnt_mountpoint, mnt.mnt_root} */
#define AW_FDT_LO AW_MIN2(AW_OFF_fdtable__max_fds, AW_OFF_fdtable__fd)
#define AW_FDT_HI AW_MAX2(AW_OFF_fdtable__max_fds + 4, AW_OFF_fdtable__fd + 8)
#define AW_FILE_LO AW_MIN2(AW_OFF_file__f_inode, AW_OFF_file__f_path)
#define AW_FILE_HI AW_MAX2(AW_OFF_file__f_inode + 8, AW_OFF_file__f_path + AW_SIZE_path)
#define AW_INO_LO AW_MIN2(AW_OFF_inode__i_mode, AW_MIN2(AW_OFF_inode__i_sb, \
                                                       AW_OFF_inode__i_ino))
#define AW_INO_HI AW_MAX2(AW_OFF_inode__i_mode + 2, AW_MAX2(AW_OFF_inode__i_sb + 8, \
                                                           AW_OFF_inode__i_ino + 8))
#define AW_SB_LO AW_MIN2(AW_OFF_super_block__s_dev, AW_OFF_super_block__s_magic)
#define AW_SB_HI AW_MAX2(AW_OFF_super_block__s_dev + 4, AW_OFF_super_block__s_magic + 8)
#define AW_DENT_LO AW_MIN2(AW_OFF_dentry__d_parent, AW_OFF_dentry__d_name)
#define AW_DENT_HI AW_MAX2(AW_OFF_dentry__d_parent + 8, AW_OFF_dentry__d_name + AW_SIZE_qstr)
#define AW_MNT_ROOT (AW_OFF_mount__mnt + AW_OFF_vfsmount__mnt_root)
#define AW_MNT_LO AW_MIN2(AW_OFF_mount__mnt_parent, AW_MIN2(AW_OFF_mount__mnt_mountpoint, \
                                                           AW_MNT_ROOT))
#define AW_MNT_HI AW_MAX2(AW_OFF_mount__mnt_parent + 8, AW_MAX2( \
                          AW_OFF_mount__mnt_mountpoint + 8, AW_MNT_ROOT + 8))

#ifndef AW_NO_BTF

static __always_inline void *aw_task_file(void *task, s64 fd)
{
    void *files = 0, *fdt = 0, *arr = 0, *file = 0;
    u32 max_fds = 0;
    if (fd < 0 || !task)
        return 0;
    if (AW_RD(files, task, AW_OFF_task_struct__files) || !files)
        return 0;
    if (AW_RD(fdt, files, AW_OFF_files_struct__fdt) || !fdt)
        return 0;
    char w[AW_WIN];
    if (AW_WREAD(w, fdt, AW_FDT_LO, AW_FDT_HI) ||
        AW_WGET(max_fds, w, AW_FDT_LO, AW_FDT_HI, fdt, AW_OFF_fdtable__max_fds) ||
        (u64)fd >= max_fds)
        return 0;
    if (AW_WGET(arr, w, AW_FDT_LO, AW_FDT_HI, fdt, AW_OFF_fdtable__fd) || !arr)
        return 0;
    if (AW_RD(file, arr, (u64)fd * sizeof(void *)))
        return 0;
    return file;
}

/* (dev, ino, i_mode, fs magic) of an inode */
static __always_inline void aw_inode_id(void *inode, struct aw_resolved *r)
{
    void *sb = 0;
    u16 mode = 0;
    u64 ino = 0, magic = 0;
    u32 dev = 0;
    char w[AW_WIN];
    if (AW_WREAD(w, inode, AW_INO_LO, AW_INO_HI)) {
        r->r_flags |= AW_RF_FAULT;
        return;
    }
    AW_WGET(mode, w, AW_INO_LO, AW_INO_HI, inode, AW_OFF_inode__i_mode);
    AW_WGET(ino, w, AW_INO_LO, AW_INO_HI, inode, AW_OFF_inode__i_ino);
    AW_WGET(sb, w, AW_INO_LO, AW_INO_HI, inode, AW_OFF_inode__i_sb);
    r->r_mode = mode;
    r->r_ino = ino;
    if (!sb || AW_WREAD(w, sb, AW_SB_LO, AW_SB_HI)) {
        r->r_flags |= AW_RF_FAULT;
        return;
    }
    AW_WGET(dev, w, AW_SB_LO, AW_SB_HI, sb, AW_OFF_super_block__s_dev);
    AW_WGET(magic, w, AW_SB_LO, AW_SB_HI, sb, AW_OFF_super_block__s_magic);
    r->r_dev = dev;
    r->r_magic = magic;
}

/* The path of (dentry, vfsmnt) as `task` would see it from d_path, built right to left in
 * scratch (AW_RESOLVE_SCRATCH bytes): sets r_start, r_path_len and flags.
 *
 * For the verifier: every value that differs between the ways through an iteration (the
 * write position, what ended the walk) is kept in *r (map memory, read back through a
 * volatile pointer), never in a register or on the stack, so that every iteration begins
 * in the same verifier state and the code after the loop is verified once, not once per
 * way out (with registers: ~2,400 instructions verified per step, ~440,000 in all). */
#define AW_RF_WALKED 0x80000000  /* internal: the walk ended before its bound */
static __always_inline void aw_resolve_path(void *task, void *dentry, void *vfsmnt,
                                            char *scratch, struct aw_resolved *r)
{
    volatile u32 *vpos = (volatile u32 *)&r->r_start;
    volatile u32 *vflags = (volatile u32 *)&r->r_flags;
    void *fs = 0, *root_d = 0, *root_m = 0, *hashed = 0;

    scratch[AW_PATH_MAX - 1] = 0;
    *vpos = AW_PATH_MAX - 1;
    if (AW_RD(fs, task, AW_OFF_task_struct__fs) || !fs) {
        *vflags |= AW_RF_FAULT;
        return;
    }
    if (AW_RD(root_m, fs, AW_OFF_fs_struct__root + AW_OFF_path__mnt) ||
        AW_RD(root_d, fs, AW_OFF_fs_struct__root + AW_OFF_path__dentry)) {
        *vflags |= AW_RF_FAULT;
        return;
    }
    if (!AW_RD(hashed, dentry, AW_OFF_dentry__d_hash__pprev) && !hashed)
        *vflags |= AW_RF_DELETED;  /* an unlinked file; the root dentry is never hashed */
    void *mnt = (char *)vfsmnt - AW_OFF_mount__mnt;
    /* the current mount's parent, mountpoint and root: one read per mount */
    void *mnt_parent = 0, *mnt_mp = 0, *mnt_root = 0;
    char w[AW_WIN];
    if (AW_WREAD(w, mnt, AW_MNT_LO, AW_MNT_HI)) {
        *vflags |= AW_RF_FAULT;
        return;
    }
    AW_WGET(mnt_parent, w, AW_MNT_LO, AW_MNT_HI, mnt, AW_OFF_mount__mnt_parent);
    AW_WGET(mnt_mp, w, AW_MNT_LO, AW_MNT_HI, mnt, AW_OFF_mount__mnt_mountpoint);
    AW_WGET(mnt_root, w, AW_MNT_LO, AW_MNT_HI, mnt, AW_MNT_ROOT);

    for (int i = 0; i < AW_RESOLVE_DEPTH; i++) {
        void *parent = 0;
        if (dentry == root_d && vfsmnt == root_m) {
            *vflags |= AW_RF_WALKED;
            break;
        }
        if (dentry == mnt_root) {
            if (!mnt_parent || mnt_parent == mnt) {
                *vflags |= AW_RF_UNREACHABLE | AW_RF_WALKED;
                break;
            }
            dentry = mnt_mp;
            mnt = mnt_parent;
            vfsmnt = (char *)mnt_parent + AW_OFF_mount__mnt;
            if (AW_WREAD(w, mnt, AW_MNT_LO, AW_MNT_HI)) {
                *vflags |= AW_RF_FAULT | AW_RF_WALKED;
                break;
            }
            AW_WGET(mnt_parent, w, AW_MNT_LO, AW_MNT_HI, mnt, AW_OFF_mount__mnt_parent);
            AW_WGET(mnt_mp, w, AW_MNT_LO, AW_MNT_HI, mnt, AW_OFF_mount__mnt_mountpoint);
            AW_WGET(mnt_root, w, AW_MNT_LO, AW_MNT_HI, mnt, AW_MNT_ROOT);
            continue;
        }
        u32 len = 0;
        const char *name = 0;
        if (AW_WREAD(w, dentry, AW_DENT_LO, AW_DENT_HI) ||
            AW_WGET(parent, w, AW_DENT_LO, AW_DENT_HI, dentry, AW_OFF_dentry__d_parent) ||
            !parent) {
            *vflags |= AW_RF_FAULT | AW_RF_WALKED;
            break;
        }
        AW_WGET(len, w, AW_DENT_LO, AW_DENT_HI, dentry,
                AW_OFF_dentry__d_name + AW_OFF_qstr__len);
        AW_WGET(name, w, AW_DENT_LO, AW_DENT_HI, dentry,
                AW_OFF_dentry__d_name + AW_OFF_qstr__name);
        u32 pos = *vpos;
        if (len > AW_NAME_MAX || len + 1 > pos || pos >= AW_PATH_MAX) {
            *vflags |= AW_RF_TRUNCATED | AW_RF_WALKED;
            break;
        }
        pos -= len + 1;
        pos &= AW_PATH_MAX - 1;  /* for the verifier: it is already below AW_PATH_MAX */
        scratch[pos] = '/';
        if (bpf_probe_read_kernel(scratch + pos + 1, len & AW_NAME_MAX, name)) {
            *vflags |= AW_RF_FAULT | AW_RF_WALKED;
            break;
        }
        *vpos = pos;
        if (parent == dentry) {
            *vflags |= AW_RF_DISCONNECTED | AW_RF_WALKED;
            break;
        }
        dentry = parent;
    }
    u32 flags = *vflags;
    u32 pos = *vpos;
    if (!(flags & AW_RF_WALKED))
        flags |= AW_RF_TRUNCATED;
    if (pos >= AW_PATH_MAX - 1) {  /* the root itself: nothing was prepended */
        pos = AW_PATH_MAX - 2;
        scratch[AW_PATH_MAX - 2] = '/';
    }
    *vpos = pos;
    r->r_path_len = AW_PATH_MAX - pos;
    *vflags = (flags & ~AW_RF_WALKED) | AW_RF_OK;
}

/* The process a procfs file belongs to, as the kernel has it: procfs inodes are the
 * vfs_inode of a struct proc_inode whose `pid` is the struct pid of the process (of the
 * thread for task/<tid>/...; NULL for /proc/meminfo and the like). numbers[0].nr is its
 * id in the initial pid namespace whatever namespace the reader (and its /proc mount)
 * is in, so /proc/self, /proc/thread-self, dirfd-relative opens, a pid namespace's own
 * numbers and /proc/self/root/proc/... all name the right process. The tgid comes from
 * the task attached to the pid (tasks[PIDTYPE_PID].first is its pid_links[0]): 0 once it
 * has exited. Offsets from BTF (btf.PROC_FIELDS); compiled out without them. */
#define AW_PROC_SUPER_MAGIC 0x9fa0
static __always_inline void aw_proc_target(void *inode, struct aw_resolved *r)
{
#ifdef AW_HAVE_PROC_TARGET
    void *pid = 0, *first = 0;
    u32 nr = 0, tgid = 0;
    if (r->r_magic != AW_PROC_SUPER_MAGIC)
        return;
    if (AW_RD(pid, (char *)inode - AW_OFF_proc_inode__vfs_inode, AW_OFF_proc_inode__pid)
        || !pid)
        return;
    if (AW_RD(nr, pid, AW_OFF_pid__numbers + AW_OFF_upid__nr))
        return;
    r->r_proc_pid = nr;
    if (!AW_RD(first, pid, AW_OFF_pid__tasks) && first &&
        !AW_RD(tgid, (char *)first - AW_OFF_task_struct__pid_links, AW_OFF_task_struct__tgid))
        r->r_proc_tgid = tgid;
#endif
}

/* The process a task's fd `fd` names, when the fd is a procfs file or directory
 * (/proc/<pid>, a pidfd's stand-in): host pid (a tid for task/<tid>) and tgid in `r`, 0
 * when it names none. Map-free: callers judge the ids. */
static __always_inline void aw_fd_proc_target(void *task, s64 fd, struct aw_resolved *r)
{
#ifdef AW_HAVE_PROC_TARGET
    void *file = aw_task_file(task, fd);
    void *inode = 0;
    if (!file || AW_RD(inode, file, AW_OFF_file__f_inode) || !inode)
        return;
    aw_inode_id(inode, r);
    aw_proc_target(inode, r);
#endif
}

static __always_inline void aw_resolve_file(void *task, void *file, char *scratch,
                                            struct aw_resolved *r)
{
    void *inode = 0, *dentry = 0, *vfsmnt = 0;
    char w[AW_WIN];
    if (AW_WREAD(w, file, AW_FILE_LO, AW_FILE_HI)) {
        r->r_flags |= AW_RF_FAULT;
        return;
    }
    AW_WGET(inode, w, AW_FILE_LO, AW_FILE_HI, file, AW_OFF_file__f_inode);
    AW_WGET(dentry, w, AW_FILE_LO, AW_FILE_HI, file,
            AW_OFF_file__f_path + AW_OFF_path__dentry);
    AW_WGET(vfsmnt, w, AW_FILE_LO, AW_FILE_HI, file, AW_OFF_file__f_path + AW_OFF_path__mnt);
    if (!inode || !dentry || !vfsmnt) {
        r->r_flags |= AW_RF_FAULT;
        return;
    }
    aw_inode_id(inode, r);
    aw_proc_target(inode, r);
    aw_resolve_path(task, dentry, vfsmnt, scratch, r);
}

/* fd N of `task` (the current task's, from bpf_get_current_task_btf()) */
static __always_inline void aw_resolve_fd(void *task, s64 fd, char *scratch,
                                          struct aw_resolved *r)
{
    void *file = aw_task_file(task, fd);
    if (!file) {
        r->r_flags |= AW_RF_NO_FILE;
        return;
    }
    aw_resolve_file(task, file, scratch, r);
}

/* The task's working directory (task->fs->pwd): for *at calls given AT_FDCWD */
static __always_inline void aw_resolve_cwd(void *task, char *scratch, struct aw_resolved *r)
{
    void *fs = 0, *dentry = 0, *vfsmnt = 0, *inode = 0;
    if (AW_RD(fs, task, AW_OFF_task_struct__fs) || !fs ||
        AW_RD(dentry, fs, AW_OFF_fs_struct__pwd + AW_OFF_path__dentry) || !dentry ||
        AW_RD(vfsmnt, fs, AW_OFF_fs_struct__pwd + AW_OFF_path__mnt) || !vfsmnt) {
        r->r_flags |= AW_RF_FAULT;
        return;
    }
    if (!AW_RD(inode, dentry, AW_OFF_dentry__d_inode) && inode)
        aw_inode_id(inode, r);
    aw_resolve_path(task, dentry, vfsmnt, scratch, r);
}

#else /* AW_NO_BTF: no offsets, nothing is read */

static __always_inline void *aw_task_file(void *task, s64 fd) { return 0; }
static __always_inline void aw_resolve_fd(void *task, s64 fd, char *scratch,
                                          struct aw_resolved *r)
{
    r->r_flags |= AW_RF_NO_BTF;
}
static __always_inline void aw_resolve_cwd(void *task, char *scratch, struct aw_resolved *r)
{
    r->r_flags |= AW_RF_NO_BTF;
}

#endif /* AW_NO_BTF */

/* Copy the resolved path (r_path_len bytes, NUL included) from scratch to out, which must
 * have AW_PATH_MAX bytes; r_path_len is set to 0 when nothing was copied. */
static __always_inline void aw_resolved_copy(struct aw_resolved *r, const char *scratch,
                                             char *out)
{
    u32 n = *(volatile u32 *)&r->r_path_len;
    u32 start = *(volatile u32 *)&r->r_start;
    if (!(r->r_flags & AW_RF_OK) || n == 0 || n > AW_PATH_MAX || start >= AW_PATH_MAX ||
        bpf_probe_read_kernel(out, n, scratch + start))
        r->r_path_len = 0;
}

#endif /* AW_RESOLVE_H */
