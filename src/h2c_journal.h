/* h2c_journal: the on-disk record format of H2ChatJournal (pure unit, no
 * httpd headers; the file I/O is in mod_h2chat_journal.c).
 *
 * A journal is a sequence of records, each
 *
 *   magic u32 | len u32 | id u64 | time_ms i64 | crc u32 | pad u32 | line
 *
 * little-endian as the host writes it (the file is not meant to travel);
 * `line` is the message's encoded NDJSON line as the ring holds it, and
 * `crc` is the CRC-32 (IEEE) of id, time, len and the line. A record that
 * is cut short or whose checksum is wrong ends the usable part of the file:
 * everything before it is good, it and everything after it are dropped. */
#ifndef H2C_JOURNAL_H
#define H2C_JOURNAL_H

#include <apr_errno.h>
#include <apr_general.h>
#include <stdint.h>

#define H2C_JOURNAL_MAGIC 0x4a433248u /* "H2CJ" */
#define H2C_JOURNAL_HEADER 32u

typedef struct {
    uint64_t id;
    int64_t time_ms;
    const char *line; /* points into the scanned buffer */
    uint32_t len;
} h2c_journal_rec_t;

/* CRC-32 (IEEE 802.3, as zlib's crc32) of n bytes, continuing from crc
 * (start with 0). */
uint32_t h2c_journal_crc32(uint32_t crc, const void *data, apr_size_t n);

/* Bytes one record of a `len`-byte line takes. */
apr_size_t h2c_journal_record_size(uint32_t len);

/* Writes one record into buf (cap bytes); returns its size, 0 if cap is
 * too small. */
apr_size_t h2c_journal_encode(char *buf, apr_size_t cap, uint64_t id, int64_t time_ms,
                              const char *line, uint32_t len);

/* Decodes the record at the start of buf (avail bytes). APR_SUCCESS with
 * *rec and *size; APR_INCOMPLETE if the buffer ends inside it (truncated);
 * APR_EGENERAL if it is corrupt (magic, length over max_len, checksum). */
apr_status_t h2c_journal_decode(const char *buf, apr_size_t avail, uint32_t max_len,
                                h2c_journal_rec_t *rec, apr_size_t *size);

/* Walks the records of a whole file image. Calls fn for each good record
 * (if fn returns non-zero the walk stops there, as if the file ended).
 * *good_end: bytes of the good prefix; *count: good records. Returns
 * APR_SUCCESS if the image ended cleanly, otherwise what stopped it
 * (APR_INCOMPLETE: truncated tail, APR_EGENERAL: corrupt record). */
apr_status_t h2c_journal_scan(const char *buf, apr_size_t size, uint32_t max_len,
                              int (*fn)(void *ctx, const h2c_journal_rec_t *rec),
                              void *ctx, apr_size_t *good_end, uint64_t *count);

#endif /* H2C_JOURNAL_H */
