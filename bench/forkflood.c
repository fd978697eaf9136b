/* forkflood: a process that creates processes as fast as it can, for the flood tests
 * (tests/test_flood.py) and the soak (bench/soak.py).
 *
 *   forkflood SECONDS
 *
 * Loops vfork() + _exit(0) in the child (the cheapest whole process: no page tables to
 * copy), with a fork() every 16th time, reaping children as it goes, until SECONDS have
 * passed. Prints the number of processes made. Each one is a fork, an exit_group and an
 * exit record for a tracer: far more than a Python consumer with detectors can take.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double end = now() + (argc > 1 ? atof(argv[1]) : 5.0);
    long n = 0;
    while (now() < end) {
        for (int i = 0; i < 64; i++, n++) {
            pid_t pid = (n % 16) ? vfork() : fork();
            if (pid == 0)
                _exit(0);
        }
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
    while (wait(NULL) > 0)
        ;
    printf("%ld\n", n);
    return 0;
}
