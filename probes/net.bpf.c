/* net: outbound connects by watched sessions.
 *
 * Traces: connect, routed by the syscall dispatcher (dispatch.bpf.c). The socket address (up to
 * sizeof(struct sockaddr_storage) bytes) is copied at entry; the event is sent at exit
 * with the return value (0, -EINPROGRESS for non-blocking sockets, -ECONNREFUSED, ...).
 * User space decodes AF_INET, AF_INET6 and AF_UNIX (paths and abstract names).
 *
 * At the exit of a successful connect of a unix socket, `peer_pid` is the host pid the
 * kernel recorded as the peer (the listener's process, include/aw_peer.h): user space
 * tells a peer inside the session from one outside it.
 *
 * Cannot see: traffic without connect() (sendto/sendmsg with an address: the generic
 * probe's; io_uring's CONNECT: uring.bpf.c's),
 * and, being read at entry, an address a racing thread rewrites before the kernel's copy.
 *
 * Cost: unwatched, one hash lookup at entry and one at exit.
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
        }
    }
    aw_submit(rec, sizeof(*rec), sizeof(*rec));
    connect_inflight.delete(&tid);
    return 0;
}
