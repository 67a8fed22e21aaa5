/* h2c_members: who is in a room, by name (pure unit, no httpd headers),
 * for H2ChatPresence members.
 *
 *   header | member records | name hash | first member per room |
 *   streams per child row and member | events
 *
 * A member is a (room, name) with at least one stream anywhere: two tabs,
 * two connections or two children of one person are one member, counted
 * per child row (so a killed child's streams leave once its row is
 * forgotten). The first stream of a member logs a join, its last a leave,
 * into a ring of events every stream reads from where it last read; a
 * stream that fell a whole ring behind is told the full list again.
 *
 * Writers are serialised by the caller (the global lock). Readers take no
 * lock: an event and a record carry a sequence word, odd (records) or 0
 * (events) while written, so a reader that raced with a writer sees the
 * word move and skips or retries. Nothing holds a pointer: every process
 * maps the region at its own address. */
#ifndef H2C_MEMBERS_H
#define H2C_MEMBERS_H

#include <apr_errno.h>
#include <apr_general.h>
#include <stdint.h>

#define H2C_MEMBERS_MAGIC 0x4d424d48u /* "HMBM" */
#define H2C_MEMBERS_VERSION 1u
#define H2C_MEMBERS_NAME_MAX 128u /* bytes of a member's name */
#define H2C_MEMBERS_EVENTS 4096u  /* the ring: a power of two */

typedef struct h2c_members_hdr_t h2c_members_hdr_t;
typedef struct h2c_members_rec_t h2c_members_rec_t;
typedef struct h2c_members_ev_t h2c_members_ev_t;

/* A process-local view of the region. */
typedef struct {
    h2c_members_hdr_t *hdr;
    h2c_members_rec_t *rec;
    uint32_t *hash;       /* bucket -> member + 1 */
    uint32_t *room_first; /* room -> its first member + 1 */
    uint16_t *held;       /* [row][member] -> streams of that row */
    h2c_members_ev_t *ev;
} h2c_members_t;

typedef enum { H2C_MEMBER_JOIN = 1, H2C_MEMBER_LEAVE = 2 } h2c_member_kind_t;

/* One event, as a reader copies it. */
typedef struct {
    uint64_t seq;
    uint32_t room;
    h2c_member_kind_t kind;
    uint32_t len;
    char name[H2C_MEMBERS_NAME_MAX + 1]; /* NUL-terminated */
} h2c_member_event_t;

/* Bytes a region for these settings needs (max_rooms: the rooms' records,
 * room indexes are theirs; nslots: the child rows). */
apr_size_t h2c_members_size(uint32_t max_members, uint32_t max_rooms, uint32_t nslots);
apr_status_t h2c_members_init(h2c_members_t *ms, void *mem, apr_size_t size,
                              uint32_t max_members, uint32_t max_rooms, uint32_t nslots);
/* APR_EGENERAL if mem is not a region of this version. */
apr_status_t h2c_members_attach(h2c_members_t *ms, void *mem, apr_size_t size);

/* ---- writer side: the caller holds the lock ---------------------------- */

/* A stream of child row `slot` is `name` in `room`: *member gets its
 * record; the member's first stream logs a join. APR_EINVAL: no name or
 * over H2C_MEMBERS_NAME_MAX bytes; APR_EBUSY: every record is taken, or
 * that row holds 65,535 streams of the member; then nothing changed. */
apr_status_t h2c_members_join(h2c_members_t *ms, uint32_t slot, uint32_t room,
                              const char *name, apr_size_t len, uint32_t *member);

/* That stream ended: the member's last stream logs a leave and frees it. */
void h2c_members_leave(h2c_members_t *ms, uint32_t slot, uint32_t member);

/* Row `slot`'s process is gone: its streams leave, as if each had ended. */
void h2c_members_forget(h2c_members_t *ms, uint32_t slot);

/* ---- reader side: lock-free -------------------------------------------- */

/* Events logged so far: the next one gets seq + 1. */
uint64_t h2c_members_seq(const h2c_members_t *ms);

/* Event `seq` (1 .. h2c_members_seq): APR_SUCCESS with *ev; APR_NOTFOUND:
 * the ring moved past it (the reader fell behind: list again). */
apr_status_t h2c_members_event(const h2c_members_t *ms, uint64_t seq,
                               h2c_member_event_t *ev);

/* fn(ctx, name, len) for each member of `room` (in no order); a member
 * joining or leaving meanwhile may be missed or seen: its event follows.
 * fn(ctx, NULL, 0): a writer crossed the walk, forget the names given so
 * far (the walk starts over). Returns how many the last walk gave. */
uint32_t h2c_members_list(const h2c_members_t *ms, uint32_t room,
                          void (*fn)(void *ctx, const char *name, uint32_t len),
                          void *ctx);

/* Members in all; the records there are. */
uint32_t h2c_members_count(const h2c_members_t *ms);
uint32_t h2c_members_max(const h2c_members_t *ms);

#endif /* H2C_MEMBERS_H */
