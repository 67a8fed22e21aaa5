/* libFuzzer target: the direct loop's request path. HTTP/2 bytes from a
 * client go into one connection of a real h2c_direct (nghttp2 session, our
 * callbacks, the request policy, subscribers reading real rooms, POSTs
 * published through the shm store by the loop's publisher thread), driven
 * by hand without the loop thread (h2c_direct_conn_*).
 *
 * Input: byte 0 holds the flags below; the rest is what the client sends
 * after its preface and an empty SETTINGS frame (both added here, so the
 * fuzzer works on frames), cut into pieces at each 0xFF 0x00 pair (the
 * pair itself is dropped): after each piece the loop's other work runs
 * (answers of the publisher, delivery to held streams, the once-a-second
 * look with the clock moved on).
 *   bit 0: a message is published between pieces (held streams get it)
 *   bit 1: the answers are not read (the socket fills: the slow-reader
 *          path, unsent bytes kept for the connection)
 *   bit 2: the clock moves 3 s per piece (heartbeats, stuck streams,
 *          idle and GOAWAY timeouts), else 10 ms
 *
 * Oracles: ASan/UBSan (memory), the subscriber count back to 0 and the
 * connection count back to 0 when the connection ends (nothing leaks
 * a slot), the budget: a connection never gets more than it may. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_global_mutex.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "h2c_direct_int.h"
#include "h2c_store.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_direct: check failed: %s (%s:%d)\n", #c, __FILE__,     \
                    __LINE__);                                                           \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MSG "\"user\":\"f\",\"text\":\"fuzz\""

static apr_pool_t *pool;
static h2c_seg_t seg;
static h2c_store_t store;
static h2c_direct_t *d;
static h2c_direct_site_t site;
static uint32_t slot;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* At exit: the loop, its publisher thread and nghttp2's tables go with
 * the pool, so LeakSanitizer reports only what an input leaked. */
static void finish(void) {
    apr_pool_destroy(pool);
    apr_terminate();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    apr_size_t size = h2c_seg_size(2, 8, 600);
    apr_array_header_t *origins;
    apr_global_mutex_t *lock;
    h2c_direct_env_t env;
    uint64_t id;
    int64_t t;
    int i;

    (void)argc, (void)argv;
    CHECK(apr_initialize() == APR_SUCCESS && apr_pool_create(&pool, NULL) == APR_SUCCESS);
    CHECK(h2c_seg_init(&seg, apr_pcalloc(pool, size), size, 2, 8, 600, 0) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &slot) == APR_SUCCESS);
    CHECK(apr_global_mutex_create(&lock, NULL, APR_LOCK_DEFAULT, pool) == APR_SUCCESS);
    h2c_store_init(&store, &h2c_store_shm_ops, &seg, lock, NULL);
    for (i = 0; i < 10; i++) { /* the room rolls over: resumes find gaps */
        CHECK(h2c_store_publish(&store, "", MSG, strlen(MSG), &id, &t) == APR_SUCCESS);
    }
    origins = apr_array_make(pool, 1, sizeof(const char *));
    APR_ARRAY_PUSH(origins, const char *) = "https://chat.example";
    site.path = "/msgs";
    site.conf.snapshot = 3;
    site.conf.max_bytes = 256;
    site.conf.heartbeat_s = 2;
    site.conf.rate_interval_ms = 0;
    site.conf.origins = origins;
    /* small limits, so the fuzzer reaches them */
    site.limits = (h2c_header_limits_t){20, 300, 200, 1024};
    site.timeout_us = 5000000;
    memset(&env, 0, sizeof(env));
    env.seg = &seg;
    env.store = &store;
    env.child_slot = slot;
    env.limits.max_subscribers = 4;
    env.limits.max_per_address = 2; /* the fuzzer also reaches this refusal */
    CHECK(h2c_direct_create(&d, pool, &env) == APR_SUCCESS);
    atexit(finish);
    return 0;
}

static void drain(int fd) {
    char sink[16384];

    while (read(fd, sink, sizeof(sink)) > 0) {
    }
}

/* One piece of the input into the connection; 0 once it closed. */
static int piece(conn_t *c, int peer, const uint8_t *p, size_t n, int flags) {
    uint64_t id;
    int64_t t;
    int open = h2c_direct_conn_input(c, p, n);

    if (flags & 1) {
        CHECK(h2c_store_publish(&store, "", MSG, strlen(MSG), &id, &t) == APR_SUCCESS);
    }
    h2c_direct_settle(d, (flags & 4) ? 3000000 : 10000);
    if (!(flags & 2)) {
        drain(peer);
    }
    return open && !c->dead;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const uint8_t start[] = PREFACE "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    uint32_t conns, held;
    int sv[2], flags, open;
    size_t i, from;
    conn_t *c;

    if (size < 1) {
        return 0;
    }
    flags = data[0];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    if (!(c = h2c_direct_conn_open(d, sv[0], &site))) {
        close(sv[1]);
        return 0;
    }
    open = h2c_direct_conn_input(c, start, sizeof(start) - 1);
    for (from = 1, i = 1; open && i <= size; i++) {
        if (i == size || (i + 1 < size && data[i] == 0xFF && data[i + 1] == 0x00)) {
            open = piece(c, sv[1], data + from, i - from, flags);
            from = ++i + 1;
        }
    }
    h2c_direct_conn_end(d, c);
    close(sv[1]);
    h2c_seg_direct_totals(&seg, &conns, &held);
    CHECK(conns == 0 && held == 0);
    CHECK(h2c_seg_sub_total(&seg) == 0);
    return 0;
}
