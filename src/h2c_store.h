/* h2c_store: who gives messages their ids and keeps the history (pure
 * unit, no httpd headers).
 *
 * A store is a table of operations, as nchan's memory and Redis stores or
 * mod_md's storage back ends: open in each child, publish, read the
 * history from an id, its lines for server-status, stop. Nothing outside a
 * store asks which one it is.
 *
 * Subscribers always read the local shared-memory rooms (the history view,
 * h2c_store_history): the shm store appends to them under the global lock;
 * the Redis store publishes to Redis and its reader feeds them through
 * h2c_store_append_given. Every message goes to one room, named ("" is
 * the location's own); a room is made when a message or a stream first
 * needs it, under the lock. */
#ifndef H2C_STORE_H
#define H2C_STORE_H

#include <apr_errno.h>
#include <apr_global_mutex.h>
#include <apr_pools.h>
#include <stdint.h>

#include "h2c_seg.h"

typedef struct h2c_store_t h2c_store_t;

/* A store's own lines for server-status: `H2Chat<name>: <value>`. */
#define H2C_STORE_FIELDS 4
typedef struct {
    int n;
    struct {
        const char *name;
        char value[32];
    } field[H2C_STORE_FIELDS];
} h2c_store_status_t;

typedef struct {
    const char *name;
    /* In each child before it serves (connections, threads); may be NULL. */
    apr_status_t (*open)(h2c_store_t *store, apr_pool_t *pchild);
    /* Publishes the encoded fields of one message to room `room`; sets its
     * id and time. APR_ENOSPC: longer than the largest message; APR_EBUSY:
     * no record for a new room (H2ChatMaxRooms); APR_ENOMEM: no memory left
     * for it (H2ChatMemory, h2c_rooms_append). */
    apr_status_t (*publish)(h2c_store_t *store, const char *room, const char *fields,
                            apr_size_t flen, uint64_t *id, int64_t *time_ms);
    /* Logs moderation entry `line` (h2c_json_delete, h2c_json_clear) of
     * `kind` in room `room`, for every reader in its place: a DELETE
     * removes message `target` of the room, a CLEAR every message of it.
     * Sets the entry's id and time. APR_NOTFOUND: the room holds no message
     * `target` (DELETE), or there is no such room (CLEAR). */
    apr_status_t (*moderate)(h2c_store_t *store, const char *room, h2c_entry_kind_t kind,
                             uint64_t target, const char *line, apr_size_t len,
                             uint64_t *id, int64_t *time_ms);
    /* Adds its own lines to *out; may be NULL. */
    void (*status)(h2c_store_t *store, h2c_store_status_t *out);
    /* child_stopping: let go of what another child must take over (the
     * Redis reader); may be NULL. Publishing still works afterwards. */
    void (*stop)(h2c_store_t *store);
    /* 1 if messages are committed in this process, in id order, under the
     * global lock: the committed hook (a journal) sees every one. */
    int commits_here;
} h2c_store_ops_t;

/* Called under the global lock after an entry (a message, a delete, a
 * clear) is committed to its room, so calls come in id order (H2ChatJournal
 * appends there). */
typedef void (*h2c_store_committed_fn)(void *ctx, uint64_t id, int64_t time_ms,
                                       h2c_entry_kind_t kind, const char *line,
                                       uint32_t len);

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
extern const h2c_store_ops_t h2c_store_shm_ops;

/* Sets a store up over the segment (lock may be NULL until children run:
 * only h2c_store_restore may be called then). */
void h2c_store_init(h2c_store_t *store, const h2c_store_ops_t *ops, h2c_seg_t *seg,
                    apr_global_mutex_t *lock, void *impl);

static inline apr_status_t h2c_store_open(h2c_store_t *store, apr_pool_t *pchild) {
    return store->ops->open ? store->ops->open(store, pchild) : APR_SUCCESS;
}

static inline apr_status_t h2c_store_publish(h2c_store_t *store, const char *room,
                                             const char *fields, apr_size_t flen,
                                             uint64_t *id, int64_t *time_ms) {
    return store->ops->publish(store, room, fields, flen, id, time_ms);
}

static inline apr_status_t h2c_store_moderate(h2c_store_t *store, const char *room,
                                              h2c_entry_kind_t kind, uint64_t target,
                                              const char *line, apr_size_t len,
                                              uint64_t *id, int64_t *time_ms) {
    return store->ops->moderate(store, room, kind, target, line, len, id, time_ms);
}

static inline void h2c_store_stop(h2c_store_t *store) {
    if (store->ops->stop) {
        store->ops->stop(store);
    }
}

/* The store's own server-status lines (none for shm). */
void h2c_store_status(h2c_store_t *store, h2c_store_status_t *out);

/* Follows every commit with `fn` (a journal): APR_ENOTIMPL if this store
 * does not commit in this process. */
apr_status_t h2c_store_follow(h2c_store_t *store, h2c_store_committed_fn fn, void *ctx);

/* The history held streams read: the local rooms. */
h2c_rooms_t *h2c_store_history(h2c_store_t *store);

/* For stores whose ids are given elsewhere (Redis): one message line into
 * `room` of the local history, under the lock, counted as published; the
 * waiters are not woken (h2c_store_wake, once per batch). APR_EINVAL if id
 * is not above the last one. */
apr_status_t h2c_store_append_given(h2c_store_t *store, const char *room, uint64_t id,
                                    int64_t time_ms, const char *line, uint32_t len);

/* Before any child runs (a journal replayed into a new segment): as
 * append_given without the lock, not counted as published. */
apr_status_t h2c_store_restore(h2c_store_t *store, const char *room, uint64_t id,
                               int64_t time_ms, const char *line, uint32_t len);

/* For stores, under the lock: one line into room `room` (made if new), as
 * its kind says (h2c_json_line_kind; a line of no known kind is a
 * message): a delete removes its message first if the room still holds it,
 * a clear empties the room. */
apr_status_t h2c_store_append_to(h2c_store_t *store, const char *room, uint64_t id,
                                 int64_t time_ms, const char *line, uint32_t len);

/* For stores, under the lock: entry `line` of a kind the store knows into
 * room `room`: a message (its room made if new), or a delete or clear as
 * the moderate op says (APR_NOTFOUND: nothing to delete or clear; then
 * nothing changed). */
apr_status_t h2c_store_put_to(h2c_store_t *store, const char *room, h2c_entry_kind_t kind,
                              uint64_t target, uint64_t id, int64_t time_ms,
                              const char *line, uint32_t len);

/* 1 if the local history holds what a moderation of `kind` needs: message
 * `target` in room `room` (DELETE), or the room (CLEAR); looked up under the
 * lock. For a store whose entries are committed elsewhere (Redis): a look
 * before it asks there. */
int h2c_store_has(h2c_store_t *store, const char *room, h2c_entry_kind_t kind,
                  uint64_t target);

/* A stream of child row `slot` holds rooms[0..n) (names) while it lives:
 * each is made if new, and keeps its history under memory pressure
 * (h2c_rooms_hold); idx gets their indexes. `member` (may be NULL): who the
 * stream is (H2ChatPresence members); mem (n, with member) gets each
 * room's member record + 1, 0 where none could be had (H2ChatMaxMembers
 * full, or no name h2c_members takes: the stream is then just not named).
 * APR_EBUSY: a new room found no record (H2ChatMaxRooms); then nothing is
 * held. */
apr_status_t h2c_store_hold(h2c_store_t *store, uint32_t slot, const char *const *rooms,
                            uint32_t n, const char *member, uint32_t *idx, uint32_t *mem);
/* The stream ends: its member records (mem may be NULL), then its rooms. */
void h2c_store_release(h2c_store_t *store, uint32_t slot, const uint32_t *idx,
                       const uint32_t *mem, uint32_t n);

/* The presence counts of rooms[0..n) (names; a room that does not exist:
 * 0), looked up under the lock, made if new never; idx (may be NULL): each
 * room's index, UINT32_MAX for none (its members: h2c_presence_names). */
apr_status_t h2c_store_counts(h2c_store_t *store, const char *const *rooms, uint32_t n,
                              uint32_t *counts, uint32_t *idx);

/* Lets go of what child row `slot` held (its process is gone, or a new
 * child took the row): rooms and members, under the lock. */
void h2c_store_forget(h2c_store_t *store, uint32_t slot);

/* Wakes the history's waiters after commits, through `wake` if set. */
void h2c_store_wake(h2c_store_t *store);

/* Wakes every waiter at once, past H2ChatCoalesce: a child that stops
 * ends its held streams. */
void h2c_store_wake_now(h2c_store_t *store);

#endif /* H2C_STORE_H */
