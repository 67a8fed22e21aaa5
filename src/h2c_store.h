/* h2c_store: where published messages go (pure unit, no httpd headers).
 *
 * Subscribers always read the local shared-memory ring; a store decides how
 * a message gets there and who gives it its id. The shm store appends under
 * the global lock; a Redis store would append to Redis and let its reader
 * feed the ring. A table of functions, as nchan and mod_md do it. */
#ifndef H2C_STORE_H
#define H2C_STORE_H

#include <apr_errno.h>
#include <apr_global_mutex.h>
#include <stdint.h>

#include "h2c_seg.h"

typedef struct h2c_store_t h2c_store_t;

typedef struct {
    const char *name;
    /* Publishes the encoded fields of one message; sets its id and time. */
    apr_status_t (*publish)(h2c_store_t *store, const char *fields, apr_size_t flen,
                            uint64_t *id, int64_t *time_ms);
} h2c_store_ops_t;

/* Called under the global lock after a message is committed to the ring,
 * so calls come in id order (H2ChatJournal appends there). */
typedef void (*h2c_store_committed_fn)(void *ctx, uint64_t id, int64_t time_ms,
                                       const char *line, uint32_t len);

/* Called after the lock is let go, to wake the ring's waiters; NULL: wake
 * them all at once (H2ChatCoalesce off). */
typedef void (*h2c_store_wake_fn)(void *ctx);

struct h2c_store_t {
    const h2c_store_ops_t *ops;
    h2c_seg_t *seg;
    apr_global_mutex_t *lock;
    h2c_store_committed_fn committed; /* NULL: none */
    void *committed_ctx;
    h2c_store_wake_fn wake; /* NULL: h2c_wait_wake_all on the ring */
    void *wake_ctx;
    void *impl; /* the back end's own state (Redis: its connection pool) */
};

/* The shared-memory store: the segment's ring, serialised by `lock`. */
void h2c_store_shm_init(h2c_store_t *store, h2c_seg_t *seg, apr_global_mutex_t *lock);

static inline apr_status_t h2c_store_publish(h2c_store_t *store, const char *fields,
                                             apr_size_t flen, uint64_t *id,
                                             int64_t *time_ms) {
    return store->ops->publish(store, fields, flen, id, time_ms);
}

/* Wakes the ring's waiters after a commit, through `wake` if set. */
void h2c_store_wake(h2c_store_t *store);

#endif /* H2C_STORE_H */
