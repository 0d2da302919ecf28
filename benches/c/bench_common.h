/*
 * Helpers shared by the C benchmark programs (throughput.c, durable.c): clocks, error exit,
 * the nodes' configuration, and the single-threaded election before a measurement.
 * Each program defines BENCH_NAME (for error messages) before including this file.
 */
#ifndef OMNIPAXOS_BENCH_COMMON_H
#define OMNIPAXOS_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "omnipaxos.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, omnipaxos_result rc) {
    char detail[512];
    omnipaxos_last_error(detail, sizeof detail);
    fprintf(stderr, BENCH_NAME ": %s failed: %s (%s)\n", what, omnipaxos_strerror(rc), detail);
    exit(1);
}

#define TRY(call)                                 \
    do {                                          \
        omnipaxos_result rc_ = (call);            \
        if (rc_ != OMNIPAXOS_OK) die(#call, rc_); \
    } while (0)

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* User + system CPU seconds of this process so far. */
static double cpu_now(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static long peak_rss_kib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* Creates node `pid` of nodes 1..n: batches of `batch` entries, messages of at most
 * `max_msg` bytes, memory storage or persistent storage in dir/node<pid> with `sync`. */
static omnipaxos_node *make_node(int pid, int n, size_t batch, size_t max_msg,
                                 const char *storage, const char *dir, const char *sync) {
    char list[256] = "", cfg[2048], st[1024];
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%d", i ? ", " : "", i + 1);
    }
    if (!strcmp(storage, "memory"))
        snprintf(st, sizeof st, "storage { type = memory }");
    else
        snprintf(st, sizeof st, "storage { type = persistent, path = \"%s/node%d\", sync = %s }",
                 dir, pid, sync);
    int len = snprintf(cfg, sizeof cfg,
                       "config_id = 1\npid = %d\nnodes = [%s]\nelection_tick_timeout = 5\n"
                       "batch_size = %zu\nbuffer_size = 10000000\nmax_message_bytes = %zu\n%s\n",
                       pid, list, batch, max_msg, st);
    omnipaxos_node *node = NULL;
    TRY(omnipaxos_node_from_hocon_str(cfg, (size_t)len, &node));
    return node;
}

/* The leader every node agrees on (its pid), or 0. */
static uint64_t agreed_leader(omnipaxos_node *const *nodes, int n) {
    uint64_t first = 0;
    for (int i = 0; i < n; i++) {
        uint64_t pid = 0;
        TRY(omnipaxos_leader(nodes[i], &pid, NULL));
        if (pid == 0 || (i > 0 && pid != first)) return 0;
        first = pid;
    }
    return first;
}

#endif
