/* aw_stdio.h: what fds 0, 1 and 2 of a task are, read from its fd table at exec.
 *
 * A reverse shell is a shell whose stdio reaches a socket: dup'ed there (seen as a call),
 * placed there by socket()/accept() on a closed fd 0-2, inherited from a parent that made
 * it outside the session's view, or joined to one through pipes and fifos by a relay
 * (nc, socat, anything). The calls show the first two; the fd table at exec shows all of
 * them: for each of fds 0-2, the inode (dev, ino, i_mode, fs magic: a pipe is pipefs's,
 * a fifo a real file system's S_IFIFO inode), a character device's rdev (a tty), and for
 * a socket its family and type, for inet the peer's port (and IPv4 address), for unix the
 * peer's host pid (sk->sk_peer_pid: the process that connected, or that listened, or the
 * socketpair's maker). User space (collector/decode/proc.py) names them.
 *
 * Map-free, like aw_resolve.h (whose aw_task_file and aw_inode_id it uses): every read is
 * bpf_probe_read_kernel at an offset from the running kernel's BTF (probes/stdio.py,
 * STDIO_FIELDS). Without them (AW_NO_BTF or AW_NO_STDIO) nothing is read and the records
 * carry AW_IO_UNKNOWN.
 */
#ifndef AW_STDIO_H
#define AW_STDIO_H

#include "aw_resolve.h"

#define AW_IO_FILE    0x1   /* a struct file is at this fd */
#define AW_IO_SOCKET  0x2   /* ... a socket, whose family and type were read */
#define AW_IO_FAULT   0x4   /* a kernel read failed */
#define AW_IO_UNKNOWN 0x8   /* compiled without the offsets: nothing was read */

/* One fd's description; a record declares AW_STDIO_FIELDS(0) AW_STDIO_FIELDS(1)
 * AW_STDIO_FIELDS(2) (flat, as BCC wants them) and passes &rec->s0_ino as an array of 3 */
#define AW_STDIO_FIELDS(n) \
    u64 s##n##_ino; u64 s##n##_magic; u32 s##n##_dev; u32 s##n##_mode; \
    u32 s##n##_rdev; u32 s##n##_peer_pid; u32 s##n##_daddr; u16 s##n##_family; \
    u16 s##n##_stype; u16 s##n##_dport; u16 s##n##_flags; u32 s##n##_pad;

struct aw_stdio_fd {
    u64 ino;        /* inode->i_ino */
    u64 magic;      /* the file system's magic (pipefs 0x50495045, sockfs 0x534f434b) */
    u32 dev;        /* s_dev, MAJOR << 20 | MINOR */
    u32 mode;       /* i_mode */
    u32 rdev;       /* i_rdev of a character device (a tty's major: 4, 5, 136-143) */
    u32 peer_pid;   /* unix socket: the peer's host pid (0: none known) */
    u32 daddr;      /* inet: the peer's IPv4 address, network order */
    u16 family;     /* socket: AF_* */
    u16 stype;      /* socket: SOCK_* */
    u16 dport;      /* inet: the peer's port, network order */
    u16 flags;      /* AW_IO_* */
    u32 pad;
};

#if defined(AW_NO_BTF) || defined(AW_NO_STDIO)

static __always_inline int aw_stdio_read(void *task, struct aw_stdio_fd *out)
{
#pragma unroll
    for (int i = 0; i < 3; i++)
        out[i].flags = AW_IO_UNKNOWN;
    return 0;
}

#else

#define AW_S_IFMT   0170000
#define AW_S_IFSOCK 0140000
#define AW_S_IFCHR  0020000

/* fd `fd` of `task` into *o; 1 when it is an inet (v4 or v6) socket */
static __always_inline int aw_stdio_fd(void *task, int fd, struct aw_stdio_fd *o)
{
    void *file = aw_task_file(task, fd);
    if (!file)
        return 0;
    o->flags = AW_IO_FILE;
    void *inode = 0;
    if (AW_RD(inode, file, AW_OFF_file__f_inode) || !inode) {
        o->flags |= AW_IO_FAULT;
        return 0;
    }
    struct aw_resolved r = {};
    aw_inode_id(inode, &r);
    o->ino = r.r_ino;
    o->magic = r.r_magic;
    o->dev = r.r_dev;
    o->mode = r.r_mode;
    if (r.r_flags & AW_RF_FAULT)
        o->flags |= AW_IO_FAULT;
    u32 fmt = r.r_mode & AW_S_IFMT;
    if (fmt == AW_S_IFCHR) {
        u32 rdev = 0;
        AW_RD(rdev, inode, AW_OFF_inode__i_rdev);
        o->rdev = rdev;
        return 0;
    }
    if (fmt != AW_S_IFSOCK)
        return 0;
    void *sock = 0, *sk = 0;
    if (AW_RD(sock, file, AW_OFF_file__private_data) || !sock ||
        AW_RD(sk, sock, AW_OFF_socket__sk) || !sk) {
        o->flags |= AW_IO_FAULT;
        return 0;
    }
    u16 family = 0, stype = 0;
    if (AW_RD(family, sk, AW_OFF_sock____sk_common__skc_family) ||
        AW_RD(stype, sk, AW_OFF_sock__sk_type)) {
        o->flags |= AW_IO_FAULT;
        return 0;
    }
    o->family = family;
    o->stype = stype;
    o->flags |= AW_IO_SOCKET;
    if (family == 1 /* AF_UNIX */) {
        void *pid = 0;
        u32 nr = 0;
        if (!AW_RD(pid, sk, AW_OFF_sock__sk_peer_pid) && pid &&
            !AW_RD(nr, pid, AW_OFF_pid__numbers + AW_OFF_upid__nr))
            o->peer_pid = nr;  /* numbers[0]: the pid in the initial namespace */
        return 0;
    }
    if (family != 2 /* AF_INET */ && family != 10 /* AF_INET6 */)
        return 0;
    u16 dport = 0;
    AW_RD(dport, sk, AW_OFF_sock____sk_common__skc_dport);
    o->dport = dport;
    if (family == 2) {
        u32 daddr = 0;
        AW_RD(daddr, sk, AW_OFF_sock____sk_common__skc_daddr);
        o->daddr = daddr;
    }
    return 1;
}

/* fds 0, 1, 2 of `task` into out[0..2]; 1 when any of them is an inet socket */
static __always_inline int aw_stdio_read(void *task, struct aw_stdio_fd *out)
{
    int inet = 0;
    inet |= aw_stdio_fd(task, 0, &out[0]);
    inet |= aw_stdio_fd(task, 1, &out[1]);
    inet |= aw_stdio_fd(task, 2, &out[2]);
    return inet;
}

#endif /* AW_NO_BTF || AW_NO_STDIO */
#endif /* AW_STDIO_H */
