/* aw_interest.h: the kernel's interest filter for opens.
 *
 * A search (rg, grep -r, find) or a build opens a hundred thousand files in seconds, nearly
 * all read-only opens of files no detector can use: libraries, headers, the workspace's
 * own sources. Sending each costs a ring-buffer record and user-space work, and at those
 * rates the ring overflows and the events detectors do need are lost with the rest. So at
 * an open's exit the probe decides, from what user space derived out of the detectors'
 * specs and the session's config (detectors/interest.py), whether any detector could use
 * it; if none could, it counts it here instead of sending it, and user space turns the
 * counts into `summary` events (collector/summaries.py). Nothing is dropped: every open is
 * either sent or counted, by session, process and root.
 *
 * An open is counted, not sent, only when all of these hold (file.bpf.c aw_open_exit):
 * - read-only: O_RDONLY without O_CREAT, O_TRUNC, O_APPEND, O_TMPFILE or O_PATH; through a
 *   native door (not 32-bit); not in a launcher's setup;
 * - successful: the kernel's resolved path (not truncated, unreachable, disconnected,
 *   deleted or faulted) of a regular file outside procfs, sysfs, cgroupfs and bpffs (not
 *   a directory: its fd is a dirfd later *at calls name, resolved in user space); and the caller's own string too, when it is absolute: a /proc/self/root/...,
 *   /dev/fd/N/... or symlink spelling of a boring file is sent, since detectors judge both;
 *   failed: the caller's string is absolute (a relative one is resolved by user space);
 * - every path judged (resolved and caller's) is, by longest prefix in `interest_roots`
 *   for the session, below one of its boring roots (value: the root's id) and not below a
 *   carve-out (value 0): a literal prefix of some detector glob;
 * - no component of those paths has first two bytes or last two bytes marked in
 *   `interest_names`: the name keys of every glob that can match anywhere below a root
 *   (`**` /.env, `**` /.git/ `**`, `**` /answer_key*, `*.pem` ...), plus "." and ".." for
 *   the caller's string; and no path is longer than AW_IPFX bytes.
 * With no entry for a session in `interest_roots` (the default until user space installs
 * its plan, or with `--events-level all`) every open is sent.
 *
 * Counts, per CPU: `interest_counts` (session, tgid, root) -> files, failed, first and
 * last time; `interest_totals` session -> all of them, for the check that the summaries add up
 * (tests/test_interest_live.py). A count that cannot be stored (map full) sends the event.
 *
 * Concatenated into the translation unit by the loader (its maps need BCC's rewriting).
 * Cost: for an open outside every root, one LPM lookup; inside, a scan of the path's
 * bytes with two array lookups per component, and two hash updates.
 */
#ifndef AW_INTEREST_H
#define AW_INTEREST_H

#define AW_IPFX 240             /* path bytes in an LPM key (data <= 256 bytes) */
#define AW_INTEREST_ROOTS 8192  /* roots and carve-outs, all sessions */
#define AW_INTEREST_COUNTS 32768
#define AW_INAMES_WORDS 2048    /* 65536 bits of first-two-byte keys, then 65536 of last two */

#define AW_IW_FILE 0
#define AW_IW_FAILED 1

struct aw_interest_key {
    u32 prefixlen;  /* bits: 64 (the session) + 8 per path byte */
    u32 s_lo;       /* the session id, low and high halves */
    u32 s_hi;
    char path[AW_IPFX];
};
BPF_F_TABLE("lpm_trie", struct aw_interest_key, u32, interest_roots, AW_INTEREST_ROOTS,
            BPF_F_NO_PREALLOC);
/* one element, the whole bitmap: one lookup per scan, then plain loads per component */
struct aw_inames { u64 w[AW_INAMES_WORDS]; };
BPF_ARRAY(interest_names, struct aw_inames, 1);

struct aw_isum_key {
    u64 session;
    u32 pid;   /* thread group id */
    u32 root;  /* the root's id (user space names it) */
};
struct aw_isum {
    u64 files;
    u64 failed;
    u64 first_ts;  /* boot ns */
    u64 last_ts;
};
/* per CPU: a search's threads count on their own CPU's copy, not on one shared cache line
 * (the adds stay atomic: a preempted program may share its CPU's copy with another) */
BPF_PERCPU_HASH(interest_counts, struct aw_isum_key, struct aw_isum, AW_INTEREST_COUNTS);
BPF_PERCPU_HASH(interest_totals, u64, u64, 8192);

static __always_inline int aw_iname_hot(const struct aw_inames *names, u32 bit)
{
    return (names->w[(bit >> 6) & (AW_INAMES_WORDS - 1)] >> (bit & 63)) & 1;
}

/* Whether a component of key->path[0, len) has a marked name key, or is "." or ".." (only
 * a caller's string has those). The path was copied into the key, which lives in task
 * storage with room past its end (struct aw_iscratch): indexes are masked to 255 for the
 * verifier, and the scan's one piece of state (where the component began) is kept in that
 * memory behind a volatile pointer, not in a register, so that every iteration begins in
 * the same verifier state (as aw_resolve_path does). */
struct aw_iscratch {
    struct aw_interest_key key;
    u32 start;  /* where the current component began */
    u32 len;    /* bytes of the path in key.path */
    char tail[256];  /* the resolved path's last bytes (aw_interest_suffix) */
};

static __always_inline int aw_inames_hot(struct aw_iscratch *sc, u32 len)
{
    const u8 *p = (const u8 *)sc->key.path;
    volatile u32 *vstart = &sc->start;
    volatile u32 *vlen = &sc->len;
    u32 zero = 0;
    const struct aw_inames *names = interest_names.lookup(&zero);
    if (!names || len > AW_IPFX)
        return 1;
    *vstart = 0;
    *vlen = len;
    for (u32 i = 0; i <= AW_IPFX; i++) {
        u32 n = *vlen;
        if (i > n)
            break;
        if (i < n && p[i & 255] != '/')
            continue;
        u32 start = *vstart & 255;
        *vstart = i + 1;
        if (i <= start)
            continue;
        u32 m = (i - start) & 255;
        u8 b0 = p[start & 255];
        u8 b1 = m > 1 ? p[(start + 1) & 255] : 0;
        u8 e1 = p[(i - 1) & 255];
        u8 e0 = m > 1 ? p[(i - 2) & 255] : 0;
        if (b0 == '.' && (m == 1 || (m == 2 && b1 == '.')))
            return 1;
        if (aw_iname_hot(names, ((u32)b0 << 8) | b1) ||
            aw_iname_hot(names, 65536 + (((u32)e0 << 8) | e1)))
            return 1;
    }
    return 0;
}

/* The boring root `src` (n bytes, NUL excluded) is below for `session`: its id, or 0 (not
 * below any, below a carve-out, a marked name, or too long). `key`: scratch (task
 * storage), `src`: kernel memory (the in-flight record). */
static __always_inline u32 aw_interest_root(struct aw_iscratch *sc, u64 session,
                                            const char *src, u32 n)
{
    struct aw_interest_key *key = &sc->key;
    if (n == 0 || n > AW_IPFX - 1)
        return 0;
    *(volatile u32 *)&sc->len = n;  /* the size, masked after a load the compiler cannot
                                      see through: its own bounds check is not the verifier's */
    u32 sz = *(volatile u32 *)&sc->len & 255;
    if (sz == 0 || sz > AW_IPFX || bpf_probe_read_kernel(key->path, sz, src))
        return 0;
    key->prefixlen = 64 + 8 * n;
    key->s_lo = (u32)session;
    key->s_hi = (u32)(session >> 32);
    u32 *root = interest_roots.lookup(key);
    if (!root || !*root)
        return 0;
    u32 id = *root;
    return aw_inames_hot(sc, n) ? 0 : id;
}

/* sc->key.path[0, sc->len) equals b[0, sc->len) (b: kernel memory the verifier knows the
 * bounds of, at least 256 bytes from b) */
static __always_inline int aw_ibytes_eq(struct aw_iscratch *sc, const u8 *b)
{
    volatile u32 *vlen = &sc->len;
    const u8 *a = (const u8 *)sc->key.path;
    for (u32 i = 0; i < AW_IPFX; i++) {
        if (i >= *vlen)
            break;
        if (a[i & 255] != b[i & 255])
            return 0;
    }
    return 1;
}

/* The caller's relative string names the resolved file directly: after any leading "./",
 * it is the resolved path's tail after a "/" (no symlink, "..", or other directory in
 * between), so the caller's spelling made absolute is the resolved path, judged already. */
static __always_inline int aw_interest_suffix(struct aw_iscratch *sc, const char *raw,
                                              u32 n, const char *res, u32 rn)
{
    volatile u32 *vlen = &sc->len;
    u32 skip = 0;
    char dot[2] = {};
    for (int k = 0; k < 4; k++) {  /* leading "./" */
        if (skip + 2 > n || bpf_probe_read_kernel(dot, 2, raw + skip) ||
            dot[0] != '.' || dot[1] != '/')
            break;
        skip += 2;
    }
    if (n <= skip || n - skip + 1 > rn || n - skip > AW_IPFX - 1)
        return 0;
    *vlen = n - skip;
    u32 m = *vlen & 255;
    if (m == 0 || m > AW_IPFX - 1)
        return 0;
    /* the caller's string to key.path, the resolved path's last m + 1 bytes to tail */
    if (bpf_probe_read_kernel(sc->key.path, m, raw + skip) ||
        bpf_probe_read_kernel(sc->tail, m + 1, res + rn - m - 1))
        return 0;
    if (sc->tail[0] != '/')
        return 0;
    return aw_ibytes_eq(sc, (const u8 *)sc->tail + 1);
}

/* The caller's string `raw` (n bytes) is the path just copied into sc->key.path (the
 * common case of an absolute path without symlinks): its checks would repeat those done */
static __always_inline int aw_interest_same(struct aw_iscratch *sc, const char *raw, u32 n)
{
    volatile u32 *vlen = &sc->len;
    if (*vlen != n)
        return 0;
    return aw_ibytes_eq(sc, (const u8 *)raw);
}

/* Count one open instead of sending it: 1 when counted, 0 when the counts could not be
 * stored (the caller then sends the event). */
static __always_inline int aw_interest_count(u64 session, u32 pid, u32 root, u32 what,
                                             u64 ts)
{
    struct aw_isum_key k = {.session = session, .pid = pid, .root = root};
    struct aw_isum *v = interest_counts.lookup(&k);
    if (!v) {
        struct aw_isum init = {};
        interest_counts.insert(&k, &init);  /* BPF_NOEXIST: never resets another's */
        v = interest_counts.lookup(&k);
        if (!v)
            return 0;  /* full: the open is sent */
    }
    u64 *total = interest_totals.lookup(&session);
    if (!total) {
        u64 zero = 0;
        interest_totals.insert(&session, &zero);
        total = interest_totals.lookup(&session);
        if (!total)
            return 0;
    }
    if (what == AW_IW_FILE)
        __sync_fetch_and_add(&v->files, 1);
    else
        __sync_fetch_and_add(&v->failed, 1);
    __sync_fetch_and_add(total, 1);
    if (!v->first_ts)
        v->first_ts = ts;  /* this CPU's first (user space takes the least) */
    v->last_ts = ts;
    return 1;
}

#endif /* AW_INTEREST_H */
