/* Unit tests of h2c_frame: the bytes of messages and protocol lines in both
 * formats, and what happens when the buffer is short or the message left
 * its room. */
#include <stdlib.h>
#include <string.h>

#include "h2c_frame.h"
#include "unit.h"

static h2c_rooms_t *make_rooms(apr_pool_t *p) {
    apr_size_t size = h2c_rooms_size(2, 1, 16 * 1024);
    h2c_rooms_t *rs = apr_pcalloc(p, sizeof(*rs));

    h2c_rooms_init(rs, apr_pcalloc(p, size), size, 2, 1, 16 * 1024, 4, 256);
    return rs;
}

static void put(h2c_rooms_t *rs, const char *line) {
    h2c_rooms_append(rs, H2C_ROOMS_DEFAULT, H2C_ENTRY_MESSAGE, h2c_rooms_next_id(rs),
                     1000, line, (uint32_t)strlen(line));
}

static void test_message(apr_pool_t *p) {
    h2c_rooms_t *rs = make_rooms(p);
    h2c_rooms_msg_t m;
    char buf[128];
    apr_size_t n = 0;
    uint32_t us = 0;

    put(rs, "{\"id\":1}");
    CHECK(h2c_rooms_tail(rs, H2C_ROOMS_DEFAULT, 1, &m) == APR_SUCCESS);
    CHECK(h2c_frame_message(rs, &m, 0, buf, sizeof(buf), &n, &us) == APR_SUCCESS);
    CHECK(n == 9 && !memcmp(buf, "{\"id\":1}\n", 9) && us != 0);
    CHECK(h2c_frame_message(rs, &m, 1, buf, sizeof(buf), &n, &us) == APR_SUCCESS);
    CHECK(n == 22 && !memcmp(buf, "id: 1\ndata: {\"id\":1}\n\n", 22));
    /* too little room: nothing written, the size it needs */
    memset(buf, '#', sizeof(buf));
    CHECK(h2c_frame_message(rs, &m, 1, buf, 21, &n, &us) == APR_ENOSPC);
    CHECK(n == 22 && buf[0] == '#');
    CHECK(h2c_frame_message(rs, &m, 0, buf, 9, &n, &us) == APR_SUCCESS && n == 9);
    CHECK(h2c_frame_message_size(&m, 0) == 9 && h2c_frame_message_size(&m, 1) == 22);
    m.id = 12345;
    CHECK(h2c_frame_message_size(&m, 1) == 26);
}

/* Moderation entries: SSE names them (event: delete / clear) and keeps
 * their id: line; NDJSON is the line as stored. */
static void test_moderation(apr_pool_t *p) {
    static const char del[] = "{\"type\":\"delete\",\"id\":1}";
    static const char want[] =
        "event: delete\nid: 2\ndata: {\"type\":\"delete\",\"id\":1}\n\n";
    h2c_rooms_t *rs = make_rooms(p);
    h2c_rooms_msg_t m;
    char buf[128];
    apr_size_t n = 0;
    uint32_t us = 0;

    put(rs, "{}");
    h2c_rooms_append(rs, H2C_ROOMS_DEFAULT, H2C_ENTRY_DELETE, 2, 1000, del,
                     (uint32_t)strlen(del));
    h2c_rooms_append(rs, H2C_ROOMS_DEFAULT, H2C_ENTRY_CLEAR, 3, 1000, "{}", 2);
    CHECK(h2c_rooms_tail(rs, H2C_ROOMS_DEFAULT, 2, &m) == APR_SUCCESS && m.id == 2 &&
          m.kind == H2C_ENTRY_DELETE);
    CHECK(h2c_frame_message(rs, &m, 1, buf, sizeof(buf), &n, &us) == APR_SUCCESS);
    CHECK(n == sizeof(want) - 1 && !memcmp(buf, want, n));
    CHECK(h2c_frame_message_size(&m, 1) == n);
    CHECK(h2c_frame_message(rs, &m, 0, buf, sizeof(buf), &n, &us) == APR_SUCCESS);
    CHECK(n == strlen(del) + 1 && !memcmp(buf, del, n - 1));
    CHECK(h2c_rooms_tail(rs, H2C_ROOMS_DEFAULT, 1, &m) == APR_SUCCESS && m.id == 3 &&
          m.kind == H2C_ENTRY_CLEAR);
    CHECK(h2c_frame_message(rs, &m, 1, buf, sizeof(buf), &n, &us) == APR_SUCCESS);
    CHECK(n == 29 && !memcmp(buf, "event: clear\nid: 3\ndata: {}\n\n", 29));
}

/* A message that left its room while a stream held it: NOTFOUND. */
static void test_evicted(apr_pool_t *p) {
    h2c_rooms_t *rs = make_rooms(p);
    h2c_rooms_msg_t m;
    char buf[128];
    apr_size_t n;
    uint32_t us;
    int i;

    put(rs, "{}");
    CHECK(h2c_rooms_tail(rs, H2C_ROOMS_DEFAULT, 1, &m) == APR_SUCCESS);
    for (i = 0; i < 4; i++) {
        put(rs, "{}"); /* a history of 4: 1 leaves */
    }
    CHECK(h2c_frame_message(rs, &m, 0, buf, sizeof(buf), &n, &us) == APR_NOTFOUND);
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

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_message, pool);
    RUN(test_evicted, pool);
    RUN(test_moderation, pool);
    RUN(test_event, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_frame");
}
