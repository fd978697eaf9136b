/* violate: the victim of bench/kill_latency.py.
 *
 *   violate SHM [MAX_SECONDS]
 *
 * Maps SHM (a file of at least 16 bytes, MAP_SHARED), makes one forbidden call,
 * unshare(CLONE_NEWUSER) (namespace_escape's kill), then counts in SHM every syscall that
 * returns after it: a getppid() loop, the count stored after each return. A process
 * killed at the forbidden call's entry leaves the count at 0. It gives up after
 * MAX_SECONDS (default 5) and exits 3, so that a kill that never comes ends the trial.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    double max_s = argc > 2 ? atof(argv[2]) : 5.0;
    int fd = open(argv[1], O_RDWR);
    if (fd < 0)
        return 2;
    volatile uint64_t *shm = mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shm == MAP_FAILED)
        return 2;
    shm[0] = 0;
    shm[1] = 0;
    uint64_t deadline = now_ns() + (uint64_t)(max_s * 1e9);
    syscall(SYS_unshare, CLONE_NEWUSER);
    uint64_t n = 0;
    for (;;) {
        syscall(SYS_getppid);
        shm[0] = ++n;
        if ((n & 1023) == 0 && now_ns() > deadline)
            return 3;
    }
}
