/* h2c_follow: see h2c_follow.h. */
#include "h2c_follow.h"

static void start_room(h2c_follow_room_t *fr, h2c_rooms_t *rs, uint32_t room, int resume,
                       uint64_t since, uint32_t snapshot) {
    h2c_rooms_msg_t m;
    uint64_t gone;

    fr->room = room;
    fr->floor = 0;
    fr->exact = 0;
    fr->looked = 0;
    if (resume) {
        h2c_rooms_cursor_at(&fr->cur, since);
        return;
    }
    if (snapshot > 0 && h2c_rooms_tail(rs, room, snapshot, &m) == APR_SUCCESS) {
        h2c_rooms_cursor_at(&fr->cur, m.id - 1);
        fr->cur.room_seq = m.room_seq - 1;
        fr->exact = 1;
        fr->floor = m.id - 1;
        return;
    }
    /* nothing to show: from the room's newest on */
    gone = h2c_rooms_room_gone(rs, room);
    fr->floor = h2c_rooms_room_last(rs, room);
    fr->floor = fr->floor > gone ? fr->floor : gone;
    h2c_rooms_cursor_at(&fr->cur, fr->floor);
}

void h2c_follow_start(h2c_follow_t *f, h2c_rooms_t *rs, const uint32_t *rooms, uint32_t n,
                      h2c_follow_room_t *mem, int resume, uint64_t since,
                      uint32_t snapshot, int *reset) {
    uint32_t i;

    f->rs = rs;
    f->n = n;
    f->began = h2c_rooms_last_id(rs);
    f->ended = 0;
    f->r = n > 1 ? mem : &f->one;
    *reset = resume && since > h2c_rooms_last_id(rs);
    resume = resume && !*reset;
    f->last = resume ? since : 0;
    for (i = 0; i < n; i++) {
        start_room(&f->r[i], rs, rooms[i], resume, since, snapshot);
        if (f->r[i].cur.id > f->last) {
            f->last = f->r[i].cur.id;
        }
    }
    if (!resume) {
        /* a fresh stream has seen nothing: its first token is its first
         * message's, or the newest id when its rooms show none */
        f->last = h2c_rooms_last_id(rs);
    }
}

static int room_pending(const h2c_follow_t *f, const h2c_follow_room_t *fr) {
    uint64_t last = h2c_rooms_room_last(f->rs, fr->room);

    return (last > fr->cur.id && last > fr->looked) ||
           h2c_rooms_room_gone(f->rs, fr->room) > fr->cur.id;
}

int h2c_follow_pending(const h2c_follow_t *f) {
    uint32_t i;

    for (i = 0; i < f->n; i++) {
        if (room_pending(f, &f->r[i])) {
            return 1;
        }
    }
    return 0;
}

/* The room's gone mark and its room_seq, as one pair (a writer may move
 * both between two loads). */
static void gone_pair(const h2c_follow_t *f, uint32_t room, uint64_t *id, uint64_t *seq) {
    uint64_t again;
    int tries = 0;

    do {
        *id = h2c_rooms_room_gone(f->rs, room);
        *seq = h2c_rooms_room_gone_seq(f->rs, room);
        again = h2c_rooms_room_gone(f->rs, room);
    } while (again != *id && ++tries < 100);
}

/* 1 with *gap if the stream lost messages of room i. */
static int room_gap(h2c_follow_t *f, uint32_t i, h2c_follow_gap_t *gap) {
    h2c_follow_room_t *fr = &f->r[i];
    uint64_t gone, gone_seq, from;

    gone_pair(f, fr->room, &gone, &gone_seq);
    if (gone <= fr->cur.id || gone <= fr->floor) {
        return 0;
    }
    from = (fr->cur.id > fr->floor ? fr->cur.id : fr->floor) + 1;
    gap->which = i;
    gap->from = from;
    gap->to = gone;
    if (fr->exact && gone_seq >= fr->cur.room_seq) {
        gap->missed = gone_seq - fr->cur.room_seq;
    } else {
        gap->missed = gone - from + 1;
        gap->missed = gap->missed < gone_seq ? gap->missed : gone_seq;
    }
    h2c_rooms_cursor_at(&fr->cur, gone);
    fr->cur.room_seq = gone_seq;
    fr->exact = 1;
    return 1;
}

h2c_follow_what_t h2c_follow_next(h2c_follow_t *f, h2c_rooms_msg_t *m,
                                  h2c_follow_gap_t *gap) {
    /* nothing above the newest id committed now: every smaller id of every
     * room is visible by then, so the merge never skips one */
    uint64_t top = h2c_rooms_last_id(f->rs), last;
    h2c_rooms_msg_t c;
    uint32_t i, best = UINT32_MAX;

    for (i = 0; i < f->n; i++) {
        if (room_gap(f, i, gap)) {
            return H2C_FOLLOW_GAP;
        }
    }
    for (i = 0; i < f->n; i++) {
        h2c_follow_room_t *fr = &f->r[i];

        last = h2c_rooms_room_last(f->rs, fr->room);
        if (h2c_rooms_next(f->rs, fr->room, &fr->cur, &c) != APR_SUCCESS || c.id > top) {
            fr->looked = last < top ? last : top;
            continue;
        }
        if (best == UINT32_MAX || c.id < m->id) {
            *m = c;
            best = i;
        }
    }
    if (best == UINT32_MAX) {
        return H2C_FOLLOW_NONE;
    }
    gap->which = best;
    return H2C_FOLLOW_MESSAGE;
}

void h2c_follow_sent(h2c_follow_t *f, const h2c_rooms_msg_t *m, uint32_t which) {
    h2c_rooms_advance(&f->r[which].cur, m);
    f->r[which].exact = 1;
    if (m->id > f->last) {
        f->last = m->id;
    }
    if (m->kind == H2C_ENTRY_CLEAR && m->id > f->began) {
        f->ended = 1; /* cleared while this stream was held */
    }
}

int h2c_follow_ended(const h2c_follow_t *f) {
    return f->ended;
}

uint64_t h2c_follow_last(const h2c_follow_t *f) {
    return f->last;
}
