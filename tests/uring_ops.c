/* io_uring operations from the raw syscalls (no liburing), for tests/test_uring.py.
 *
 *   uring_ops [--sqpoll] STEP...
 *
 * Steps, run in order on one ring; each prints one line "<step> <result>":
 *   open:PATH        IORING_OP_OPENAT (AT_FDCWD, O_RDONLY); the new fd stays open
 *   open2:PATH       IORING_OP_OPENAT2 (O_RDONLY, RESOLVE_NO_MAGICLINKS)
 *   async:PATH       OPENAT with IOSQE_ASYNC (run by an io-wq worker)
 *   skip:PATH        OPENAT with IOSQE_CQE_SKIP_SUCCESS (no completion on success)
 *   badptr           OPENAT of an unmapped path pointer (refused at prep: EFAULT)
 *   long:N           OPENAT of a path of N bytes ("/" repeated, then "etc/shadow")
 *   read:N           IORING_OP_READ of N bytes from the fd of the last open
 *   connect:PORT     a TCP socket (socket(2)), IORING_OP_CONNECT to 127.0.0.1:PORT
 *   unix:PATH        a unix stream socket connected to PATH by connect(2) (the kernel names
 *                    its peer), the connected socket of send/sendmsg from then on
 *   send:TEXT        IORING_OP_SEND of TEXT on the connected socket
 *   sendmsg:TEXT     IORING_OP_SENDMSG of TEXT on it
 *   udp:PORT:TEXT    a UDP socket, IORING_OP_SEND with a destination (addr2) 127.0.0.1:PORT
 *   pending          IORING_OP_READ on a pipe nobody writes: still in flight at exit
 *   nop:N            N IORING_OP_NOPs, one io_uring_enter each ("nop <ns per op>")
 *   tasks            the comm of every thread of this process ("tasks tid=comm ...")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct ring {
    int fd;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *sq_flags;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    struct io_uring_sqe *sqes;
    int sqpoll;
};

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void ring_init(struct ring *r, int sqpoll)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    if (sqpoll) {
        p.flags = IORING_SETUP_SQPOLL;
        p.sq_thread_idle = 2000;
    }
    r->sqpoll = sqpoll;
    r->fd = syscall(__NR_io_uring_setup, 8, &p);
    if (r->fd < 0)
        die("io_uring_setup");
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    char *cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_CQ_RING);
    r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
        die("mmap");
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

static struct io_uring_sqe *get_sqe(struct ring *r)
{
    unsigned tail = *r->sq_tail;
    unsigned idx = tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx];
    memset(sqe, 0, sizeof(*sqe));
    r->sq_array[idx] = idx;
    return sqe;
}

/* Submit the prepared SQE; wait for its CQE unless `nowait`; the CQE's res. */
static int submit(struct ring *r, int nowait)
{
    __atomic_store_n(r->sq_tail, *r->sq_tail + 1, __ATOMIC_RELEASE);
    unsigned flags = nowait ? 0 : IORING_ENTER_GETEVENTS;
    unsigned to_submit = 1;
    if (r->sqpoll) {
        to_submit = 0;
        if (__atomic_load_n(r->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_NEED_WAKEUP)
            flags |= IORING_ENTER_SQ_WAKEUP;
    }
    if (nowait) {
        if (syscall(__NR_io_uring_enter, r->fd, to_submit, 0, flags, NULL, 0) < 0)
            die("io_uring_enter");
        return 0;
    }
    for (;;) {
        unsigned head = *r->cq_head;
        if (head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
            int res = r->cqes[head & *r->cq_mask].res;
            __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
            return res;
        }
        if (syscall(__NR_io_uring_enter, r->fd, to_submit, 1, flags, NULL, 0) < 0)
            die("io_uring_enter");
        to_submit = 0;
        if (r->sqpoll && (__atomic_load_n(r->sq_flags, __ATOMIC_ACQUIRE) &
                          IORING_SQ_NEED_WAKEUP))
            flags |= IORING_ENTER_SQ_WAKEUP;
    }
}

static int open_op(struct ring *r, const char *path, unsigned char sqe_flags, int nowait)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    sqe->opcode = IORING_OP_OPENAT;
    sqe->fd = AT_FDCWD;
    sqe->addr = (unsigned long)path;
    sqe->open_flags = O_RDONLY | O_CLOEXEC;
    sqe->flags = sqe_flags;
    sqe->user_data = 0x1234;
    return submit(r, nowait);
}

int main(int argc, char **argv)
{
    struct ring r;
    int i = 1, sqpoll = 0;
    if (argc > 1 && strcmp(argv[1], "--sqpoll") == 0) {
        sqpoll = 1;
        i++;
    }
    ring_init(&r, sqpoll);
    int last_fd = -1, sock = -1;
    static char buf[65536];
    for (; i < argc; i++) {
        char *arg = argv[i];
        char *val = strchr(arg, ':');
        if (val)
            *val++ = 0;
        int res = 0;
        if (strcmp(arg, "open") == 0) {
            res = open_op(&r, val, 0, 0);
            if (res >= 0)
                last_fd = res;
        } else if (strcmp(arg, "open2") == 0) {
            struct open_how how = {.flags = O_RDONLY, .resolve = RESOLVE_NO_MAGICLINKS};
            struct io_uring_sqe *sqe = get_sqe(&r);
            sqe->opcode = IORING_OP_OPENAT2;
            sqe->fd = AT_FDCWD;
            sqe->addr = (unsigned long)val;
            sqe->addr2 = (unsigned long)&how;
            sqe->len = sizeof(how);
            res = submit(&r, 0);
            if (res >= 0)
                last_fd = res;
        } else if (strcmp(arg, "async") == 0) {
            res = open_op(&r, val, IOSQE_ASYNC, 0);
        } else if (strcmp(arg, "skip") == 0) {
            res = open_op(&r, val, IOSQE_CQE_SKIP_SUCCESS, 1);
            usleep(100000);
        } else if (strcmp(arg, "badptr") == 0) {
            res = open_op(&r, (const char *)8, 0, 0);
        } else if (strcmp(arg, "long") == 0) {
            size_t n = strtoul(val, 0, 10);
            char *p = malloc(n + 1);
            memset(p, '/', n);
            if (n > 10)
                memcpy(p + n - 10, "etc/shadow", 10);
            p[n] = 0;
            res = open_op(&r, p, 0, 0);
        } else if (strcmp(arg, "read") == 0) {
            struct io_uring_sqe *sqe = get_sqe(&r);
            sqe->opcode = IORING_OP_READ;
            sqe->fd = last_fd;
            sqe->addr = (unsigned long)buf;
            sqe->len = strtoul(val, 0, 10);
            res = submit(&r, 0);
        } else if (strcmp(arg, "connect") == 0) {
            static struct sockaddr_in sin;
            sock = socket(AF_INET, SOCK_STREAM, 0);
            sin.sin_family = AF_INET;
            sin.sin_port = htons(atoi(val));
            sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            struct io_uring_sqe *sqe = get_sqe(&r);
            sqe->opcode = IORING_OP_CONNECT;
            sqe->fd = sock;
            sqe->addr = (unsigned long)&sin;
            sqe->off = sizeof(sin);
            res = submit(&r, 0);
        } else if (strcmp(arg, "unix") == 0) {
            struct sockaddr_un sun = {.sun_family = AF_UNIX};
            strncpy(sun.sun_path, val, sizeof(sun.sun_path) - 1);
            sock = socket(AF_UNIX, SOCK_STREAM, 0);
            res = connect(sock, (struct sockaddr *)&sun, sizeof(sun)) ? -errno : 0;
        } else if (strcmp(arg, "send") == 0) {
            struct io_uring_sqe *sqe = get_sqe(&r);
            sqe->opcode = IORING_OP_SEND;
            sqe->fd = sock;
            sqe->addr = (unsigned long)val;
            sqe->len = strlen(val);
            res = submit(&r, 0);
        } else if (strcmp(arg, "sendmsg") == 0) {
            static struct iovec iov;
            static struct msghdr msg;
            iov.iov_base = val;
            iov.iov_len = strlen(val);
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            struct io_uring_sqe *sqe = get_sqe(&r);
            sqe->opcode = IORING_OP_SENDMSG;
            sqe->fd = sock;
            sqe->addr = (unsigned long)&msg;
            sqe->len = 1;
            res = submit(&r, 0);
        } else if (strcmp(arg, "udp") == 0) {
            char *text = strchr(val, ':');
            if (!text)
                die("udp:PORT:TEXT");
            *text++ = 0;
            static struct sockaddr_in dst;
            int u = socket(AF_INET, SOCK_DGRAM, 0);
            dst.sin_family = AF_INET;
            dst.sin_port = htons(atoi(val));
            dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            struct io_uring_sqe *sqe = get_sqe(&r);
            sqe->opcode = IORING_OP_SEND;
            sqe->fd = u;
            sqe->addr = (unsigned long)text;
            sqe->len = strlen(text);
            sqe->addr2 = (unsigned long)&dst;
            sqe->addr_len = sizeof(dst);
            res = submit(&r, 0);
        } else if (strcmp(arg, "pending") == 0) {
            int p[2];
            if (pipe(p) != 0)
                die("pipe");
            struct io_uring_sqe *sqe = get_sqe(&r);
            sqe->opcode = IORING_OP_READ;
            sqe->fd = p[0];
            sqe->addr = (unsigned long)buf;
            sqe->len = 16;
            sqe->user_data = 0x77;
            res = submit(&r, 1);
        } else if (strcmp(arg, "nop") == 0) {
            long n = strtol(val, 0, 10);
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (long k = 0; k < n; k++) {
                struct io_uring_sqe *sqe = get_sqe(&r);
                sqe->opcode = IORING_OP_NOP;
                if (submit(&r, 0) != 0)
                    die("nop");
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            res = n ? (int)(((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec)
                            / n) : 0;
        } else if (strcmp(arg, "tasks") == 0) {
            DIR *d = opendir("/proc/self/task");
            struct dirent *e;
            printf("tasks");
            while (d && (e = readdir(d))) {
                if (e->d_name[0] == '.')
                    continue;
                char p[300], comm[32] = "";
                snprintf(p, sizeof(p), "/proc/self/task/%s/comm", e->d_name);
                FILE *f = fopen(p, "r");
                if (f && fgets(comm, sizeof(comm), f))
                    comm[strcspn(comm, "\n")] = 0;
                if (f)
                    fclose(f);
                printf(" %s=%s", e->d_name, comm);
            }
            printf("\n");
            continue;
        } else {
            fprintf(stderr, "unknown step %s\n", arg);
            return 2;
        }
        printf("%s %d\n", arg, res);
        fflush(stdout);
    }
    return 0;
}
