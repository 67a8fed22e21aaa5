/* h2c_follow: see h2c_follow.h. */
#include "h2c_follow.h"

void h2c_follow_start(h2c_follow_t *f, h2c_rooms_t *rs, uint32_t room, int resume,
                      uint64_t since, uint32_t snapshot, int *reset) {
    uint64_t gone;
    h2c_rooms_msg_t m;

    f->rs = rs;
    f->room = room;
    f->floor = 0;
    f->exact = 0;
    f->looked = 0;
    *reset = 0;
    if (resume && since <= h2c_rooms_last_id(rs)) {
        h2c_rooms_cursor_at(&f->cur, since);
        return;
    }
    *reset = resume;
    if (snapshot > 0 && h2c_rooms_tail(rs, room, snapshot, &m) == APR_SUCCESS) {
        h2c_rooms_cursor_at(&f->cur, m.id - 1);
        f->cur.room_seq = m.room_seq - 1;
        f->exact = 1;
        f->floor = m.id - 1;
        return;
    }
    /* nothing to show: from the room's newest on */
    gone = h2c_rooms_room_gone(rs, room);
    f->floor = h2c_rooms_room_last(rs, room);
    f->floor = f->floor > gone ? f->floor : gone;
    h2c_rooms_cursor_at(&f->cur, f->floor);
}

int h2c_follow_pending(const h2c_follow_t *f) {
    uint64_t last = h2c_rooms_room_last(f->rs, f->room);

    return (last > f->cur.id && last > f->looked) ||
           h2c_rooms_room_gone(f->rs, f->room) > f->cur.id;
}

/* The room's gone mark and its room_seq, as one pair (a writer may move
 * both between two loads). */
static void gone_pair(const h2c_follow_t *f, uint64_t *id, uint64_t *seq) {
    uint64_t again;
    int tries = 0;

    do {
        *id = h2c_rooms_room_gone(f->rs, f->room);
        *seq = h2c_rooms_room_gone_seq(f->rs, f->room);
        again = h2c_rooms_room_gone(f->rs, f->room);
    } while (again != *id && ++tries < 100);
}

h2c_follow_what_t h2c_follow_next(h2c_follow_t *f, h2c_rooms_msg_t *m,
                                  h2c_follow_gap_t *gap) {
    uint64_t gone, gone_seq, from, last;

    gone_pair(f, &gone, &gone_seq);
    if (gone > f->cur.id && gone > f->floor) {
        from = (f->cur.id > f->floor ? f->cur.id : f->floor) + 1;
        gap->from = from;
        gap->to = gone;
        if (f->exact && gone_seq >= f->cur.room_seq) {
            gap->missed = gone_seq - f->cur.room_seq;
        } else {
            gap->missed = gone - from + 1;
            gap->missed = gap->missed < gone_seq ? gap->missed : gone_seq;
        }
        h2c_rooms_cursor_at(&f->cur, gone);
        f->cur.room_seq = gone_seq;
        f->exact = 1;
        return H2C_FOLLOW_GAP;
    }
    last = h2c_rooms_room_last(f->rs, f->room);
    if (h2c_rooms_next(f->rs, f->room, &f->cur, m) != APR_SUCCESS) {
        f->looked = last;
        return H2C_FOLLOW_NONE;
    }
    return H2C_FOLLOW_MESSAGE;
}

void h2c_follow_sent(h2c_follow_t *f, const h2c_rooms_msg_t *m) {
    h2c_rooms_advance(&f->cur, m);
    f->exact = 1;
}

uint64_t h2c_follow_last(const h2c_follow_t *f) {
    return f->cur.id;
}
