/* mod_h2chat_shm: the shared segment and its lock, across processes and
 * restarts, and the process's view of them (h2chat_state). It starts
 * nothing else: mod_h2chat.c runs the lifecycle.
 *
 * Order as in mod_example_ipc: the mutex type is registered in pre_config
 * (admins pick the mechanism with `Mutex h2chat-shm ...`), post_config skips
 * the dry run and makes the segment, child_init attaches. Unlike it, segment
 * and mutex live in the process pool and are found again through
 * ap_retained_data on a graceful restart: old and new children then share
 * one history, one id sequence and one lock. */
#include "mod_h2chat.h"

#include <unistd.h>

#include <ap_mpm.h>
#include <apr_shm.h>
#include <http_core.h>
#include <http_main.h>
#include <mpm_common.h>
#include <util_mutex.h>

#include "h2c_json.h"

#define H2CHAT_MUTEX_TYPE "h2chat-shm"
#define H2CHAT_RETAINED_KEY "mod_h2chat-retained"

/* What the parent keeps from one generation to the next. */
typedef struct {
    apr_shm_t *shm;
    apr_global_mutex_t *mutex;
} h2chat_retained_t;

static h2chat_retained_t *retained;
static h2chat_state_t state;

h2chat_state_t *h2chat_state(void) {
    return &state;
}

int h2chat_shm_pre_config(apr_pool_t *pconf) {
    return ap_mutex_register(pconf, H2CHAT_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
}

/* Children the table must hold: every process of this generation plus the
 * old generation still finishing after a graceful restart. */
static uint32_t child_table_size(void) {
    int limit = 0;

    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
    return (uint32_t)(limit > 0 ? limit : 16) * 2 + 2;
}

/* Held streams allowed when H2ChatMaxSubscribers is not set: three quarters
 * of the MPM's threads, so the rest are always free for POSTs, static files
 * and the status page (see docs/operations.md, "Sizing"). */
static uint32_t default_max_subscribers(void) {
    int threads = 0, daemons = 0;
    long total;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons);
    total = (long)(threads > 0 ? threads : 1) * (daemons > 0 ? daemons : 1);
    return (uint32_t)(total * 3 / 4 > 0 ? total * 3 / 4 : 1);
}

/* H2ChatMaxSubscribersPerAddress when not set: half the cap, rounded up,
 * so that one address (one client, or everyone behind one NAT or proxy
 * that mod_remoteip does not see through) can never take every slot, and
 * still has room for many tabs or devices. */
static uint32_t default_max_per_address(uint32_t max_subscribers) {
    return max_subscribers / 2 + max_subscribers % 2;
}

static apr_status_t make_segment(server_rec *s, const h2c_seg_shape_t *shape,
                                 int *fresh) {
    apr_size_t size = h2c_seg_size_shape(shape);
    apr_status_t rv;
    int same_layout;

    *fresh = 0;
    if (retained->shm) {
        /* attach fails on another layout (H2C_SEG_VERSION): a module of
         * another version made the segment before this graceful restart */
        same_layout = h2c_seg_attach(&state.seg, apr_shm_baseaddr_get(retained->shm),
                                     apr_shm_size_get(retained->shm)) == APR_SUCCESS;
        if (same_layout && h2c_seg_fits_shape(&state.seg, shape)) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                         H2C_TAG_SHM_REUSED ": restart keeps the segment: %u messages "
                                            "held, last id %" APR_UINT64_T_FMT,
                         h2c_rooms_room_count(&state.seg.rooms, H2C_ROOMS_DEFAULT),
                         (apr_uint64_t)h2c_rooms_last_id(&state.seg.rooms));
            return APR_SUCCESS;
        }
        if (same_layout) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         H2C_TAG_SHM_RESHAPED
                         ": H2ChatHistory, H2ChatMaxMessageBytes, H2ChatMaxRooms, "
                         "H2ChatMemory or ServerLimit changed: history and ids start "
                         "over (a journal or Redis refills them)");
        } else {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         H2C_TAG_SHM_RESHAPED
                         ": the shared segment has another layout (a module of another "
                         "version made it): history and ids start over (a journal or "
                         "Redis refills them)");
        }
        /* Children of the old generation keep their own mapping. */
        apr_shm_destroy(retained->shm);
        retained->shm = NULL;
    }
    rv = apr_shm_create(&retained->shm, size, NULL, s->process->pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     H2C_TAG_SHM_CREATE ": cannot create %lu bytes of shared memory",
                     (unsigned long)size);
        return rv;
    }
    *fresh = 1;
    return h2c_seg_init_shape(&state.seg, apr_shm_baseaddr_get(retained->shm), size,
                              shape, (int64_t)(apr_time_now() / 1000));
}

/* The segment (kept across a graceful restart when it still fits) and the
 * global lock. *fresh: the segment is new (a journal may refill it). */
apr_status_t h2chat_shm_post_config(server_rec *s, int *fresh) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);
    h2c_seg_shape_t shape;
    uint32_t max_len;
    apr_status_t rv;

    state.usable = 0;
    retained = ap_retained_data_get(H2CHAT_RETAINED_KEY);
    if (!retained) {
        retained = ap_retained_data_create(H2CHAT_RETAINED_KEY, sizeof(*retained));
    }
    /* escaping can double the body's bytes; then type, id and time */
    max_len = (uint32_t)h2chat_conf_largest_max_bytes() * 2 + 2 * H2C_JSON_LINE_OVERHEAD;
    shape.nchildren = child_table_size();
    shape.history = (uint32_t)h2chat_conf_history(s);
    shape.max_len = max_len;
    shape.max_rooms = h2chat_conf_max_rooms(s);
    shape.memory = h2chat_conf_memory(s, shape.history, max_len);
    shape.max_members = h2chat_conf_max_members(s);
    if ((rv = make_segment(s, &shape, fresh)) != APR_SUCCESS) {
        return rv;
    }
    if (!retained->mutex) {
        rv = ap_global_mutex_create(&retained->mutex, NULL, H2CHAT_MUTEX_TYPE, NULL, s,
                                    s->process->pool, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         H2C_TAG_MUTEX_CREATE ": cannot create the global mutex");
            return rv;
        }
    }
    /* inherited by the children (the segment is attached here only) */
    state.seg.lat_off = sc->latency == 0;
    state.limits.max_subscribers = sc->max_subscribers > 0 ? (uint32_t)sc->max_subscribers
                                                           : default_max_subscribers();
    state.limits.max_per_address =
        sc->max_per_address >= 0 ? (uint32_t)sc->max_per_address
                                 : default_max_per_address(state.limits.max_subscribers);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 H2C_TAG_CONFIG ": history %d, slot %u bytes, %u child rows, segment "
                                "%lu bytes, max subscribers %u, per address %u (0: off)",
                 h2chat_conf_history(s), max_len, child_table_size(),
                 (unsigned long)h2c_seg_size(child_table_size(),
                                             (uint32_t)h2chat_conf_history(s), max_len),
                 state.limits.max_subscribers, state.limits.max_per_address);
    return APR_SUCCESS;
}

static apr_status_t child_exit(void *data) {
    (void)data;
    state.usable = 0;
    h2c_seg_child_release(&state.seg, state.child_slot);
    return APR_SUCCESS;
}

/* This child's lock handle and its row in the child table (given back when
 * the child's pool goes). */
apr_status_t h2chat_shm_child_init(apr_pool_t *pchild, server_rec *s) {
    apr_status_t rv;

    state.usable = 0;
    state.stopping = 0;
    if (!retained || !retained->mutex) {
        return APR_EINIT;
    }
    rv = apr_global_mutex_child_init(&retained->mutex,
                                     apr_global_mutex_lockfile(retained->mutex), pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     H2C_TAG_CHILD_INIT ": cannot reopen the global mutex");
        return rv;
    }
    if (h2c_seg_child_claim(&state.seg, (uint32_t)getpid(), &state.child_slot) !=
        APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     H2C_TAG_CHILD_TABLE ": no free row in the child table");
        return APR_EAGAIN;
    }
    state.store.lock = retained->mutex;
    apr_pool_cleanup_register(pchild, NULL, child_exit, apr_pool_cleanup_null);
    return APR_SUCCESS;
}
