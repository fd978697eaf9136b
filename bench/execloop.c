/* execloop: fork/exec/exit churn, the workload of bench/churn.py.
 *
 *   execloop N OUT [wait]
 *
 * N times: fork(); the child execs this same binary as `execloop -` (which returns at once);
 * the parent waits for it. Writes "N ELAPSED_NS" to OUT ("-": stdout), the time of the
 * loop alone. Each iteration is one fork, one successful execve and two exits (the child;
 * the parent's at the very end), so a tracer sees N execs and N exits of children.
 * With "wait", it first reads one byte from stdin (a tracer can attach first).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "-") == 0)
        return 0;  /* the exec'd child */
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s N OUT [wait]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    if (n <= 0) {
        fprintf(stderr, "execloop: N must be positive\n");
        return 2;
    }
    FILE *out = stdout;
    if (strcmp(argv[2], "-") != 0 && (out = fopen(argv[2], "w")) == NULL) {
        fprintf(stderr, "execloop: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    if (argc == 4) {
        char go;
        if (strcmp(argv[3], "wait") != 0 || read(0, &go, 1) != 1) {
            fprintf(stderr, "execloop: \"wait\" and a go byte on stdin expected\n");
            return 2;
        }
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0) {
        fprintf(stderr, "execloop: readlink /proc/self/exe: %s\n", strerror(errno));
        return 1;
    }
    self[len] = '\0';
    /* argv strings on the stack, not in .rodata: after fork the child's file-backed pages
     * are not mapped until touched, and a tracer's bpf_probe_read_user() cannot fault
     * them in, so a literal would be unreadable to every tracer at execve's entry. */
    char dash[2] = "-";
    char *child_argv[] = {self, dash, NULL};
    long long t0 = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "execloop: fork: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0) {
            execv(self, child_argv);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
            fprintf(stderr, "execloop: child failed\n");
            return 1;
        }
    }
    fprintf(out, "%ld %lld\n", n, now_ns() - t0);
    return fclose(out) == 0 ? 0 : 1;
}
