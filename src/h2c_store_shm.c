/* h2c_store_shm: the shared-memory store (see h2c_store.h): ids and the
 * history are the segment's ring, appended to under the global lock. */
#include <apr_time.h>

#include "h2c_json.h"
#include "h2c_store.h"

static apr_status_t shm_publish(h2c_store_t *store, const char *fields, apr_size_t flen,
                                uint64_t *id, int64_t *time_ms) {
    h2c_ring_t *ring = h2c_store_history(store);
    apr_status_t rv;
    apr_size_t len;
    char *slot;

    if (flen + H2C_JSON_LINE_OVERHEAD > h2c_ring_max_len(ring)) {
        return APR_ENOSPC; /* checked before touching the ring */
    }
    if ((rv = apr_global_mutex_lock(store->lock)) != APR_SUCCESS) {
        return rv;
    }
    /* Id and time are taken under the lock, so both follow publish order.
     * The message is encoded straight into its slot: once, for everyone. */
    h2c_ring_reserve(ring, id, &slot);
    *time_ms = (int64_t)(apr_time_now() / 1000);
    len = h2c_json_format_message(slot, h2c_ring_max_len(ring), *id, *time_ms, fields,
                                  flen);
    h2c_ring_commit(ring, *id, *time_ms, (uint32_t)len);
    if (store->committed) {
        store->committed(store->committed_ctx, *id, *time_ms, slot, (uint32_t)len);
    }
    h2c_seg_count_published(store->seg);
    apr_global_mutex_unlock(store->lock);
    h2c_store_wake(store);
    return APR_SUCCESS;
}

const h2c_store_ops_t h2c_store_shm_ops = {
    "shm", NULL, shm_publish, h2c_store_ring_read, NULL, NULL, 1,
};
