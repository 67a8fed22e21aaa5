/* Unit tests of h2c_journal: CRC, encode/decode, scanning a file image
 * with a clean end, a truncated tail and a corrupted record. */
#include <stdlib.h>
#include <string.h>

#include "h2c_journal.h"
#include "unit.h"

static apr_size_t build(char *buf, apr_size_t cap, int n) {
    apr_size_t off = 0;
    char line[64];
    int i;

    for (i = 1; i <= n; i++) {
        int len = snprintf(line, sizeof(line), "{\"type\":\"message\",\"id\":%d}", i);
        off += h2c_journal_encode(buf + off, cap - off, (uint64_t)i, 1000 + i, line,
                                  (uint32_t)len);
    }
    return off;
}

typedef struct {
    uint64_t ids[16];
    int n;
    int stop_after;
} seen_t;

static int collect(void *ctx, const h2c_journal_rec_t *rec) {
    seen_t *s = ctx;

    s->ids[s->n++] = rec->id;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_crc(apr_pool_t *p) {
    (void)p;
    /* the standard check value of CRC-32/IEEE */
    CHECK(h2c_journal_crc32(0, "123456789", 9) == 0xCBF43926u);
    CHECK(h2c_journal_crc32(h2c_journal_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
    CHECK(h2c_journal_crc32(0, "", 0) == 0);
}

static void test_roundtrip(apr_pool_t *p) {
    char *buf = apr_pcalloc(p, 256);
    h2c_journal_rec_t rec;
    apr_size_t size, n;

    CHECK(h2c_journal_record_size(0) == H2C_JOURNAL_HEADER);
    CHECK(h2c_journal_record_size(1) == H2C_JOURNAL_HEADER + 8);
    CHECK(h2c_journal_encode(buf, 10, 1, 2, "hello", 5) == 0);
    size = h2c_journal_encode(buf, 256, 42, -7, "hello", 5);
    CHECK(size == h2c_journal_record_size(5));
    CHECK(h2c_journal_decode(buf, size, 64, &rec, &n) == APR_SUCCESS);
    CHECK(n == size && rec.id == 42 && rec.time_ms == -7 && rec.len == 5);
    CHECK(memcmp(rec.line, "hello", 5) == 0);
    CHECK(h2c_journal_decode(buf, size, 4, &rec, &n) == APR_EGENERAL); /* over max */
    CHECK(h2c_journal_decode(buf, size - 1, 64, &rec, &n) == APR_INCOMPLETE);
    CHECK(h2c_journal_decode(buf, 10, 64, &rec, &n) == APR_INCOMPLETE);
}

static void test_scan_clean(apr_pool_t *p) {
    char *buf = apr_pcalloc(p, 4096);
    apr_size_t size = build(buf, 4096, 5), end;
    uint64_t count;
    seen_t s = {{0}, 0, 0};

    CHECK(h2c_journal_scan(buf, size, 128, collect, &s, &end, &count) == APR_SUCCESS);
    CHECK(end == size && count == 5 && s.n == 5 && s.ids[0] == 1 && s.ids[4] == 5);
    CHECK(h2c_journal_scan(buf, 0, 128, NULL, NULL, &end, &count) == APR_SUCCESS);
    CHECK(end == 0 && count == 0);
    s.n = 0;
    s.stop_after = 2; /* the callback may end the walk */
    CHECK(h2c_journal_scan(buf, size, 128, collect, &s, &end, &count) == APR_SUCCESS);
    CHECK(count == 1 && s.n == 2);
}

static void test_scan_truncated(apr_pool_t *p) {
    char *buf = apr_pcalloc(p, 4096);
    apr_size_t size = build(buf, 4096, 4), four = size, end;
    uint64_t count;
    seen_t s = {{0}, 0, 0};
    apr_size_t cut;

    size = build(buf, 4096, 5);
    for (cut = 1; cut < size - four; cut += 7) {
        s.n = 0;
        CHECK(h2c_journal_scan(buf, size - cut, 128, collect, &s, &end, &count) ==
              APR_INCOMPLETE);
        CHECK(end == four && count == 4 && s.n == 4);
    }
}

static void test_scan_corrupt(apr_pool_t *p) {
    char *buf = apr_pcalloc(p, 4096);
    apr_size_t two = build(buf, 4096, 2), size = build(buf, 4096, 5), end;
    uint64_t count;
    seen_t s = {{0}, 0, 0};

    buf[two + H2C_JOURNAL_HEADER + 3] ^= 0x20; /* a flipped bit in record 3's line */
    CHECK(h2c_journal_scan(buf, size, 128, collect, &s, &end, &count) == APR_EGENERAL);
    CHECK(end == two && count == 2 && s.n == 2);
    buf[two + H2C_JOURNAL_HEADER + 3] ^= 0x20;
    buf[two] = 'X'; /* a bad magic */
    CHECK(h2c_journal_scan(buf, size, 128, NULL, NULL, &end, &count) == APR_EGENERAL);
    CHECK(end == two && count == 2);
    memset(buf + two, 0, size - two); /* zeroes, as a crash may leave them */
    CHECK(h2c_journal_scan(buf, size, 128, NULL, NULL, &end, &count) == APR_EGENERAL);
    CHECK(end == two && count == 2);
}

int main(void) {
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    RUN(test_crc, p);
    RUN(test_roundtrip, p);
    RUN(test_scan_clean, p);
    RUN(test_scan_truncated, p);
    RUN(test_scan_corrupt, p);
    apr_pool_destroy(p);
    apr_terminate();
    return unit_finish("test_journal");
}
