/*
 * Tests of the whole C API of libomnipaxos, including every bad input we can think of.
 *
 * Built by tests/c/run.sh with -std=c11 -Wall -Wextra -Wpedantic -Werror, linked once
 * against the shared and once against the static library, and run under valgrind.
 * Ends with the line "c-api: N passed, M failed" and exits non-zero when M > 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "omnipaxos.h"

/* ---------------------------------------------------------------- assertions ---- */

static atomic_int passed;
static atomic_int failed;

static const char *last_err(void) {
    static _Thread_local char buf[1024];
    omnipaxos_last_error(buf, sizeof buf);
    return buf;
}

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            atomic_fetch_add(&passed, 1);                                            \
        } else {                                                                     \
            atomic_fetch_add(&failed, 1);                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_RC(expr, want)                                                              \
    do {                                                                                  \
        omnipaxos_result rc_ = (expr);                                                    \
        if (rc_ == (want)) {                                                              \
            atomic_fetch_add(&passed, 1);                                                 \
        } else {                                                                          \
            atomic_fetch_add(&failed, 1);                                                 \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s); last error: %s\n", \
                    __FILE__, __LINE__, #expr, (int)rc_, omnipaxos_strerror(rc_),         \
                    (int)(want), omnipaxos_strerror(want), last_err());                   \
        }                                                                                 \
    } while (0)

/* The last error of this thread contains `text`. */
static void check_err_has(const char *file, int line, const char *text) {
    const char *e = last_err();
    if (strstr(e, text) != NULL) {
        atomic_fetch_add(&passed, 1);
    } else {
        atomic_fetch_add(&failed, 1);
        fprintf(stderr, "%s:%d: last error \"%s\" does not contain \"%s\"\n", file, line, e, text);
    }
}
#define CHECK_ERR_HAS(text) check_err_has(__FILE__, __LINE__, (text))

static void summary(void) {
    printf("c-api: %d passed, %d failed\n", atomic_load(&passed), atomic_load(&failed));
    fflush(stdout);
}

/* A check the rest of the program depends on: on failure, print the summary and exit. */
#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (cond) {                                                                    \
            atomic_fetch_add(&passed, 1);                                              \
        } else {                                                                       \
            atomic_fetch_add(&failed, 1);                                              \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s; last error: %s\n", __FILE__,    \
                    __LINE__, #cond, last_err());                                      \
            summary();                                                                 \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* ------------------------------------------------------------------- helpers ---- */

static char tmpdir[256];

static omnipaxos_result node_from(const char *text, omnipaxos_node **out) {
    return omnipaxos_node_from_hocon_str(text, strlen(text), out);
}

/* Creating a node from `text` fails with `want` and a last error containing `key`
 * ("": any text); a node created by mistake is freed. */
#define CHECK_CREATE_FAILS(text, want, key)                                     \
    do {                                                                        \
        omnipaxos_node *n_ = NULL;                                              \
        CHECK_RC(node_from((text), &n_), (want));                               \
        if (n_ != NULL) {                                                       \
            omnipaxos_node_free(n_);                                            \
        } else {                                                                \
            CHECK_ERR_HAS(key);                                                 \
        }                                                                       \
    } while (0)

/* A node of configuration `config_id` with pid `pid` and peers `peers` (HOCON list text). */
static omnipaxos_node *node_new(uint32_t config_id, uint64_t pid, const char *peers,
                                const char *extra) {
    char text[1024];
    snprintf(text, sizeof text,
             "config_id = %u\npid = %llu\npeers = %s\nelection_tick_timeout = 5\n"
             "resend_tick_timeout = 3\n%s\n",
             (unsigned)config_id, (unsigned long long)pid, peers, extra ? extra : "");
    omnipaxos_node *node = NULL;
    omnipaxos_result rc = node_from(text, &node);
    if (rc != OMNIPAXOS_OK) {
        fprintf(stderr, "cannot create node %llu: %s: %s\n", (unsigned long long)pid,
                omnipaxos_strerror(rc), last_err());
    }
    REQUIRE(rc == OMNIPAXOS_OK && node != NULL);
    return node;
}

#define MAXN 5

typedef struct {
    omnipaxos_node *n[MAXN];
    uint64_t pid[MAXN];
    int count;
} cluster;

static void cluster_init(cluster *c, int count, const char *extra) {
    memset(c, 0, sizeof *c);
    c->count = count;
    for (int i = 0; i < count; i++) {
        char peers[64] = "[";
        for (int j = 0; j < count; j++) {
            if (j != i) {
                char one[16];
                snprintf(one, sizeof one, "%s%d", strlen(peers) > 1 ? ", " : "", j + 1);
                strcat(peers, one);
            }
        }
        strcat(peers, "]");
        c->pid[i] = (uint64_t)(i + 1);
        c->n[i] = node_new(1, c->pid[i], peers, extra);
    }
}

static void cluster_free(cluster *c) {
    for (int i = 0; i < c->count; i++) omnipaxos_node_free(c->n[i]);
    memset(c, 0, sizeof *c);
}

static omnipaxos_node *cluster_find(cluster *c, uint64_t pid) {
    for (int i = 0; i < c->count; i++)
        if (c->pid[i] == pid) return c->n[i];
    return NULL;
}

/* Moves every outgoing message to its receiver until no node has anything to send.
 * Returns the number of messages delivered. */
static int deliver(cluster *c) {
    int total = 0;
    for (int round = 0; round < 50; round++) {
        int moved = 0;
        for (int i = 0; i < c->count; i++) {
            const omnipaxos_outgoing *msgs = NULL;
            size_t count = 0;
            omnipaxos_result rc = omnipaxos_take_outgoing(c->n[i], &msgs, &count);
            if (rc != OMNIPAXOS_OK) {
                CHECK_RC(rc, OMNIPAXOS_OK);
                return total;
            }
            for (size_t k = 0; k < count; k++) {
                omnipaxos_node *to = cluster_find(c, msgs[k].receiver);
                if (to == NULL) continue;
                rc = omnipaxos_handle_incoming(to, msgs[k].data, msgs[k].len);
                if (rc != OMNIPAXOS_OK) CHECK_RC(rc, OMNIPAXOS_OK);
                moved++;
            }
        }
        total += moved;
        if (moved == 0) break;
    }
    return total;
}

static void step(cluster *c) {
    for (int i = 0; i < c->count; i++) {
        omnipaxos_result rc = omnipaxos_tick(c->n[i]);
        if (rc != OMNIPAXOS_OK) CHECK_RC(rc, OMNIPAXOS_OK);
    }
    deliver(c);
}

/* The leader every node agrees on, or 0. */
static uint64_t agreed_leader(cluster *c) {
    uint64_t first = 0;
    for (int i = 0; i < c->count; i++) {
        uint64_t pid = 0;
        if (omnipaxos_leader(c->n[i], &pid, NULL) != OMNIPAXOS_OK || pid == 0) return 0;
        if (i == 0) first = pid;
        if (pid != first) return 0;
    }
    return first;
}

static uint64_t elect(cluster *c) {
    for (int t = 0; t < 1000; t++) {
        step(c);
        uint64_t l = agreed_leader(c);
        if (l != 0) return l;
    }
    return 0;
}

static uint64_t decided(omnipaxos_node *n) {
    uint64_t d = 0;
    omnipaxos_result rc = omnipaxos_decided_idx(n, &d);
    if (rc != OMNIPAXOS_OK) CHECK_RC(rc, OMNIPAXOS_OK);
    return d;
}

static uint64_t min_decided(cluster *c) {
    uint64_t m = UINT64_MAX;
    for (int i = 0; i < c->count; i++) {
        uint64_t d = decided(c->n[i]);
        if (d < m) m = d;
    }
    return m;
}

static int run_until_decided(cluster *c, uint64_t target, int max_steps) {
    for (int t = 0; t < max_steps; t++) {
        if (min_decided(c) >= target) return 1;
        step(c);
    }
    return min_decided(c) >= target;
}

/* Appends `text` at `n`, stepping the cluster while the proposal buffer is full. */
static void append_text(cluster *c, omnipaxos_node *n, const char *text) {
    for (int tries = 0; tries < 1000; tries++) {
        omnipaxos_result rc = omnipaxos_append(n, (const uint8_t *)text, strlen(text));
        if (rc == OMNIPAXOS_OK) return;
        if (rc != OMNIPAXOS_ERR_BUFFER_FULL) {
            CHECK_RC(rc, OMNIPAXOS_OK);
            return;
        }
        step(c);
    }
    CHECK(!"append kept failing with BUFFER_FULL");
}

/* Some message `from` sends to `to` (copied into buf); 0 when none came within 200 ticks.
 * Only `from` is ticked; its other messages are dropped. */
static size_t message_between(omnipaxos_node *from, uint64_t to, uint8_t *buf, size_t cap) {
    for (int t = 0; t < 200; t++) {
        const omnipaxos_outgoing *msgs = NULL;
        size_t count = 0;
        CHECK_RC(omnipaxos_tick(from), OMNIPAXOS_OK);
        if (omnipaxos_take_outgoing(from, &msgs, &count) != OMNIPAXOS_OK) return 0;
        for (size_t k = 0; k < count; k++) {
            if (msgs[k].receiver == to && msgs[k].len <= cap) {
                memcpy(buf, msgs[k].data, msgs[k].len);
                return msgs[k].len;
            }
        }
    }
    return 0;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---------------------------------------------------------------------- tests ---- */

static void test_version(void) {
    CHECK(omnipaxos_version() != NULL);
    CHECK(strcmp(omnipaxos_version(), OMNIPAXOS_VERSION) == 0);
    CHECK(omnipaxos_wire_version() == 2);
}

static void test_strerror(void) {
    for (int code = OMNIPAXOS_OK; code <= OMNIPAXOS_ERR_STORAGE_MISMATCH; code++) {
        const char *s = omnipaxos_strerror((omnipaxos_result)code);
        CHECK(s != NULL && s[0] != '\0');
        CHECK(strcmp(s, "unknown error code") != 0);
        for (int other = OMNIPAXOS_OK; other < code; other++)
            CHECK(strcmp(s, omnipaxos_strerror((omnipaxos_result)other)) != 0);
    }
    CHECK(strcmp(omnipaxos_strerror((omnipaxos_result)18), "unknown error code") == 0);
    CHECK(strcmp(omnipaxos_strerror((omnipaxos_result)9999), "unknown error code") == 0);
    CHECK(strcmp(omnipaxos_strerror((omnipaxos_result)-1), "unknown error code") == 0);
    CHECK(strcmp(omnipaxos_strerror(OMNIPAXOS_OK), "success") == 0);
}

static void *fresh_thread_last_error(void *arg) {
    char buf[8] = "xxxxxxx";
    size_t *n = arg;
    *n = omnipaxos_last_error(buf, sizeof buf);
    if (buf[0] != '\0') *n = 999;
    return NULL;
}

static void test_last_error(void) {
    /* A thread that never failed has no last error. */
    pthread_t th;
    size_t n = 12345;
    REQUIRE(pthread_create(&th, NULL, fresh_thread_last_error, &n) == 0);
    pthread_join(th, NULL);
    CHECK(n == 0);

    omnipaxos_node *node = NULL;
    CHECK_RC(omnipaxos_node_from_hocon_str("pid = 1", 7, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`out`");
    size_t len = omnipaxos_last_error(NULL, 0);
    CHECK(len == strlen("parameter `out` is NULL"));
    CHECK(omnipaxos_last_error(NULL, 100) == len); /* NULL buffer: only the length */
    char small[5];
    memset(small, 'x', sizeof small);
    CHECK(omnipaxos_last_error(small, sizeof small) == len);
    CHECK(memcmp(small, "para", 4) == 0 && small[4] == '\0');
    char one[1] = {'x'};
    CHECK(omnipaxos_last_error(one, 1) == len && one[0] == '\0');
    char big[256];
    CHECK(omnipaxos_last_error(big, sizeof big) == len && strlen(big) == len);
    /* A successful call does not clear it. */
    CHECK(omnipaxos_version() != NULL);
    CHECK(omnipaxos_last_error(NULL, 0) == len);
    (void)node;
}

static void test_config_errors(void) {
    omnipaxos_node *node = (omnipaxos_node *)(uintptr_t)0x1234; /* must stay untouched */
    omnipaxos_node *const sentinel = node;

    CHECK_RC(omnipaxos_node_from_hocon_str(NULL, 5, &node), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`text`");
    CHECK_RC(omnipaxos_node_from_hocon_str(NULL, 0, &node), OMNIPAXOS_ERR_CONFIG);
    CHECK_ERR_HAS("pid");
    CHECK_RC(omnipaxos_node_from_hocon_str("pid = 1", SIZE_MAX, &node),
             OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_CREATE_FAILS("peers = [2, 3]", OMNIPAXOS_ERR_CONFIG, "pid");
    CHECK_CREATE_FAILS("pid = \"abc\"\npeers = [2, 3]", OMNIPAXOS_ERR_CONFIG, "pid");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\nelection_tick_timeout = \"soon\"",
                       OMNIPAXOS_ERR_CONFIG, "election_tick_timeout");
    CHECK_CREATE_FAILS("pid = 1\npeers = [1, 3]", OMNIPAXOS_ERR_CONFIG, "peers");
    CHECK_CREATE_FAILS("pid = 1", OMNIPAXOS_ERR_CONFIG, "peers");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\nmax_message_bytes = 10", OMNIPAXOS_ERR_CONFIG,
                       "max_message_bytes");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\nstorage { type = persistent }",
                       OMNIPAXOS_ERR_CONFIG, "storage.path");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\nlog_file_path = \"\"", OMNIPAXOS_ERR_CONFIG,
                       "log_file_path");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\npidd = 4", OMNIPAXOS_ERR_CONFIG, "pidd");
    /* Garbage and broken escapes must give an error, never a crash. */
    CHECK_CREATE_FAILS("{{{{ ::: }", OMNIPAXOS_ERR_CONFIG, "");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\nlog_file_path = \"\\u12\"", OMNIPAXOS_ERR_CONFIG,
                       "");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\nlog_file_path = \"\\uZZZZ\"",
                       OMNIPAXOS_ERR_CONFIG, "");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2, 3]\nx = \"\\", OMNIPAXOS_ERR_CONFIG, "");
    const char bad_utf8[] = "pid = 1\npeers = [2, 3]\n# \xff\xfe\n";
    CHECK_RC(omnipaxos_node_from_hocon_str(bad_utf8, strlen(bad_utf8), &node),
             OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR_HAS("UTF-8");
    char garbage[512];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (char)(1 + (i * 37) % 127);
    CHECK(omnipaxos_node_from_hocon_str(garbage, sizeof garbage, &node) != OMNIPAXOS_OK);

    /* Files. */
    CHECK_RC(omnipaxos_node_from_hocon_file(NULL, &node), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`path`");
    CHECK_RC(omnipaxos_node_from_hocon_file("/nonexistent/omnipaxos-missing.conf", &node),
             OMNIPAXOS_ERR_CONFIG);
    CHECK_ERR_HAS("omnipaxos-missing.conf");
    CHECK_RC(omnipaxos_node_from_hocon_file("/tmp/\xff\xfe.conf", &node),
             OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK(node == sentinel);

    char path[512];
    snprintf(path, sizeof path, "%s/node1.conf", tmpdir);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("config_id = 1\npid = 1\npeers = [2, 3]\n", f);
    fclose(f);
    CHECK_RC(omnipaxos_node_from_hocon_file(path, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_node_from_hocon_file(path, &node), OMNIPAXOS_OK);
    CHECK(node != sentinel && node != NULL);
    uint64_t pid = 0;
    CHECK_RC(omnipaxos_pid(node, &pid), OMNIPAXOS_OK);
    CHECK(pid == 1);
    omnipaxos_node_free(node);

    /* log_file_path: parent directories are created; an impossible path is a config error. */
    char text[1024], log_path[512];
    snprintf(log_path, sizeof log_path, "%s/logs/deeper/node1.log", tmpdir);
    snprintf(text, sizeof text, "pid = 1\npeers = [2, 3]\nlog_file_path = \"%s\"", log_path);
    node = NULL;
    CHECK_RC(node_from(text, &node), OMNIPAXOS_OK);
    CHECK(file_exists(log_path));
    omnipaxos_node_free(node);
    CHECK_RC(node_from(text, &node), OMNIPAXOS_OK); /* append mode: opening twice is fine */
    omnipaxos_node_free(node);
    snprintf(text, sizeof text, "pid = 1\npeers = [2, 3]\nlog_file_path = \"%s/node1.conf/x.log\"",
             tmpdir);
    node = sentinel;
    CHECK_RC(node_from(text, &node), OMNIPAXOS_ERR_CONFIG);
    CHECK_ERR_HAS("log_file_path");
    CHECK(node == sentinel);
}

/* The node writes its log lines (leader changes, ...) to log_file_path, one per line. */
static void test_log_file(void) {
    char extra[600], path[512];
    snprintf(path, sizeof path, "%s/cluster-logs/all.log", tmpdir);
    snprintf(extra, sizeof extra, "log_file_path = \"%s\"", path);
    cluster c;
    cluster_init(&c, 3, extra);
    REQUIRE(elect(&c) != 0);
    cluster_free(&c);
    FILE *f = fopen(path, "r");
    REQUIRE(f != NULL);
    char line[512];
    int lines = 0, leader_lines = 0, bad = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lines++;
        if (strstr(line, "leader") != NULL) leader_lines++;
        if (line[0] == '\n' || strchr(line, '\n') == NULL) bad++;
    }
    fclose(f);
    CHECK(lines > 0 && leader_lines > 0 && bad == 0);
}

static void test_persistent_storage(void) {
    char text[1024];
    snprintf(text, sizeof text,
             "pid = 1\npeers = [2, 3]\nstorage { type = persistent, path = \"%s/store1\", "
             "sync = never }",
             tmpdir);
    omnipaxos_node *node = NULL;
    omnipaxos_result rc = node_from(text, &node);
    CHECK_RC(rc, OMNIPAXOS_OK);
    if (rc != OMNIPAXOS_OK) return;
    omnipaxos_node *second = NULL;
    CHECK_RC(node_from(text, &second), OMNIPAXOS_ERR_STORAGE_LOCKED);
    CHECK(second == NULL);
    CHECK_RC(omnipaxos_append(node, (const uint8_t *)"x", 1), OMNIPAXOS_OK);
    omnipaxos_node_free(node);
    node = NULL;
    CHECK_RC(node_from(text, &node), OMNIPAXOS_OK);
    CHECK_RC(omnipaxos_fail_recovery(node), OMNIPAXOS_OK);
    omnipaxos_node_free(node);
}

/* Issue 12: the storage knows whose it is, deleting LOCK does not unlock, a clean close
 * keeps the decided index, the configuration file must be a regular file without
 * includes. */
static void persistent_trio(cluster *c, const char *tag) {
    memset(c, 0, sizeof *c);
    c->count = 3;
    const char *peers[3] = {"[2, 3]", "[1, 3]", "[1, 2]"};
    for (int i = 0; i < 3; i++) {
        char extra[512];
        snprintf(extra, sizeof extra,
                 "storage { type = persistent, path = \"%s/%s%d\", sync = never }", tmpdir, tag,
                 i + 1);
        c->pid[i] = (uint64_t)(i + 1);
        c->n[i] = node_new(1, c->pid[i], peers[i], extra);
    }
}

static void test_hardening(void) {
    char text[1024];
    /* Identity: the directory of pid 1 refuses pid 2, naming both. */
    snprintf(text, sizeof text,
             "pid = 1\npeers = [2, 3]\nstorage { type = persistent, path = \"%s/ident\" }",
             tmpdir);
    omnipaxos_node *node = NULL;
    CHECK_RC(node_from(text, &node), OMNIPAXOS_OK);
    /* Deleting LOCK lets no second node in. */
    char lock[512];
    snprintf(lock, sizeof lock, "%s/ident/LOCK", tmpdir);
    unlink(lock);
    omnipaxos_node *second = NULL;
    CHECK_RC(node_from(text, &second), OMNIPAXOS_ERR_STORAGE_LOCKED);
    omnipaxos_node_free(node);
    snprintf(text, sizeof text,
             "pid = 2\npeers = [1, 3]\nstorage { type = persistent, path = \"%s/ident\" }",
             tmpdir);
    CHECK_RC(node_from(text, &second), OMNIPAXOS_ERR_STORAGE_MISMATCH);
    CHECK_ERR_HAS("pid 1 of configuration 1");
    CHECK_ERR_HAS("pid 2 of configuration 1");
    CHECK(second == NULL);
    CHECK(strcmp(omnipaxos_strerror(OMNIPAXOS_ERR_STORAGE_MISMATCH), "unknown error code") != 0);

    /* A clean close keeps the decided index, with and without fail_recovery. */
    cluster c;
    persistent_trio(&c, "close");
    omnipaxos_node *l = cluster_find(&c, elect(&c));
    REQUIRE(l != NULL);
    for (int i = 0; i < 10; i++) append_text(&c, l, "decided before the close");
    CHECK(run_until_decided(&c, 10, 2000));
    cluster_free(&c);
    for (int recover = 0; recover < 2; recover++) {
        persistent_trio(&c, "close");
        for (int i = 0; i < 3; i++) {
            if (recover) CHECK_RC(omnipaxos_fail_recovery(c.n[i]), OMNIPAXOS_OK);
            CHECK(decided(c.n[i]) >= 10);
        }
        cluster_free(&c);
    }

    /* Configuration files: a FIFO is refused at once, includes are refused. */
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/node.conf.fifo", tmpdir);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    CHECK_RC(omnipaxos_node_from_hocon_file(fifo, &node), OMNIPAXOS_ERR_CONFIG);
    CHECK_ERR_HAS("FIFO");
    CHECK_CREATE_FAILS("pid = 1\npeers = [2]\ninclude \"/dev/zero\"", OMNIPAXOS_ERR_CONFIG,
                       "`include` is not supported");
    CHECK_CREATE_FAILS("pid = ${pid}\npeers = [2]", OMNIPAXOS_ERR_CONFIG, "itself");
}

/* NULL for every pointer parameter, on a live node; out-parameters stay untouched. */
static void test_null_parameters(void) {
    omnipaxos_node *node = node_new(1, 1, "[2, 3]", NULL);
    const omnipaxos_outgoing *msgs = (const omnipaxos_outgoing *)(uintptr_t)0x99;
    size_t count = 777;
    uint64_t u = 777;
    bool b = true;
    omnipaxos_entries *e = (omnipaxos_entries *)(uintptr_t)0x98;
    omnipaxos_entries *const e_sentinel = e;

    omnipaxos_node_free(NULL);
    omnipaxos_entries_free(NULL);
    CHECK_RC(omnipaxos_append(NULL, (const uint8_t *)"x", 1), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`node`");
    CHECK_RC(omnipaxos_append(node, NULL, 5), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`data`");
    CHECK_RC(omnipaxos_handle_incoming(NULL, (const uint8_t *)"x", 1),
             OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_handle_incoming(node, NULL, 5), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`msg`");
    CHECK_RC(omnipaxos_handle_incoming(node, NULL, 0), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    CHECK_RC(omnipaxos_take_outgoing(NULL, &msgs, &count), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_take_outgoing(node, NULL, &count), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`msgs`");
    CHECK_RC(omnipaxos_take_outgoing(node, &msgs, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_ERR_HAS("`count`");
    CHECK(msgs == (const omnipaxos_outgoing *)(uintptr_t)0x99 && count == 777);
    CHECK_RC(omnipaxos_tick(NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_election_timeout(NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_decided_idx(NULL, &u), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_decided_idx(node, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_read(NULL, 0, &e), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_read(node, 0, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_read_entries(NULL, 0, 0, &e), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_read_entries(node, 0, 0, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_read_decided_suffix(NULL, 0, &e), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_read_decided_suffix(node, 0, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK(e == e_sentinel);
    CHECK(omnipaxos_entries_count(NULL) == 0);
    CHECK(omnipaxos_entries_first_idx(NULL) == 0);
    const uint8_t *data = NULL;
    size_t len = 0;
    omnipaxos_entry_kind kind = OMNIPAXOS_ENTRY_TRIMMED;
    CHECK_RC(omnipaxos_entries_get(NULL, 0, &data, &len, &kind), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_read_decided_suffix(node, 0, &e), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(e) == 0);
    CHECK_RC(omnipaxos_entries_get(e, 0, NULL, &len, &kind), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_entries_get(e, 0, &data, NULL, &kind), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_entries_get(e, 0, &data, &len, NULL), OMNIPAXOS_ERR_OUT_OF_RANGE);
    omnipaxos_entries_free(e);
    e = e_sentinel;
    CHECK_RC(omnipaxos_leader(NULL, &u, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_leader(node, NULL, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_pid(NULL, &u), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_pid(node, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_is_quorum_connected(NULL, &b), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_is_quorum_connected(node, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_fail_recovery(NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_reconnected(NULL, 2), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_trim(NULL, 0), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK(u == 777 && b == true);

    /* A fresh node: no leader, nothing decided, nothing to read. */
    omnipaxos_ballot ballot = {7, 7, 7};
    CHECK_RC(omnipaxos_leader(node, &u, &ballot), OMNIPAXOS_OK);
    CHECK(u == 0 && ballot.n == 0 && ballot.priority == 0 && ballot.pid == 0);
    CHECK_RC(omnipaxos_decided_idx(node, &u), OMNIPAXOS_OK);
    CHECK(u == 0);
    CHECK_RC(omnipaxos_read(node, 0, &e), OMNIPAXOS_ERR_OUT_OF_RANGE);
    CHECK(e == e_sentinel);
    CHECK_RC(omnipaxos_is_quorum_connected(node, &b), OMNIPAXOS_OK);
    CHECK_RC(omnipaxos_take_outgoing(node, &msgs, &count), OMNIPAXOS_OK);
    CHECK(count == 0 || msgs != NULL);
    /* Huge lengths are refused before the memory is read. */
    CHECK_RC(omnipaxos_append(node, (const uint8_t *)"x", SIZE_MAX),
             OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_RC(omnipaxos_handle_incoming(node, (const uint8_t *)"x", SIZE_MAX),
             OMNIPAXOS_ERR_MESSAGE_TOO_LARGE);
    CHECK_RC(omnipaxos_reconnected(node, 99), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR_HAS("99");
    CHECK_RC(omnipaxos_reconnected(node, 1), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    omnipaxos_node_free(node);
}

static void test_buffer_full(void) {
    omnipaxos_node *node = node_new(1, 1, "[2, 3]", "buffer_size = 3");
    for (int i = 0; i < 3; i++) CHECK_RC(omnipaxos_append(node, (const uint8_t *)"x", 1), OMNIPAXOS_OK);
    CHECK_RC(omnipaxos_append(node, (const uint8_t *)"x", 1), OMNIPAXOS_ERR_BUFFER_FULL);
    CHECK_RC(omnipaxos_append(node, NULL, 0), OMNIPAXOS_ERR_BUFFER_FULL);
    omnipaxos_node_free(node);
}

/* omnipaxos_append_batch and omnipaxos_entries_contiguous. */
static void test_batch_and_contiguous(void) {
    /* Bad input, and a buffer that fills part-way. */
    omnipaxos_node *lone = node_new(1, 1, "[2, 3]", "buffer_size = 3");
    const uint8_t bytes[] = "aabbbcdddd";
    const size_t lens[] = {2, 3, 1, 4, 0};
    size_t appended = 777;
    CHECK_RC(omnipaxos_append_batch(NULL, bytes, lens, 5, &appended), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_append_batch(lone, bytes, NULL, 5, &appended), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_append_batch(lone, NULL, lens, 5, &appended), OMNIPAXOS_ERR_NULL_PARAMETER);
    const size_t huge[] = {SIZE_MAX, 2};
    CHECK_RC(omnipaxos_append_batch(lone, bytes, huge, 2, &appended), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK(appended == 777);
    CHECK_RC(omnipaxos_append_batch(lone, NULL, NULL, 0, &appended), OMNIPAXOS_OK);
    CHECK(appended == 0);
    CHECK_RC(omnipaxos_append_batch(lone, bytes, lens, 5, &appended), OMNIPAXOS_ERR_BUFFER_FULL);
    CHECK(appended == 3);
    CHECK_RC(omnipaxos_append_batch(lone, bytes, lens, 5, NULL), OMNIPAXOS_ERR_BUFFER_FULL);
    omnipaxos_node_free(lone);

    /* A batch through a cluster, read back in one piece. */
    cluster c;
    cluster_init(&c, 3, NULL);
    uint64_t leader = elect(&c);
    REQUIRE(leader != 0);
    omnipaxos_node *fn = cluster_find(&c, leader == 1 ? 2 : 1);
    enum { K = 200 };
    static uint8_t data[K * 8];
    static size_t blens[K];
    size_t total = 0;
    for (int i = 0; i < K; i++) {
        int n = snprintf((char *)data + total, 9, "b-%d", i);
        blens[i] = (size_t)n;
        total += (size_t)n;
    }
    CHECK_RC(omnipaxos_append_batch(fn, data, blens, K, &appended), OMNIPAXOS_OK);
    CHECK(appended == K);
    REQUIRE(run_until_decided(&c, K, 2000));
    omnipaxos_entries *log = NULL;
    CHECK_RC(omnipaxos_read_decided_suffix(fn, 0, &log), OMNIPAXOS_OK);
    const uint8_t *all = NULL;
    size_t all_len = 0;
    const uint64_t *ends = NULL;
    CHECK_RC(omnipaxos_entries_contiguous(log, &all, &all_len, &ends), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(log) == K && all_len == total);
    CHECK(memcmp(all, data, total) == 0);
    uint64_t prev = 0;
    int ok = 1;
    for (int i = 0; i < K; i++) {
        ok &= ends[i] - prev == blens[i];
        prev = ends[i];
    }
    CHECK(ok);
    CHECK_RC(omnipaxos_entries_contiguous(NULL, &all, &all_len, &ends), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_entries_contiguous(log, NULL, &all_len, &ends), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_entries_contiguous(log, &all, NULL, &ends), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_entries_contiguous(log, &all, &all_len, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    omnipaxos_entries_free(log);
    cluster_free(&c);
}

static void test_bad_messages(void) {
    cluster c;
    cluster_init(&c, 3, "max_message_bytes = 4096");
    omnipaxos_node *n1 = c.n[0];
    uint8_t msg[4096];
    size_t len = message_between(c.n[1], 1, msg, sizeof msg);
    REQUIRE(len > 23);
    uint64_t d_before = decided(n1);

    /* The good message is accepted (later in this test). Now every broken variant. */
    uint8_t bad[8192];
    memcpy(bad, msg, len);
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, len - 1), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, 10), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, 1), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    bad[len] = 0x42;
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, len + 1), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    bad[2] = 0xEE; /* the version byte, after the 2-byte magic */
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, len), OMNIPAXOS_ERR_UNSUPPORTED_VERSION);
    bad[0] = 0x68; /* no magic: garbage, not another version */
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, len), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    CHECK_ERR_HAS("magic number");
    memcpy(bad, msg, len);
    for (size_t i = 23; i < len; i++) bad[i] = 0xFF;
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, len), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    for (size_t i = 0; i < sizeof bad; i++) bad[i] = (uint8_t)(i * 131 + 7);
    bad[0] = 1;
    CHECK(omnipaxos_handle_incoming(n1, bad, 512) != OMNIPAXOS_OK);
    memset(bad, 0, sizeof bad);
    CHECK_RC(omnipaxos_handle_incoming(n1, bad, 5000), OMNIPAXOS_ERR_MESSAGE_TOO_LARGE);
    CHECK_ERR_HAS("5000");
    /* From a node of another configuration. */
    omnipaxos_node *other = node_new(2, 2, "[1, 3]", NULL);
    uint8_t other_msg[4096];
    size_t other_len = message_between(other, 1, other_msg, sizeof other_msg);
    REQUIRE(other_len > 23);
    CHECK_RC(omnipaxos_handle_incoming(n1, other_msg, other_len),
             OMNIPAXOS_ERR_WRONG_CONFIGURATION);
    /* Its header tells which configuration it belongs to, without a node. */
    uint32_t cid = 0;
    uint64_t from = 0, to = 0;
    CHECK_RC(omnipaxos_message_header(other_msg, other_len, &cid, &from, &to), OMNIPAXOS_OK);
    CHECK(cid == 2 && from == 2 && to == 1);
    cid = 0;
    CHECK_RC(omnipaxos_message_header(msg, len, &cid, NULL, NULL), OMNIPAXOS_OK);
    CHECK(cid == 1);
    CHECK_RC(omnipaxos_message_header(msg, 23, &cid, NULL, &to), OMNIPAXOS_OK); /* header only */
    cid = 77;
    CHECK_RC(omnipaxos_message_header(msg, 22, &cid, NULL, NULL), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    CHECK(cid == 77);
    CHECK_RC(omnipaxos_message_header(NULL, 0, &cid, NULL, NULL), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    CHECK_RC(omnipaxos_message_header(NULL, 5, &cid, NULL, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_message_header(msg, len, NULL, NULL, NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    memcpy(bad, msg, len);
    bad[2] = 0xEE;
    CHECK_RC(omnipaxos_message_header(bad, len, &cid, NULL, NULL), OMNIPAXOS_ERR_UNSUPPORTED_VERSION);
    bad[0] = 0xEE;
    CHECK_RC(omnipaxos_message_header(bad, len, &cid, NULL, NULL), OMNIPAXOS_ERR_MALFORMED_MESSAGE);
    omnipaxos_node_free(other);
    /* From a pid that is not a peer. */
    omnipaxos_node *stranger = node_new(1, 9, "[1, 2, 3]", NULL);
    other_len = message_between(stranger, 1, other_msg, sizeof other_msg);
    REQUIRE(other_len > 23);
    CHECK_RC(omnipaxos_handle_incoming(n1, other_msg, other_len), OMNIPAXOS_ERR_UNKNOWN_SENDER);
    CHECK_ERR_HAS("9");
    omnipaxos_node_free(stranger);
    /* Addressed to another node. */
    other_len = message_between(c.n[1], 3, other_msg, sizeof other_msg);
    REQUIRE(other_len > 23);
    CHECK_RC(omnipaxos_handle_incoming(n1, other_msg, other_len), OMNIPAXOS_ERR_UNKNOWN_SENDER);

    CHECK(decided(n1) == d_before);
    CHECK_RC(omnipaxos_handle_incoming(n1, msg, len), OMNIPAXOS_OK);
    /* Duplicates are harmless. */
    CHECK_RC(omnipaxos_handle_incoming(n1, msg, len), OMNIPAXOS_OK);
    /* The cluster still works after all that. */
    CHECK(elect(&c) != 0);
    cluster_free(&c);
}

static void check_equal_logs(cluster *c, uint64_t n) {
    omnipaxos_entries *logs[MAXN];
    for (int i = 0; i < c->count; i++) {
        CHECK_RC(omnipaxos_read_decided_suffix(c->n[i], 0, &logs[i]), OMNIPAXOS_OK);
        CHECK(omnipaxos_entries_count(logs[i]) >= n);
        CHECK(omnipaxos_entries_first_idx(logs[i]) == 0);
    }
    size_t count = omnipaxos_entries_count(logs[0]);
    int mismatches = 0;
    for (int i = 1; i < c->count; i++) {
        if (omnipaxos_entries_count(logs[i]) != count) mismatches++;
        for (size_t k = 0; k < count && k < omnipaxos_entries_count(logs[i]); k++) {
            const uint8_t *a, *b;
            size_t la, lb;
            omnipaxos_entry_kind ka, kb;
            if (omnipaxos_entries_get(logs[0], k, &a, &la, &ka) != OMNIPAXOS_OK ||
                omnipaxos_entries_get(logs[i], k, &b, &lb, &kb) != OMNIPAXOS_OK || la != lb ||
                memcmp(a, b, la) != 0 || ka != OMNIPAXOS_ENTRY_DECIDED || kb != ka)
                mismatches++;
        }
    }
    CHECK(mismatches == 0);
    for (int i = 0; i < c->count; i++) omnipaxos_entries_free(logs[i]);
}

#define N_ENTRIES 1000

static void test_cluster(void) {
    cluster c;
    cluster_init(&c, 3, NULL);
    uint64_t leader = elect(&c);
    REQUIRE(leader != 0);
    omnipaxos_node *ln = cluster_find(&c, leader);
    omnipaxos_node *fn = cluster_find(&c, leader == 1 ? 2 : 1);
    omnipaxos_ballot ballot;
    uint64_t pid = 0;
    CHECK_RC(omnipaxos_leader(fn, &pid, &ballot), OMNIPAXOS_OK);
    CHECK(pid == leader && ballot.pid == leader);
    bool qc = false;
    CHECK_RC(omnipaxos_is_quorum_connected(ln, &qc), OMNIPAXOS_OK);
    CHECK(qc);

    /* Half the entries at the leader, half at a follower (forwarded). */
    char text[32];
    for (int i = 0; i < N_ENTRIES; i++) {
        snprintf(text, sizeof text, "entry-%04d", i);
        append_text(&c, i % 2 ? fn : ln, text);
        if (i % 50 == 49) step(&c);
    }
    CHECK(omnipaxos_append(ln, NULL, 0) == OMNIPAXOS_OK); /* an empty entry */
    REQUIRE(run_until_decided(&c, N_ENTRIES + 1, 2000));
    check_equal_logs(&c, N_ENTRIES + 1);

    /* Every entry decided exactly once. */
    omnipaxos_entries *log = NULL;
    CHECK_RC(omnipaxos_read_decided_suffix(fn, 0, &log), OMNIPAXOS_OK);
    static int seen[N_ENTRIES];
    memset(seen, 0, sizeof seen);
    int empty = 0, bad = 0;
    for (size_t k = 0; k < omnipaxos_entries_count(log); k++) {
        const uint8_t *d;
        size_t l;
        CHECK_RC(omnipaxos_entries_get(log, k, &d, &l, NULL), OMNIPAXOS_OK);
        char text[16] = "";
        int id = -1;
        if (l < sizeof text) memcpy(text, d, l), text[l] = '\0';
        if (l == 0) {
            empty++;
            CHECK(d != NULL);
        } else if (l == 10 && sscanf(text, "entry-%4d", &id) == 1 && id >= 0 && id < N_ENTRIES) {
            seen[id]++;
        } else {
            bad++;
        }
    }
    int once = 0;
    for (int i = 0; i < N_ENTRIES; i++) once += seen[i] == 1;
    CHECK(once == N_ENTRIES && empty == 1 && bad == 0);
    const uint8_t *d;
    size_t l;
    size_t count = omnipaxos_entries_count(log);
    CHECK_RC(omnipaxos_entries_get(log, count, &d, &l, NULL), OMNIPAXOS_ERR_OUT_OF_RANGE);
    CHECK_RC(omnipaxos_entries_get(log, SIZE_MAX, &d, &l, NULL), OMNIPAXOS_ERR_OUT_OF_RANGE);
    omnipaxos_entries_free(log);

    /* Reads. */
    uint64_t dec = decided(fn);
    omnipaxos_entries *e = NULL;
    omnipaxos_entry_kind kind = OMNIPAXOS_ENTRY_TRIMMED;
    CHECK_RC(omnipaxos_read(fn, 3, &e), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(e) == 1 && omnipaxos_entries_first_idx(e) == 3);
    CHECK_RC(omnipaxos_entries_get(e, 0, &d, &l, &kind), OMNIPAXOS_OK);
    CHECK(kind == OMNIPAXOS_ENTRY_DECIDED && l == 10);
    omnipaxos_entries_free(e);
    e = NULL;
    CHECK_RC(omnipaxos_read(fn, dec + 1000, &e), OMNIPAXOS_ERR_OUT_OF_RANGE);
    CHECK(e == NULL);
    CHECK_RC(omnipaxos_read(fn, UINT64_MAX, &e), OMNIPAXOS_ERR_OUT_OF_RANGE);
    CHECK_RC(omnipaxos_read_entries(fn, 10, 20, &e), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(e) == 10 && omnipaxos_entries_first_idx(e) == 10);
    CHECK_RC(omnipaxos_entries_get(e, 9, &d, &l, &kind), OMNIPAXOS_OK);
    CHECK(kind == OMNIPAXOS_ENTRY_DECIDED);
    omnipaxos_entries_free(e);
    e = NULL;
    CHECK_RC(omnipaxos_read_entries(fn, 20, 10, &e), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR_HAS("from (20)");
    CHECK(e == NULL);
    CHECK_RC(omnipaxos_read_entries(fn, 5, 5, &e), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(e) == 0 && omnipaxos_entries_first_idx(e) == 5);
    omnipaxos_entries_free(e);
    e = NULL;
    CHECK_RC(omnipaxos_read_entries(fn, 0, dec + 1000, &e), OMNIPAXOS_ERR_OUT_OF_RANGE);
    CHECK_RC(omnipaxos_read_entries(fn, 0, UINT64_MAX, &e), OMNIPAXOS_ERR_OUT_OF_RANGE);
    CHECK(e == NULL);
    CHECK_RC(omnipaxos_read_decided_suffix(fn, dec - 2, &e), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(e) == 2 && omnipaxos_entries_first_idx(e) == dec - 2);
    omnipaxos_entries_free(e);
    CHECK_RC(omnipaxos_read_decided_suffix(fn, dec, &e), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(e) == 0);
    omnipaxos_entries_free(e);
    CHECK_RC(omnipaxos_read_decided_suffix(fn, UINT64_MAX, &e), OMNIPAXOS_OK);
    CHECK(omnipaxos_entries_count(e) == 0);
    omnipaxos_entries_free(e);

    /* Reconnection, election timeout, recovery: the cluster keeps deciding. */
    CHECK_RC(omnipaxos_reconnected(fn, leader), OMNIPAXOS_OK);
    CHECK_RC(omnipaxos_election_timeout(fn), OMNIPAXOS_OK);
    CHECK_RC(omnipaxos_fail_recovery(fn), OMNIPAXOS_OK);
    append_text(&c, fn, "after-recovery");
    REQUIRE(run_until_decided(&c, dec + 1, 2000));
    check_equal_logs(&c, dec + 1);

    /* Trim everything decided everywhere; trimmed entries read as TRIMMED. */
    dec = min_decided(&c);
    CHECK_RC(omnipaxos_trim(ln, UINT64_MAX), OMNIPAXOS_OK);
    for (int t = 0; t < 50; t++) step(&c);
    e = NULL;
    CHECK_RC(omnipaxos_read(fn, 0, &e), OMNIPAXOS_OK);
    kind = OMNIPAXOS_ENTRY_DECIDED;
    CHECK_RC(omnipaxos_entries_get(e, 0, &d, &l, &kind), OMNIPAXOS_OK);
    CHECK(kind == OMNIPAXOS_ENTRY_TRIMMED && l == 0);
    omnipaxos_entries_free(e);
    e = NULL;
    CHECK_RC(omnipaxos_read_decided_suffix(fn, 0, &e), OMNIPAXOS_ERR_OUT_OF_RANGE);
    CHECK(e == NULL);
    CHECK_RC(omnipaxos_trim(ln, dec + 1000000), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_RC(omnipaxos_trim(fn, UINT64_MAX), OMNIPAXOS_ERR_NOT_LEADER); /* only the leader */
    cluster_free(&c);
}

/* --------------------------------------------------------------- threads ---- */

#define THREAD_ENTRIES 2000

typedef struct {
    cluster *c;
    atomic_int done;
} shared;

static void *writer(void *arg) {
    shared *s = arg;
    char text[32];
    for (int i = 0; i < THREAD_ENTRIES; i++) {
        snprintf(text, sizeof text, "t-%d", i);
        append_text(s->c, s->c->n[0], text);
        if (i % 10 == 9) step(s->c);
    }
    CHECK(run_until_decided(s->c, THREAD_ENTRIES, 3000));
    atomic_store(&s->done, 1);
    return NULL;
}

static void *reader(void *arg) {
    shared *s = arg;
    omnipaxos_node *n = s->c->n[0];
    uint64_t last = 0;
    int regressions = 0, iterations = 0;
    const struct timespec pause = {0, 200000};
    while (!atomic_load(&s->done) || iterations == 0) {
        uint64_t d = decided(n);
        if (d < last) regressions++;
        last = d;
        omnipaxos_entries *e = NULL;
        if (omnipaxos_read_decided_suffix(n, d > 5 ? d - 5 : 0, &e) == OMNIPAXOS_OK) {
            CHECK(omnipaxos_entries_count(e) <= 5 + (decided(n) - d));
            omnipaxos_entries_free(e);
        } else {
            CHECK(!"read_decided_suffix failed");
        }
        uint64_t leader = 0, pid = 0;
        bool qc;
        CHECK_RC(omnipaxos_leader(n, &leader, NULL), OMNIPAXOS_OK);
        CHECK_RC(omnipaxos_pid(n, &pid), OMNIPAXOS_OK);
        CHECK_RC(omnipaxos_is_quorum_connected(n, &qc), OMNIPAXOS_OK);
        /* The last error is per thread: each reader fails with its own range. */
        uint64_t from = 100 + (uint64_t)(uintptr_t)pthread_self() % 1000;
        char expect[64];
        snprintf(expect, sizeof expect, "from (%llu)", (unsigned long long)from);
        CHECK_RC(omnipaxos_read_entries(n, from, 1, &e), OMNIPAXOS_ERR_INVALID_ARGUMENT);
        nanosleep(&pause, NULL);
        CHECK_ERR_HAS(expect);
        iterations++;
    }
    CHECK(regressions == 0);
    return NULL;
}

static void test_threads(void) {
    cluster c;
    cluster_init(&c, 3, NULL);
    REQUIRE(elect(&c) != 0);
    shared s = {&c, 0};
    pthread_t w, r[3];
    REQUIRE(pthread_create(&w, NULL, writer, &s) == 0);
    for (int i = 0; i < 3; i++) REQUIRE(pthread_create(&r[i], NULL, reader, &s) == 0);
    pthread_join(w, NULL);
    for (int i = 0; i < 3; i++) pthread_join(r[i], NULL);
    check_equal_logs(&c, THREAD_ENTRIES);
    cluster_free(&c);
}

/* Thread-local last error: another thread's failure does not change ours. */
static void *fail_differently(void *arg) {
    (void)arg;
    omnipaxos_node *node = NULL;
    omnipaxos_node_from_hocon_str("pid = 1", 7, &node); /* peers missing */
    return NULL;
}

static void test_last_error_is_per_thread(void) {
    CHECK_RC(omnipaxos_tick(NULL), OMNIPAXOS_ERR_NULL_PARAMETER);
    char before[256];
    omnipaxos_last_error(before, sizeof before);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, fail_differently, NULL) == 0);
    pthread_join(th, NULL);
    CHECK(strcmp(before, last_err()) == 0);
    CHECK_ERR_HAS("`node`");
}

/* --------------------------------------------------------- reconfiguration ---- */

static int all_stopped(cluster *c) {
    for (int i = 0; i < c->count; i++) {
        bool stopped = false;
        omnipaxos_result rc = omnipaxos_is_stopped(c->n[i], &stopped);
        if (rc != OMNIPAXOS_OK) CHECK_RC(rc, OMNIPAXOS_OK);
        if (!stopped) return 0;
    }
    return 1;
}

static int run_until_stopped(cluster *c, int max_steps) {
    for (int t = 0; t < max_steps; t++) {
        if (all_stopped(c)) return 1;
        step(c);
    }
    return all_stopped(c);
}

/* `n` has decided the StopSign (id, nodes, metadata) at index `idx`. */
static void check_stopsign(omnipaxos_node *n, uint32_t id, const uint64_t *nodes, size_t n_nodes,
                           const char *meta, uint64_t idx) {
    bool found = false;
    uint32_t got_id = 0;
    uint64_t got_nodes[8];
    uint8_t got_meta[64];
    size_t got_n = 0, got_len = 0;
    CHECK_RC(omnipaxos_decided_stopsign(n, &found, &got_id, got_nodes, 8, &got_n, got_meta,
                                        sizeof got_meta, &got_len),
             OMNIPAXOS_OK);
    CHECK(found);
    CHECK(got_id == id);
    CHECK(got_n == n_nodes && memcmp(got_nodes, nodes, n_nodes * sizeof *nodes) == 0);
    CHECK(got_len == strlen(meta) && memcmp(got_meta, meta, got_len) == 0);
    CHECK(decided(n) == idx + 1);
    omnipaxos_entries *e = NULL;
    CHECK_RC(omnipaxos_read(n, idx, &e), OMNIPAXOS_OK);
    const uint8_t *data = NULL;
    size_t len = 0;
    omnipaxos_entry_kind kind = OMNIPAXOS_ENTRY_DECIDED;
    CHECK_RC(omnipaxos_entries_get(e, 0, &data, &len, &kind), OMNIPAXOS_OK);
    CHECK(kind == OMNIPAXOS_ENTRY_STOPSIGN);
    omnipaxos_entries_free(e);
}

/* Three nodes on persistent storage stop with a StopSign after ten entries; appends fail
 * with STOPPED; a node re-created from its storage still has it. */
static void test_reconfigure(void) {
    cluster c;
    memset(&c, 0, sizeof c);
    c.count = 3;
    const char *peers[3] = {"[2, 3]", "[1, 3]", "[1, 2]"};
    char extra[3][512];
    for (int i = 0; i < 3; i++) {
        snprintf(extra[i], sizeof extra[i],
                 "storage { type = persistent, path = \"%s/reconf%d\", sync = never }", tmpdir,
                 i + 1);
        c.pid[i] = (uint64_t)(i + 1);
        c.n[i] = node_new(1, c.pid[i], peers[i], extra[i]);
    }
    uint64_t leader = elect(&c);
    REQUIRE(leader != 0);
    omnipaxos_node *l = cluster_find(&c, leader);
    int fi = (int)(leader % 3); /* index of a follower */
    omnipaxos_node *f = c.n[fi];
    for (int i = 0; i < 10; i++) {
        char text[32];
        snprintf(text, sizeof text, "before-%d", i);
        append_text(&c, l, text);
    }
    const uint64_t next[3] = {4, 5, 6};
    const char *meta = "new configuration";
    const uint8_t *m = (const uint8_t *)meta;
    size_t mlen = strlen(meta);

    CHECK_RC(omnipaxos_reconfigure(f, 2, next, 3, m, mlen), OMNIPAXOS_ERR_NOT_LEADER);
    CHECK_ERR_HAS("leader");
    CHECK_RC(omnipaxos_reconfigure(l, 2, next, 0, m, mlen), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_RC(omnipaxos_reconfigure(l, 1, next, 3, m, mlen), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR_HAS("configuration id");
    const uint64_t twice[2] = {4, 4};
    CHECK_RC(omnipaxos_reconfigure(l, 2, twice, 2, m, mlen), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_RC(omnipaxos_reconfigure(l, 2, NULL, 3, m, mlen), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_reconfigure(NULL, 2, next, 3, m, mlen), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK(!all_stopped(&c));

    CHECK_RC(omnipaxos_reconfigure(l, 2, next, 3, m, mlen), OMNIPAXOS_OK);
    CHECK_RC(omnipaxos_append(l, (const uint8_t *)"after", 5), OMNIPAXOS_ERR_STOPPED);
    CHECK_RC(omnipaxos_reconfigure(l, 3, next, 3, m, mlen), OMNIPAXOS_ERR_STOPPED);
    REQUIRE(run_until_stopped(&c, 300));
    for (int i = 0; i < 3; i++) {
        check_stopsign(c.n[i], 2, next, 3, meta, 10);
        CHECK_RC(omnipaxos_append(c.n[i], (const uint8_t *)"after", 5), OMNIPAXOS_ERR_STOPPED);
        /* The ten entries before it are decided, in order. */
        omnipaxos_entries *e = NULL;
        CHECK_RC(omnipaxos_read_decided_suffix(c.n[i], 0, &e), OMNIPAXOS_OK);
        CHECK(omnipaxos_entries_count(e) == 10);
        for (size_t k = 0; k < omnipaxos_entries_count(e); k++) {
            const uint8_t *data = NULL;
            size_t len = 0;
            char want[32];
            snprintf(want, sizeof want, "before-%d", (int)k);
            CHECK_RC(omnipaxos_entries_get(e, k, &data, &len, NULL), OMNIPAXOS_OK);
            CHECK(len == strlen(want) && memcmp(data, want, len) == 0);
        }
        omnipaxos_entries_free(e);
    }

    /* Sizes only, then a buffer too small: the counts are the full ones. */
    bool found = false;
    uint32_t id = 0;
    size_t n_nodes = 0, meta_len = 0;
    CHECK_RC(omnipaxos_decided_stopsign(f, &found, &id, NULL, 0, &n_nodes, NULL, 0, &meta_len),
             OMNIPAXOS_OK);
    CHECK(found && id == 2 && n_nodes == 3 && meta_len == mlen);
    uint64_t two[2] = {0, 0};
    uint8_t four[4] = {0};
    CHECK_RC(omnipaxos_decided_stopsign(f, &found, &id, two, 2, &n_nodes, four, 4, &meta_len),
             OMNIPAXOS_OK);
    CHECK(two[0] == 4 && two[1] == 5 && n_nodes == 3);
    CHECK(memcmp(four, "new ", 4) == 0 && meta_len == mlen);
    CHECK_RC(omnipaxos_decided_stopsign(f, &found, &id, NULL, 2, &n_nodes, NULL, 0, &meta_len),
             OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_decided_stopsign(f, NULL, &id, NULL, 0, &n_nodes, NULL, 0, &meta_len),
             OMNIPAXOS_ERR_NULL_PARAMETER);

    /* A follower restarts from its storage: the StopSign is in its log at once, and it
     * learns again that it is decided. */
    omnipaxos_node_free(f);
    c.n[fi] = NULL;
    f = node_new(1, c.pid[fi], peers[fi], extra[fi]);
    c.n[fi] = f;
    CHECK_RC(omnipaxos_fail_recovery(f), OMNIPAXOS_OK);
    CHECK_RC(omnipaxos_append(f, (const uint8_t *)"after", 5), OMNIPAXOS_ERR_STOPPED);
    REQUIRE(run_until_stopped(&c, 300));
    check_stopsign(f, 2, next, 3, meta, 10);
    cluster_free(&c);
}

/* Leadership transfer and a priority set at run time. */
static void test_transfer_leadership(void) {
    cluster c;
    cluster_init(&c, 3, "");
    uint64_t leader = elect(&c);
    REQUIRE(leader != 0);
    omnipaxos_node *ln = cluster_find(&c, leader);
    uint64_t target = leader == 1 ? 2 : 1;
    omnipaxos_node *tn = cluster_find(&c, target);
    append_text(&c, ln, "before-transfer");
    REQUIRE(run_until_decided(&c, 1, 200));
    for (int t = 0; t < 20; t++) step(&c);

    CHECK_RC(omnipaxos_transfer_leadership(NULL, target), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_transfer_leadership(tn, leader), OMNIPAXOS_ERR_NOT_LEADER);
    CHECK_RC(omnipaxos_transfer_leadership(ln, 99), OMNIPAXOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR_HAS("not in this configuration");
    CHECK_RC(omnipaxos_transfer_leadership(ln, leader), OMNIPAXOS_OK); /* nothing to do */
    CHECK_RC(omnipaxos_set_leader_priority(NULL, 1), OMNIPAXOS_ERR_NULL_PARAMETER);
    CHECK_RC(omnipaxos_set_leader_priority(tn, 7), OMNIPAXOS_OK);
    for (int t = 0; t < 20; t++) step(&c);
    CHECK(agreed_leader(&c) == leader); /* a priority change deposes nobody */

    CHECK_RC(omnipaxos_transfer_leadership(ln, target), OMNIPAXOS_OK);
    int moved = 0;
    for (int t = 0; t < 50 && !moved; t++) {
        step(&c);
        moved = agreed_leader(&c) == target;
    }
    CHECK(moved);
    omnipaxos_ballot b;
    uint64_t pid = 0;
    CHECK_RC(omnipaxos_leader(ln, &pid, &b), OMNIPAXOS_OK);
    CHECK(pid == target && b.pid == target && b.priority == 7);
    append_text(&c, ln, "after-transfer");
    CHECK(run_until_decided(&c, 2, 200));
    check_equal_logs(&c, 2);
    cluster_free(&c);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/omnipaxos-c-test-XXXXXX");
    REQUIRE(mkdtemp(tmpdir) != NULL);
    /* Relative paths a test creates by mistake land in the temporary directory. */
    REQUIRE(chdir(tmpdir) == 0);

    test_version();
    test_strerror();
    test_last_error();
    test_config_errors();
    test_log_file();
    test_persistent_storage();
    test_hardening();
    test_null_parameters();
    test_buffer_full();
    test_batch_and_contiguous();
    test_bad_messages();
    test_cluster();
    test_reconfigure();
    test_transfer_leadership();
    test_threads();
    test_last_error_is_per_thread();

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    REQUIRE(chdir("/") == 0);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    summary();
    return atomic_load(&failed) == 0 ? 0 : 1;
}
