/* h2c_follow: a held stream's place in its rooms (pure unit, no httpd
 * headers), the same for the handler thread and the direct loop: where a
 * new stream starts (resume, snapshot, reset), what it sends next (a gap
 * line or a message), and how far it got.
 *
 * A stream follows one room or several (?room=a&room=b). Ids are the
 * server's, one sequence for all rooms, and a stream sends its rooms'
 * messages merged in id order, never one above the newest id committed
 * when it looked: so the id it sent last says how far it got in every
 * room, and one since= / Last-Event-ID resumes them all.
 *
 * Gaps: a room's messages leave in id order (history, memory pressure, a
 * clear), and the room remembers the newest that left (h2c_rooms_room_gone)
 * and its room_seq. A stream whose place in a room is below it lost
 * messages of that room: one gap line for that room, then it goes on from
 * the room's oldest. The count is exact when the stream knows the room_seq
 * of its place (it read one of the room's messages, or began with a
 * snapshot); a resume by id alone counts the ids between, at most the
 * room's messages that left (exact while every message goes to one room,
 * as without rooms). Deleted messages are no gap: they leave without moving
 * the room's gone mark. */
#ifndef H2C_FOLLOW_H
#define H2C_FOLLOW_H

#include <stdint.h>

#include "h2c_rooms.h"

/* The stream's place in one room. */
typedef struct {
    uint32_t room;
    h2c_rooms_cursor_t cur;
    uint64_t floor;  /* what left up to here went before the stream began */
    uint64_t looked; /* the room's newest id when a look found nothing (the
                        newest may have been deleted: no news then) */
    int exact;       /* cur.room_seq is the room_seq of cur.id */
} h2c_follow_room_t;

typedef struct {
    h2c_rooms_t *rs;
    uint32_t n;
    h2c_follow_room_t *r; /* n places: `one`, or the caller's memory */
    h2c_follow_room_t one;
    uint64_t last;  /* the id sent last (or the place it started after) */
    uint64_t began; /* the newest id of any room when it started */
    int ended;      /* it sent a clear committed after it started */
} h2c_follow_t;

typedef enum { H2C_FOLLOW_NONE, H2C_FOLLOW_MESSAGE, H2C_FOLLOW_GAP } h2c_follow_what_t;

typedef struct {
    uint32_t which; /* the room's position in the stream's list */
    uint64_t missed, from, to;
} h2c_follow_gap_t;

/* Where a new stream of rooms[0..n) starts (mem: n places when n > 1, the
 * caller's, living as long as the stream): after `since` when resuming,
 * else the newest `snapshot` messages of each room. A resume id above
 * every id given so far (the server's ids restarted) sets *reset: the
 * client gets a reset line (h2c_rooms_last_id) and the snapshot. */
void h2c_follow_start(h2c_follow_t *f, h2c_rooms_t *rs, const uint32_t *rooms, uint32_t n,
                      h2c_follow_room_t *mem, int resume, uint64_t since,
                      uint32_t snapshot, int *reset);

/* 1 if a room has something past the stream's place (a cheap look: no
 * message is read). */
int h2c_follow_pending(const h2c_follow_t *f);

/* What the stream sends next: a gap (*gap; the stream's place in that room
 * moves past it), a message (*m, of the stream's room gap->which: frame
 * it, then h2c_follow_sent), or nothing yet. */
h2c_follow_what_t h2c_follow_next(h2c_follow_t *f, h2c_rooms_msg_t *m,
                                  h2c_follow_gap_t *gap);
void h2c_follow_sent(h2c_follow_t *f, const h2c_rooms_msg_t *m, uint32_t which);

/* 1 once the stream sent a clear of one of its rooms committed while it
 * was held (DELETE <room>): the transport ends it after that entry (its
 * client comes back to what the room is now). A clear met by a resume or a
 * snapshot, committed before the stream began, ends nothing. */
int h2c_follow_ended(const h2c_follow_t *f);

/* The id of the last message sent (or of the place it started after). */
uint64_t h2c_follow_last(const h2c_follow_t *f);

#endif /* H2C_FOLLOW_H */
