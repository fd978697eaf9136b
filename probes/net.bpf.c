/* net: outbound connects by watched sessions.
 *
 * Traces: connect, routed by the syscall dispatcher (dispatch.bpf.c). The socket address (up to
 * sizeof(struct sockaddr_storage) bytes) is copied at entry; the event is sent at exit
 * with the return value (0, -EINPROGRESS for non-blocking sockets, -ECONNREFUSED, ...).
 * User space decodes AF_INET, AF_INET6 and AF_UNIX (paths and abstract names).
 *
 * At the exit of a successful connect of a unix socket, `peer_pid` is the host pid the
 * kernel recorded as the peer (the listener's process, include/aw_peer.h): user space
 * tells a peer inside the session from one outside it. A connect that matters (an inet
 * destination outside loopback or to port 53, a unix peer outside the session) flags the
 * process AW_PF_SOCKW: its writes on sockets are seen from then on (include/aw_sockw.h).
 *
 * Cannot see: traffic without connect() (sendto/sendmsg with an address: the generic
 * probe's; io_uring's CONNECT: uring.bpf.c's),
 * and, being read at entry, an address a racing thread rewrites before the kernel's copy.
 *
 * Cost: unwatched, one hash lookup at entry and one at exit. Watched, at the exit of a
 * connected unix socket: the fd's socket (6 kernel reads) and a `watched` lookup; of a
 * connect that matters: the flag and two LRU updates.
 */
#include "agentwatch.h"
#include "aw_resolve.h"
#include "aw_peer.h"
#define AW_HAVE_NET 1

struct aw_connect {
    AW_HDR_FIELDS
    s64 ret;
    s32 fd;
    u32 addrlen;   /* as passed by the process */
    s32 peer_pid;  /* unix socket connected: the peer's host pid; 0 none; < 0 AW_PEER_* */
    u32 peer_flags; /* AW_PEERF_* */
    u8 addr[AW_SOCKADDR_MAX];
};

/* An inet destination user space judges: port 53 (DNS, over TCP too), or an address
 * outside loopback (127/8, ::1, ::ffff:127/104) and the unspecified ones. */
static __always_inline int aw_connect_matters(const u8 *a)
{
    u16 family = *(const u16 *)a;
    if (family == 2 /* AF_INET */) {
        if (a[2] == 0 && a[3] == 53)
            return 1;
        return a[4] != 127 && (a[4] | a[5] | a[6] | a[7]) != 0;
    }
    if (family == 10 /* AF_INET6 */) {
        if (a[2] == 0 && a[3] == 53)
            return 1;
        const u8 *ip = a + 8;
        u64 hi = 0, lo = 0;
        __builtin_memcpy(&hi, ip, 8);
        __builtin_memcpy(&lo, ip + 8, 8);
        if (hi == 0 && (lo == 0 || lo == 0x0100000000000000ULL))  /* ::, ::1 */
            return 0;
        if (hi == 0 && ip[8] == 0 && ip[9] == 0 && ip[10] == 0xff && ip[11] == 0xff)
            return ip[12] != 127 && (ip[12] | ip[13] | ip[14] | ip[15]) != 0;  /* v4-mapped */
        return 1;
    }
    return 0;
}

BPF_HASH(connect_inflight, u32, struct aw_connect, AW_MAX_INFLIGHT);
BPF_PERCPU_ARRAY(connect_scratch, struct aw_connect, 1);

/* Route programs of the syscall dispatcher (dispatch.bpf.c): connect (42), socketcall's
 * connect included. */
int aw_rt_connect_enter(struct bpf_raw_tracepoint_args *ctx)
{
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct aw_proc *p = aw_current(id);
    if (!p)
        return 0;
    u32 zero = 0;
    struct aw_connect *rec = connect_scratch.lookup(&zero);
    if (!rec)
        return 0;
    aw_fill_hdr((struct aw_hdr *)rec, AW_EV_CONNECT, p, id);
    rec->ret = 0;
    rec->fd = c.a[0];
    rec->addrlen = c.a[2];
    rec->peer_pid = 0;
    rec->peer_flags = 0;
    u64 len = rec->addrlen;
    if (len > AW_SOCKADDR_MAX)
        len = AW_SOCKADDR_MAX;
    /* Make the clamped register the one the helper gets: clang may otherwise pass the
     * unclamped copy and the verifier rejects an unbounded size. */
    asm volatile("" : "+r"(len));
    __builtin_memset(rec->addr, 0, sizeof(rec->addr));
    if (len > 0 && len <= AW_SOCKADDR_MAX)
        bpf_probe_read_user(rec->addr, len, (void *)c.a[1]);
    /* a unix socket by path (AF_UNIX = 1): the runtime sockets of `deny_paths` */
    if (rec->addr[0] == 1 && rec->addr[1] == 0 && (aw_enforce_mask(p) & AW_EN_PATHS)) {
        u32 why = aw_path_denied((const char *)&rec->addr[2], AW_SOCKADDR_MAX - 2);
        if (why) {
            aw_kill_current((struct aw_hdr *)rec, why, p);
            aw_submit_enforced(rec, sizeof(*rec), sizeof(*rec));
            return 0;
        }
    }
    u32 tid = id;
    if (connect_inflight.update(&tid, rec) != 0)
        aw_count_lost(AW_LOST_INFLIGHT);
    return 0;
}

int aw_rt_connect_exit(struct bpf_raw_tracepoint_args *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct aw_connect *rec = connect_inflight.lookup(&tid);
    if (!rec)
        return 0;
    rec->ret = (long)ctx->args[1];
    int flag = 0;  /* this process's socket writes are to be seen (aw_sockw.h) */
    if (rec->ret == 0 && rec->addr[0] == 1 && rec->addr[1] == 0) {  /* AF_UNIX, connected */
        s32 peer = aw_sock_peer_pid(bpf_get_current_task_btf(), rec->fd);
        rec->peer_pid = peer;
        if (peer > 0) {
            /* the peer's membership now, while both ends exist: a watched process of
             * the caller's own session is inside it */
            u32 key = peer;
            struct aw_proc *pp = watched.lookup(&key);
            if (pp && pp->session == rec->session)
                rec->peer_flags |= AW_PEERF_SESSION;
            else
                flag = 1;
        }
    } else if (rec->ret == 0 || rec->ret == -115 /* EINPROGRESS */) {
        flag = aw_connect_matters(rec->addr);
    }
    if (flag) {
        struct aw_proc *p = aw_current(bpf_get_current_pid_tgid());
        if (p)
            aw_sockw_flag(p, rec->pid, rec->fd);
    }
    aw_submit(rec, sizeof(*rec), sizeof(*rec));
    connect_inflight.delete(&tid);
    return 0;
}
