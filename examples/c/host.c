/*
 * A C program hosting a Wire node through libwire:
 *   host DATA_DIR
 * starts a single-node cluster, writes and reads keys, registers a C transform, runs a
 * file -> C transform -> file pipeline, checks its output and dead letters, runs a running
 * total per key through a C keyed function (state as JSON in and out), tries bad input,
 * and shuts down. Exits 0 when every check held; prints what failed otherwise.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"

static int failures = 0;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (!(cond)) {                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                       \
            fprintf(stderr, "\n");                              \
            failures++;                                         \
        }                                                       \
    } while (0)

#define OK(call)                                                                        \
    do {                                                                                \
        wire_status s_ = (call);                                                        \
        if (s_ != WIRE_OK) {                                                            \
            fprintf(stderr, "FAIL %s:%d: %s -> %d: %s\n", __FILE__, __LINE__, #call, s_, \
                    wire_last_error() ? wire_last_error() : "(no message)");            \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* The transform's shared state: calls made (from any partition thread) and whether the
 * node freed it. */
struct counters {
    atomic_long calls;
    atomic_int freed;
};

/* {"n": N} -> {"n": N, "doubled": 2N} for even N; odd N are dropped; 13 is rejected. */
static wire_status double_evens(void *user_data, const wire_batch *in, wire_batch_builder *out) {
    struct counters *c = user_data;
    atomic_fetch_add(&c->calls, 1);
    size_t len = 0;
    if (wire_batch_len(in, &len) != WIRE_OK) return WIRE_ERR_INTERNAL;
    for (size_t i = 0; i < len; i++) {
        const char *json;
        size_t json_len;
        if (wire_batch_value(in, i, &json, &json_len) != WIRE_OK) return WIRE_ERR_INTERNAL;
        long n;
        if (sscanf(json, "{\"n\":%ld", &n) != 1) {
            wire_batch_builder_reject(out, i, "no number n");
            continue;
        }
        if (n == 13) {
            wire_batch_builder_reject(out, i, "13 is unlucky");
        } else if (n % 2 == 0) {
            char buf[96];
            int w = snprintf(buf, sizeof buf, "{\"n\":%ld,\"doubled\":%ld}", n, 2 * n);
            if (wire_batch_builder_emit(out, i, buf, (size_t)w) != WIRE_OK) return WIRE_ERR_INTERNAL;
        }
    }
    return WIRE_OK;
}

/* Fails every batch: its records go to the dead-letter sink with this message. */
static wire_status always_fails(void *user_data, const wire_batch *in, wire_batch_builder *out) {
    (void)user_data;
    (void)in;
    wire_batch_builder_fail(out, "the C side gave up");
    return WIRE_ERR_INTERNAL;
}

/* A keyed function: a running count and sum of n per key. The state is JSON in and out
 * ({"count": C, "sum": S}, the step's init for a new key); n = 50 is refused (a dead
 * letter, the key's state unchanged). */
static wire_status running_total(void *user_data, const uint8_t *key, size_t key_len, const char *state,
                                 size_t state_len, const char *value, size_t value_len,
                                 wire_keyed_result *result) {
    (void)value_len;
    struct counters *c = user_data;
    atomic_fetch_add(&c->calls, 1);
    long count = 0, sum = 0, n;
    if (state_len > 0 && sscanf(state, "{\"count\":%ld,\"sum\":%ld}", &count, &sum) != 2) {
        wire_keyed_result_fail(result, "unreadable state");
        return WIRE_ERR_INVALID_ARGUMENT;
    }
    if (sscanf(value, "{\"n\":%ld", &n) != 1 || n == 50) {
        wire_keyed_result_fail(result, "no n, or n is 50");
        return WIRE_ERR_INVALID_ARGUMENT;
    }
    count += 1;
    sum += n;
    char buf[160];
    int w = snprintf(buf, sizeof buf, "{\"count\":%ld,\"sum\":%ld}", count, sum);
    if (wire_keyed_result_set_state(result, buf, (size_t)w) != WIRE_OK) return WIRE_ERR_INTERNAL;
    w = snprintf(buf, sizeof buf, "{\"key\":%.*s,\"count\":%ld,\"sum\":%ld}", (int)key_len,
                 (const char *)key, count, sum);
    return wire_keyed_result_emit(result, buf, (size_t)w);
}

static void free_counters(void *user_data) {
    struct counters *c = user_data;
    atomic_store(&c->freed, 1);
}

/* Every line of the committed part files under dir, concatenated. */
static char *read_parts(const char *dir, int *lines) {
    size_t cap = 1 << 20, used = 0;
    char *all = calloc(cap, 1);
    *lines = 0;
    DIR *d = opendir(dir);
    if (!d) return all;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "part-", 5) != 0) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        char line[512];
        while (fgets(line, sizeof line, f)) {
            size_t l = strlen(line);
            if (used + l + 1 < cap) {
                memcpy(all + used, line, l);
                used += l;
            }
            (*lines)++;
        }
        fclose(f);
    }
    closedir(d);
    return all;
}

static void wait_finished(wire_node *node, const char *name) {
    for (int i = 0; i < 600; i++) {
        char *status = NULL;
        OK(wire_pipeline_status(node, name, &status));
        int done = strstr(status, "\"state\":\"finished\"") != NULL;
        int failed = strstr(status, "\"state\":\"failed\"") != NULL;
        if (failed) fprintf(stderr, "pipeline %s failed: %s\n", name, status);
        wire_string_free(status);
        if (done || failed) return;
        usleep(100 * 1000);
    }
    CHECK(0, "pipeline %s did not finish", name);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    const char *root = argv[1];
    if (strlen(root) > 900) {
        fprintf(stderr, "DATA_DIR is too long\n");
        return 2;
    }
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", WIRE_VERSION_MAJOR, WIRE_VERSION_MINOR, WIRE_VERSION_PATCH);
    CHECK(strcmp(version, wire_version()) == 0, "header %s, library %s", version, wire_version());

    char config[2048];
    snprintf(config, sizeof config,
             "node_id = 1\nhttp_addr = \"127.0.0.1:0\"\nraft_addr = \"127.0.0.1:0\"\n"
             "data_dir = \"%s/node\"\nbootstrap = true\n",
             root);
    wire_node *node = NULL;
    OK(wire_node_start(config, &node));

    /* Key-value. */
    const uint8_t hello[] = {'h', 'e', 'l', 'l', 'o', 0, 0xff};
    OK(wire_kv_put(node, "greeting", hello, sizeof hello));
    uint8_t *value = NULL;
    size_t value_len = 0;
    OK(wire_kv_get(node, "greeting", &value, &value_len));
    CHECK(value_len == sizeof hello && memcmp(value, hello, sizeof hello) == 0, "kv round trip");
    wire_bytes_free(value, value_len);
    OK(wire_kv_put(node, "greeting2", (const uint8_t *)"hi", 2));
    char *list = NULL;
    OK(wire_kv_list(node, "greeting", NULL, 10, &list));
    CHECK(strstr(list, "\"key\":\"greeting2\",\"value\":\"hi\"") != NULL, "list: %s", list);
    wire_string_free(list);
    bool succeeded = false;
    OK(wire_kv_txn(node,
                   "{\"compare\": [{\"key\": \"greeting2\", \"op\": \"equals\", \"value\": \"hi\"}],"
                   " \"success\": [{\"op\": \"put\", \"key\": \"txn\", \"value\": \"done\"}]}",
                   &succeeded));
    CHECK(succeeded, "txn compare held");
    bool existed = false;
    OK(wire_kv_delete(node, "greeting2", &existed));
    CHECK(existed, "delete said the key existed");
    CHECK(wire_kv_get(node, "greeting2", &value, &value_len) == WIRE_ERR_NOT_FOUND, "deleted key");

    /* A C transform in a file -> transform -> file pipeline. */
    struct counters counters = {0, 0};
    OK(wire_node_register_transform(node, "double_evens", double_evens, &counters, free_counters));
    OK(wire_node_register_transform(node, "always_fails", always_fails, NULL, NULL));
    char input[1024];
    snprintf(input, sizeof input, "%s/numbers.jsonl", root);
    FILE *f = fopen(input, "w");
    for (int n = 0; n < 100; n++) fprintf(f, "{\"n\":%d}\n", n);
    fprintf(f, "not json\n");
    fclose(f);

    char spec[16384];
    snprintf(spec, sizeof spec,
             "{\"name\": \"evens\", \"checkpoint_interval\": \"200ms\","
             " \"sources\": [{\"type\": \"file\", \"config\": {\"path\": \"%s\"}}],"
             " \"transforms\": [{\"type\": \"double_evens\"}],"
             " \"sinks\": [{\"type\": \"file\", \"config\": {\"path\": \"%s/out\"}}],"
             " \"dead_letter\": {\"type\": \"file\", \"config\": {\"path\": \"%s/dead\"}}}",
             input, root, root);
    char *applied = NULL;
    OK(wire_pipeline_apply(node, spec, &applied));
    CHECK(strstr(applied, "\"created\":true") != NULL, "applied: %s", applied);
    wire_string_free(applied);
    wait_finished(node, "evens");

    char dir[1024];
    int lines = 0;
    snprintf(dir, sizeof dir, "%s/out", root);
    char *out = read_parts(dir, &lines);
    CHECK(lines == 50, "50 even numbers out, got %d", lines);
    CHECK(strstr(out, "{\"n\":98,\"doubled\":196}") != NULL, "98 doubled");
    CHECK(strstr(out, "\"n\":13") == NULL && strstr(out, "\"n\":7,") == NULL, "odd numbers dropped");
    free(out);
    snprintf(dir, sizeof dir, "%s/dead", root);
    char *dead = read_parts(dir, &lines);
    CHECK(lines == 2, "2 dead letters (13, not json), got %d", lines);
    CHECK(strstr(dead, "13 is unlucky") != NULL, "rejection reason: %s", dead);
    free(dead);
    CHECK(atomic_load(&counters.calls) >= 1, "the transform was called");

    /* A C keyed function: a running total per key, its state checkpointed by the engine. */
    struct counters totals = {0, 0};
    OK(wire_node_register_keyed(node, "running_total", running_total, &totals, free_counters));
    snprintf(spec, sizeof spec,
             "{\"name\": \"totals\", \"checkpoint_interval\": \"200ms\","
             " \"sources\": [{\"type\": \"file\", \"config\": {\"path\": \"%s\"}}],"
             " \"transforms\": [{\"type\": \"key_by\", \"config\": {\"key\": \".n %% 3\"}},"
             "   {\"type\": \"reduce\", \"config\": {\"function\": \"running_total\","
             "     \"init\": {\"count\": 0, \"sum\": 0}}}],"
             " \"sinks\": [{\"type\": \"file\", \"config\": {\"path\": \"%s/totals\"}}],"
             " \"dead_letter\": {\"type\": \"file\", \"config\": {\"path\": \"%s/totals-dead\"}}}",
             input, root, root);
    OK(wire_pipeline_apply(node, spec, NULL));
    wait_finished(node, "totals");
    snprintf(dir, sizeof dir, "%s/totals", root);
    out = read_parts(dir, &lines);
    CHECK(lines == 99, "one running total per record but n = 50, got %d", lines);
    /* Key 0: 0, 3, ..., 99; key 1: 1, 4, ..., 97; key 2: 2, 5, ..., 98 without 50. */
    CHECK(strstr(out, "{\"key\":0,\"count\":34,\"sum\":1683}") != NULL, "key 0's total: %s", out);
    CHECK(strstr(out, "{\"key\":1,\"count\":33,\"sum\":1617}") != NULL, "key 1's total");
    CHECK(strstr(out, "{\"key\":2,\"count\":32,\"sum\":1600}") != NULL, "key 2's total");
    free(out);
    snprintf(dir, sizeof dir, "%s/totals-dead", root);
    dead = read_parts(dir, &lines);
    CHECK(lines == 2 && strstr(dead, "n is 50") != NULL, "n = 50 and not json dead: %s", dead);
    free(dead);
    CHECK(atomic_load(&totals.calls) == 100, "called once per keyed record, got %ld", atomic_load(&totals.calls));
    CHECK(wire_node_register_keyed(node, "key_by", running_total, NULL, NULL) == WIRE_ERR_INVALID_ARGUMENT,
          "a built-in name is refused");

    /* A transform that returns an error: its records are dead letters with the message. */
    snprintf(spec, sizeof spec,
             "{\"name\": \"failing\", \"sources\": [{\"type\": \"generator\", \"config\": {\"count\": 5}}],"
             " \"transforms\": [{\"type\": \"always_fails\"}],"
             " \"sinks\": [{\"type\": \"file\", \"config\": {\"path\": \"%s/failing-out\"}}],"
             " \"dead_letter\": {\"type\": \"file\", \"config\": {\"path\": \"%s/failing-dead\"}}}",
             root, root);
    OK(wire_pipeline_apply(node, spec, NULL));
    wait_finished(node, "failing");
    snprintf(dir, sizeof dir, "%s/failing-dead", root);
    dead = read_parts(dir, &lines);
    CHECK(lines == 5 && strstr(dead, "the C side gave up") != NULL, "callback error -> dead letters: %s", dead);
    free(dead);

    /* Bad input gives a status and a message, never a crash. */
    CHECK(wire_kv_put(NULL, "k", hello, 1) == WIRE_ERR_INVALID_HANDLE, "NULL handle");
    CHECK(wire_last_error() != NULL, "a message for the NULL handle");
    CHECK(wire_kv_put(node, "\xff\xfe", hello, 1) == WIRE_ERR_INVALID_ARGUMENT, "invalid UTF-8 key");
    CHECK(wire_kv_put(node, "k", NULL, 3) == WIRE_ERR_NULL_ARGUMENT, "NULL value with a length");
    CHECK(wire_pipeline_apply(node, "{\"name\": \"bad\", \"sources\": []}", NULL) == WIRE_ERR_INVALID_SPEC,
          "malformed spec");
    CHECK(strstr(wire_last_error(), "sinks") != NULL, "the spec error names the place: %s", wire_last_error());
    wire_node *other = NULL;
    CHECK(wire_node_start("node_id = \"one\"", &other) == WIRE_ERR_INVALID_CONFIG, "malformed config");
    CHECK(other == NULL, "no handle written on failure");
    CHECK(wire_node_register_transform(node, "jq", double_evens, &counters, NULL) == WIRE_ERR_INVALID_ARGUMENT,
          "a built-in name is refused");

    /* A node for a network: users (a bearer token's SHA-256 here) and a cluster secret in
       the same config; a config with problems names every one of them. */
    char secured_config[2048];
    snprintf(secured_config, sizeof secured_config,
             "node_id = 2\nhttp_addr = \"127.0.0.1:0\"\nraft_addr = \"127.0.0.1:0\"\n"
             "data_dir = \"%s/secured\"\nbootstrap = true\n"
             "cluster_secret = \"c-host-cluster-secret\"\n"
             "[[users]]\nname = \"ops\"\n"
             "token_sha256 = \"9a61fd9d066bb12e20824b8f7be87a83fd77c5b232204a9ace6ec1deadbefed8\"\n"
             "permissions = [\"all\"]\n",
             root);
    wire_node *secured = NULL;
    OK(wire_node_start(secured_config, &secured));
    OK(wire_kv_put(secured, "embedded", (const uint8_t *)"calls need no user", 18));
    OK(wire_node_shutdown(secured));
    OK(wire_node_free(secured));
    snprintf(secured_config, sizeof secured_config,
             "data_dir = \"%s/bad\"\nbootstrap = true\n"
             "[[users]]\nname = \"ops\"\ntoken_sha256 = \"00\"\npermissions = [\"raed\"]\n",
             root);
    CHECK(wire_node_start(secured_config, &other) == WIRE_ERR_INVALID_CONFIG, "bad users");
    CHECK(strstr(wire_last_error(), "token_sha256") != NULL && strstr(wire_last_error(), "raed") != NULL &&
              strstr(wire_last_error(), "cluster_secret") != NULL,
          "every problem named: %s", wire_last_error());

    /* Shutdown, use after shutdown, free, double free. */
    OK(wire_node_shutdown(node));
    OK(wire_node_shutdown(node));
    CHECK(wire_kv_get(node, "greeting", &value, &value_len) == WIRE_ERR_SHUTDOWN, "use after shutdown");
    OK(wire_node_free(node));
    CHECK(atomic_load(&counters.freed) == 1, "user_data freed with the node");
    CHECK(atomic_load(&totals.freed) == 1, "the keyed function's user_data freed with the node");
    CHECK(wire_node_free(node) == WIRE_ERR_INVALID_HANDLE, "double free detected");
    CHECK(wire_kv_get(node, "greeting", &value, &value_len) == WIRE_ERR_INVALID_HANDLE, "use after free");

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("c host: ok (libwire %s)\n", wire_version());
    return 0;
}
