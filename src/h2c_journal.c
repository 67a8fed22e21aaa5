/* h2c_journal: see h2c_journal.h. */
#include <string.h>

#include "h2c_journal.h"

typedef struct {
    uint32_t magic;
    uint32_t len;
    uint64_t id;
    int64_t time_ms;
    uint32_t crc;
    uint32_t pad;
} h2c_journal_hdr_t;

_Static_assert(sizeof(h2c_journal_hdr_t) == H2C_JOURNAL_HEADER, "record header");

#define ALIGN8(n) (((n) + 7u) & ~(apr_size_t)7u)

static uint32_t crc_table[256];

/* The table is a pure function of the polynomial: racing initialisers all
 * write the same values. */
static void crc_init(void) {
    uint32_t i, j, c;

    for (i = 0; i < 256; i++) {
        c = i;
        for (j = 0; j < 8; j++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[i] = c;
    }
}

uint32_t h2c_journal_crc32(uint32_t crc, const void *data, apr_size_t n) {
    const unsigned char *p = data;

    if (crc_table[1] == 0) {
        crc_init();
    }
    crc = ~crc;
    while (n--) {
        crc = crc_table[(crc ^ *p++) & 0xFFu] ^ (crc >> 8);
    }
    return ~crc;
}

apr_size_t h2c_journal_record_size(uint32_t len) {
    return ALIGN8((apr_size_t)H2C_JOURNAL_HEADER + len);
}

static uint32_t record_crc(const h2c_journal_hdr_t *h, const char *line) {
    uint32_t crc = h2c_journal_crc32(0, &h->id, sizeof(h->id));

    crc = h2c_journal_crc32(crc, &h->time_ms, sizeof(h->time_ms));
    crc = h2c_journal_crc32(crc, &h->len, sizeof(h->len));
    return h2c_journal_crc32(crc, line, h->len);
}

apr_size_t h2c_journal_encode(char *buf, apr_size_t cap, uint64_t id, int64_t time_ms,
                              const char *line, uint32_t len) {
    apr_size_t size = h2c_journal_record_size(len);
    h2c_journal_hdr_t h;

    if (cap < size) {
        return 0;
    }
    h.magic = H2C_JOURNAL_MAGIC;
    h.len = len;
    h.id = id;
    h.time_ms = time_ms;
    h.pad = 0;
    h.crc = record_crc(&h, line);
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), line, len);
    memset(buf + sizeof(h) + len, 0, size - sizeof(h) - len);
    return size;
}

apr_status_t h2c_journal_decode(const char *buf, apr_size_t avail, uint32_t max_len,
                                h2c_journal_rec_t *rec, apr_size_t *size) {
    h2c_journal_hdr_t h;

    if (avail < sizeof(h)) {
        return APR_INCOMPLETE;
    }
    memcpy(&h, buf, sizeof(h));
    if (h.magic != H2C_JOURNAL_MAGIC || h.len > max_len || h.id == 0) {
        return APR_EGENERAL;
    }
    if (avail < h2c_journal_record_size(h.len)) {
        return APR_INCOMPLETE;
    }
    if (record_crc(&h, buf + sizeof(h)) != h.crc) {
        return APR_EGENERAL;
    }
    rec->id = h.id;
    rec->time_ms = h.time_ms;
    rec->line = buf + sizeof(h);
    rec->len = h.len;
    *size = h2c_journal_record_size(h.len);
    return APR_SUCCESS;
}

apr_status_t h2c_journal_scan(const char *buf, apr_size_t size, uint32_t max_len,
                              int (*fn)(void *ctx, const h2c_journal_rec_t *rec),
                              void *ctx, apr_size_t *good_end, uint64_t *count) {
    apr_size_t off = 0, n;
    h2c_journal_rec_t rec;
    apr_status_t rv = APR_SUCCESS;

    *count = 0;
    while (off < size) {
        rv = h2c_journal_decode(buf + off, size - off, max_len, &rec, &n);
        if (rv != APR_SUCCESS) {
            break;
        }
        if (fn && fn(ctx, &rec)) {
            break;
        }
        off += n;
        (*count)++;
    }
    *good_end = off;
    return rv;
}
