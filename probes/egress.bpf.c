/* egress: cgroup sock_addr programs that refuse connects and sends outside an allowlist.
 *
 * Attached (response/enforce.py's EgressAttacher) to the cgroup v2 of a session that has one of its
 * own (`agentwatch run`), in enforce mode: connect4/connect6 and sendmsg4/sendmsg6 (UDP
 * sends with a destination). A destination in `egress_deny` (cloud metadata), or not in
 * `egress_allow4`/`egress_allow6` (longest-prefix tries, filled from egress_violation's
 * `allow`; 0.0.0.0/0 and ::/0 when it allows all other addresses), is refused: the
 * program returns 0 and the call fails with EPERM before any packet leaves. The refused
 * call's event (the connect or send, from the tracepoint probes, still in flight in this
 * thread) is marked AW_HF_DENIED, so its alert says the kernel refused it.
 *
 * IPv4-mapped IPv6 destinations (::ffff:a.b.c.d) are judged by the IPv4 tries.
 */
struct aw_ip4_key { u32 prefixlen; u8 addr[4]; };
struct aw_ip6_key { u32 prefixlen; u8 addr[16]; };

BPF_LPM_TRIE(egress_allow4, struct aw_ip4_key, u32, 1024);
BPF_LPM_TRIE(egress_allow6, struct aw_ip6_key, u32, 1024);
BPF_LPM_TRIE(egress_deny4, struct aw_ip4_key, u32, 256);
BPF_LPM_TRIE(egress_deny6, struct aw_ip6_key, u32, 256);

/* Mark the in-flight event of this thread's connect or send as refused. */
static __always_inline void aw_egress_mark(void)
{
    u32 tid = bpf_get_current_pid_tgid();
#ifdef AW_HAVE_NET
    struct aw_connect *c = connect_inflight.lookup(&tid);
    if (c) {
        c->hdr_flags |= AW_HF_DENIED;
        return;
    }
#endif
#ifdef AW_HAVE_SYS
    struct aw_sys *s = sys_inflight.lookup(&tid);
    if (s)
        s->hdr_flags |= AW_HF_DENIED;
#endif
}

static __always_inline int aw_egress_v4(u32 ip)
{
    struct aw_ip4_key k = {.prefixlen = 32};
    __builtin_memcpy(k.addr, &ip, 4);
    if (egress_deny4.lookup(&k) || !egress_allow4.lookup(&k)) {
        aw_egress_mark();
        return 0;
    }
    return 1;
}

static __always_inline int aw_egress_v6(struct bpf_sock_addr *ctx)
{
    struct aw_ip6_key k = {.prefixlen = 128};
    u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2],
        w3 = ctx->user_ip6[3];
    /* ::ffff:a.b.c.d, in network order: words 0 and 1 zero, word 2 0000ffff */
    if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff))
        return aw_egress_v4(w3);
    __builtin_memcpy(&k.addr[0], &w0, 4);
    __builtin_memcpy(&k.addr[4], &w1, 4);
    __builtin_memcpy(&k.addr[8], &w2, 4);
    __builtin_memcpy(&k.addr[12], &w3, 4);
    if (egress_deny6.lookup(&k) || !egress_allow6.lookup(&k)) {
        aw_egress_mark();
        return 0;
    }
    return 1;
}

int aw_egress_connect4(struct bpf_sock_addr *ctx) { return aw_egress_v4(ctx->user_ip4); }
int aw_egress_sendmsg4(struct bpf_sock_addr *ctx) { return aw_egress_v4(ctx->user_ip4); }
int aw_egress_connect6(struct bpf_sock_addr *ctx) { return aw_egress_v6(ctx); }
int aw_egress_sendmsg6(struct bpf_sock_addr *ctx) { return aw_egress_v6(ctx); }
