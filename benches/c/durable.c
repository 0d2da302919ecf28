/*
 * Durable throughput and append-to-decided latency of a 3-node in-process cluster, every node
 * in its own thread, as three servers would run: a node's fsync does not stop the others.
 *
 * Each node thread loops: handle the messages in its inbox, (leader) append, take outgoing
 * messages until there are none (omnipaxos_take_outgoing, as the header recommends: a
 * leader on fsyncing storage returns its AcceptDecide first and fsyncs on the next call, so
 * its disk write overlaps the followers'), push them into the receivers' inboxes (bytes,
 * copied), read its newly decided entries (omnipaxos_read_decided_suffix; entry i must carry
 * i), and sleep on its inbox when it has nothing to do. The leader is elected before the
 * threads start (all nodes in the main thread), so the timed part is replication only.
 *
 * Throughput (default): a closed-loop client keeps --window entries outstanding in rounds
 * of --round (one omnipaxos_append each): in every iteration the leader appends the rounds
 * issued since the last one (a round is issued as soon as an earlier one is decided at the
 * leader), so the rounds that queue up while a node fsyncs are covered by its next fsync
 * (group commit). The figure: --entries divided by the time until every node has read them all.
 * The same program runs with --storage memory for the in-memory figure of the same harness.
 *
 * Latency (--latency K): the leader's thread itself, K times, times one raw write of 16
 * bytes + fdatasync to DIR/sync-probe (so the latency can be given in fdatasyncs of the disk
 * as it was at that moment), then appends one entry and runs until it reports it decided,
 * polling its inbox meanwhile; the followers poll briefly before they sleep. So no thread
 * wake-up of the leader is timed (in a deployment that is the network's part).
 *
 * --burst caps the rounds the leader appends in one iteration (before it sends).
 *
 * Usage: durable [--nodes N] [--size B] [--entries C] [--round R] [--window W] [--burst K]
 *                [--storage memory|persistent] [--dir DIR] [--sync always|never]
 *                [--latency K] [--max-secs S]
 * Prints one JSON line. Build: cc -O2 -pthread -Iinclude durable.c -Ltarget/release -lomnipaxos
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "durable"
#include "bench_common.h"

#define MAX_NODES 7

typedef struct {
    uint8_t *data;
    size_t len;
} msg_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    msg_t *q;
    size_t n, cap;
} inbox_t;

static omnipaxos_node *nodes[MAX_NODES]; /* nodes[i] has pid i + 1 */
static inbox_t inbox[MAX_NODES];
static int n_nodes = 3;
static int leader_ix = -1;
static size_t entry_size = 16, total = 200000, round_size = 1000, window = 20000, burst = 1000;
static volatile int stop = 0;
/* Latency mode: the leader's thread runs the operations itself (see leader_latency). */
static int latency_mode = 0;
static size_t lat_ops = 0, lat_done = 0;
static double *lat = NULL, *probe = NULL, max_secs = 60;
static int probe_fd = -1;
static uint64_t read_count[MAX_NODES], base_idx[MAX_NODES];
static double done_at[MAX_NODES];

static void push(int to, const uint8_t *data, size_t len) {
    inbox_t *b = &inbox[to];
    uint8_t *copy = malloc(len);
    if (!copy) { perror("malloc"); exit(1); }
    memcpy(copy, data, len);
    pthread_mutex_lock(&b->mu);
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->q = realloc(b->q, b->cap * sizeof *b->q);
        if (!b->q) { perror("realloc"); exit(1); }
    }
    b->q[b->n++] = (msg_t){copy, len};
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Takes outgoing messages until there are none; returns how many. */
static size_t send_all(int i) {
    size_t sent = 0;
    for (;;) {
        const omnipaxos_outgoing *msgs;
        size_t count;
        TRY(omnipaxos_take_outgoing(nodes[i], &msgs, &count));
        if (!count) return sent;
        for (size_t k = 0; k < count; k++) push((int)msgs[k].receiver - 1, msgs[k].data, msgs[k].len);
        sent += count;
    }
}

/* Reads the newly decided entries of node i and checks them (entry k carries k). */
static void read_new(int i) {
    omnipaxos_entries *e;
    TRY(omnipaxos_read_decided_suffix(nodes[i], base_idx[i] + read_count[i], &e));
    size_t count = omnipaxos_entries_count(e);
    for (size_t k = 0; k < count; k++) {
        const uint8_t *data;
        size_t len;
        omnipaxos_entry_kind kind;
        TRY(omnipaxos_entries_get(e, k, &data, &len, &kind));
        uint64_t seq;
        memcpy(&seq, data, sizeof seq);
        if (kind != OMNIPAXOS_ENTRY_DECIDED || len != entry_size || seq != read_count[i]) {
            fprintf(stderr, "durable: node %d entry %llu is wrong\n", i + 1,
                    (unsigned long long)read_count[i]);
            exit(1);
        }
        read_count[i]++;
    }
    omnipaxos_entries_free(e);
}

static void *node_main(void *arg);

/* Moves the inbox of node i into handle_incoming; returns how many messages there were. */
static size_t handle_inbox(int i) {
    inbox_t *b = &inbox[i];
    pthread_mutex_lock(&b->mu);
    size_t n = b->n;
    msg_t *q = b->q;
    b->q = NULL;
    b->n = b->cap = 0;
    pthread_mutex_unlock(&b->mu);
    for (size_t k = 0; k < n; k++) {
        TRY(omnipaxos_handle_incoming(nodes[i], q[k].data, q[k].len));
        free(q[k].data);
    }
    free(q);
    return n;
}

/* Latency mode, in the leader's thread: lat_ops times, one raw write + fdatasync to the
 * probe file (timed), then one append, timed until this node reports it decided. The
 * thread polls its inbox without sleeping meanwhile, so no wake-up of its own is timed. */
static void leader_latency(int i) {
    uint8_t *entry = calloc(1, entry_size);
    double t_start = now();
    for (size_t r = 0; r < lat_ops && !stop; r++) {
        probe[r] = 0;
        if (probe_fd >= 0) {
            uint8_t junk[16] = {0};
            double p0 = now();
            if (write(probe_fd, junk, 16) != 16 || fdatasync(probe_fd) != 0) {
                perror("sync probe");
                exit(1);
            }
            probe[r] = now() - p0;
        }
        uint64_t seq = r;
        memcpy(entry, &seq, sizeof seq);
        double t0 = now();
        TRY(omnipaxos_append(nodes[i], entry, entry_size));
        for (;;) {
            send_all(i);
            uint64_t decided;
            TRY(omnipaxos_decided_idx(nodes[i], &decided));
            if (decided >= base_idx[i] + r + 1) break;
            if (!handle_inbox(i)) sched_yield();
        }
        lat[r] = now() - t0;
        read_new(i);
        lat_done = r + 1;
        if (now() - t_start > max_secs) break;
    }
    free(entry);
    stop = 1;
    for (int k = 0; k < n_nodes; k++) {
        pthread_mutex_lock(&inbox[k].mu);
        pthread_cond_signal(&inbox[k].cv);
        pthread_mutex_unlock(&inbox[k].mu);
    }
}

static void *node_main(void *arg) {
    int i = (int)(intptr_t)arg;
    if (latency_mode && i == leader_ix) {
        leader_latency(i);
        return NULL;
    }
    int is_leader = i == leader_ix;
    uint8_t *entry = calloc(1, entry_size);
    msg_t *batch = NULL;
    size_t batch_cap = 0;
    uint64_t appended = 0;
    int reported_done = 0;
    while (!stop) {
        /* 1. the inbox */
        inbox_t *b = &inbox[i];
        pthread_mutex_lock(&b->mu);
        int idle = b->n == 0;
        if (idle && !is_leader && latency_mode) {
            /* Latency mode: poll a little before sleeping (a wake-up costs tens of us). */
            pthread_mutex_unlock(&b->mu);
            for (int s = 0; s < 2000 && !__atomic_load_n(&b->n, __ATOMIC_RELAXED) && !stop; s++)
                sched_yield();
            pthread_mutex_lock(&b->mu);
            idle = b->n == 0;
        }
        if (idle && !is_leader) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 2000000;
            if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        size_t n = b->n;
        if (n > batch_cap) {
            batch_cap = b->cap;
            batch = realloc(batch, batch_cap * sizeof *batch);
            if (!batch) { perror("realloc"); exit(1); }
        }
        memcpy(batch, b->q, n * sizeof *batch);
        b->n = 0;
        pthread_mutex_unlock(&b->mu);
        for (size_t k = 0; k < n; k++) {
            TRY(omnipaxos_handle_incoming(nodes[i], batch[k].data, batch[k].len));
            free(batch[k].data);
        }
        /* 2. the leader's appends */
        int appended_now = 0;
        if (is_leader) {
            uint64_t decided = 0;
            TRY(omnipaxos_decided_idx(nodes[i], &decided));
            decided -= base_idx[i];
            {
                /* Every round the client has outstanding (it issues the next one as soon
                 * as one is decided): while the leader fsyncs, rounds queue up, and the
                 * next fsync covers them all (group commit). */
                size_t rounds = 0;
                while (appended < total && appended - decided < window && rounds++ < burst) {
                    for (size_t k = 0; k < round_size && appended < total; k++, appended++) {
                        memcpy(entry, &appended, sizeof appended);
                        TRY(omnipaxos_append(nodes[i], entry, entry_size));
                    }
                    appended_now = 1;
                }
            }
        }
        /* 3. send, 4. read */
        size_t sent = send_all(i);
        read_new(i);
        if (!latency_mode && !reported_done && read_count[i] >= total) {
            done_at[i] = now();
            reported_done = 1;
        }
        if (is_leader && !n && !sent && !appended_now) {
            /* Nothing happened: wait for the inbox (or, in latency mode, a request). */
            pthread_mutex_lock(&b->mu);
            if (b->n == 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += latency_mode ? 20000 : 2000000;
                if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
                pthread_cond_timedwait(&b->cv, &b->mu, &ts);
            }
            pthread_mutex_unlock(&b->mu);
        }
    }
    free(entry);
    free(batch);
    return NULL;
}

/* Single-threaded delivery, for the election before the threads start. */
static void deliver_until_quiet(void) {
    for (int busy = 1; busy;) {
        busy = 0;
        for (int i = 0; i < n_nodes; i++) {
            const omnipaxos_outgoing *msgs;
            size_t count;
            TRY(omnipaxos_take_outgoing(nodes[i], &msgs, &count));
            for (size_t k = 0; k < count; k++)
                TRY(omnipaxos_handle_incoming(nodes[msgs[k].receiver - 1], msgs[k].data, msgs[k].len));
            if (count) busy = 1;
        }
    }
}

int main(int argc, char **argv) {
    size_t latency = 0;
    const char *storage = "memory", *dir = NULL, *sync = "always";
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!v) { fprintf(stderr, "durable: %s needs a value\n", k); return 2; }
        if (!strcmp(k, "--nodes")) n_nodes = atoi(v);
        else if (!strcmp(k, "--size")) entry_size = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--entries")) total = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--round")) round_size = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--window")) window = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--burst")) burst = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--storage")) storage = v;
        else if (!strcmp(k, "--dir")) dir = v;
        else if (!strcmp(k, "--sync")) sync = v;
        else if (!strcmp(k, "--latency")) latency = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--max-secs")) max_secs = strtod(v, NULL);
        else { fprintf(stderr, "durable: unknown option %s\n", k); return 2; }
        a++;
    }
    if (n_nodes < 2 || n_nodes > MAX_NODES || !round_size || !total || entry_size < 8 ||
        (strcmp(storage, "memory") && !dir)) {
        fprintf(stderr, "durable: bad arguments (nodes 2..7, size >= 8, --dir for persistent)\n");
        return 2;
    }
    for (int i = 0; i < n_nodes; i++) {
        nodes[i] = make_node(i + 1, n_nodes, round_size, 256u << 20, storage, dir, sync);
        pthread_mutex_init(&inbox[i].mu, NULL);
        pthread_cond_init(&inbox[i].cv, NULL);
    }
    uint64_t leader = 0;
    for (int t = 0; t < 1000 && !leader; t++) {
        for (int i = 0; i < n_nodes; i++) TRY(omnipaxos_tick(nodes[i]));
        deliver_until_quiet();
        leader = agreed_leader(nodes, n_nodes);
    }
    if (!leader) { fprintf(stderr, "durable: no leader elected\n"); return 1; }
    leader_ix = (int)leader - 1;
    for (int i = 0; i < n_nodes; i++) TRY(omnipaxos_decided_idx(nodes[i], &base_idx[i]));
    latency_mode = latency > 0;
    if (latency_mode) {
        lat_ops = latency;
        lat = calloc(latency, sizeof *lat);
        probe = calloc(latency, sizeof *probe);
        if (!lat || !probe) return 1;
        if (dir) {
            char path[4096];
            snprintf(path, sizeof path, "%s/sync-probe", dir);
            probe_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
            if (probe_fd < 0) { perror(path); return 1; }
        }
    }

    pthread_t th[MAX_NODES];
    double c0 = cpu_now(), t0 = now();
    for (int i = 0; i < n_nodes; i++)
        pthread_create(&th[i], NULL, node_main, (void *)(intptr_t)i);

    if (latency_mode) {
        for (int i = 0; i < n_nodes; i++) pthread_join(th[i], NULL);
        latency = lat_done;
        if (!latency) { fprintf(stderr, "durable: no operation completed\n"); return 1; }
        double secs = now() - t0;
        qsort(lat, latency, sizeof *lat, cmp_double);
        qsort(probe, latency, sizeof *probe, cmp_double);
        if (probe_fd >= 0) close(probe_fd);
        printf("{\"impl\":\"libomnipaxos\",\"mode\":\"latency\",\"harness\":\"threads\",\"nodes\":%d,"
               "\"size\":%zu,\"storage\":\"%s\",\"sync\":\"%s\",\"ops\":%zu,\"secs\":%.6f,"
               "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"probe_p50_us\":%.1f,"
               "\"maxrss_kib\":%ld}\n",
               n_nodes, entry_size, storage, sync, latency, secs, lat[latency / 2] * 1e6,
               lat[latency * 9 / 10] * 1e6, lat[latency * 99 / 100] * 1e6,
               probe[latency / 2] * 1e6, peak_rss_kib());
        free(lat);
        free(probe);
    } else {
        for (;;) {
            int done = 1;
            for (int i = 0; i < n_nodes; i++) done &= done_at[i] > 0;
            if (done) break;
            if (now() - t0 > max_secs) {
                fprintf(stderr, "durable: not done after %.0f s\n", max_secs);
                return 1;
            }
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
        stop = 1;
        double end = 0;
        for (int i = 0; i < n_nodes; i++) end = done_at[i] > end ? done_at[i] : end;
        for (int i = 0; i < n_nodes; i++) pthread_join(th[i], NULL);
        double secs = end - t0, cpu = cpu_now() - c0;
        printf("{\"impl\":\"libomnipaxos\",\"mode\":\"throughput\",\"harness\":\"threads\","
               "\"nodes\":%d,\"size\":%zu,\"storage\":\"%s\",\"sync\":\"%s\",\"entries\":%zu,"
               "\"round\":%zu,\"window\":%zu,\"secs\":%.6f,\"eps\":%.1f,\"cpu_secs\":%.6f,"
               "\"maxrss_kib\":%ld}\n",
               n_nodes, entry_size, storage, sync, total, round_size, window, secs,
               (double)total / secs, cpu, peak_rss_kib());
    }
    for (int i = 0; i < n_nodes; i++) omnipaxos_node_free(nodes[i]);
    return 0;
}
