/* h2c_store_shm: the shared-memory store (see h2c_store.h): ids and the
 * history are the segment's ring, appended to under the global lock. */
#include <stdlib.h>

#include <apr_time.h>

#include "h2c_json.h"
#include "h2c_store.h"

/* Entry `line` of `kind` (its id and time taken under the lock the caller
 * holds) into its room; then the journal hook, the lock let go, and the
 * waiters woken. */
static apr_status_t commit(h2c_store_t *store, const char *room, h2c_entry_kind_t kind,
                           uint64_t target, uint64_t id, int64_t time_ms,
                           const char *line, uint32_t len) {
    apr_status_t rv = h2c_store_put_to(store, room, kind, target, id, time_ms, line, len);

    if (rv == APR_SUCCESS) {
        if (store->committed) {
            store->committed(store->committed_ctx, id, time_ms, kind, line, len);
        }
        if (kind == H2C_ENTRY_MESSAGE) {
            h2c_seg_count_published(store->seg);
        }
    }
    apr_global_mutex_unlock(store->lock);
    if (rv == APR_SUCCESS) {
        h2c_store_wake(store);
    }
    return rv;
}

static apr_status_t shm_publish(h2c_store_t *store, const char *room, const char *fields,
                                apr_size_t flen, uint64_t *id, int64_t *time_ms) {
    h2c_rooms_t *rooms = h2c_store_history(store);
    uint32_t max = h2c_rooms_max_len(rooms);
    apr_status_t rv;
    apr_size_t len;
    char *line;

    if (flen + H2C_JSON_LINE_OVERHEAD > max) {
        return APR_ENOSPC; /* checked before touching the rooms */
    }
    /* the line is copied into the room's chunks: a buffer of its own first
     * (the largest message may be too large for a thread's stack) */
    if (!(line = malloc(flen + H2C_JSON_LINE_OVERHEAD))) {
        return APR_ENOMEM;
    }
    if ((rv = apr_global_mutex_lock(store->lock)) != APR_SUCCESS) {
        free(line);
        return rv;
    }
    /* Id and time are taken under the lock, so both follow publish order.
     * The message is encoded once, for everyone. */
    *id = h2c_rooms_next_id(rooms);
    *time_ms = (int64_t)(apr_time_now() / 1000);
    len = h2c_json_format_message(line, flen + H2C_JSON_LINE_OVERHEAD, *id, *time_ms,
                                  fields, flen);
    rv = commit(store, room, H2C_ENTRY_MESSAGE, 0, *id, *time_ms, line, (uint32_t)len);
    free(line);
    return rv;
}

static apr_status_t shm_moderate(h2c_store_t *store, const char *room,
                                 h2c_entry_kind_t kind, uint64_t target, const char *line,
                                 apr_size_t len, uint64_t *id, int64_t *time_ms) {
    h2c_rooms_t *rooms = h2c_store_history(store);
    apr_status_t rv;

    if ((rv = apr_global_mutex_lock(store->lock)) != APR_SUCCESS) {
        return rv;
    }
    /* the message goes and its delete entry comes in one step: a reader
     * never sees one without the other for long */
    *id = h2c_rooms_next_id(rooms);
    *time_ms = (int64_t)(apr_time_now() / 1000);
    return commit(store, room, kind, target, *id, *time_ms, line, (uint32_t)len);
}

const h2c_store_ops_t h2c_store_shm_ops = {
    "shm", NULL, shm_publish, shm_moderate, NULL, NULL, 1,
};
