/* Unit tests of h2c_ring: layout, append/read, eviction, torn slots. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h2c_ring.h"
#include "unit.h"

static void append(h2c_ring_t *ring, const char *text, uint64_t *id) {
    char *buf;

    h2c_ring_reserve(ring, id, &buf);
    memcpy(buf, text, strlen(text));
    h2c_ring_commit(ring, *id, (int64_t)*id * 10, (uint32_t)strlen(text));
}

static void test_empty(apr_pool_t *p) {
    h2c_ring_t ring, view;
    apr_size_t size = h2c_ring_size(4, 32);
    void *mem = apr_pcalloc(p, size);
    char buf[64];
    uint32_t len;

    CHECK(h2c_ring_init(&ring, mem, size - 1, 4, 32) == APR_EINVAL);
    CHECK(h2c_ring_init(&ring, mem, size, 0, 32) == APR_EINVAL);
    CHECK(h2c_ring_init(&ring, mem, size, 4, 32) == APR_SUCCESS);
    CHECK(h2c_ring_attach(&view, mem, size) == APR_SUCCESS);
    CHECK(h2c_ring_attach(&view, mem, size - 8) == APR_EGENERAL);
    CHECK(h2c_ring_last_id(&view) == 0);
    CHECK(h2c_ring_first_id(&view) == 1);
    CHECK(h2c_ring_count(&view) == 0);
    CHECK(h2c_ring_capacity(&view) == 4);
    CHECK(h2c_ring_max_len(&view) >= 32);
    CHECK(h2c_ring_read(&view, 1, buf, sizeof(buf), &len, NULL) == APR_INCOMPLETE);
    CHECK(h2c_ring_read(&view, 0, buf, sizeof(buf), &len, NULL) == APR_INCOMPLETE);
    memset(mem, 0xAB, 4); /* wrong magic */
    CHECK(h2c_ring_attach(&view, mem, size) == APR_EGENERAL);
}

static void test_append_read(apr_pool_t *p) {
    h2c_ring_t ring;
    apr_size_t size = h2c_ring_size(4, 32);
    void *mem = apr_pcalloc(p, size);
    char buf[64];
    uint32_t len, seq0;
    uint64_t id;
    int64_t t;

    h2c_ring_init(&ring, mem, size, 4, 32);
    seq0 = *h2c_ring_seq(&ring);
    append(&ring, "hello", &id);
    CHECK(id == 1);
    CHECK(*h2c_ring_seq(&ring) != seq0);
    append(&ring, "world!", &id);
    CHECK(id == 2);
    CHECK(h2c_ring_read(&ring, 1, buf, sizeof(buf), &len, &t) == APR_SUCCESS);
    CHECK(len == 5 && !memcmp(buf, "hello", 5) && t == 10);
    CHECK(h2c_ring_peek_len(&ring, 2, &len) == APR_SUCCESS && len == 6);
    CHECK(h2c_ring_read(&ring, 2, buf, 3, &len, NULL) == APR_ENOSPC);
    CHECK(h2c_ring_read(&ring, 3, buf, sizeof(buf), &len, NULL) == APR_INCOMPLETE);
    CHECK(h2c_ring_count(&ring) == 2);
}

/* Each commit is stamped on the monotonic clock (delivery latency); an
 * evicted or unpublished id has no stamp. */
static void test_commit_stamp(apr_pool_t *p) {
    h2c_ring_t ring;
    apr_size_t size = h2c_ring_size(2, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t before, at = 0, at2 = 0;
    uint64_t id;

    h2c_ring_init(&ring, mem, size, 2, 16);
    before = h2c_ring_clock_us();
    append(&ring, "a", &id);
    CHECK(h2c_ring_committed_at(&ring, id, &at) == APR_SUCCESS);
    CHECK(at - before < 1000000u); /* a difference: the stamp wraps */
    usleep(2000);
    CHECK(h2c_ring_put(&ring, 2, 10, "b", 1) == APR_SUCCESS);
    CHECK(h2c_ring_committed_at(&ring, 2, &at2) == APR_SUCCESS);
    CHECK(at2 - at >= 2000u && h2c_ring_clock_us() - at2 < 1000000u);
    CHECK(h2c_ring_committed_at(&ring, 3, &at) == APR_INCOMPLETE);
    append(&ring, "c", &id);
    CHECK(h2c_ring_committed_at(&ring, 1, &at) == APR_NOTFOUND);
}

/* Ten times the capacity: ids continue, only the last `capacity` stay. */
static void test_wrap(apr_pool_t *p) {
    h2c_ring_t ring;
    apr_size_t size = h2c_ring_size(5, 16);
    void *mem = apr_pcalloc(p, size);
    char buf[32], text[16];
    uint32_t len;
    uint64_t id = 0, i;

    h2c_ring_init(&ring, mem, size, 5, 16);
    for (i = 1; i <= 50; i++) {
        snprintf(text, sizeof(text), "m%llu", (unsigned long long)i);
        append(&ring, text, &id);
        CHECK(id == i);
    }
    CHECK(h2c_ring_last_id(&ring) == 50);
    CHECK(h2c_ring_first_id(&ring) == 46);
    CHECK(h2c_ring_count(&ring) == 5);
    CHECK(h2c_ring_read(&ring, 45, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    CHECK(h2c_ring_read(&ring, 1, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    for (i = 46; i <= 50; i++) {
        snprintf(text, sizeof(text), "m%llu", (unsigned long long)i);
        CHECK(h2c_ring_read(&ring, i, buf, sizeof(buf), &len, NULL) == APR_SUCCESS);
        CHECK(len == strlen(text) && !memcmp(buf, text, len));
    }
}

/* A writer that reserved and never committed (killed): the slot it took is
 * reported evicted, last_id is unchanged and the next writer reuses the id. */
static void test_torn(apr_pool_t *p) {
    h2c_ring_t ring;
    apr_size_t size = h2c_ring_size(3, 16);
    void *mem = apr_pcalloc(p, size);
    char buf[32], *slot;
    uint32_t len;
    uint64_t id;

    h2c_ring_init(&ring, mem, size, 3, 16);
    append(&ring, "a", &id);
    append(&ring, "b", &id);
    append(&ring, "c", &id);
    h2c_ring_reserve(&ring, &id, &slot); /* takes the slot of id 1 */
    CHECK(id == 4);
    memcpy(slot, "partial", 7);
    CHECK(h2c_ring_last_id(&ring) == 3);
    CHECK(h2c_ring_read(&ring, 1, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    CHECK(h2c_ring_read(&ring, 2, buf, sizeof(buf), &len, NULL) == APR_SUCCESS);
    append(&ring, "d", &id);
    CHECK(id == 4);
    CHECK(h2c_ring_read(&ring, 4, buf, sizeof(buf), &len, NULL) == APR_SUCCESS);
    CHECK(len == 1 && buf[0] == 'd');
}

static void test_put_gaps(apr_pool_t *p) {
    h2c_ring_t ring;
    apr_size_t size = h2c_ring_size(4, 16);
    void *mem = apr_pcalloc(p, size);
    char buf[64];
    uint32_t len;
    uint64_t id;
    int64_t t;

    h2c_ring_init(&ring, mem, size, 4, 16);
    CHECK(h2c_ring_put(&ring, 0, 1, "x", 1) == APR_EINVAL);
    CHECK(h2c_ring_put(&ring, 2, 20, "two", 3) == APR_SUCCESS);
    CHECK(h2c_ring_last_id(&ring) == 2);
    CHECK(h2c_ring_read(&ring, 1, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    CHECK(h2c_ring_read(&ring, 2, buf, sizeof(buf), &len, &t) == APR_SUCCESS);
    CHECK(len == 3 && !memcmp(buf, "two", 3) && t == 20);
    CHECK(h2c_ring_put(&ring, 2, 20, "again", 5) == APR_EINVAL); /* not above last */
    CHECK(h2c_ring_put(&ring, 3, 30, "01234567890123456789", 20) == APR_ENOSPC);
    CHECK(h2c_ring_put(&ring, 5, 50, "five", 4) == APR_SUCCESS);
    CHECK(h2c_ring_read(&ring, 3, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    CHECK(h2c_ring_read(&ring, 4, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    CHECK(h2c_ring_peek_len(&ring, 4, &len) == APR_NOTFOUND);
    CHECK(h2c_ring_read(&ring, 5, buf, sizeof(buf), &len, NULL) == APR_SUCCESS);
    CHECK(h2c_ring_read(&ring, 6, buf, sizeof(buf), &len, NULL) == APR_INCOMPLETE);
    /* a jump past the whole capacity: every older slot reads as evicted */
    CHECK(h2c_ring_put(&ring, 100, 1000, "hundred", 7) == APR_SUCCESS);
    for (id = 97; id < 100; id++) {
        CHECK(h2c_ring_read(&ring, id, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    }
    CHECK(h2c_ring_read(&ring, 5, buf, sizeof(buf), &len, NULL) == APR_NOTFOUND);
    CHECK(h2c_ring_read(&ring, 100, buf, sizeof(buf), &len, NULL) == APR_SUCCESS);
    /* appends go on after the given id */
    append(&ring, "next", &id);
    CHECK(id == 101);
}

int main(void) {
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    RUN(test_empty, p);
    RUN(test_append_read, p);
    RUN(test_commit_stamp, p);
    RUN(test_wrap, p);
    RUN(test_torn, p);
    RUN(test_put_gaps, p);
    apr_pool_destroy(p);
    apr_terminate();
    return unit_finish("test_ring");
}
