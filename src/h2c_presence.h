/* h2c_presence: who is in a room, as counts (pure unit, no httpd headers).
 *
 * A room's count is the streams that hold it, on every child (h2c_rooms
 * keeps them per child row, so a killed child's streams leave its count
 * once its row is forgotten). A held stream tells its client each of its
 * rooms' count when the stream starts and whenever it changed, at most
 * once a second: `{"type":"presence","room":"a","count":N}`. The rooms
 * bump one word on every change (h2c_rooms_presence_seq); a stream looks
 * only when that word moved and a second has passed since its last look,
 * so a quiet server costs nothing and a busy one one look per stream and
 * second.
 *
 * H2ChatPresence members adds who (h2c_members): a stream's first look
 * tells each of its rooms' member list, later looks the joins and leaves
 * logged since, read from the members' ring where the stream left it. */
#ifndef H2C_PRESENCE_H
#define H2C_PRESENCE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "h2c_follow.h"
#include "h2c_members.h"

/* One stream's presence: what it told last. */
typedef struct {
    uint32_t seen;           /* h2c_rooms_presence_seq at the last look */
    int looked;              /* it looked at least once */
    int64_t next_us;         /* no look before this (monotonic µs) */
    uint32_t *told;          /* per room of the stream: the count told last */
    uint32_t told_one;       /* ... for a stream of one room */
    const h2c_members_t *ms; /* H2ChatPresence members; NULL: counts only */
    uint64_t mseq;           /* the members' events it read */
} h2c_presence_t;

/* What a look tells the stream's client, per room of the stream (which). */
typedef struct {
    void (*count)(void *ctx, uint32_t which, uint32_t count);
    /* members: the room's whole list (at the stream's first look, or when
     * it fell a whole ring of events behind) */
    void (*list)(void *ctx, uint32_t which);
    /* members: one joined or left since the last look */
    void (*member)(void *ctx, uint32_t which, h2c_member_kind_t kind, const char *name,
                   uint32_t len);
} h2c_presence_fns_t;

#define H2C_PRESENCE_EVERY_US 1000000 /* one look a second at most */

/* Sets p up for a stream of n rooms (told: n counts of the caller's
 * memory when n > 1, living as long as the stream); ms: the members to
 * tell about (H2ChatPresence members), or NULL. */
void h2c_presence_init(h2c_presence_t *p, uint32_t n, uint32_t *told,
                       const h2c_members_t *ms);

/* 1 if the stream should look now (the rooms' word moved, or it never
 * looked, and its second passed); *wait_us: else how long until it may
 * (0: nothing to wait for). */
int h2c_presence_due(const h2c_presence_t *p, const h2c_rooms_t *rs, int64_t now_us,
                     int64_t *wait_us);

/* Looks: fns->count for each room of f whose count is not the one told
 * last; with members, the lists at the first look, then each join and
 * leave of its rooms in order (or the lists again if it fell behind).
 * Returns how many lines it told. */
uint32_t h2c_presence_look(h2c_presence_t *p, const h2c_follow_t *f, int64_t now_us,
                           const h2c_presence_fns_t *fns, void *ctx);

/* The names of a room's members now (const char *, in p). */
apr_array_header_t *h2c_presence_names(const h2c_members_t *ms, uint32_t room,
                                       apr_pool_t *p);

/* The room's count now (streams on every child). */
uint32_t h2c_presence_count(const h2c_rooms_t *rs, uint32_t room);

#endif /* H2C_PRESENCE_H */
