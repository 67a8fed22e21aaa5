/* h2c_rooms: the rooms' histories in shared memory (pure unit, no httpd
 * headers). h2c_room (singular) is the other side: what a URL names.
 *
 *   header | room records | name hash | tombstones | holders per child
 *   row and room | chunks
 *
 * One id sequence for the whole server: every message, whatever its room,
 * takes the next id, so one number (since= / Last-Event-ID) says how far a
 * stream of several rooms got in all of them. Each room keeps its own
 * newest `history` messages as a list of chunk chains: a message of L bytes
 * takes 1 + (L - 80) / 120 chunks of 128 bytes (rounded up), so memory
 * follows what rooms hold, not rooms times the largest message, and a
 * busy room never pushes out a quiet room's messages while chunks last.
 *
 * When chunks run out, the rooms nobody subscribes to give theirs back,
 * least recently written first (the idle list); then the writing room its
 * own oldest. A room record is freed when it holds nothing and nobody
 * holds it; a new room that needs one takes the least recently written
 * idle room's. A freed room leaves its newest id in a tombstone (per hash
 * bucket), so a later resume into a room of that name gets an honest gap.
 *
 * Writers are serialised by the caller (the global lock). Readers take no
 * lock: a message's first chunk carries its id, 0 while written or freed
 * (a seqlock), so a reader that raced with a free sees
 * a changed id and starts over from the room's head. Nothing here holds a
 * pointer: every process maps the region at its own address. */
#ifndef H2C_ROOMS_H
#define H2C_ROOMS_H

#include <apr_errno.h>
#include <apr_general.h>
#include <stdint.h>

#define H2C_ROOMS_MAGIC 0x4d524348u /* "HCRM" */
#define H2C_ROOMS_VERSION 2u        /* 2: no per-room futex word (never waited on) */
#define H2C_ROOMS_CHUNK 128u
#define H2C_ROOMS_NAME_MAX 64u
#define H2C_ROOMS_DEFAULT 0u /* the location's own room: name "", never freed */

/* What a room's entry is. Moderation is logged in the room itself, in id
 * order with its messages, so every reader (a resume, a journal replay, a
 * Redis node) meets it in its place. Segments before kinds wrote 0. */
typedef enum {
    H2C_ENTRY_MESSAGE = 0,
    H2C_ENTRY_DELETE = 1, /* a message of the room was deleted */
    H2C_ENTRY_CLEAR = 2   /* the room's history was cleared */
} h2c_entry_kind_t;

typedef struct h2c_rooms_hdr_t h2c_rooms_hdr_t;
typedef struct h2c_rooms_rec_t h2c_rooms_rec_t;

/* A process-local view of the region. */
typedef struct {
    h2c_rooms_hdr_t *hdr;
    h2c_rooms_rec_t *rec;
    uint32_t *hash;       /* bucket -> room index + 1 */
    uint64_t *tomb;       /* bucket -> newest id of a freed room of that bucket */
    uint32_t *slot_total; /* child row -> streams it holds, all rooms */
    uint16_t *held;       /* [row][room] -> streams that row holds there */
    char *chunks;
} h2c_rooms_t;

/* One message found by h2c_rooms_next. */
typedef struct {
    uint32_t chunk; /* its first chunk */
    uint64_t id;
    uint64_t room_seq; /* 1 + the room's messages before it (deleted ones too) */
    uint32_t len;
    uint32_t kind; /* h2c_entry_kind_t */
} h2c_rooms_msg_t;

/* Where a reader is in one room: the message it read last. */
typedef struct {
    uint32_t chunk; /* its first chunk + 1; 0: none (start from the head) */
    uint64_t id;    /* its id (or the resume id when chunk is 0) */
    uint64_t room_seq;
} h2c_rooms_cursor_t;

/* What server-status shows (read without the lock: a moment's view). */
typedef struct {
    uint32_t rooms, max_rooms;
    uint64_t chunks_used, chunks;
    uint64_t evicted;      /* messages given back under memory pressure */
    uint64_t rooms_freed;  /* idle rooms whose record a new room took */
    uint64_t refused;      /* rooms or messages refused: nothing left to give */
    uint32_t record_bytes; /* a room's fixed share of the segment: its record,
                              hash and tombstone entries, holder counts */
} h2c_rooms_stats_t;

/* The chunks' share that holds `messages` of max_len bytes each. */
apr_size_t h2c_rooms_memory_for(uint32_t messages, uint32_t max_len);

/* Bytes a region for these settings needs; nslots: the child rows that
 * hold rooms (h2c_seg's); memory: the chunks' share. */
apr_size_t h2c_rooms_size(uint32_t max_rooms, uint32_t nslots, apr_size_t memory);

/* Formats `mem` (8-aligned) as empty, with the default room. */
apr_status_t h2c_rooms_init(h2c_rooms_t *rs, void *mem, apr_size_t size,
                            uint32_t max_rooms, uint32_t nslots, apr_size_t memory,
                            uint32_t history, uint32_t max_len);
/* Views a formatted region; APR_EGENERAL if it is not one of this version. */
apr_status_t h2c_rooms_attach(h2c_rooms_t *rs, void *mem, apr_size_t size);
int h2c_rooms_fits(const h2c_rooms_t *rs, uint32_t max_rooms, uint32_t nslots,
                   apr_size_t memory, uint32_t history, uint32_t max_len);

uint32_t h2c_rooms_max_len(const h2c_rooms_t *rs);
uint32_t h2c_rooms_history(const h2c_rooms_t *rs);

/* ---- writer side: the caller holds the lock ---------------------------- */

/* The room of this name (len 0: the default room): APR_SUCCESS with *room;
 * APR_NOTFOUND if it does not exist and !create; APR_EBUSY if it would be
 * new and every record is held by a room with subscribers. */
apr_status_t h2c_rooms_open(h2c_rooms_t *rs, const char *name, apr_size_t len, int create,
                            uint32_t *room);

/* A stream of child row `slot` starts (+1) or ends (-1) holding `room`: a
 * room with streams keeps its history under memory pressure, and its
 * holders are its presence count. Ending the last one of an empty room
 * frees its record. APR_EBUSY (nothing counted): that row holds 65,535 of
 * this room already. */
apr_status_t h2c_rooms_hold(h2c_rooms_t *rs, uint32_t slot, uint32_t room, int delta);

/* Row `slot`'s process is gone (killed, or its row taken by a new child):
 * what it held is let go, as if each of its streams had ended. */
void h2c_rooms_forget(h2c_rooms_t *rs, uint32_t slot);

/* Streams row `slot` holds in all (0: nothing to forget). */
uint32_t h2c_rooms_slot_holds(const h2c_rooms_t *rs, uint32_t slot);

/* The next id (the newest + 1): what the message to append gets. */
uint64_t h2c_rooms_next_id(const h2c_rooms_t *rs);

/* Appends entry `id` (above every id so far) of `kind` to `room`. Ids
 * skipped since the newest belong to no room. APR_ENOSPC: len over max_len;
 * APR_ENOMEM: no chunks even after giving back what may be (counted as
 * refused; nothing changed); APR_EINVAL: id not above the newest. */
apr_status_t h2c_rooms_append(h2c_rooms_t *rs, uint32_t room, h2c_entry_kind_t kind,
                              uint64_t id, int64_t time_ms, const char *data,
                              uint32_t len);

/* Removes message `id` from `room`: APR_NOTFOUND if it holds no message
 * (an entry of another kind is never removed) of that id. */
apr_status_t h2c_rooms_delete(h2c_rooms_t *rs, uint32_t room, uint64_t id);

/* Removes every message of `room`; its record stays while it is held. */
void h2c_rooms_clear(h2c_rooms_t *rs, uint32_t room);

/* ---- reader side: lock-free -------------------------------------------- */

uint64_t h2c_rooms_last_id(const h2c_rooms_t *rs); /* newest id of any room */
uint64_t h2c_rooms_room_last(const h2c_rooms_t *rs, uint32_t room);
/* The newest id that left the room's history (evicted, cleared, or the
 * room's record was freed before): a reader past an id below it lost some. */
uint64_t h2c_rooms_room_gone(const h2c_rooms_t *rs, uint32_t room);
/* The room_seq of the newest message that left (0: none). */
uint64_t h2c_rooms_room_gone_seq(const h2c_rooms_t *rs, uint32_t room);
uint32_t h2c_rooms_room_count(const h2c_rooms_t *rs, uint32_t room);
uint32_t h2c_rooms_room_holders(const h2c_rooms_t *rs, uint32_t room);
/* Copies the room's name (NUL-terminated, at most 64 bytes + NUL). */
void h2c_rooms_room_name(const h2c_rooms_t *rs, uint32_t room, char *buf);

/* The futex word, bumped at every commit (one for all rooms: a per-room
 * word would wake fewer streams, see the notes of #14). */
volatile uint32_t *h2c_rooms_seq(h2c_rooms_t *rs);

/* Bumped whenever a room's holders change (presence): no one sleeps on it;
 * a ticker compares it once a second. */
uint32_t h2c_rooms_presence_seq(const h2c_rooms_t *rs);

/* A cursor before the first message with an id above `after`. */
void h2c_rooms_cursor_at(h2c_rooms_cursor_t *cur, uint64_t after);

/* The room's first message after the cursor: APR_SUCCESS with *m (the
 * cursor does not move: h2c_rooms_advance does); APR_INCOMPLETE when there
 * is none yet. */
apr_status_t h2c_rooms_next(const h2c_rooms_t *rs, uint32_t room,
                            const h2c_rooms_cursor_t *cur, h2c_rooms_msg_t *m);
void h2c_rooms_advance(h2c_rooms_cursor_t *cur, const h2c_rooms_msg_t *m);

/* The room's `n`th newest message (1: the newest) or, when it holds fewer,
 * its oldest: where a snapshot of n starts. APR_INCOMPLETE: it holds none. */
apr_status_t h2c_rooms_tail(const h2c_rooms_t *rs, uint32_t room, uint32_t n,
                            h2c_rooms_msg_t *m);

/* Copies message m's bytes into buf (cap >= m->len). APR_NOTFOUND if it
 * left meanwhile: ask h2c_rooms_next again. */
apr_status_t h2c_rooms_read(const h2c_rooms_t *rs, const h2c_rooms_msg_t *m, char *buf,
                            apr_size_t cap, int64_t *time_ms, uint32_t *commit_us);

void h2c_rooms_stats(const h2c_rooms_t *rs, h2c_rooms_stats_t *out);

/* Every message of every room, in id order (a journal's compaction): the
 * caller holds the lock, so nothing moves. fn returning non-zero stops the
 * walk. APR_ENOMEM if the list could not be made. */
apr_status_t h2c_rooms_each(const h2c_rooms_t *rs,
                            int (*fn)(void *ctx, const h2c_rooms_msg_t *m), void *ctx);

/* Delivery latency: the clock commits are stamped with (CLOCK_MONOTONIC,
 * µs, low 32 bits: compare two readings by their difference). */
uint32_t h2c_rooms_clock_us(void);

#endif /* H2C_ROOMS_H */
