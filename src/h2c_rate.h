/* h2c_rate: per-client rate limiting shared by all children (pure unit).
 *
 * A fixed table of 64-bit words in the shared segment, one per hash bucket
 * of client addresses. Each word packs a 24-bit key (to tell clients of one
 * bucket apart) and the GCRA "theoretical arrival time" in milliseconds
 * since the table's epoch (40 bits: 34 years). One compare-and-swap per
 * decision: no lock, nothing per message beyond that. Two live clients that
 * share a bucket and a key share a limit; with 16384 buckets that is rare. */
#ifndef H2C_RATE_H
#define H2C_RATE_H

#include <stdint.h>
#include <apr_errno.h>
#include <apr_general.h>

#define H2C_RATE_BUCKETS 16384u

typedef struct {
    uint64_t *words;  /* H2C_RATE_BUCKETS words in the segment */
    int64_t epoch_ms; /* time of the table's creation, in the segment */
} h2c_rate_t;

/* A limit: `interval_ms` between messages on average, `burst` at once. */
typedef struct {
    uint32_t interval_ms;
    uint32_t burst;
} h2c_rate_limit_t;

/* The hash of a client address's text (32-bit FNV-1a): the one every
 * per-address table of the segment buckets by. */
uint32_t h2c_rate_hash(const char *addr);

/* Takes one token for client `addr` at `now_ms`. APR_SUCCESS, or APR_EAGAIN
 * with *retry_ms saying when the next one is allowed. */
apr_status_t h2c_rate_take(h2c_rate_t *rate, const h2c_rate_limit_t *limit,
                           const char *addr, int64_t now_ms, int64_t *retry_ms);

#endif /* H2C_RATE_H */
