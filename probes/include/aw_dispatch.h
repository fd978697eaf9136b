/* aw_dispatch.h: a syscall as the raw sys_enter/sys_exit tracepoints see it, in native terms.
 *
 * The raw tracepoints give the saved user registers (struct pt_regs, whose x86_64 layout is
 * ABI) and, at entry, the number. The number and the argument registers depend on the door:
 * - 64-bit `syscall`: x86_64 numbers, arguments in di si dx r10 r8 r9;
 * - x32 (`syscall` with __X32_SYSCALL_BIT): x86_64 numbers with bit 30 set;
 * - ia32 (`int $0x80`, sysenter, 32-bit `syscall`): i386 numbers, arguments in
 *   bx cx dx si di bp, 32 bits each. The kernel marks the task TS_COMPAT in
 *   thread_info.status from entry until the return to user space (after sys_exit).
 * `aw_call_decode` reads them into a `struct aw_call`: the x86_64 number of the same call
 * (`compat_nr`, from probes/compat.py; socketcall taken apart) or, with no native twin, the
 * i386 number | AW_NR_COMPAT; the six arguments; the ABI. Every probe of a syscall judges
 * this, so `open` through int 0x80 is `open`.
 *
 * Reads a kernel struct at a BTF-derived offset: AW_OFF_task_struct__thread_info__status (task_struct's
 * thread_info.status), passed in by the loader, never taken from BCC's headers.
 */
#ifndef AW_DISPATCH_H
#define AW_DISPATCH_H

#define AW_NR_MAX 512          /* sys_route, sys_spec: native numbers below this */
#define AW_NR_COMPAT 0x8000    /* an i386 number with no native twin (probes/compat.py) */
#define AW_NR_NONE 0xffff      /* compat_nr: no native twin */
#define AW_X32_BIT 0x40000000
#define AW_SOCKETCALL 102      /* i386 */


/* x86_64 struct pt_regs, as u64 words */
#define AW_R_BP 4
#define AW_R_BX 5
#define AW_R_R10 7
#define AW_R_R9 8
#define AW_R_R8 9
#define AW_R_CX 11
#define AW_R_DX 12
#define AW_R_SI 13
#define AW_R_DI 14
#define AW_R_ORIG_AX 15
#define AW_R_WORDS 16

struct aw_call {
    u64 a[6];
    u32 nr;    /* x86_64 number, or i386 number | AW_NR_COMPAT */
    u32 abi;   /* AW_ABI_* */
    u32 raw;   /* the number as the task passed it */
    u32 _pad;
};

BPF_PROG_ARRAY(enter_routes, AW_RT_SLOTS);
BPF_PROG_ARRAY(exit_routes, AW_RT_SLOTS);
BPF_ARRAY(sys_route, u8, AW_NR_MAX);      /* native nr -> AW_RT_* (user space fills it) */
BPF_ARRAY(compat_nr, u16, AW_NR_MAX);     /* i386 nr -> native nr, or AW_NR_NONE */
BPF_ARRAY(socketcall_nr, u16, 32);        /* socketcall's call -> native nr, or 0 */

/* Decode the current syscall from the saved registers. `id`: the number the tracepoint
 * gave (sys_enter), or -1 to take it from orig_ax (sys_exit). 0 on success. */
static __always_inline int aw_call_decode(void *regs, long id, struct aw_call *c)
{
    u64 r[AW_R_WORDS];
    if (!regs || bpf_probe_read_kernel(r, sizeof(r), regs) != 0)
        return -1;
    if (id < 0)
        id = r[AW_R_ORIG_AX];
    c->raw = id;
    if (aw_task_compat()) {
        c->abi = AW_ABI_IA32;
        c->a[0] = (u32)r[AW_R_BX];
        c->a[1] = (u32)r[AW_R_CX];
        c->a[2] = (u32)r[AW_R_DX];
        c->a[3] = (u32)r[AW_R_SI];
        c->a[4] = (u32)r[AW_R_DI];
        c->a[5] = (u32)r[AW_R_BP];
        u32 n = (u32)id;
        if (n >= AW_NR_MAX) {
            c->nr = AW_NR_COMPAT | (n & (AW_NR_COMPAT - 1));
            return 0;
        }
        if (n == AW_SOCKETCALL) {
            /* socketcall(call, u32 args[6]): the socket call it stands for */
            u32 call = c->a[0];
            u16 *nat = socketcall_nr.lookup(&call);  /* NULL past its 32 entries */
            u32 w[6] = {};
            if (nat && *nat && bpf_probe_read_user(w, sizeof(w), (void *)c->a[1]) == 0) {
                c->nr = *nat;
                c->a[0] = w[0];
                c->a[1] = w[1];
                c->a[2] = w[2];
                c->a[3] = w[3];
                c->a[4] = w[4];
                c->a[5] = w[5];
                if (call == 9 /* SYS_SEND: sendto without an address */) {
                    c->a[4] = 0;
                    c->a[5] = 0;
                }
                return 0;
            }
            c->nr = AW_NR_COMPAT | n;
            return 0;
        }
        u16 *nat = compat_nr.lookup(&n);
        c->nr = (nat && *nat != AW_NR_NONE) ? *nat : (AW_NR_COMPAT | n);
        return 0;
    }
    c->abi = (id & AW_X32_BIT) ? AW_ABI_X32 : AW_ABI_NATIVE;
    c->nr = (u32)id & ~AW_X32_BIT;
    if (c->nr >= AW_NR_MAX)
        c->nr = AW_NR_COMPAT | (c->nr & (AW_NR_COMPAT - 1));
    c->a[0] = r[AW_R_DI];
    c->a[1] = r[AW_R_SI];
    c->a[2] = r[AW_R_DX];
    c->a[3] = r[AW_R_R10];
    c->a[4] = r[AW_R_R8];
    c->a[5] = r[AW_R_R9];
    return 0;
}

/* The call's route (AW_RT_*). A 32-bit call is never quiet: at least its first use per
 * session is reported. */
static __always_inline u32 aw_call_route(const struct aw_call *c)
{
    u32 nr = c->nr;
    if (nr >= AW_NR_MAX)
        return AW_RT_OTHER;
    u8 *rt = sys_route.lookup(&nr);
    u32 route = rt ? *rt : AW_RT_OTHER;
    if (route == AW_RT_QUIET && c->abi != AW_ABI_NATIVE)
        return AW_RT_OTHER;
    return route;
}

#endif /* AW_DISPATCH_H */
