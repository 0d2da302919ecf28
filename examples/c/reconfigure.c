/*
 * Reconfiguration end to end, in one process: a key-value store replicated by
 * configuration 1 (nodes 1, 2, 3) moves to configuration 2 (nodes 2, 3, 4).
 *
 *   1. Configuration 1 elects a leader and decides a few "set k=v" / "del k" commands;
 *      every replica applies them to its own small key-value map.
 *   2. The leader ends the configuration with omnipaxos_reconfigure() (a StopSign naming
 *      configuration 2). Once it is decided, every old node is stopped: appends fail with
 *      OMNIPAXOS_ERR_STOPPED. Each node reports the next configuration.
 *   3. The application starts configuration 2 (new handles, config_id = 2), seeds each new
 *      replica with the key-value state of configuration 1, and goes on appending there.
 *      A message of configuration 1 handed to a node of configuration 2 is rejected.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -Wall -Wextra -Werror -Iinclude examples/c/reconfigure.c -Ltarget/release \
 *      -lomnipaxos -Wl,-rpath,"$PWD/target/release" -o reconfigure && ./reconfigure
 * or: make -C examples
 *
 * The library decides the StopSign; starting the new nodes and moving the application
 * state over is the application's job (this file shows one way). Exits 0 when every check
 * passed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omnipaxos.h"

/* ---- error handling: every call's result is checked ------------------------------- */

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

/* A call that must fail with `want`: prints the library's detail for it. */
#define EXPECT_ERR(label, call, want)                                                    \
    do {                                                                                 \
        omnipaxos_result rc_ = (call);                                                   \
        if (rc_ != (want)) {                                                             \
            fprintf(stderr, "%s: got %s, expected %s\n", label, omnipaxos_strerror(rc_), \
                    #want);                                                              \
            return 1;                                                                    \
        }                                                                                \
        char detail_[256];                                                               \
        omnipaxos_last_error(detail_, sizeof detail_);                                   \
        printf("  %s -> %s (%s)\n", label, #want, detail_);                             \
    } while (0)

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "check failed: " __VA_ARGS__); \
            fprintf(stderr, "\n");                         \
            return 1;                                      \
        }                                                  \
    } while (0)

/* ---- the application: a tiny key-value map, changed by "set k=v" and "del k" ---------- */

#define MAX_KEYS 8
#define MAX_TEXT 16

struct kv {
    size_t n;
    char key[MAX_KEYS][MAX_TEXT];
    char val[MAX_KEYS][MAX_TEXT];
};

static const char *kv_get(const struct kv *kv, const char *key) {
    for (size_t i = 0; i < kv->n; i++)
        if (strcmp(kv->key[i], key) == 0) return kv->val[i];
    return NULL;
}

/* Applies one command; returns 0, or -1 for a command it does not understand. */
static int kv_apply(struct kv *kv, const uint8_t *data, size_t len) {
    char cmd[64], key[MAX_TEXT], val[MAX_TEXT];
    if (len >= sizeof cmd) return -1;
    memcpy(cmd, data, len); /* entries are bytes, not NUL-terminated strings */
    cmd[len] = '\0';
    if (sscanf(cmd, "set %15[^=]=%15s", key, val) == 2) {
        size_t i = 0;
        while (i < kv->n && strcmp(kv->key[i], key) != 0) i++;
        if (i == kv->n) { /* a new key */
            if (kv->n == MAX_KEYS) return -1;
            strcpy(kv->key[kv->n++], key);
        }
        strcpy(kv->val[i], val);
        return 0;
    }
    if (sscanf(cmd, "del %15s", key) == 1) {
        for (size_t i = 0; i < kv->n; i++)
            if (strcmp(kv->key[i], key) == 0) {
                kv->n--; /* move the last pair into the hole */
                strcpy(kv->key[i], kv->key[kv->n]);
                strcpy(kv->val[i], kv->val[kv->n]);
                break;
            }
        return 0;
    }
    return -1;
}

static void kv_print(const struct kv *kv) {
    printf("{");
    for (size_t i = 0; i < kv->n; i++) printf("%s%s=%s", i ? ", " : "", kv->key[i], kv->val[i]);
    printf("}");
}

/* Whether the map holds exactly the `n` pairs `expected` ({key, value}, ...). */
static int kv_equals(const struct kv *kv, const char *expected[][2], size_t n) {
    if (kv->n != n) return 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = kv_get(kv, expected[i][0]);
        if (v == NULL || strcmp(v, expected[i][1]) != 0) return 0;
    }
    return 1;
}

/* One replica of the application: its state machine and how much of its node's decided
 * log it has applied (the next log index to read). */
struct replica {
    struct kv kv;
    uint64_t applied;
};

/* ---- the cluster: one configuration's nodes, messages passed in memory ---------------- */

#define MAX_PID 4

struct config {
    uint32_t id;
    omnipaxos_node *node[MAX_PID + 1]; /* node[pid]; NULL when pid is not a member */
    struct replica app[MAX_PID + 1];   /* the application replica on that node */
};

/* Creates the nodes of configuration `id` with members `pids` (in-memory storage). */
static int config_start(struct config *c, uint32_t id, const uint64_t *pids, size_t n) {
    char list[64] = "";
    for (size_t i = 0; i < n; i++) {
        CHECK(pids[i] >= 1 && pids[i] <= MAX_PID, "pid %" PRIu64 " out of range", pids[i]);
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%" PRIu64, i ? ", " : "", pids[i]);
    }
    c->id = id;
    for (size_t i = 0; i < n; i++) {
        char hocon[256];
        /* `nodes` lists every member (`peers` would list the others). */
        int len = snprintf(hocon, sizeof hocon,
                           "config_id = %u\npid = %" PRIu64 "\nnodes = [%s]\n"
                           "election_tick_timeout = 5\nstorage { type = memory }\n",
                           (unsigned)id, pids[i], list);
        TRY(omnipaxos_node_from_hocon_str(hocon, (size_t)len, &c->node[pids[i]]));
    }
    return 0;
}

static void config_free(struct config *c) {
    for (int p = 1; p <= MAX_PID; p++) omnipaxos_node_free(c->node[p]); /* NULL is fine */
}

/* The "network": hand every outgoing message to its receiver until all are quiet. */
static int exchange_messages(struct config *c) {
    for (int busy = 1; busy;) {
        busy = 0;
        for (int p = 1; p <= MAX_PID; p++) {
            if (c->node[p] == NULL) continue;
            const omnipaxos_outgoing *msgs;
            size_t count;
            TRY(omnipaxos_take_outgoing(c->node[p], &msgs, &count));
            for (size_t k = 0; k < count; k++) {
                uint64_t to = msgs[k].receiver;
                CHECK(to >= 1 && to <= MAX_PID && c->node[to], "message to unknown pid");
                TRY(omnipaxos_handle_incoming(c->node[to], msgs[k].data, msgs[k].len));
                busy = 1;
            }
        }
    }
    return 0;
}

static int tick_all(struct config *c) {
    for (int p = 1; p <= MAX_PID; p++)
        if (c->node[p]) TRY(omnipaxos_tick(c->node[p]));
    return exchange_messages(c);
}

/* Ticks until every node follows the same leader; *leader receives its pid. */
static int elect(struct config *c, uint64_t *leader) {
    for (int t = 0; t < 1000; t++) {
        if (tick_all(c) != 0) return 1;
        uint64_t agreed = 0;
        int all_agree = 1;
        for (int p = 1; p <= MAX_PID && all_agree; p++) {
            if (c->node[p] == NULL) continue;
            uint64_t pid;
            TRY(omnipaxos_leader(c->node[p], &pid, NULL));
            if (pid == 0 || (agreed != 0 && pid != agreed)) all_agree = 0;
            agreed = pid;
        }
        if (all_agree) {
            *leader = agreed;
            printf("configuration %u: leader is node %" PRIu64 "\n", (unsigned)c->id, agreed);
            return 0;
        }
    }
    fprintf(stderr, "configuration %u elected no leader\n", (unsigned)c->id);
    return 1;
}

/* The application loop's second half: each replica reads the entries its node decided
 * since the last call and applies them. (After a StopSign the read stops before it.) */
static int apply_decided(struct config *c) {
    for (int p = 1; p <= MAX_PID; p++) {
        if (c->node[p] == NULL) continue;
        struct replica *r = &c->app[p];
        omnipaxos_entries *batch;
        TRY(omnipaxos_read_decided_suffix(c->node[p], r->applied, &batch));
        size_t count = omnipaxos_entries_count(batch);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *data;
            size_t len;
            omnipaxos_result rc = omnipaxos_entries_get(batch, i, &data, &len, NULL);
            if (rc != OMNIPAXOS_OK || kv_apply(&r->kv, data, len) != 0) {
                omnipaxos_entries_free(batch);
                return rc != OMNIPAXOS_OK ? fail("omnipaxos_entries_get", rc)
                                          : (fprintf(stderr, "bad command\n"), 1);
            }
        }
        omnipaxos_entries_free(batch);
        r->applied += count;
    }
    return 0;
}

/* Ticks until every node has decided at least `n` entries, then applies them. */
static int wait_decided(struct config *c, uint64_t n) {
    for (int t = 0; t < 1000; t++) {
        uint64_t min = UINT64_MAX;
        for (int p = 1; p <= MAX_PID; p++) {
            if (c->node[p] == NULL) continue;
            uint64_t d;
            TRY(omnipaxos_decided_idx(c->node[p], &d));
            if (d < min) min = d;
        }
        if (min >= n) return apply_decided(c);
        if (tick_all(c) != 0) return 1;
    }
    fprintf(stderr, "configuration %u did not decide %" PRIu64 " entries\n", (unsigned)c->id, n);
    return 1;
}

/* Ticks until every node of the configuration reports the StopSign decided. */
static int wait_stopped(struct config *c) {
    for (int t = 0; t < 1000; t++) {
        int all = 1;
        for (int p = 1; p <= MAX_PID; p++) {
            if (c->node[p] == NULL) continue;
            bool stopped;
            TRY(omnipaxos_is_stopped(c->node[p], &stopped));
            all = all && stopped;
        }
        if (all) return 0;
        if (tick_all(c) != 0) return 1;
    }
    fprintf(stderr, "configuration %u did not stop\n", (unsigned)c->id);
    return 1;
}

static int append_text(omnipaxos_node *node, const char *text) {
    TRY(omnipaxos_append(node, (const uint8_t *)text, strlen(text)));
    return 0;
}

/* ---- the decided StopSign: the next configuration ------------------------------------- */

struct stopsign {
    uint32_t next_id;
    uint64_t *nodes; /* n_nodes pids; malloc'ed */
    size_t n_nodes;
    uint8_t *meta; /* meta_len bytes; malloc'ed (NULL when empty) */
    size_t meta_len;
};

static void stopsign_free(struct stopsign *s) {
    free(s->nodes);
    free(s->meta);
    memset(s, 0, sizeof *s);
}

/* Reads the decided StopSign of `node`: the sizes first (NULL buffers, capacity 0), then
 * the contents into buffers of that size. Fails when none is decided. */
static int read_stopsign(omnipaxos_node *node, struct stopsign *s) {
    bool found;
    memset(s, 0, sizeof *s);
    TRY(omnipaxos_decided_stopsign(node, &found, &s->next_id, NULL, 0, &s->n_nodes, NULL, 0,
                                   &s->meta_len));
    CHECK(found, "no StopSign decided");
    s->nodes = malloc(s->n_nodes * sizeof *s->nodes);
    s->meta = s->meta_len ? malloc(s->meta_len) : NULL;
    CHECK(s->nodes != NULL && (s->meta_len == 0 || s->meta != NULL), "out of memory");
    size_t cap_nodes = s->n_nodes, cap_meta = s->meta_len;
    TRY(omnipaxos_decided_stopsign(node, &found, &s->next_id, s->nodes, cap_nodes, &s->n_nodes,
                                   s->meta, cap_meta, &s->meta_len));
    /* A decided StopSign never changes, so the second call fits the first's sizes. */
    CHECK(found && s->n_nodes == cap_nodes && s->meta_len == cap_meta, "StopSign changed");
    return 0;
}

static int stopsign_equal(const struct stopsign *a, const struct stopsign *b) {
    return a->next_id == b->next_id && a->n_nodes == b->n_nodes && a->meta_len == b->meta_len &&
           memcmp(a->nodes, b->nodes, a->n_nodes * sizeof *a->nodes) == 0 &&
           (a->meta_len == 0 || memcmp(a->meta, b->meta, a->meta_len) == 0);
}

/* ---- the story ------------------------------------------------------------------------- */

static struct config old_cfg, new_cfg; /* zero-initialised: no nodes yet */
static struct stopsign next;           /* the StopSign as node 1 read it */

static int run(void) {
    /* 1. Configuration 1: nodes 1, 2, 3. */
    const uint64_t old_pids[] = {1, 2, 3};
    if (config_start(&old_cfg, 1, old_pids, 3) != 0) return 1;
    uint64_t leader;
    if (elect(&old_cfg, &leader) != 0) return 1;
    omnipaxos_node *old_leader = old_cfg.node[leader];
    omnipaxos_node *old_follower = old_cfg.node[leader % 3 + 1]; /* some other node */

    const char *commands[] = {"set x=1", "set y=2", "set z=3", "del y"};
    for (int i = 0; i < 4; i++)
        if (append_text(old_leader, commands[i]) != 0) return 1;
    if (wait_decided(&old_cfg, 4) != 0) return 1;
    const char *old_state[][2] = {{"x", "1"}, {"z", "3"}};
    for (int p = 1; p <= 3; p++) {
        printf("  node %d applied %" PRIu64 " entries: ", p, old_cfg.app[p].applied);
        kv_print(&old_cfg.app[p].kv);
        printf("\n");
        CHECK(kv_equals(&old_cfg.app[p].kv, old_state, 2), "node %d has the wrong state", p);
    }

    /* 2. End configuration 1 with a StopSign naming configuration 2: nodes 2, 3, 4.
     *    The metadata is opaque to the library; the application puts there what the new
     *    nodes need to know (here: where their state comes from). */
    const uint64_t new_pids[] = {2, 3, 4};
    const char *meta = "kv state: the decided log of configuration 1";
    printf("reconfiguring to configuration 2 with nodes {2, 3, 4}\n");
    /* Only the leader can propose it (a follower does not forward a StopSign). */
    EXPECT_ERR("reconfigure at a follower",
               omnipaxos_reconfigure(old_follower, 2, new_pids, 3, (const uint8_t *)meta,
                                     strlen(meta)),
               OMNIPAXOS_ERR_NOT_LEADER);
    TRY(omnipaxos_reconfigure(old_leader, 2, new_pids, 3, (const uint8_t *)meta, strlen(meta)));
    /* Proposed, not decided yet: the leader already refuses new entries. */
    EXPECT_ERR("append at the leader before it is decided",
               omnipaxos_append(old_leader, (const uint8_t *)"set w=9", 7),
               OMNIPAXOS_ERR_STOPPED);

    if (wait_stopped(&old_cfg) != 0) return 1;
    printf("configuration 1 is stopped on every node\n");
    for (int p = 1; p <= 3; p++) {
        char label[64];
        snprintf(label, sizeof label, "append at node %d", p);
        EXPECT_ERR(label, omnipaxos_append(old_cfg.node[p], (const uint8_t *)"set w=9", 7),
                   OMNIPAXOS_ERR_STOPPED);
    }

    /* Every old node reports the same next configuration. The StopSign is the last
     * decided entry: at index decided_idx - 1, after the 4 commands. */
    if (read_stopsign(old_cfg.node[1], &next) != 0) return 1;
    printf("decided StopSign: next config_id %u, nodes {", (unsigned)next.next_id);
    for (size_t i = 0; i < next.n_nodes; i++)
        printf("%s%" PRIu64, i ? ", " : "", next.nodes[i]);
    printf("}, metadata \"%.*s\"\n", (int)next.meta_len, (const char *)next.meta);
    CHECK(next.next_id == 2 && next.n_nodes == 3 &&
              memcmp(next.nodes, new_pids, sizeof new_pids) == 0 &&
              next.meta_len == strlen(meta) && memcmp(next.meta, meta, next.meta_len) == 0,
          "the StopSign is not what the leader proposed");
    for (int p = 1; p <= 3; p++) {
        struct stopsign s;
        int rc = read_stopsign(old_cfg.node[p], &s);
        int same = rc == 0 && stopsign_equal(&s, &next);
        stopsign_free(&s);
        CHECK(same, "node %d reports another StopSign", p);

        uint64_t decided;
        TRY(omnipaxos_decided_idx(old_cfg.node[p], &decided));
        CHECK(decided == 4 + 1, "node %d: decided index %" PRIu64 ", expected 5", p, decided);
        omnipaxos_entries *last;
        TRY(omnipaxos_read(old_cfg.node[p], decided - 1, &last));
        const uint8_t *data;
        size_t len;
        omnipaxos_entry_kind kind;
        omnipaxos_result rc2 = omnipaxos_entries_get(last, 0, &data, &len, &kind);
        omnipaxos_entries_free(last);
        TRY(rc2);
        CHECK(kind == OMNIPAXOS_ENTRY_STOPSIGN, "node %d: index %" PRIu64 " is no StopSign", p,
              decided - 1);
    }
    /* The application loop reads no further: read_decided_suffix stops before the StopSign,
     * so every old replica applied exactly the 4 commands. */
    if (apply_decided(&old_cfg) != 0) return 1;
    for (int p = 1; p <= 3; p++)
        CHECK(old_cfg.app[p].applied == 4, "node %d applied %" PRIu64, p, old_cfg.app[p].applied);

    /* 3. Start configuration 2 as the StopSign says: new handles with config_id = 2.
     *    (In a deployment, node 2 and 3 would run these next to their old nodes, and node 4
     *    is a new server.) */
    if (config_start(&new_cfg, next.next_id, next.nodes, next.n_nodes) != 0) return 1;

    /* Moving the state over is the application's job: the new log starts empty. Here
     * every new replica starts from the key-value map that configuration 1's decided log
     * built (its commands applied in order), not from the consensus log itself. Nodes 2
     * and 3 could rebuild it from their own old log; node 4 has none, so it gets a copy
     * out of band (in a deployment: a snapshot fetched from an old node over your own
     * connection). Another way: the new leader appends the snapshot as the first entry
     * of the new log, and every replica applies it like any other entry. */
    const struct kv *snapshot = &old_cfg.app[2].kv; /* any old replica: they all agree */
    for (size_t i = 0; i < next.n_nodes; i++) {
        uint64_t p = next.nodes[i];
        new_cfg.app[p].kv = *snapshot; /* the seed */
        new_cfg.app[p].applied = 0;    /* nothing of the new log applied yet */
    }

    /* A configuration-1 message is of no use to configuration 2: the node rejects it and
     * is unchanged. Old node 2 sends heartbeats to node 3 as it ticks. */
    int rejected = 0;
    for (int t = 0; t < 100 && !rejected; t++) {
        TRY(omnipaxos_tick(old_cfg.node[2]));
        const omnipaxos_outgoing *msgs;
        size_t count;
        TRY(omnipaxos_take_outgoing(old_cfg.node[2], &msgs, &count));
        for (size_t k = 0; k < count && !rejected; k++) {
            if (msgs[k].receiver != 3) continue;
            EXPECT_ERR("a configuration-1 message from node 2 to new node 3",
                       omnipaxos_handle_incoming(new_cfg.node[3], msgs[k].data, msgs[k].len),
                       OMNIPAXOS_ERR_WRONG_CONFIGURATION);
            rejected = 1;
        }
    }
    CHECK(rejected, "old node 2 sent no message to node 3");

    uint64_t new_leader;
    if (elect(&new_cfg, &new_leader) != 0) return 1;
    uint64_t new_follower = new_leader == 4 ? 2 : new_leader + 1;
    /* Appends work again, at the leader and (forwarded) at a follower. */
    if (append_text(new_cfg.node[new_leader], "set w=4") != 0) return 1;
    if (wait_decided(&new_cfg, 1) != 0) return 1;
    if (append_text(new_cfg.node[new_follower], "set x=5") != 0) return 1;
    if (wait_decided(&new_cfg, 2) != 0) return 1;

    const char *new_state[][2] = {{"x", "5"}, {"z", "3"}, {"w", "4"}};
    for (size_t i = 0; i < next.n_nodes; i++) {
        uint64_t p = next.nodes[i];
        printf("  node %" PRIu64 " (configuration 2) applied %" PRIu64 " entries on its seed: ", p,
               new_cfg.app[p].applied);
        kv_print(&new_cfg.app[p].kv);
        printf("\n");
        CHECK(new_cfg.app[p].applied == 2 && kv_equals(&new_cfg.app[p].kv, new_state, 3),
              "node %" PRIu64 " of configuration 2 has the wrong state", p);
    }
    printf("reconfiguration complete: every check passed\n");
    return 0;
}

int main(void) {
    printf("libomnipaxos %s\n", omnipaxos_version());
    int status = run();
    /* The old nodes ran until the new ones no longer needed them; now free everything. */
    config_free(&new_cfg);
    config_free(&old_cfg);
    stopsign_free(&next);
    return status;
}
