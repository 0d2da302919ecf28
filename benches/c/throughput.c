/*
 * In-process throughput (and append-to-decided latency) of libomnipaxos through its C ABI.
 *
 * N nodes in one thread; every message travels as bytes (omnipaxos_take_outgoing ->
 * omnipaxos_handle_incoming). Throughput mode: rounds of `round` appends at the leader, then
 * messages are delivered until the cluster is quiet, then every node reads its newly decided
 * entries (omnipaxos_read_decided_suffix from its last read index, check, entries_free).
 * The figure is decided entries per second once every node has read everything.
 * The peer (benches/peer) does exactly the same work with the omnipaxos crate 0.2.4.
 *
 * Latency mode (--latency K): K times, one append at the leader, then messages are delivered
 * until the leader reports the entry decided (timed), then until quiet (untimed). Nodes
 * are visited in order; the leader's decision needs its own write and one follower's, so
 * the timed part holds the same sequence of syncs as a deployment with parallel followers.
 * With --dir, every operation is paired with one raw write of 16 bytes + fdatasync to
 * DIR/sync-probe (timed separately), so the latency can be expressed in fdatasyncs of the
 * disk as it was at that moment.
 *
 * Usage: throughput [--nodes N] [--size BYTES] [--entries COUNT] [--round R]
 *                   [--storage memory|persistent] [--dir DIR] [--sync always|never]
 *                   [--latency K] [--max-secs S] [--bulk 1]
 * --bulk 1 appends each round with one omnipaxos_append_batch call and reads with
 * omnipaxos_entries_contiguous instead of one call per entry.
 * --max-secs stops early (after the round or operation that passes S seconds) and reports
 * the entries or operations done by then: it bounds runs on a slow disk.
 * Prints one JSON line. Build: cc -O2 -Iinclude throughput.c -Ltarget/release -lomnipaxos
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "throughput"
#include "bench_common.h"

#define MAX_NODES 16

static omnipaxos_node *nodes[MAX_NODES]; /* nodes[i] has pid i + 1 */
static int n_nodes = 3;
static int bulk = 0; /* --bulk: omnipaxos_append_batch and omnipaxos_entries_contiguous */
static uint64_t messages = 0;

/* Delivers messages until no node has anything to send. When watch_node >= 0, returns
 * the time at which that node's decided index first reached watch_idx (0 if never). */
static double deliver_until_quiet(int watch_node, uint64_t watch_idx) {
    double reached = 0;
    for (int busy = 1; busy;) {
        busy = 0;
        for (int i = 0; i < n_nodes; i++) {
            const omnipaxos_outgoing *msgs;
            size_t count;
            TRY(omnipaxos_take_outgoing(nodes[i], &msgs, &count));
            for (size_t k = 0; k < count; k++) {
                int to = (int)msgs[k].receiver - 1;
                TRY(omnipaxos_handle_incoming(nodes[to], msgs[k].data, msgs[k].len));
                if (to == watch_node && reached == 0) {
                    uint64_t d;
                    TRY(omnipaxos_decided_idx(nodes[to], &d));
                    if (d >= watch_idx) reached = now();
                }
            }
            messages += count;
            if (count) busy = 1;
        }
    }
    return reached;
}

/* Every node reads its newly decided entries and checks them (entry i carries i). */
static void read_new(const uint64_t *base, uint64_t *read) {
    for (int i = 0; i < n_nodes; i++) {
        omnipaxos_entries *e;
        TRY(omnipaxos_read_decided_suffix(nodes[i], read[i], &e));
        size_t count = omnipaxos_entries_count(e);
        if (bulk && count) {
            const uint8_t *data;
            size_t data_len;
            const uint64_t *ends;
            TRY(omnipaxos_entries_contiguous(e, &data, &data_len, &ends));
            uint64_t start = 0;
            for (size_t k = 0; k < count; k++) {
                uint64_t seq;
                memcpy(&seq, data + start, sizeof seq);
                if (ends[k] - start < 8 || seq != read[i] - base[i]) {
                    fprintf(stderr, "throughput: node %d entry %llu is wrong\n", i + 1,
                            (unsigned long long)read[i]);
                    exit(1);
                }
                start = ends[k];
                read[i]++;
            }
            count = 0;
        }
        for (size_t k = 0; k < count; k++) {
            const uint8_t *data;
            size_t len;
            omnipaxos_entry_kind kind;
            TRY(omnipaxos_entries_get(e, k, &data, &len, &kind));
            uint64_t seq;
            memcpy(&seq, data, sizeof seq);
            if (kind != OMNIPAXOS_ENTRY_DECIDED || len < 8 || seq != read[i] - base[i]) {
                fprintf(stderr, "throughput: node %d entry %llu is wrong\n", i + 1,
                        (unsigned long long)read[i]);
                exit(1);
            }
            read[i]++;
        }
        omnipaxos_entries_free(e);
    }
}

int main(int argc, char **argv) {
    size_t size = 16, total = 1000000, round = 1000, latency = 0;
    double max_secs = 0; /* 0: no limit */
    const char *storage = "memory", *dir = NULL, *sync = "always";
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!v) { fprintf(stderr, "throughput: %s needs a value\n", k); return 2; }
        if (!strcmp(k, "--nodes")) n_nodes = atoi(v);
        else if (!strcmp(k, "--size")) size = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--entries")) total = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--round")) round = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--storage")) storage = v;
        else if (!strcmp(k, "--dir")) dir = v;
        else if (!strcmp(k, "--sync")) sync = v;
        else if (!strcmp(k, "--latency")) latency = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--max-secs")) max_secs = strtod(v, NULL);
        else if (!strcmp(k, "--bulk")) bulk = atoi(v);
        else { fprintf(stderr, "throughput: unknown option %s\n", k); return 2; }
        a++;
    }
    if (n_nodes < 2 || n_nodes > MAX_NODES || round == 0 || (!latency && total % round) ||
        (strcmp(storage, "memory") && !dir)) {
        fprintf(stderr, "throughput: bad arguments (nodes 2..16, entries a multiple of round, "
                        "--dir for persistent storage)\n");
        return 2;
    }
    if (size < 8) size = 8;

    size_t max_msg = round * (size + 16) * 2 + (1 << 20);
    if (max_msg < (64u << 20)) max_msg = 64u << 20;
    for (int i = 0; i < n_nodes; i++)
        nodes[i] = make_node(i + 1, n_nodes, round, max_msg, storage, dir, sync);

    uint64_t leader = 0;
    for (int t = 0; t < 1000 && !leader; t++) {
        for (int i = 0; i < n_nodes; i++) TRY(omnipaxos_tick(nodes[i]));
        deliver_until_quiet(-1, 0);
        leader = agreed_leader(nodes, n_nodes);
    }
    if (!leader) { fprintf(stderr, "throughput: no leader elected\n"); return 1; }
    omnipaxos_node *L = nodes[leader - 1];

    uint64_t base[MAX_NODES], read[MAX_NODES];
    for (int i = 0; i < n_nodes; i++) {
        TRY(omnipaxos_decided_idx(nodes[i], &base[i]));
        read[i] = base[i];
    }
    uint8_t *entry = malloc(size);
    if (!entry) return 1;
    memset(entry, 0xab, size);

    if (latency) {
        double *lat = malloc(latency * sizeof *lat);
        double *probe = malloc(latency * sizeof *probe);
        if (!lat || !probe) return 1;
        int probe_fd = -1;
        if (dir) {
            char path[4096];
            snprintf(path, sizeof path, "%s/sync-probe", dir);
            probe_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
            if (probe_fd < 0) { perror(path); return 1; }
        }
        double t_start = now();
        for (size_t r = 0; r < latency; r++) {
            uint64_t seq = r;
            memcpy(entry, &seq, sizeof seq);
            probe[r] = 0;
            if (probe_fd >= 0) {
                double p0 = now();
                if (write(probe_fd, entry, 16) != 16 || fdatasync(probe_fd) != 0) {
                    perror("sync probe");
                    return 1;
                }
                probe[r] = now() - p0;
            }
            double t0 = now();
            TRY(omnipaxos_append(L, entry, size));
            double t1 = deliver_until_quiet((int)leader - 1, base[leader - 1] + r + 1);
            if (t1 == 0) { fprintf(stderr, "throughput: entry %zu not decided\n", r); return 1; }
            lat[r] = t1 - t0;
            read_new(base, read);
            if (max_secs > 0 && now() - t_start > max_secs) latency = r + 1;
        }
        double secs = now() - t_start;
        qsort(lat, latency, sizeof *lat, cmp_double);
        qsort(probe, latency, sizeof *probe, cmp_double);
        if (probe_fd >= 0) close(probe_fd);
        printf("{\"impl\":\"libomnipaxos\",\"mode\":\"latency\",\"nodes\":%d,\"size\":%zu,"
               "\"storage\":\"%s\",\"ops\":%zu,\"secs\":%.6f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
               "\"p99_us\":%.1f,\"probe_p50_us\":%.1f,\"maxrss_kib\":%ld}\n",
               n_nodes, size, storage, latency, secs, lat[latency / 2] * 1e6,
               lat[latency * 9 / 10] * 1e6, lat[latency * 99 / 100] * 1e6,
               probe[latency / 2] * 1e6, peak_rss_kib());
        free(lat);
        free(probe);
    } else {
        size_t rounds = total / round;
        double *round_end = malloc(rounds * sizeof *round_end);
        uint8_t *batch = malloc(round * size);
        size_t *lens = malloc(round * sizeof *lens);
        if (!round_end || !batch || !lens) return 1;
        memset(batch, 0xab, round * size);
        for (size_t k = 0; k < round; k++) lens[k] = size;
        double c0 = cpu_now();
        double t0 = now();
        for (size_t r = 0; r < rounds; r++) {
            if (bulk) {
                for (size_t k = 0; k < round; k++) {
                    uint64_t seq = r * round + k;
                    memcpy(batch + k * size, &seq, sizeof seq);
                }
                size_t taken = 0;
                TRY(omnipaxos_append_batch(L, batch, lens, round, &taken));
            } else {
                for (size_t k = 0; k < round; k++) {
                    uint64_t seq = r * round + k;
                    memcpy(entry, &seq, sizeof seq);
                    TRY(omnipaxos_append(L, entry, size));
                }
            }
            deliver_until_quiet(-1, 0);
            read_new(base, read);
            round_end[r] = now() - t0;
            if (max_secs > 0 && round_end[r] > max_secs && r + 1 < rounds) {
                rounds = r + 1;
                total = rounds * round;
            }
        }
        /* Anything not yet decided everywhere gets ticks (there should be nothing). */
        int ticks = 0;
        for (;;) {
            int done = 1;
            for (int i = 0; i < n_nodes; i++) done &= read[i] - base[i] >= total;
            if (done) break;
            if (++ticks > 100000) { fprintf(stderr, "throughput: never decided\n"); return 1; }
            for (int i = 0; i < n_nodes; i++) TRY(omnipaxos_tick(nodes[i]));
            deliver_until_quiet(-1, 0);
            read_new(base, read);
        }
        double secs = now() - t0;
        double cpu = cpu_now() - c0;
        round_end[rounds - 1] = secs;
        size_t tenth = rounds / 10 ? rounds / 10 : 1;
        double first = round_end[tenth - 1];
        double last = rounds > tenth ? secs - round_end[rounds - tenth - 1] : secs;
        double per = (double)(tenth * round);
        printf("{\"impl\":\"libomnipaxos\",\"mode\":\"throughput\",\"bulk\":%d,\"nodes\":%d,\"size\":%zu,"
               "\"storage\":\"%s\",\"entries\":%zu,\"round\":%zu,\"secs\":%.6f,\"eps\":%.1f,"
               "\"cpu_secs\":%.6f,\"cpu_eps\":%.1f,"
               "\"first10_eps\":%.1f,\"last10_eps\":%.1f,\"messages\":%llu,\"maxrss_kib\":%ld}\n",
               bulk, n_nodes, size, storage, total, round, secs, (double)total / secs, cpu,
               cpu > 0 ? (double)total / cpu : 0.0, per / first,
               per / last, (unsigned long long)messages, peak_rss_kib());
        free(round_end);
        free(batch);
        free(lens);
    }
    free(entry);
    for (int i = 0; i < n_nodes; i++) omnipaxos_node_free(nodes[i]);
    return 0;
}
