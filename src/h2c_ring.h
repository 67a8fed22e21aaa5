/* h2c_ring: the shared-memory message ring (pure unit, no httpd headers).
 *
 * A ring is one self-contained region: a header followed by fixed-size
 * slots. Message id k lives in slot k % capacity. Nothing in the region is a
 * pointer, so every process may map it at its own address.
 *
 * Writers are serialised by the caller (one writer at a time, e.g. under a
 * global mutex). Readers take no lock: a slot is a seqlock keyed by its id
 * (0 while being written), so a reader that raced with an overwrite sees a
 * changed id and reports the message as evicted.
 *
 * Rooms are several rings in one segment: nothing here is global. */
#ifndef H2C_RING_H
#define H2C_RING_H

#include <apr_errno.h>
#include <apr_general.h>
#include <stdint.h>

#define H2C_RING_MAGIC 0x52433248u /* "H2CR" */
#define H2C_RING_VERSION 2u        /* 2: a slot keeps its commit time (latency) */

typedef struct h2c_ring_hdr_t h2c_ring_hdr_t;

/* A process-local view of a ring region. */
typedef struct {
    h2c_ring_hdr_t *hdr;
    char *slots;
} h2c_ring_t;

/* Bytes a ring of `capacity` messages of at most `max_len` bytes needs. */
apr_size_t h2c_ring_size(uint32_t capacity, uint32_t max_len);

/* Formats `mem` (size bytes, 8-aligned) as an empty ring. */
apr_status_t h2c_ring_init(h2c_ring_t *ring, void *mem, apr_size_t size,
                           uint32_t capacity, uint32_t max_len);

/* Views an already formatted region; APR_EGENERAL if the header is wrong. */
apr_status_t h2c_ring_attach(h2c_ring_t *ring, void *mem, apr_size_t size);

uint32_t h2c_ring_capacity(const h2c_ring_t *ring);
uint32_t h2c_ring_max_len(const h2c_ring_t *ring);

/* Newest committed id (0: none yet). */
uint64_t h2c_ring_last_id(const h2c_ring_t *ring);

/* Oldest id still held (last_id + 1 when empty). */
uint64_t h2c_ring_first_id(const h2c_ring_t *ring);

/* Messages held now. */
uint32_t h2c_ring_count(const h2c_ring_t *ring);

/* The wake-up word: changes after every commit (see h2c_wait). */
volatile uint32_t *h2c_ring_seq(h2c_ring_t *ring);

/* Writer side, caller holds the writer lock: reserve the slot of the next
 * id (last_id + 1), fill at most max_len bytes into *buf, then commit. A writer that dies
 * between the two leaves last_id untouched: the next writer reuses the id. */
apr_status_t h2c_ring_reserve(h2c_ring_t *ring, uint64_t *id, char **buf);
void h2c_ring_commit(h2c_ring_t *ring, uint64_t id, int64_t time_ms, uint32_t len);

/* Writer side, caller holds the writer lock: stores a message whose id
 * was given elsewhere (a journal replay, a Redis stream). `id` must be
 * above last_id; ids skipped between the two are never written and read as
 * evicted, so subscribers report them as a gap. APR_EINVAL if id is not
 * above last_id, APR_ENOSPC if len is over max_len. */
apr_status_t h2c_ring_put(h2c_ring_t *ring, uint64_t id, int64_t time_ms,
                          const char *data, uint32_t len);

/* Reader side, lock-free. Length of message `id`, or an error:
 * APR_INCOMPLETE if not yet published, APR_NOTFOUND if evicted. */
apr_status_t h2c_ring_peek_len(const h2c_ring_t *ring, uint64_t id, uint32_t *len);

/* Copies message `id` into buf (cap bytes, at least its length).
 * Same errors as peek_len; APR_ENOSPC if cap is too small. */
apr_status_t h2c_ring_read(const h2c_ring_t *ring, uint64_t id, char *buf, apr_size_t cap,
                           uint32_t *len, int64_t *time_ms);

/* Delivery latency: the clock commits are stamped with (CLOCK_MONOTONIC,
 * µs, low 32 bits: compare two readings by their difference), and the
 * commit stamp of message `id` (same errors as peek_len). */
uint32_t h2c_ring_clock_us(void);
apr_status_t h2c_ring_committed_at(const h2c_ring_t *ring, uint64_t id, uint32_t *us);

#endif /* H2C_RING_H */
