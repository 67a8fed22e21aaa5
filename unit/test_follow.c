/* Unit tests of h2c_follow: where a stream starts (snapshot, resume,
 * reset), what it sends next, and the gap lines it gets. */
#include <stdio.h>
#include <string.h>

#include "h2c_follow.h"
#include "unit.h"

static h2c_rooms_t *make(apr_pool_t *p, uint32_t history) {
    apr_size_t size = h2c_rooms_size(4, 1, 64 * 1024);
    h2c_rooms_t *rs = apr_pcalloc(p, sizeof(*rs));

    CHECK(h2c_rooms_init(rs, apr_pcalloc(p, size), size, 4, 1, 64 * 1024, history, 256) ==
          APR_SUCCESS);
    return rs;
}

static void put(h2c_rooms_t *rs, uint32_t room) {
    h2c_rooms_append(rs, room, H2C_ENTRY_MESSAGE, h2c_rooms_next_id(rs), 1000, "{}", 2);
}

/* What a stream sends until nothing is new: message ids, and each gap as
 * -missed (from and to checked by the callers that care). */
static int drain(h2c_follow_t *f, long *out, int max, h2c_follow_gap_t *last_gap) {
    h2c_follow_gap_t gap;
    h2c_rooms_msg_t m;
    int n = 0;

    while (n < max) {
        switch (h2c_follow_next(f, &m, &gap)) {
        case H2C_FOLLOW_GAP:
            out[n++] = -(long)gap.missed;
            if (last_gap) {
                *last_gap = gap;
            }
            continue;
        case H2C_FOLLOW_MESSAGE:
            out[n++] = (long)m.id;
            h2c_follow_sent(f, &m, gap.which);
            continue;
        default:
            break;
        }
        break;
    }
    return n;
}

static void test_start(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 4);
    h2c_follow_t f;
    long got[16];
    int reset, i;

    /* empty room: the first message to come */
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 0, 0, 2, &reset);
    CHECK(!reset && !h2c_follow_pending(&f) && drain(&f, got, 16, NULL) == 0);
    put(rs, H2C_ROOMS_DEFAULT);
    CHECK(h2c_follow_pending(&f) && drain(&f, got, 16, NULL) == 1 && got[0] == 1);
    for (i = 0; i < 5; i++) {
        put(rs, H2C_ROOMS_DEFAULT); /* ids 2..6, the room holds 3..6 */
    }
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 0, 0, 2,
                     &reset); /* snapshot 2 */
    CHECK(!reset && drain(&f, got, 16, NULL) == 2 && got[0] == 5 && got[1] == 6);
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 0, 0, 50,
                     &reset); /* all held */
    CHECK(drain(&f, got, 16, NULL) == 4 && got[0] == 3);
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 0, 0, 0,
                     &reset); /* none */
    CHECK(drain(&f, got, 16, NULL) == 0 && h2c_follow_last(&f) == 6);
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 1, 4, 2,
                     &reset); /* resume */
    CHECK(!reset && drain(&f, got, 16, NULL) == 2 && got[0] == 5);
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 1, 6, 2,
                     &reset); /* up to date */
    CHECK(!reset && drain(&f, got, 16, NULL) == 0);
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 1, 99, 2,
                     &reset); /* future */
    CHECK(reset && drain(&f, got, 16, NULL) == 2 && got[0] == 5);
}

/* One room, ids contiguous: gap counts are exact, as without rooms. */
static void test_gap_one_room(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 4);
    h2c_follow_gap_t gap;
    h2c_follow_t f, live;
    long got[16];
    int reset, i;

    h2c_follow_start(&live, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 0, 0, 10,
                     &reset);
    for (i = 0; i < 6; i++) {
        put(rs, H2C_ROOMS_DEFAULT); /* 1..6, the room holds 3..6 */
    }
    /* a resume from 1: 2 left */
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 1, 1, 2, &reset);
    CHECK(drain(&f, got, 16, &gap) == 5 && got[0] == -1 && got[1] == 3 && got[4] == 6);
    CHECK(gap.from == 2 && gap.to == 2);
    /* a resume from 0 (everything): 1 and 2 left */
    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 1, 0, 2, &reset);
    CHECK(drain(&f, got, 16, &gap) == 5 && got[0] == -2 && gap.from == 1 && gap.to == 2);
    /* a live stream that fell behind: exact by room_seq */
    CHECK(drain(&live, got, 16, &gap) == 5 && got[0] == -2 && got[1] == 3);
    for (i = 0; i < 9; i++) {
        put(rs, H2C_ROOMS_DEFAULT); /* 7..15, holds 12..15 */
    }
    CHECK(drain(&live, got, 16, &gap) == 5 && got[0] == -5 && gap.from == 7 &&
          gap.to == 11 && got[1] == 12);
    CHECK(!h2c_follow_pending(&live));
}

/* Rooms share the ids: a room's gap counts its own messages. */
static void test_gap_rooms(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 2);
    uint32_t a, b;
    h2c_follow_gap_t gap;
    h2c_follow_t f, live;
    long got[16];
    int reset, i;

    CHECK(h2c_rooms_open(rs, "a", 1, 1, &a) == APR_SUCCESS);
    CHECK(h2c_rooms_open(rs, "b", 1, 1, &b) == APR_SUCCESS);
    h2c_follow_start(&live, rs, &(uint32_t){a}, 1, NULL, 0, 0, 10, &reset);
    for (i = 0; i < 4; i++) {
        put(rs, a); /* a: 1 3 5 7; b: 2 4 6 8 */
        put(rs, b);
    }
    /* a holds 5 7: 1 and 3 left (2 of a's messages) */
    CHECK(drain(&live, got, 16, &gap) == 3 && got[0] == -2 && got[1] == 5 && got[2] == 7);
    CHECK(gap.from == 1 && gap.to == 3);
    /* a resume by id alone: at most the ids between, at most what left */
    h2c_follow_start(&f, rs, &(uint32_t){a}, 1, NULL, 1, 2, 2, &reset);
    CHECK(drain(&f, got, 16, &gap) == 3 && got[0] == -1 && gap.from == 3 && gap.to == 3);
    h2c_follow_start(&f, rs, &(uint32_t){a}, 1, NULL, 1, 0, 2, &reset);
    CHECK(drain(&f, got, 16, &gap) == 3 && got[0] == -2);
    /* b's stream sees only b */
    h2c_follow_start(&f, rs, &(uint32_t){b}, 1, NULL, 0, 0, 10, &reset);
    CHECK(drain(&f, got, 16, NULL) == 2 && got[0] == 6 && got[1] == 8);
    /* news in another room is not news for this stream */
    put(rs, a);
    CHECK(!h2c_follow_pending(&f));
}

/* A deleted message is no gap; deleting the newest leaves no busy loop. */
static void test_deleted(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 10);
    h2c_follow_t f;
    long got[16];
    int reset, i;

    h2c_follow_start(&f, rs, &(uint32_t){H2C_ROOMS_DEFAULT}, 1, NULL, 0, 0, 10, &reset);
    for (i = 0; i < 4; i++) {
        put(rs, H2C_ROOMS_DEFAULT);
    }
    CHECK(h2c_rooms_delete(rs, H2C_ROOMS_DEFAULT, 2) == APR_SUCCESS);
    CHECK(h2c_rooms_delete(rs, H2C_ROOMS_DEFAULT, 4) == APR_SUCCESS);
    CHECK(drain(&f, got, 16, NULL) == 2 && got[0] == 1 && got[1] == 3);
    CHECK(!h2c_follow_pending(&f));
    put(rs, H2C_ROOMS_DEFAULT);
    CHECK(h2c_follow_pending(&f) && drain(&f, got, 16, NULL) == 1 && got[0] == 5);
}

/* Several rooms on one stream: merged in id order, one resume id for all,
 * a gap names its room, another room's news is no news. */
static void test_multiplex(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 3);
    uint32_t r[3];
    h2c_follow_room_t mem[2];
    h2c_follow_gap_t gap;
    h2c_follow_t f;
    long got[32];
    int reset, i, n;

    CHECK(h2c_rooms_open(rs, "a", 1, 1, &r[0]) == APR_SUCCESS);
    CHECK(h2c_rooms_open(rs, "b", 1, 1, &r[1]) == APR_SUCCESS);
    CHECK(h2c_rooms_open(rs, "c", 1, 1, &r[2]) == APR_SUCCESS);
    put(rs, r[0]);                                         /* 1 */
    put(rs, r[1]);                                         /* 2 */
    put(rs, r[2]);                                         /* 3 */
    put(rs, r[1]);                                         /* 4 */
    put(rs, r[0]);                                         /* 5 */
    h2c_follow_start(&f, rs, r, 2, mem, 0, 0, 10, &reset); /* a and b */
    n = drain(&f, got, 32, NULL);
    CHECK(n == 4 && got[0] == 1 && got[1] == 2 && got[2] == 4 && got[3] == 5);
    CHECK(h2c_follow_last(&f) == 5);
    put(rs, r[2]); /* 6: c is not followed */
    CHECK(!h2c_follow_pending(&f) && drain(&f, got, 32, NULL) == 0);
    put(rs, r[1]); /* 7 */
    CHECK(h2c_follow_pending(&f) && drain(&f, got, 32, NULL) == 1 && got[0] == 7);
    /* a resume from 2: a's 5, b's 4 and 7 */
    h2c_follow_start(&f, rs, r, 2, mem, 1, 2, 10, &reset);
    n = drain(&f, got, 32, NULL);
    CHECK(!reset && n == 3 && got[0] == 4 && got[1] == 5 && got[2] == 7);
    /* snapshot 1: the newest of each room */
    h2c_follow_start(&f, rs, r, 2, mem, 0, 0, 1, &reset);
    n = drain(&f, got, 32, NULL);
    CHECK(n == 2 && got[0] == 5 && got[1] == 7);
    /* a falls behind its history of 3: a gap for a (which 0), b goes on */
    h2c_follow_start(&f, rs, r, 2, mem, 1, 7, 10, &reset);
    for (i = 0; i < 5; i++) {
        put(rs, r[0]); /* 8..12: a holds 10..12 */
    }
    put(rs, r[1]); /* 13 */
    n = drain(&f, got, 32, &gap);
    CHECK(n == 5 && got[0] == -2 && gap.which == 0 && gap.from == 8 && gap.to == 9);
    CHECK(got[1] == 10 && got[3] == 12 && got[4] == 13);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_start, pool);
    RUN(test_gap_one_room, pool);
    RUN(test_gap_rooms, pool);
    RUN(test_deleted, pool);
    RUN(test_multiplex, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_follow");
}
