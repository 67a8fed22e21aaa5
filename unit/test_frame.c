/* Unit tests of h2c_frame: the bytes of messages and protocol lines in both
 * formats, what happens when the room is short or the message left the
 * ring, and where new and resuming streams start. */
#include <stdlib.h>
#include <string.h>

#include "h2c_frame.h"
#include "unit.h"

#define CAP 4 /* messages the test ring holds */

static h2c_ring_t make_ring(apr_pool_t *p) {
    apr_size_t size = h2c_ring_size(CAP, 256);
    void *mem = apr_pcalloc(p, size);
    h2c_ring_t ring;

    h2c_ring_init(&ring, mem, size, CAP, 256);
    return ring;
}

static void put(h2c_ring_t *ring, const char *line) {
    uint64_t id;
    char *buf;

    h2c_ring_reserve(ring, &id, &buf);
    memcpy(buf, line, strlen(line));
    h2c_ring_commit(ring, id, 1000, (uint32_t)strlen(line));
}

static void test_message(apr_pool_t *p) {
    h2c_ring_t ring = make_ring(p);
    char buf[128];
    apr_size_t n = 0;

    CHECK(h2c_frame_message(&ring, 1, 0, buf, sizeof(buf), &n) == APR_INCOMPLETE);
    put(&ring, "{\"id\":1}");
    CHECK(h2c_frame_message(&ring, 1, 0, buf, sizeof(buf), &n) == APR_SUCCESS);
    CHECK(n == 9 && !memcmp(buf, "{\"id\":1}\n", 9));
    CHECK(h2c_frame_message(&ring, 1, 1, buf, sizeof(buf), &n) == APR_SUCCESS);
    CHECK(n == 22 && !memcmp(buf, "id: 1\ndata: {\"id\":1}\n\n", 22));
    /* too little room: nothing written, the size it needs */
    memset(buf, '#', sizeof(buf));
    CHECK(h2c_frame_message(&ring, 1, 1, buf, 21, &n) == APR_ENOSPC);
    CHECK(n == 22 && buf[0] == '#');
    CHECK(h2c_frame_message(&ring, 1, 0, buf, 9, &n) == APR_SUCCESS && n == 9);
    CHECK(h2c_frame_message_size(1, 8, 0) == 9 && h2c_frame_message_size(1, 8, 1) == 22);
    CHECK(h2c_frame_message_size(12345, 8, 1) == 26);
}

static void test_evicted_and_skip(apr_pool_t *p) {
    h2c_ring_t ring = make_ring(p);
    char buf[128];
    apr_size_t n;
    int i;

    for (i = 0; i < CAP + 2; i++) {
        put(&ring, "{}");
    }
    /* ids 1 and 2 left a ring of 4 */
    CHECK(h2c_frame_message(&ring, 1, 0, buf, sizeof(buf), &n) == APR_NOTFOUND);
    CHECK(h2c_frame_skip(&ring, 1) == 3);
    CHECK(h2c_frame_skip(&ring, 3) == 4); /* not evicted: one step */
}

static void test_event(apr_pool_t *p) {
    char buf[64];

    (void)p;
    CHECK(h2c_frame_event(0, "gap", "{\"type\":\"gap\"}", buf, sizeof(buf)) == 15);
    CHECK(!strcmp(buf, "{\"type\":\"gap\"}\n"));
    CHECK(h2c_frame_event(1, "gap", "{}", buf, sizeof(buf)) == 21);
    CHECK(!strcmp(buf, "event: gap\ndata: {}\n\n"));
    CHECK(h2c_frame_event(1, "heartbeat", "{}", buf, sizeof(buf)) == 13);
    CHECK(!strcmp(buf, ": heartbeat\n\n"));
    /* the length is known without a buffer */
    CHECK(h2c_frame_event(1, "gap", "{}", NULL, 0) == 21);
    /* the reconnect hint: SSE's own retry field, NDJSON a line */
    CHECK(h2c_frame_reconnect(1, 2345, NULL, buf, sizeof(buf)) == 13);
    CHECK(!strcmp(buf, "retry: 2345\n\n"));
    CHECK(h2c_frame_reconnect(1, 0, NULL, NULL, 0) == 10);
    CHECK(h2c_frame_reconnect(0, 7, "{\"type\":\"reconnect\",\"retry\":7}", buf,
                              sizeof(buf)) == 31);
    CHECK(!strcmp(buf, "{\"type\":\"reconnect\",\"retry\":7}\n"));
}

static void test_start(apr_pool_t *p) {
    h2c_ring_t ring = make_ring(p);
    int reset, i;

    /* empty ring: the first message to come */
    CHECK(h2c_frame_start(&ring, 0, 0, 2, &reset) == 1 && !reset);
    for (i = 0; i < 6; i++) {
        put(&ring, "{}"); /* ids 1..6, the ring holds 3..6 */
    }
    CHECK(h2c_frame_start(&ring, 0, 0, 2, &reset) == 5 && !reset);  /* snapshot 2 */
    CHECK(h2c_frame_start(&ring, 0, 0, 50, &reset) == 3 && !reset); /* all held */
    CHECK(h2c_frame_start(&ring, 0, 0, 0, &reset) == 7 && !reset);  /* none */
    CHECK(h2c_frame_start(&ring, 1, 4, 2, &reset) == 5 && !reset);  /* resume */
    CHECK(h2c_frame_start(&ring, 1, 1, 2, &reset) == 2 && !reset);  /* evicted: gap */
    CHECK(h2c_frame_start(&ring, 1, 6, 2, &reset) == 7 && !reset);  /* up to date */
    CHECK(h2c_frame_start(&ring, 1, 99, 2, &reset) == 5 && reset);  /* future */
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_message, pool);
    RUN(test_evicted_and_skip, pool);
    RUN(test_event, pool);
    RUN(test_start, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_frame");
}
