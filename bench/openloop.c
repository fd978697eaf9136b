/* openloop: the workload of bench/open_close.py.
 *
 *   openloop [-g] N [OUT [wait]]
 *
 * Does N iterations of open("/dev/null", O_RDONLY) + close() and writes "WALL CPU" to OUT,
 * or to stdout when OUT is absent or "-": the nanoseconds of the loop alone (process
 * start and exit excluded), elapsed (CLOCK_MONOTONIC) and of CPU time used by this
 * thread (CLOCK_THREAD_CPUTIME_ID: user and system, the BPF programs that run in its
 * syscalls included, time spent waiting for a CPU excluded). OUT is opened before the loop, so that its open
 * is not timed. With "wait", it first reads one byte from stdin: a tracer that needs the
 * pid (opensnoop -p PID) can attach before the loop starts.
 *
 * Each open() is one openat syscall (glibc), so a tracer of openat sees N loop events plus
 * the few opens of the dynamic loader and of OUT.
 *
 * With -g, each iteration is one getpid() syscall instead (syscall(), not glibc's wrapper):
 * a call no probe traces, so what a tracer costs it is the price of the syscall tracing
 * slow path alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static long long cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

int main(int argc, char **argv)
{
    int getpid_mode = 0;
    if (argc >= 2 && strcmp(argv[1], "-g") == 0) {
        getpid_mode = 1;
        argv++;
        argc--;
    }
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: openloop [-g] N [OUT [wait]]\n");
        return 2;
    }
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*end != '\0' || n <= 0) {
        fprintf(stderr, "openloop: N must be a positive integer, not %s\n", argv[1]);
        return 2;
    }
    FILE *out = stdout;
    if (argc >= 3 && strcmp(argv[2], "-") != 0) {
        out = fopen(argv[2], "w");
        if (out == NULL) {
            fprintf(stderr, "openloop: %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
    }
    if (argc == 4) {
        if (strcmp(argv[3], "wait") != 0) {
            fprintf(stderr, "openloop: third argument must be \"wait\"\n");
            return 2;
        }
        char go;
        if (read(0, &go, 1) != 1) {
            fprintf(stderr, "openloop: no go byte on stdin\n");
            return 1;
        }
    }

    long long c0 = cpu_ns();
    long long t0 = now_ns();
    if (getpid_mode) {
        for (long i = 0; i < n; i++)
            syscall(SYS_getpid);
        n = 0;
    }
    for (long i = 0; i < n; i++) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            fprintf(stderr, "openloop: open /dev/null: %s\n", strerror(errno));
            return 1;
        }
        close(fd);
    }
    long long elapsed = now_ns() - t0;
    long long cpu = cpu_ns() - c0;

    fprintf(out, "%lld %lld\n", elapsed, cpu);
    if (fclose(out) != 0) {
        fprintf(stderr, "openloop: writing the result: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
