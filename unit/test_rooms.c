/* Unit tests of h2c_rooms: the rooms' histories in shared memory. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "h2c_rooms.h"
#include "unit.h"

static h2c_rooms_t *make(apr_pool_t *p, uint32_t max_rooms, apr_size_t memory,
                         uint32_t history, uint32_t max_len) {
    h2c_rooms_t *rs = apr_pcalloc(p, sizeof(*rs));
    apr_size_t size = h2c_rooms_size(max_rooms, 2, memory);
    void *mem = apr_palloc(p, size);

    memset(mem, 0xa5, size); /* init must not rely on zeroed memory */
    CHECK(h2c_rooms_init(rs, mem, size, max_rooms, 2, memory, history, max_len) ==
          APR_SUCCESS);
    return rs;
}

static uint32_t open_room(h2c_rooms_t *rs, const char *name) {
    uint32_t room = 9999;

    CHECK(h2c_rooms_open(rs, name, strlen(name), 1, &room) == APR_SUCCESS);
    return room;
}

/* A message whose text says its id, `pad` bytes long at least. */
static apr_status_t put(h2c_rooms_t *rs, uint32_t room, uint32_t pad) {
    char buf[8192];
    uint64_t id = h2c_rooms_next_id(rs);
    int n = snprintf(buf, sizeof(buf), "{\"id\":%llu}", (unsigned long long)id);

    while ((uint32_t)n < pad) {
        buf[n] = (char)('a' + (n + room) % 26); /* the room in every byte */
        n++;
    }
    return h2c_rooms_append(rs, room, H2C_ENTRY_MESSAGE, id, (int64_t)id * 10, buf,
                            (uint32_t)n);
}

/* The ids a fresh reader of `room` gets after `after`, into ids (max n). */
static int read_all(h2c_rooms_t *rs, uint32_t room, uint64_t after, uint64_t *ids,
                    int n) {
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;
    char buf[8192], want[32];
    int k = 0;
    int64_t t;

    h2c_rooms_cursor_at(&cur, after);
    while (k < n && h2c_rooms_next(rs, room, &cur, &m) == APR_SUCCESS) {
        CHECK(h2c_rooms_read(rs, &m, buf, sizeof(buf), &t, NULL) == APR_SUCCESS);
        snprintf(want, sizeof(want), "{\"id\":%llu}", (unsigned long long)m.id);
        CHECK(!memcmp(buf, want, strlen(want)));
        CHECK(t == (int64_t)m.id * 10);
        ids[k++] = m.id;
        h2c_rooms_advance(&cur, &m);
    }
    return k;
}

static void test_layout(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 10, 64 * 1024, 5, 1000), view;
    h2c_rooms_stats_t st;
    char name[80];

    CHECK(h2c_rooms_attach(&view, rs->hdr, h2c_rooms_size(10, 2, 64 * 1024)) ==
          APR_SUCCESS);
    CHECK(h2c_rooms_attach(&view, rs->hdr, 100) == APR_EGENERAL);
    CHECK(h2c_rooms_fits(rs, 10, 2, 64 * 1024, 5, 1000));
    CHECK(!h2c_rooms_fits(rs, 11, 2, 64 * 1024, 5, 1000));
    CHECK(!h2c_rooms_fits(rs, 10, 2, 64 * 1024, 6, 1000));
    CHECK(h2c_rooms_max_len(rs) == 1000 && h2c_rooms_history(rs) == 5);
    CHECK(h2c_rooms_last_id(rs) == 0 && h2c_rooms_next_id(rs) == 1);
    h2c_rooms_stats(rs, &st);
    CHECK(st.rooms == 1 && st.max_rooms == 10 && st.chunks == 512 && st.chunks_used == 0);
    h2c_rooms_room_name(rs, H2C_ROOMS_DEFAULT, name);
    CHECK(name[0] == '\0');
    /* too little memory for one largest message: refused */
    {
        h2c_rooms_t bad;
        apr_size_t size = h2c_rooms_size(2, 2, 256);
        void *mem = apr_pcalloc(p, size);

        CHECK(h2c_rooms_init(&bad, mem, size, 2, 2, 256, 5, 1000) == APR_EINVAL);
        CHECK(h2c_rooms_init(&bad, mem, size - 8, 2, 2, 256, 5, 100) == APR_EINVAL);
    }
}

static void test_append_read(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 10, 64 * 1024, 100, 4000);
    uint32_t a = open_room(rs, "a"), b = open_room(rs, "b"), again = 77;
    uint64_t ids[16];
    int n;

    CHECK(a != b && a != H2C_ROOMS_DEFAULT);
    CHECK(h2c_rooms_open(rs, "a", 1, 0, &again) == APR_SUCCESS && again == a);
    CHECK(h2c_rooms_open(rs, "zz", 2, 0, &again) == APR_NOTFOUND);
    CHECK(put(rs, a, 10) == APR_SUCCESS);                 /* 1: one chunk */
    CHECK(put(rs, b, 300) == APR_SUCCESS);                /* 2: three chunks */
    CHECK(put(rs, a, 4000) == APR_SUCCESS);               /* 3: the largest */
    CHECK(put(rs, H2C_ROOMS_DEFAULT, 80) == APR_SUCCESS); /* 4 */
    CHECK(put(rs, a, 4001) == APR_ENOSPC);
    CHECK(h2c_rooms_append(rs, a, H2C_ENTRY_MESSAGE, 4, 0, "x", 1) ==
          APR_EINVAL); /* not above the newest */
    CHECK(h2c_rooms_last_id(rs) == 4);
    CHECK(h2c_rooms_room_last(rs, a) == 3 && h2c_rooms_room_last(rs, b) == 2);
    CHECK(h2c_rooms_room_count(rs, a) == 2);
    n = read_all(rs, a, 0, ids, 16);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 3);
    n = read_all(rs, a, 1, ids, 16);
    CHECK(n == 1 && ids[0] == 3);
    n = read_all(rs, b, 0, ids, 16);
    CHECK(n == 1 && ids[0] == 2);
    n = read_all(rs, H2C_ROOMS_DEFAULT, 0, ids, 16);
    CHECK(n == 1 && ids[0] == 4);
    CHECK(read_all(rs, a, 3, ids, 16) == 0);
    {
        h2c_rooms_msg_t m;
        char small[8];

        CHECK(h2c_rooms_tail(rs, a, 1, &m) == APR_SUCCESS && m.id == 3 && m.len == 4000);
        CHECK(h2c_rooms_read(rs, &m, small, sizeof(small), NULL, NULL) == APR_ENOSPC);
        CHECK(h2c_rooms_tail(rs, a, 5, &m) == APR_SUCCESS && m.id == 1);
        CHECK(h2c_rooms_tail(rs, b, 1, &m) == APR_SUCCESS && m.room_seq == 1);
    }
}

/* Each room keeps its own last `history`; the one that left is a gap. */
static void test_history(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 10, 64 * 1024, 3, 200);
    uint32_t a = open_room(rs, "a"), q = open_room(rs, "quiet");
    uint64_t ids[16];
    int i, n;

    CHECK(put(rs, q, 10) == APR_SUCCESS); /* 1 */
    for (i = 0; i < 10; i++) {
        CHECK(put(rs, a, 10) == APR_SUCCESS); /* 2 .. 11 */
    }
    n = read_all(rs, a, 0, ids, 16);
    CHECK(n == 3 && ids[0] == 9 && ids[2] == 11);
    CHECK(h2c_rooms_room_gone(rs, a) == 8 && h2c_rooms_room_gone_seq(rs, a) == 7);
    /* the quiet room keeps its one message whatever the busy one did */
    n = read_all(rs, q, 0, ids, 16);
    CHECK(n == 1 && ids[0] == 1 && h2c_rooms_room_gone(rs, q) == 0);
}

/* A cursor on a message that left: the reader goes on from the head. */
static void test_cursor_after_eviction(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 4, 64 * 1024, 2, 200);
    uint32_t a = open_room(rs, "a");
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;

    CHECK(put(rs, a, 10) == APR_SUCCESS); /* 1 */
    h2c_rooms_cursor_at(&cur, 0);
    CHECK(h2c_rooms_next(rs, a, &cur, &m) == APR_SUCCESS && m.id == 1);
    h2c_rooms_advance(&cur, &m);
    CHECK(h2c_rooms_next(rs, a, &cur, &m) == APR_INCOMPLETE);
    CHECK(put(rs, a, 10) == APR_SUCCESS); /* 2 */
    CHECK(put(rs, a, 10) == APR_SUCCESS); /* 3: 1 leaves */
    CHECK(put(rs, a, 10) == APR_SUCCESS); /* 4: 2 leaves */
    CHECK(h2c_rooms_next(rs, a, &cur, &m) == APR_SUCCESS && m.id == 3);
    CHECK(h2c_rooms_room_gone(rs, a) == 2 && h2c_rooms_room_gone(rs, a) > cur.id);
    CHECK(m.room_seq == 3 && h2c_rooms_room_gone_seq(rs, a) - cur.room_seq == 1);
}

/* Memory runs out: idle rooms give back first, least recently written
 * first; a room with streams keeps its messages; then the writing room
 * its own; a message that cannot fit at all is refused. */
static void test_pressure(apr_pool_t *p) {
    /* 8 chunks; each message below takes 2 (100 bytes) */
    h2c_rooms_t *rs = make(p, 8, 8 * H2C_ROOMS_CHUNK, 10, 200);
    uint32_t x = open_room(rs, "x"), y = open_room(rs, "y"), held = open_room(rs, "held");
    h2c_rooms_stats_t st;
    uint64_t ids[16];

    h2c_rooms_hold(rs, 0, held, 1);
    CHECK(put(rs, x, 100) == APR_SUCCESS);    /* 1 */
    CHECK(put(rs, y, 100) == APR_SUCCESS);    /* 2 */
    CHECK(put(rs, held, 100) == APR_SUCCESS); /* 3 */
    CHECK(put(rs, x, 100) == APR_SUCCESS);    /* 4: x written after y now */
    CHECK(put(rs, held, 100) == APR_SUCCESS); /* 5: y (least recent) gives back */
    h2c_rooms_stats(rs, &st);
    CHECK(st.evicted == 1 && st.rooms == 3); /* y emptied, no streams: freed */
    CHECK(h2c_rooms_open(rs, "y", 1, 0, &y) == APR_NOTFOUND);
    y = open_room(rs, "y"); /* again: what it had is gone, and says so */
    CHECK(read_all(rs, y, 0, ids, 16) == 0 && h2c_rooms_room_gone(rs, y) >= 2);
    h2c_rooms_hold(rs, 0, y, 1);
    h2c_rooms_hold(rs, 0, y, -1);             /* empty, no streams: freed again */
    CHECK(put(rs, held, 100) == APR_SUCCESS); /* 6: x's oldest (1) */
    CHECK(put(rs, held, 100) == APR_SUCCESS); /* 7: x's 4 */
    CHECK(read_all(rs, held, 0, ids, 16) == 4 && ids[0] == 3 && ids[3] == 7);
    CHECK(put(rs, held, 100) == APR_SUCCESS); /* 8: nothing idle: held's own 3 */
    CHECK(read_all(rs, held, 0, ids, 16) == 4 && ids[0] == 5 && ids[3] == 8);
    /* an idle room wants in: nothing may give back but its own (none) */
    x = open_room(rs, "x2");
    CHECK(put(rs, x, 100) == APR_ENOMEM);
    h2c_rooms_stats(rs, &st);
    CHECK(st.refused == 1 && st.chunks_used == 8);
    CHECK(h2c_rooms_last_id(rs) == 8);
    /* the stream leaves: its room may give back now */
    h2c_rooms_hold(rs, 0, held, -1);
    CHECK(put(rs, x, 100) == APR_SUCCESS);
    CHECK(read_all(rs, held, 0, ids, 16) == 3 && ids[0] == 6);
}

/* The least recently written idle room gives back all it must before the
 * next one gives anything (it stays least recent while it gives). */
static void test_pressure_order(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 8, 12 * H2C_ROOMS_CHUNK, 10, 200);
    uint32_t a = open_room(rs, "a"), b = open_room(rs, "b"), w = open_room(rs, "w");
    uint64_t ids[16];
    int i;

    for (i = 0; i < 3; i++) {
        CHECK(put(rs, a, 100) == APR_SUCCESS); /* 1 3 5 */
        CHECK(put(rs, b, 100) == APR_SUCCESS); /* 2 4 6 */
    }
    CHECK(put(rs, w, 100) == APR_SUCCESS); /* 7: 2 of a's chunks */
    CHECK(put(rs, w, 100) == APR_SUCCESS); /* 8: a's again */
    CHECK(read_all(rs, a, 0, ids, 16) == 1 && ids[0] == 5);
    CHECK(read_all(rs, b, 0, ids, 16) == 3);
    CHECK(put(rs, w, 100) == APR_SUCCESS);                    /* 9: a's last */
    CHECK(put(rs, w, 100) == APR_SUCCESS);                    /* 10: now b's oldest */
    CHECK(h2c_rooms_open(rs, "a", 1, 0, &a) == APR_NOTFOUND); /* emptied: freed */
    CHECK(read_all(rs, b, 0, ids, 16) == 2 && ids[0] == 4);
}

/* H2ChatMaxRooms: a new room takes the least recently written idle
 * room's record; a later room of the old name resumes with a gap. */
static void test_max_rooms(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 3, 64 * 1024, 10, 200); /* default + 2 */
    uint32_t a = open_room(rs, "a"), b = open_room(rs, "b"), c;
    h2c_rooms_stats_t st;

    CHECK(put(rs, a, 10) == APR_SUCCESS); /* 1 */
    CHECK(put(rs, b, 10) == APR_SUCCESS); /* 2 */
    CHECK(put(rs, a, 10) == APR_SUCCESS); /* 3 */
    c = open_room(rs, "c");               /* takes b's */
    CHECK(c == b);
    h2c_rooms_stats(rs, &st);
    CHECK(st.rooms == 3 && st.rooms_freed == 1 && st.evicted == 1);
    CHECK(h2c_rooms_room_gone(rs, c) == 0 || h2c_rooms_room_gone(rs, c) == 2);
    h2c_rooms_hold(rs, 0, a, 1);
    h2c_rooms_hold(rs, 0, c, 1);
    CHECK(h2c_rooms_open(rs, "b", 1, 1, &b) == APR_EBUSY);
    h2c_rooms_hold(rs, 0, c, -1); /* c: empty, no streams: freed */
    b = open_room(rs, "b");
    /* b's old newest id (2) left with its record: a resume gets a gap */
    CHECK(h2c_rooms_room_gone(rs, b) >= 2);
    CHECK(h2c_rooms_room_last(rs, b) == 0);
}

/* Holders per child row: a row that is gone is forgotten, and its rooms
 * act as if its streams had ended (idle, freed when empty). */
static void test_holders_per_row(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 4, 8 * H2C_ROOMS_CHUNK, 10, 200);
    uint32_t a = open_room(rs, "a"), b = open_room(rs, "b"), seq;
    h2c_rooms_stats_t st;

    seq = h2c_rooms_presence_seq(rs);
    CHECK(h2c_rooms_hold(rs, 0, a, 1) == APR_SUCCESS);
    CHECK(h2c_rooms_hold(rs, 1, a, 2) == APR_SUCCESS);
    CHECK(h2c_rooms_hold(rs, 1, b, 1) == APR_SUCCESS);
    CHECK(h2c_rooms_presence_seq(rs) != seq);
    CHECK(h2c_rooms_room_holders(rs, a) == 3 && h2c_rooms_room_holders(rs, b) == 1);
    CHECK(h2c_rooms_slot_holds(rs, 0) == 1 && h2c_rooms_slot_holds(rs, 1) == 3);
    CHECK(h2c_rooms_hold(rs, 2, a, 1) == APR_EINVAL); /* no such row */
    CHECK(h2c_rooms_hold(rs, 0, a, 65535) == APR_EBUSY);
    CHECK(put(rs, a, 10) == APR_SUCCESS);
    h2c_rooms_forget(rs, 1); /* row 1's process died */
    CHECK(h2c_rooms_room_holders(rs, a) == 1 && h2c_rooms_slot_holds(rs, 1) == 0);
    h2c_rooms_stats(rs, &st);
    CHECK(st.rooms == 2); /* b held nothing and nobody holds it now: freed */
    CHECK(h2c_rooms_open(rs, "b", 1, 0, &b) == APR_NOTFOUND);
    /* a stream of the forgotten row that ends later takes nothing twice */
    CHECK(h2c_rooms_hold(rs, 1, a, -1) == APR_SUCCESS);
    CHECK(h2c_rooms_room_holders(rs, a) == 1);
    CHECK(h2c_rooms_hold(rs, 0, a, -1) == APR_SUCCESS);
    CHECK(h2c_rooms_room_holders(rs, a) == 0);
    h2c_rooms_forget(rs, 0); /* nothing held: nothing changes */
    CHECK(h2c_rooms_room_count(rs, a) == 1);
}

static void test_delete_clear(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 4, 64 * 1024, 10, 200);
    uint32_t a = open_room(rs, "a");
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;
    uint64_t ids[16];
    int i;

    for (i = 0; i < 5; i++) {
        CHECK(put(rs, a, 150) == APR_SUCCESS); /* 1..5 */
    }
    h2c_rooms_cursor_at(&cur, 0);
    CHECK(h2c_rooms_next(rs, a, &cur, &m) == APR_SUCCESS);
    h2c_rooms_advance(&cur, &m);
    CHECK(h2c_rooms_next(rs, a, &cur, &m) == APR_SUCCESS && m.id == 2);
    h2c_rooms_advance(&cur, &m); /* the cursor is on 2 */
    CHECK(h2c_rooms_delete(rs, a, 2) == APR_SUCCESS);
    CHECK(h2c_rooms_delete(rs, a, 2) == APR_NOTFOUND);
    CHECK(h2c_rooms_delete(rs, a, 1) == APR_SUCCESS); /* the oldest */
    CHECK(h2c_rooms_delete(rs, a, 5) == APR_SUCCESS); /* the newest */
    CHECK(h2c_rooms_room_gone(rs, a) == 0);           /* deleted is not lost */
    CHECK(h2c_rooms_next(rs, a, &cur, &m) == APR_SUCCESS && m.id == 3);
    CHECK(read_all(rs, a, 0, ids, 16) == 2 && ids[0] == 3 && ids[1] == 4);
    CHECK(put(rs, a, 10) == APR_SUCCESS); /* 6 links after 4 */
    CHECK(read_all(rs, a, 0, ids, 16) == 3 && ids[2] == 6);
    h2c_rooms_hold(rs, 0, a, 1);
    h2c_rooms_clear(rs, a);
    CHECK(h2c_rooms_room_count(rs, a) == 0 && h2c_rooms_room_gone(rs, a) == 6);
    CHECK(read_all(rs, a, 0, ids, 16) == 0);
    {
        h2c_rooms_stats_t st;

        h2c_rooms_stats(rs, &st);
        CHECK(st.chunks_used == 0 && st.rooms == 2);
        h2c_rooms_hold(rs, 0, a, -1);
        h2c_rooms_stats(rs, &st);
        CHECK(st.rooms == 1);
    }
}

/* One writer rewriting two rooms in little memory, readers following one
 * each without the lock: every message read is whole and in order. */
typedef struct {
    h2c_rooms_t *rs;
    uint32_t room;
    volatile int *done;
    long read, bad, order;
} reader_t;

/* The bytes put() wrote for this message of `room`, all of them. */
static int whole(const char *buf, const h2c_rooms_msg_t *m, uint32_t room) {
    char want[32];
    uint32_t i, n;

    n = (uint32_t)snprintf(want, sizeof(want), "{\"id\":%llu}",
                           (unsigned long long)m->id);
    if (memcmp(buf, want, n)) {
        return 0;
    }
    for (i = n; i < m->len; i++) {
        if (buf[i] != (char)('a' + (i + room) % 26)) {
            return 0;
        }
    }
    return 1;
}

static void *reader(void *arg) {
    reader_t *rd = arg;
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;
    char buf[1024];
    uint64_t last = 0;

    h2c_rooms_cursor_at(&cur, 0);
    while (!__atomic_load_n(rd->done, __ATOMIC_ACQUIRE)) {
        /* the oldest is the one a writer frees next: read it whole or not */
        if (h2c_rooms_tail(rd->rs, rd->room, 4, &m) == APR_SUCCESS &&
            h2c_rooms_read(rd->rs, &m, buf, sizeof(buf), NULL, NULL) == APR_SUCCESS) {
            rd->bad += !whole(buf, &m, rd->room);
        }
        if (h2c_rooms_next(rd->rs, rd->room, &cur, &m) != APR_SUCCESS) {
            continue;
        }
        if (h2c_rooms_read(rd->rs, &m, buf, sizeof(buf), NULL, NULL) != APR_SUCCESS) {
            continue; /* left meanwhile: ask again */
        }
        rd->bad += !whole(buf, &m, rd->room);
        if (m.id <= last) {
            rd->order++;
        }
        last = m.id;
        rd->read++;
        h2c_rooms_advance(&cur, &m);
    }
    return NULL;
}

static void test_concurrent(apr_pool_t *p) {
    h2c_rooms_t *rs = make(p, 4, 24 * H2C_ROOMS_CHUNK, 4, 600);
    uint32_t room[2] = {open_room(rs, "one"), open_room(rs, "two")};
    volatile int done = 0;
    pthread_t t[4];
    reader_t rd[4];
    int i, fails = 0;

    for (i = 0; i < 4; i++) {
        rd[i] = (reader_t){rs, room[i % 2], &done, 0, 0, 0};
        pthread_create(&t[i], NULL, reader, &rd[i]);
    }
    for (i = 0; i < 200000; i++) {
        fails += put(rs, room[i % 2], 40 + (uint32_t)(i * 37) % 560) != APR_SUCCESS;
    }
    CHECK(fails == 0);
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        if (rd[i].bad || rd[i].order) {
            fprintf(stderr,
                    "reader %d of room %u: %ld read, %ld torn or of another room, "
                    "%ld out of order\n",
                    i, rd[i].room, rd[i].read, rd[i].bad, rd[i].order);
        }
        CHECK(rd[i].bad == 0);
        CHECK(rd[i].order == 0);
        CHECK(rd[i].read > 0);
    }
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_layout, pool);
    RUN(test_append_read, pool);
    RUN(test_history, pool);
    RUN(test_cursor_after_eviction, pool);
    RUN(test_pressure, pool);
    RUN(test_pressure_order, pool);
    RUN(test_max_rooms, pool);
    RUN(test_holders_per_row, pool);
    RUN(test_delete_clear, pool);
    RUN(test_concurrent, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_rooms");
}
