/* h2c_store: what every store shares (see h2c_store.h). */
#include <string.h>

#include "h2c_json.h"
#include "h2c_store.h"
#include "h2c_wait.h"

void h2c_store_init(h2c_store_t *store, const h2c_store_ops_t *ops, h2c_seg_t *seg,
                    apr_global_mutex_t *lock, void *impl) {
    memset(store, 0, sizeof(*store));
    store->ops = ops;
    store->seg = seg;
    store->lock = lock;
    store->impl = impl;
}

void h2c_store_status(h2c_store_t *store, h2c_store_status_t *out) {
    out->n = 0;
    if (store->ops->status) {
        store->ops->status(store, out);
    }
}

apr_status_t h2c_store_follow(h2c_store_t *store, h2c_store_committed_fn fn, void *ctx) {
    if (!store->ops->commits_here) {
        return APR_ENOTIMPL;
    }
    store->committed = fn;
    store->committed_ctx = ctx;
    return APR_SUCCESS;
}

h2c_rooms_t *h2c_store_history(h2c_store_t *store) {
    return &store->seg->rooms;
}

/* The room of this name, made if new; under the lock. */
static apr_status_t open_room(h2c_store_t *store, const char *room, uint32_t *idx) {
    return h2c_rooms_open(h2c_store_history(store), room, room ? strlen(room) : 0, 1,
                          idx);
}

/* Entry `line` of `kind` into room `room`, after what it does to the room.
 * `strict`: there must be something to delete or clear (APR_NOTFOUND, and
 * nothing changed), else it is done where it can be (a replay meets a
 * delete whose message has left already). */
static apr_status_t put(h2c_store_t *store, const char *room, h2c_entry_kind_t kind,
                        uint64_t target, int strict, uint64_t id, int64_t time_ms,
                        const char *line, uint32_t len) {
    h2c_rooms_t *rs = h2c_store_history(store);
    apr_size_t nlen = room ? strlen(room) : 0;
    uint32_t idx;
    apr_status_t rv;

    if (h2c_rooms_next_id(rs) > id) {
        return APR_EINVAL; /* before anything changes */
    }
    rv = h2c_rooms_open(rs, room, nlen, kind == H2C_ENTRY_MESSAGE || !strict, &idx);
    if (rv == APR_SUCCESS && kind == H2C_ENTRY_DELETE) {
        rv = h2c_rooms_delete(rs, idx, target);
        rv = rv == APR_NOTFOUND && !strict ? APR_SUCCESS : rv;
    } else if (rv == APR_SUCCESS && kind == H2C_ENTRY_CLEAR) {
        h2c_rooms_clear(rs, idx); /* may free the record: opened again */
        rv = h2c_rooms_open(rs, room, nlen, 1, &idx);
    }
    return rv == APR_SUCCESS ? h2c_rooms_append(rs, idx, kind, id, time_ms, line, len)
                             : rv;
}

apr_status_t h2c_store_append_to(h2c_store_t *store, const char *room, uint64_t id,
                                 int64_t time_ms, const char *line, uint32_t len) {
    h2c_entry_kind_t kind;
    uint64_t target;

    if (h2c_json_line_kind(line, len, &kind, &target) != APR_SUCCESS) {
        kind = H2C_ENTRY_MESSAGE;
    }
    return put(store, room, kind, target, 0, id, time_ms, line, len);
}

apr_status_t h2c_store_put_to(h2c_store_t *store, const char *room, h2c_entry_kind_t kind,
                              uint64_t target, uint64_t id, int64_t time_ms,
                              const char *line, uint32_t len) {
    return put(store, room, kind, target, 1, id, time_ms, line, len);
}

int h2c_store_has(h2c_store_t *store, const char *room, h2c_entry_kind_t kind,
                  uint64_t target) {
    h2c_rooms_t *rs = h2c_store_history(store);
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;
    uint32_t idx;
    int has;

    /* the name hash is the writers': looked up under the lock */
    if (apr_global_mutex_lock(store->lock) != APR_SUCCESS) {
        return 0;
    }
    has = h2c_rooms_open(rs, room, room ? strlen(room) : 0, 0, &idx) == APR_SUCCESS;
    if (has && kind == H2C_ENTRY_DELETE) {
        h2c_rooms_cursor_at(&cur, target - 1);
        has = h2c_rooms_next(rs, idx, &cur, &m) == APR_SUCCESS && m.id == target &&
              m.kind == H2C_ENTRY_MESSAGE;
    }
    apr_global_mutex_unlock(store->lock);
    return has;
}

apr_status_t h2c_store_hold(h2c_store_t *store, uint32_t slot, const char *const *rooms,
                            uint32_t n, const char *member, uint32_t *idx,
                            uint32_t *mem) {
    apr_status_t rv;
    uint32_t i, m;

    if ((rv = apr_global_mutex_lock(store->lock)) != APR_SUCCESS) {
        return rv;
    }
    for (i = 0; i < n; i++) {
        if ((rv = open_room(store, rooms[i], &idx[i])) != APR_SUCCESS ||
            (rv = h2c_rooms_hold(h2c_store_history(store), slot, idx[i], 1)) !=
                APR_SUCCESS) {
            break;
        }
    }
    while (rv != APR_SUCCESS && i-- > 0) {
        h2c_rooms_hold(h2c_store_history(store), slot, idx[i], -1);
    }
    for (i = 0; rv == APR_SUCCESS && member && i < n; i++) {
        mem[i] = h2c_members_join(&store->seg->members, slot, idx[i], member,
                                  strlen(member), &m) == APR_SUCCESS
                     ? m + 1
                     : 0;
    }
    apr_global_mutex_unlock(store->lock);
    return rv;
}

void h2c_store_release(h2c_store_t *store, uint32_t slot, const uint32_t *idx,
                       const uint32_t *mem, uint32_t n) {
    uint32_t i;

    if (apr_global_mutex_lock(store->lock) != APR_SUCCESS) {
        return;
    }
    for (i = 0; i < n; i++) {
        if (mem && mem[i]) {
            h2c_members_leave(&store->seg->members, slot, mem[i] - 1);
        }
        h2c_rooms_hold(h2c_store_history(store), slot, idx[i], -1);
    }
    apr_global_mutex_unlock(store->lock);
}

apr_status_t h2c_store_counts(h2c_store_t *store, const char *const *rooms, uint32_t n,
                              uint32_t *counts, uint32_t *idx) {
    h2c_rooms_t *rs = h2c_store_history(store);
    apr_status_t rv;
    uint32_t i, room;

    if ((rv = apr_global_mutex_lock(store->lock)) != APR_SUCCESS) {
        return rv;
    }
    for (i = 0; i < n; i++) {
        if (h2c_rooms_open(rs, rooms[i], strlen(rooms[i]), 0, &room) != APR_SUCCESS) {
            room = UINT32_MAX;
        }
        counts[i] = room != UINT32_MAX ? h2c_rooms_room_holders(rs, room) : 0;
        if (idx) {
            idx[i] = room;
        }
    }
    apr_global_mutex_unlock(store->lock);
    return APR_SUCCESS;
}

void h2c_store_forget(h2c_store_t *store, uint32_t slot) {
    if (!h2c_rooms_slot_holds(h2c_store_history(store), slot) ||
        apr_global_mutex_lock(store->lock) != APR_SUCCESS) {
        return;
    }
    /* members first: the rooms they name stay held until then */
    h2c_members_forget(&store->seg->members, slot);
    h2c_rooms_forget(h2c_store_history(store), slot);
    apr_global_mutex_unlock(store->lock);
}

apr_status_t h2c_store_append_given(h2c_store_t *store, const char *room, uint64_t id,
                                    int64_t time_ms, const char *line, uint32_t len) {
    apr_status_t rv;

    if ((rv = apr_global_mutex_lock(store->lock)) != APR_SUCCESS) {
        return rv;
    }
    rv = h2c_store_append_to(store, room, id, time_ms, line, len);
    if (rv == APR_SUCCESS) {
        h2c_seg_count_published(store->seg);
    }
    apr_global_mutex_unlock(store->lock);
    return rv;
}

apr_status_t h2c_store_restore(h2c_store_t *store, const char *room, uint64_t id,
                               int64_t time_ms, const char *line, uint32_t len) {
    return h2c_store_append_to(store, room, id, time_ms, line, len);
}

void h2c_store_wake(h2c_store_t *store) {
    /* H2ChatDirect loops (one waiter per child) batch by themselves: no gate */
    h2c_wait_bump(h2c_seg_direct_seq(store->seg));
    if (store->wake) {
        store->wake(store->wake_ctx);
    } else {
        h2c_wait_wake_all(h2c_rooms_seq(h2c_store_history(store)));
    }
}

void h2c_store_wake_now(h2c_store_t *store) {
    h2c_wait_bump(h2c_rooms_seq(h2c_store_history(store)));
}
