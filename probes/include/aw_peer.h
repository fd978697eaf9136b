/* aw_peer.h: who is at the other end of a connected unix socket, as the kernel knows it.
 *
 *   aw_sock_peer_pid(task, fd)   the host pid (init pid namespace) in the socket's peer
 *                                credentials: for a unix stream socket after connect(),
 *                                the process that called listen() on the listener
 *                                (unix_stream_connect copies the listener's sk_peer_pid);
 *                                0 when none is recorded (datagram sockets), < 0 when it
 *                                cannot be read (AW_PEER_NO_FILE, AW_PEER_FAULT,
 *                                AW_PEER_NO_BTF).
 *
 *   aw_fd_sock(task, fd)         the struct sock * of fd N when it is a socket (its inode's
 *                                S_IFSOCK), else NULL
 *   aw_sock_peer_addr(sk, out)   the connected peer of an AF_INET/AF_INET6 socket as a
 *                                struct sockaddr_in/_in6 in out[0, 28): its length, or 0
 *                                (another family, or not connected)
 *
 * Path: task->files->fdt->fd[fd] (aw_resolve.h's aw_task_file) -> file->private_data
 * (struct socket) -> socket->sk -> sock->sk_peer_pid (struct pid) -> pid->numbers[0].nr
 * (level 0: the init namespace, the pid user space knows). Offsets from the running
 * kernel's BTF (probes/net.py PEER_FIELDS, -DAW_OFF_...); without them the loader passes
 * -DAW_NO_PEER_BTF and the answer is AW_PEER_NO_BTF. Map-free; include after aw_resolve.h.
 */
#ifndef AW_PEER_H
#define AW_PEER_H

#define AW_PEER_NO_FILE -1   /* no struct file at that fd any more */
#define AW_PEER_FAULT   -2   /* a kernel read failed */
#define AW_PEER_NO_BTF  -3   /* compiled without the offsets */
#define AW_PEERF_SESSION 0x1 /* peer_flags: the peer is a process of the caller's session */

#if !defined(AW_NO_BTF) && !defined(AW_NO_PEER_BTF)
static __always_inline s32 aw_sock_peer_pid(void *task, s64 fd)
{
    void *file = aw_task_file(task, fd);
    void *sock = 0, *sk = 0, *pid = 0;
    s32 nr = 0;
    if (!file)
        return AW_PEER_NO_FILE;
    if (AW_RD(sock, file, AW_OFF_file__private_data) || !sock ||
        AW_RD(sk, sock, AW_OFF_socket__sk) || !sk ||
        AW_RD(pid, sk, AW_OFF_sock__sk_peer_pid))
        return AW_PEER_FAULT;
    if (!pid)
        return 0;
    if (AW_RD(nr, pid, AW_OFF_pid__numbers + AW_OFF_upid__nr))
        return AW_PEER_FAULT;
    return nr;
}

static __always_inline void *aw_fd_sock(void *task, s64 fd)
{
    void *file = aw_task_file(task, fd);
    void *inode = 0, *sock = 0, *sk = 0;
    u16 mode = 0;
    if (!file || AW_RD(inode, file, AW_OFF_file__f_inode) || !inode ||
        AW_RD(mode, inode, AW_OFF_inode__i_mode) || (mode & 0170000) != 0140000 /* S_IFSOCK */)
        return 0;
    if (AW_RD(sock, file, AW_OFF_file__private_data) || !sock ||
        AW_RD(sk, sock, AW_OFF_socket__sk))
        return 0;
    return sk;
}

static __always_inline u32 aw_sock_peer_addr(void *sk, u8 *out)
{
    u16 family = 0, dport = 0;
    if (!sk || AW_RD(family, sk, AW_OFF_sock____sk_common__skc_family) ||
        AW_RD(dport, sk, AW_OFF_sock____sk_common__skc_dport) || !dport)
        return 0;
    *(u16 *)out = family;
    *(u16 *)(out + 2) = dport;  /* network order, as in a sockaddr */
    if (family == 2 /* AF_INET */) {
        if (bpf_probe_read_kernel(out + 4, 4,
                                  (char *)sk + AW_OFF_sock____sk_common__skc_daddr))
            return 0;
        return 16;
    }
    if (family == 10 /* AF_INET6 */) {
        if (bpf_probe_read_kernel(out + 8, 16,
                                  (char *)sk + AW_OFF_sock____sk_common__skc_v6_daddr))
            return 0;
        return 28;
    }
    return 0;
}
#else
static __always_inline s32 aw_sock_peer_pid(void *task, s64 fd) { return AW_PEER_NO_BTF; }
static __always_inline void *aw_fd_sock(void *task, s64 fd) { return 0; }
static __always_inline u32 aw_sock_peer_addr(void *sk, u8 *out) { return 0; }
#endif

#endif /* AW_PEER_H */
