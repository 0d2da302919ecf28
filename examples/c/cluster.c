/*
 * Three Omni-Paxos nodes in one process: elect a leader, append entries at the leader and
 * at a follower, pass the messages between the nodes as bytes, and print the decided log.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -Wall -Wextra -Werror -Iinclude examples/c/cluster.c -Ltarget/release -lomnipaxos \
 *      -Wl,-rpath,"$PWD/target/release" -o cluster && ./cluster
 * or: make -C examples
 *
 * In a real deployment each node lives in its own process: the bytes returned by
 * omnipaxos_take_outgoing() travel over your network to the receiver, which passes them
 * to omnipaxos_handle_incoming(), and omnipaxos_tick() is called from a timer.
 */
#include <stdio.h>
#include <string.h>

#include "omnipaxos.h"

#define NODES 3

static omnipaxos_node *nodes[NODES]; /* nodes[i] has pid i + 1 */

/* Prints the failed call with its error detail and returns 1. */
static int fail(const char *what, omnipaxos_result rc) {
    char detail[512];
    omnipaxos_last_error(detail, sizeof detail);
    fprintf(stderr, "%s failed: %s (%s)\n", what, omnipaxos_strerror(rc), detail);
    return 1;
}

#define TRY(call)                                          \
    do {                                                   \
        omnipaxos_result rc_ = (call);                     \
        if (rc_ != OMNIPAXOS_OK) return fail(#call, rc_);  \
    } while (0)

/* The "network": hand every outgoing message to its receiver until all are quiet. */
static int exchange_messages(void) {
    for (int busy = 1; busy;) {
        busy = 0;
        for (int i = 0; i < NODES; i++) {
            const omnipaxos_outgoing *msgs;
            size_t count;
            TRY(omnipaxos_take_outgoing(nodes[i], &msgs, &count));
            for (size_t k = 0; k < count; k++) {
                /* msgs[k].data stays valid until the next take_outgoing on nodes[i]. */
                TRY(omnipaxos_handle_incoming(nodes[msgs[k].receiver - 1], msgs[k].data,
                                              msgs[k].len));
                busy = 1;
            }
        }
    }
    return 0;
}

static int tick_all(void) {
    for (int i = 0; i < NODES; i++) TRY(omnipaxos_tick(nodes[i]));
    return exchange_messages();
}

/* The leader all nodes agree on, or 0. */
static uint64_t agreed_leader(void) {
    uint64_t first = 0;
    for (int i = 0; i < NODES; i++) {
        uint64_t pid = 0;
        if (omnipaxos_leader(nodes[i], &pid, NULL) != OMNIPAXOS_OK || pid == 0) return 0;
        if (i > 0 && pid != first) return 0;
        first = pid;
    }
    return first;
}

static int run(void) {
    for (int i = 0; i < NODES; i++) {
        char config[256];
        int len = snprintf(config, sizeof config,
                           "config_id = 1\npid = %d\nnodes = [1, 2, 3]\n"
                           "election_tick_timeout = 5\n",
                           i + 1);
        TRY(omnipaxos_node_from_hocon_str(config, (size_t)len, &nodes[i]));
    }

    uint64_t leader = 0;
    for (int t = 0; t < 1000 && leader == 0; t++) {
        if (tick_all() != 0) return 1;
        leader = agreed_leader();
    }
    if (leader == 0) {
        fprintf(stderr, "no leader elected\n");
        return 1;
    }
    printf("leader: node %llu\n", (unsigned long long)leader);

    omnipaxos_node *at_leader = nodes[leader - 1];
    omnipaxos_node *at_follower = nodes[leader % NODES]; /* some other node */
    const char *entries[] = {"set x = 1", "set y = 2", "del x", "set z = 3"};
    for (int i = 0; i < 4; i++) {
        omnipaxos_node *n = i % 2 == 0 ? at_leader : at_follower;
        TRY(omnipaxos_append(n, (const uint8_t *)entries[i], strlen(entries[i])));
    }

    /* Tick and exchange messages until every node has decided all four entries. */
    for (int t = 0; t < 1000; t++) {
        uint64_t min = UINT64_MAX;
        for (int i = 0; i < NODES; i++) {
            uint64_t d;
            TRY(omnipaxos_decided_idx(nodes[i], &d));
            if (d < min) min = d;
        }
        if (min >= 4) break;
        if (tick_all() != 0) return 1;
    }

    for (int i = 0; i < NODES; i++) {
        omnipaxos_entries *log;
        TRY(omnipaxos_read_decided_suffix(nodes[i], 0, &log));
        size_t count = omnipaxos_entries_count(log);
        printf("node %d decided %zu entries:", i + 1, count);
        for (size_t k = 0; k < count; k++) {
            const uint8_t *data;
            size_t len;
            omnipaxos_result rc = omnipaxos_entries_get(log, k, &data, &len, NULL);
            if (rc != OMNIPAXOS_OK) {
                omnipaxos_entries_free(log);
                return fail("omnipaxos_entries_get", rc);
            }
            printf(" [%.*s]", (int)len, (const char *)data);
        }
        printf("\n");
        omnipaxos_entries_free(log);
        if (count != 4) {
            fprintf(stderr, "node %d decided %zu entries, expected 4\n", i + 1, count);
            return 1;
        }
    }
    return 0;
}

int main(void) {
    printf("libomnipaxos %s (wire version %u)\n", omnipaxos_version(),
           (unsigned)omnipaxos_wire_version());
    int status = run();
    for (int i = 0; i < NODES; i++) omnipaxos_node_free(nodes[i]); /* NULL is fine */
    return status;
}
