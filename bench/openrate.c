/* openrate: open+close at a paced rate, the offered load of bench/throughput.py.
 *
 *   openrate RATE SECONDS THREADS OUT [wait]
 *
 * Runs THREADS threads for SECONDS; each does open("/dev/null") + close() at RATE/THREADS
 * per second, paced on 1 ms ticks against an absolute schedule (clock_nanosleep with
 * TIMER_ABSTIME): at each tick a thread catches up to floor(rate * elapsed) opens, so
 * sleeping late never lowers the rate, and a thread that cannot keep up runs flat out
 * (the achieved rate then shows it). Threads, not processes, so that one pid (the thread
 * group) names the whole load for tracers that filter by pid (opensnoop -p, trace -p).
 *
 * Writes "OPENS ELAPSED_NS" to OUT ("-": stdout): the opens done and the time from the
 * first thread's start to the last one's end. With "wait", it first reads one byte from
 * stdin, so that a tracer can attach to its pid before the load starts.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 1000000LL
#define MAX_THREADS 64

struct worker {
    pthread_t thread;
    double rate;          /* opens per second for this thread */
    long long start_ns;   /* shared schedule origin */
    long long end_ns;
    long long done;
    int failed;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(long long t)
{
    struct timespec ts = {.tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    long long tick = w->start_ns, total = (long long)(w->rate * (double)(w->end_ns - w->start_ns) / 1e9);
    for (;;) {
        long long now = now_ns();
        long long due = now >= w->end_ns ? total :
                        (long long)(w->rate * (double)(now - w->start_ns) / 1e9);
        while (w->done < due) {
            int fd = open("/dev/null", O_RDONLY);
            if (fd < 0) {
                w->failed = errno;
                return NULL;
            }
            close(fd);
            w->done++;
            /* saturated: stop shortly after the end rather than owe the whole backlog */
            if ((w->done & 255) == 0 && now_ns() >= w->end_ns + 10 * TICK_NS)
                return NULL;
        }
        if (now >= w->end_ns)
            return NULL;
        tick += TICK_NS;
        if (tick > now)
            sleep_until(tick < w->end_ns ? tick : w->end_ns);
        else
            tick = now;  /* behind schedule: no sleep, the catch-up above runs flat out */
    }
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: %s RATE SECONDS THREADS OUT [wait]\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    int threads = atoi(argv[3]);
    if (rate <= 0 || seconds <= 0 || threads <= 0 || threads > MAX_THREADS) {
        fprintf(stderr, "openrate: RATE and SECONDS > 0, 1 <= THREADS <= %d\n", MAX_THREADS);
        return 2;
    }
    FILE *out = stdout;
    if (strcmp(argv[4], "-") != 0 && (out = fopen(argv[4], "w")) == NULL) {
        fprintf(stderr, "openrate: %s: %s\n", argv[4], strerror(errno));
        return 1;
    }
    if (argc == 6) {
        char go;
        if (strcmp(argv[5], "wait") != 0 || read(0, &go, 1) != 1) {
            fprintf(stderr, "openrate: \"wait\" and a go byte on stdin expected\n");
            return 2;
        }
    }
    static struct worker w[MAX_THREADS];
    long long start = now_ns() + 2 * TICK_NS, end = start + (long long)(seconds * 1e9);
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.rate = rate / threads, .start_ns = start, .end_ns = end};
        if (pthread_create(&w[i].thread, NULL, run, &w[i]) != 0) {
            fprintf(stderr, "openrate: pthread_create failed\n");
            return 1;
        }
    }
    long long done = 0;
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].thread, NULL);
        done += w[i].done;
        failed = failed ? failed : w[i].failed;
    }
    long long elapsed = now_ns() - start;  /* the schedule's start to the last thread's end */
    if (failed) {
        fprintf(stderr, "openrate: open /dev/null: %s\n", strerror(failed));
        return 1;
    }
    fprintf(out, "%lld %lld\n", done, elapsed);
    return fclose(out) == 0 ? 0 : 1;
}
