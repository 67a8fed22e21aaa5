/* h2c_store_shm: the shared-memory store (see h2c_store.h). */
#include <apr_time.h>

#include "h2c_json.h"
#include "h2c_store.h"
#include "h2c_wait.h"

static apr_status_t shm_publish(h2c_store_t *store, const char *fields, apr_size_t flen,
                                uint64_t *id, int64_t *time_ms) {
    h2c_ring_t *ring = &store->seg->ring;
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

void h2c_store_wake(h2c_store_t *store) {
    volatile uint32_t *direct = &h2c_seg_shared(store->seg)->direct_seq;

    /* H2ChatDirect loops (one waiter per child) batch by themselves: no gate */
    __atomic_add_fetch(direct, 1, __ATOMIC_RELEASE);
    h2c_wait_wake_all(direct);
    if (store->wake) {
        store->wake(store->wake_ctx);
    } else {
        h2c_wait_wake_all(h2c_ring_seq(&store->seg->ring));
    }
}

static const h2c_store_ops_t shm_ops = {"shm", shm_publish};

void h2c_store_shm_init(h2c_store_t *store, h2c_seg_t *seg, apr_global_mutex_t *lock) {
    store->ops = &shm_ops;
    store->seg = seg;
    store->lock = lock;
    store->committed = NULL;
    store->committed_ctx = NULL;
    store->wake = NULL;
    store->wake_ctx = NULL;
    store->impl = NULL;
}
