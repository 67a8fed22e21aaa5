/* h2c_seg: the shared segment's layout (pure unit, no httpd headers).
 *
 *   header (magic, version, sizes, offsets) | counters | child table |
 *   address table | rate table | latency table | rooms
 *
 * Offsets, never pointers: each process builds its own h2c_seg_t view.
 * The child table counts held subscribers per child process; the total is
 * their sum, so a child that dies takes its count with it once its slot is
 * reclaimed (see h2c_seg_child_claim). The address table does the same per
 * client address (H2ChatMaxSubscribersPerAddress): one row of bucket counts
 * per child row. The rooms (h2c_rooms) hold every message. */
#ifndef H2C_SEG_H
#define H2C_SEG_H

#include <apr_errno.h>
#include <apr_general.h>
#include <stdint.h>

#include "h2c_gate.h"
#include "h2c_penalty.h"
#include "h2c_rate.h"
#include "h2c_members.h"
#include "h2c_rooms.h"

#define H2C_SEG_MAGIC 0x53433248u /* "H2CS" */
/* 6: the address table, the calm counter; 7: penalized; 8: the latency
 * table; 9: direct_gen, direct_handed; 10: the rooms instead of one ring of
 * fixed slots; 11: the members (H2ChatPresence members). A graceful restart
 * onto another version makes a new segment
 * (H2C0004 says so); a journal refills it. */
#define H2C_SEG_VERSION 11u

/* Why a request was refused; one counter each (server-status). */
typedef enum {
    H2C_REFUSED_CAP,         /* subscriber cap reached */
    H2C_REFUSED_TOO_LARGE,   /* body over H2ChatMaxMessageBytes */
    H2C_REFUSED_INVALID,     /* malformed or invalid message, bad resume id */
    H2C_REFUSED_MEDIA_TYPE,  /* not application/json */
    H2C_REFUSED_METHOD,      /* neither GET nor POST */
    H2C_REFUSED_UNAVAILABLE, /* store unusable */
    H2C_REFUSED_RATE,        /* over H2ChatRateLimit */
    H2C_REFUSED_ORIGIN,      /* Origin not in H2ChatAllowOrigin */
    H2C_REFUSED_ADDRESS,     /* over H2ChatMaxSubscribersPerAddress */
    H2C_REFUSED_ROOMS,       /* no room for a room: H2ChatMaxRooms or H2ChatMemory */
    H2C_REFUSED_MAX
} h2c_refusal_t;

typedef struct h2c_seg_hdr_t h2c_seg_hdr_t;

/* Words the journal writers, the Redis reader and the subscribers share
 * across children (zero in a new segment). Journal words change under the
 * global lock; the others are atomic. */
typedef struct {
    uint32_t journal_gen;        /* bumped when compaction renames a new file in */
    uint32_t reader_pid;         /* the child that follows Redis; 0: none */
    uint64_t journal_records;    /* records in the current journal file */
    uint64_t journal_compact_at; /* compact when records pass this; 0: unset */
    int64_t journal_synced_ms;   /* last fdatasync (wall clock, ms) */
    uint64_t redis_last_id;      /* last stream id the reader fed to the ring */
    uint32_t redis_up;           /* the reader's link: 1 up, 0 down */
    uint32_t stalled_dropped;    /* streams dropped: client stopped reading */
    uint32_t direct_seq;         /* bumped and woken on every commit, ungated:
                                    H2ChatDirect loops wait on it */
    uint32_t direct_calm;        /* direct connections closed: ENHANCE_YOUR_CALM */
    uint32_t direct_penalized;   /* ... refused at once: their address was
                                    (H2ChatDirectPenalty) */
    uint32_t direct_handed;      /* ... handed by the child that accepted them
                                    to a less loaded one (h2c_balance) */
    uint32_t presence_rung;      /* the rooms' presence word at the last ring
                                    (mod_h2chat_presence) */
    h2c_gate_t wake_gate;        /* H2ChatCoalesce: the last wake-up, pending or not */
    h2c_penalty_t penalty;       /* H2ChatDirectPenalty: addresses refused a while */
} h2c_seg_shared_t;

typedef struct {
    uint32_t pid;          /* 0: free */
    uint32_t held;         /* subscribers held by that process now */
    uint32_t direct_conns; /* H2ChatDirect: connections its loop serves */
    uint32_t direct_held;  /* ... and of its held subscribers, those the loop's */
    uint32_t direct_gen;   /* 1 + the generation whose connections its loop
                              takes from the others (h2c_balance); 0: none */
} h2c_child_t;

/* Held streams per client address (H2ChatMaxSubscribersPerAddress), shared
 * by all children. Addresses are hashed (FNV-1a of the address text) into
 * H2C_SEG_ADDR_BUCKETS buckets; two addresses of one bucket share a count.
 * Each child row has a count per bucket of the streams that child holds
 * (uint16_t, 8 KiB a row), and an address's count is the sum over the live
 * rows: a child killed with -9 takes its counts with it when its row is
 * reclaimed, exactly like `held`, with no list of its streams to replay.
 * Summing costs one load per child row, once per stream (enter), never per
 * message; a single shared count per bucket would be cheaper to read but
 * could not drop a dead child's share. */
#define H2C_SEG_ADDR_BUCKETS 4096u

/* Delivery latency: from a message's commit to the ring until the bytes
 * that carry it are handed to the socket (for mod_http2's streams: to
 * mod_http2). One histogram per child row, in its own cache lines so the
 * threads of one child never share a line with another's; counts are not
 * cumulative (one bucket takes each sample). A held stream samples once
 * per delivery pass: the newest message the pass wrote, if it was
 * committed after the stream started (a snapshot's old messages would
 * measure their age, not delivery). Two relaxed atomic adds per pass and
 * stream, nothing per message. The bounds are h2c_lat_bounds_us; the last
 * bucket takes the rest. Cleared with the row's other counts, so a child's
 * series (label pid) starts at 0 and only grows while the child lives. */
#define H2C_LAT_BUCKETS 15u
extern const uint32_t h2c_lat_bounds_us[H2C_LAT_BUCKETS - 1];

typedef struct {
    uint64_t bucket[H2C_LAT_BUCKETS];
    uint64_t sum_us;
} h2c_lat_t;

typedef struct {
    h2c_seg_hdr_t *hdr;
    h2c_child_t *children;
    h2c_lat_t *lat; /* nchildren rows */
    int lat_off; /* this process takes no latency samples (H2ChatLatencyHistogram Off) */
    uint16_t *addr; /* nchildren rows of H2C_SEG_ADDR_BUCKETS counts */
    h2c_rate_t rate;
    h2c_rooms_t rooms;
    h2c_members_t members;
} h2c_seg_t;

/* What a segment is made for: H2ChatHistory (per room), the largest
 * message, H2ChatMaxRooms, H2ChatMemory. */
typedef struct {
    uint32_t nchildren;
    uint32_t history;
    uint32_t max_len;
    uint32_t max_rooms;
    apr_size_t memory;
    uint32_t max_members; /* H2ChatMaxMembers */
} h2c_seg_shape_t;

const char *h2c_seg_refusal_name(h2c_refusal_t why);

apr_size_t h2c_seg_size_shape(const h2c_seg_shape_t *sh);
apr_status_t h2c_seg_init_shape(h2c_seg_t *seg, void *mem, apr_size_t size,
                                const h2c_seg_shape_t *sh, int64_t now_ms);
int h2c_seg_fits_shape(const h2c_seg_t *seg, const h2c_seg_shape_t *sh);

/* The same for one room of `capacity` messages (tests, tools). */
apr_size_t h2c_seg_size(uint32_t nchildren, uint32_t capacity, uint32_t max_len);
/* now_ms: the rate table's epoch (wall clock, ms). */
apr_status_t h2c_seg_init(h2c_seg_t *seg, void *mem, apr_size_t size, uint32_t nchildren,
                          uint32_t capacity, uint32_t max_len, int64_t now_ms);
apr_status_t h2c_seg_attach(h2c_seg_t *seg, void *mem, apr_size_t size);

/* Does this segment have the shape these settings ask for? */
int h2c_seg_fits(const h2c_seg_t *seg, uint32_t nchildren, uint32_t capacity,
                 uint32_t max_len);

/* Child registry. claim: takes a free slot for `pid`, first freeing the
 * slots of processes that no longer exist. APR_EAGAIN if the table is full. */
apr_status_t h2c_seg_child_claim(h2c_seg_t *seg, uint32_t pid, uint32_t *slot);
void h2c_seg_child_release(h2c_seg_t *seg, uint32_t slot);
uint32_t h2c_seg_child_count(const h2c_seg_t *seg);

/* Counts a new subscriber for child `slot` unless the total would pass
 * `max`: APR_SUCCESS or APR_EBUSY. leave undoes a successful enter. */
apr_status_t h2c_seg_sub_enter(h2c_seg_t *seg, uint32_t slot, uint32_t max);
void h2c_seg_sub_leave(h2c_seg_t *seg, uint32_t slot);
uint32_t h2c_seg_sub_total(const h2c_seg_t *seg);

/* Per client address: the bucket of an address (its text, e.g.
 * "192.0.2.7"); enter counts a stream of child `slot` in `bucket` unless
 * the bucket's total over all children would pass `max` (APR_SUCCESS or
 * APR_EBUSY; also EBUSY when this child already holds 65,535 there); leave
 * undoes a successful enter. */
uint32_t h2c_seg_addr_bucket(const char *addr);
apr_status_t h2c_seg_addr_enter(h2c_seg_t *seg, uint32_t slot, uint32_t bucket,
                                uint32_t max);
void h2c_seg_addr_leave(h2c_seg_t *seg, uint32_t slot, uint32_t bucket);
uint32_t h2c_seg_addr_total(const h2c_seg_t *seg, uint32_t bucket);

/* H2ChatDirect's share of a child's row (deltas), and the totals. */
void h2c_seg_direct_count(h2c_seg_t *seg, uint32_t slot, int conns, int held);
/* ... the connections' delta alone, returning the row's new count */
uint32_t h2c_seg_direct_conns_add(h2c_seg_t *seg, uint32_t slot, int conns);
/* gen1: 1 + the generation whose connections this child's loop takes from
 * the others now; 0 when it takes none (no loop, or stopping). */
void h2c_seg_direct_taking(h2c_seg_t *seg, uint32_t slot, uint32_t gen1);
void h2c_seg_direct_totals(const h2c_seg_t *seg, uint32_t *conns, uint32_t *held);

/* A copy of child row i, read atomically word by word (pid 0: free). */
void h2c_seg_child_row(const h2c_seg_t *seg, uint32_t i, h2c_child_t *out);

/* One latency sample for child `slot`: a message committed at
 * `commit_us` (h2c_rooms_clock_us) was just handed to the socket. */
void h2c_seg_lat_sample(h2c_seg_t *seg, uint32_t slot, uint32_t commit_us);
void h2c_seg_lat_add(h2c_seg_t *seg, uint32_t slot, uint32_t us);
/* A copy of child row i's histogram, read word by word. */
void h2c_seg_lat_row(const h2c_seg_t *seg, uint32_t i, h2c_lat_t *out);

/* Direct-loop connections closed for work without progress. */
void h2c_seg_count_calm(h2c_seg_t *seg);
uint32_t h2c_seg_calm(const h2c_seg_t *seg);
/* ... handed to a less loaded child (h2c_balance). */
void h2c_seg_count_handed(h2c_seg_t *seg);
uint32_t h2c_seg_handed(const h2c_seg_t *seg);
/* ... and new ones refused because their address was (H2ChatDirectPenalty). */
void h2c_seg_count_penalized(h2c_seg_t *seg);
uint32_t h2c_seg_penalized(const h2c_seg_t *seg);

/* The addresses the direct loops refuse a while (H2ChatDirectPenalty). */
h2c_penalty_t *h2c_seg_penalty(h2c_seg_t *seg);

/* Held streams dropped because their client stopped reading. */
void h2c_seg_count_stalled(h2c_seg_t *seg);
uint32_t h2c_seg_stalled(const h2c_seg_t *seg);

/* Bumped and woken on every commit, past H2ChatCoalesce: the H2ChatDirect
 * loops wait on it (h2c_wait). */
volatile uint32_t *h2c_seg_direct_seq(h2c_seg_t *seg);

/* The Redis store's words: its reader's link and the last id it fed. */
int h2c_seg_redis_set_up(h2c_seg_t *seg, uint32_t up); /* 1 if it changed */
uint32_t h2c_seg_redis_up(const h2c_seg_t *seg);
void h2c_seg_redis_set_last_id(h2c_seg_t *seg, uint64_t id);
uint64_t h2c_seg_redis_last_id(const h2c_seg_t *seg);
uint32_t h2c_seg_reader_pid(const h2c_seg_t *seg);

void h2c_seg_count_refusal(h2c_seg_t *seg, h2c_refusal_t why);
uint64_t h2c_seg_refusals(const h2c_seg_t *seg, h2c_refusal_t why);
void h2c_seg_count_published(h2c_seg_t *seg);
h2c_seg_shared_t *h2c_seg_shared(h2c_seg_t *seg);

/* One reader of the Redis stream per server: claim makes `pid` the reader
 * if there is none or the recorded one no longer exists (APR_SUCCESS, also
 * if pid already is the reader), else APR_EBUSY. release gives it up if
 * pid holds it. */
apr_status_t h2c_seg_reader_claim(h2c_seg_t *seg, uint32_t pid);
void h2c_seg_reader_release(h2c_seg_t *seg, uint32_t pid);
uint64_t h2c_seg_published(const h2c_seg_t *seg);

#endif /* H2C_SEG_H */
