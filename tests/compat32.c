/* 32-bit syscalls from a 64-bit program: `int $0x80` with i386 numbers (tests/test_dispatch.py).
 *
 * compat32 PATH PORT MARKER: open(PATH) and read it, socket + connect to 127.0.0.1:PORT, the
 * same connect through socketcall(SYS_CONNECT), unshare(CLONE_NEWUTS), then write "after" to
 * MARKER with 64-bit calls. Built with -no-pie so that its globals (the only memory whose
 * addresses fit the 32-bit arguments) sit below 4 GiB; the stack does not.
 */
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

static char path[4096];
static char data[64];
static struct sockaddr_in sa;
static uint32_t args[3];

static long sys32(long nr, long a, long b, long c)
{
    long ret;
    asm volatile("int $0x80"
                 : "=a"(ret)
                 : "a"(nr), "b"(a), "c"(b), "d"(c)
                 : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    strncpy(path, argv[1], sizeof(path) - 1);
    long fd = sys32(5 /* open */, (long)(uintptr_t)path, O_RDONLY, 0);
    if (fd >= 0)
        sys32(3 /* read */, fd, (long)(uintptr_t)data, sizeof(data));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(argv[2]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long s = sys32(359 /* socket */, AF_INET, SOCK_STREAM, 0);
    sys32(362 /* connect */, s, (long)(uintptr_t)&sa, sizeof(sa));
    long s2 = sys32(359, AF_INET, SOCK_STREAM, 0);
    args[0] = s2;
    args[1] = (uint32_t)(uintptr_t)&sa;
    args[2] = sizeof(sa);
    sys32(102 /* socketcall */, 3 /* SYS_CONNECT */, (long)(uintptr_t)args, 0);
    sys32(310 /* unshare */, 0x04000000 /* CLONE_NEWUTS */, 0, 0);
    int m = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (m >= 0 && write(m, "after", 5) == 5)
        close(m);
    return 0;
}
