/* aw_sockw.h: writes on sockets, for the processes that connected somewhere that matters.
 *
 * write() and writev() are quiet calls of the dispatcher (dispatch.bpf.c): a watched task's
 * write costs a 4-byte read and an array lookup. A process that connected a socket to a
 * destination user space judges (an inet address outside loopback, or port 53; a unix
 * socket whose peer is outside its session: net.bpf.c at connect exit) gets AW_PF_SOCKW
 * in its `watched` leaf, inherited at fork; only such processes' write/writev take the
 * generic probe's route, where sys.bpf.c (AW_BLOB_SOCKWRITE/V) keeps those on a socket and
 * reports:
 * - any whose first bytes look like a DNS query (over TCP: the 2-byte length first), with
 *   its payload for the query name, as sendto's;
 * - the others at most once per (process, fd) unless the session opened a file since that
 *   fd's last report (`session_opens`, bumped at every successful open of a session with a
 *   flagged process: a secret read, then sent) or AW_SOCKW_GAP_NS passed;
 * each with the socket's connected inet peer as its address (include/aw_peer.h). send()
 * and sendmsg() without destination on such a process's socket follow the same rule.
 *
 * Concatenated into the translation unit by the loader (its maps need BCC's rewriting).
 * Cost: nothing for processes without the flag (the dispatcher's test of a flag it
 * already has); for flagged ones, each write/writev: a tail call, the fd's struct file
 * and inode (4-6 kernel reads), an LRU lookup, and at exit another tail call.
 */
#ifndef AW_SOCKW_H
#define AW_SOCKW_H

#define AW_PF_SOCKW 0x800              /* struct aw_proc flags: its socket writes are seen */
#define AW_SOCKW_GAP_NS 1000000000ULL  /* a busy socket's writes: one report a second */
#define AW_NR_WRITE 1
#define AW_NR_WRITEV 20

struct aw_sockw_key {
    u32 tgid;
    s32 fd;
};
struct aw_sockw_seen {
    u64 ts;   /* boot ns of the last report */
    u64 gen;  /* session_opens then */
};
BPF_TABLE("lru_hash", struct aw_sockw_key, struct aw_sockw_seen, sockw_seen, 16384);
/* session -> successful opens since one of its processes was flagged */
BPF_TABLE("lru_hash", u64, u64, session_opens, 8192);

static __always_inline int aw_sockw_nr(long nr)
{
    return nr == AW_NR_WRITE || nr == AW_NR_WRITEV;
}

/* Flag the current process (a connect to a destination that matters), and start counting
 * its session's opens. */
static __always_inline void aw_sockw_flag(struct aw_proc *p, u32 tgid, s32 fd)
{
    p->flags |= AW_PF_SOCKW;  /* as the other flags: a plain or (no 32-bit atomics in BPF v2) */
    u64 s = p->session, zero = 0;
    session_opens.insert(&s, &zero);  /* fails harmlessly when it is there */
    struct aw_sockw_key k = {.tgid = tgid, .fd = fd};
    sockw_seen.delete(&k);  /* a new connection on this fd: its first write is reported */
}

/* A successful open by a process of session `s` (file.bpf.c). */
static __always_inline void aw_sockw_opened(u64 s)
{
    u64 *n = session_opens.lookup(&s);
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* Is a non-DNS write on (tgid, fd) of session `s` to be reported now? Records it if so. */
static __always_inline int aw_sockw_due(u64 s, u32 tgid, s32 fd)
{
    u64 *g = session_opens.lookup(&s);
    u64 gen = g ? *g : 0;
    u64 now = bpf_ktime_get_ns();
    struct aw_sockw_key k = {.tgid = tgid, .fd = fd};
    struct aw_sockw_seen *seen = sockw_seen.lookup(&k);
    if (seen && seen->gen == gen && now - seen->ts < AW_SOCKW_GAP_NS)
        return 0;
    struct aw_sockw_seen v = {.ts = now, .gen = gen};
    sockw_seen.update(&k, &v);
    return 1;
}

#endif /* AW_SOCKW_H */
