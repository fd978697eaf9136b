/* dispatch: every syscall door, one raw tracepoint pair.
 *
 * Traces: raw_syscalls sys_enter and sys_exit (BCC's RAW_TRACEPOINT_PROBE), for every
 * syscall of every task. A task outside `watched` costs one hash lookup and nothing else.
 * For a watched one the call is decoded in native terms (aw_call_decode in
 * include/aw_dispatch.h: 64-bit, x32 and ia32 `int $0x80` doors alike, socketcall taken
 * apart) and `sys_route[nr]` (AW_RT_*, filled by user space from probes/syscalls.py) picks
 * the route program, reached by a tail call through `enter_routes` / `exit_routes` (each
 * route is its own program, so that the verifier judges each alone): opens (file.bpf.c),
 * execs, forks and exits (proc.bpf.c), connect (net.bpf.c), the generic table and calls
 * outside it (sys_progs.bpf.c). Routine calls (AW_RT_QUIET: read, mmap, futex...) stop
 * here, but write/writev of a process flagged AW_PF_SOCKW (include/aw_sockw.h) go to the
 * generic route. A 32-bit call of a task the compat rule applies to (AW_EN_COMPAT) goes to the
 * generic route whatever its number, which kills it and reports it.
 *
 * Cannot see: nothing is skipped by number, but what a route cannot read (strings past
 * their bounds, memory a racing thread changes after our read) is as the route says.
 * io_uring operations do not pass through syscalls (uring.bpf.c, where loaded).
 *
 * Cost: unwatched, one hash lookup at entry and one at exit, on every syscall. Watched, a
 * quiet native call: a 4-byte read of thread_info.status and an array lookup (plus an
 * 8-byte read of orig_ax at exit); any other: the saved registers (128 bytes) and a tail
 * call. A route missing from the prog array (its concern not loaded) makes the tail call
 * fall through.
 */
#include "agentwatch.h"

/* enter_routes, exit_routes: in include/aw_dispatch.h (a route may tail-call a second
 * program of its own, as the open's exit does its interest filter) */

/* A native call the route table calls quiet, found without decoding anything else: the
 * common case of a watched task (reads, writes, mmap...) costs a 4-byte read and an
 * array lookup. */
static __always_inline int aw_quiet_native(long id)
{
    if ((id & AW_X32_BIT) || aw_task_compat())
        return 0;
    u32 nr = id;
    u8 *rt = nr < AW_NR_MAX ? sys_route.lookup(&nr) : 0;
    return rt && *rt == AW_RT_QUIET;
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
    struct aw_proc *p = aw_current(bpf_get_current_pid_tgid());
    if (!p)
        return 0;
    aw_fail_closed(p);  /* held while no reader reads the rings (fail_closed) */
    if (aw_quiet_native(ctx->args[1])) {
        /* a quiet write of a process whose socket writes are seen (aw_sockw.h) */
        if ((p->flags & AW_PF_SOCKW) && aw_sockw_nr(ctx->args[1]))
            enter_routes.call(ctx, AW_RT_SYS);
        return 0;
    }
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], ctx->args[1], &c) != 0)
        return 0;
    u32 route = aw_call_route(&c);
    if (c.abi != AW_ABI_NATIVE && (aw_enforce_mask(p) & AW_EN_COMPAT))
        route = AW_RT_SYS;
    if (route == AW_RT_QUIET)
        return 0;
    enter_routes.call(ctx, route);
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    struct aw_proc *p = aw_current(bpf_get_current_pid_tgid());
    if (!p)
        return 0;
    long id = 0;  /* the number, from the saved orig_ax */
    if (bpf_probe_read_kernel(&id, sizeof(id), (void *)ctx->args[0] + AW_R_ORIG_AX * 8))
        return 0;
    if (aw_quiet_native(id)) {
        if ((p->flags & AW_PF_SOCKW) && aw_sockw_nr(id))
            exit_routes.call(ctx, AW_RT_SYS);
        return 0;
    }
    struct aw_call c = {};
    if (aw_call_decode((void *)ctx->args[0], id, &c) != 0)
        return 0;
    u32 route = aw_call_route(&c);
    if (route == AW_RT_QUIET || route == AW_RT_OTHER)
        return 0;
    exit_routes.call(ctx, route);
    return 0;
}
