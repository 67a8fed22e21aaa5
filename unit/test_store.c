/* Unit tests of the store interface (h2c_store) with the shm store behind
 * it, and of the statistics snapshot (h2c_stats) that server-status
 * renders. A fake store stands in for one whose ids come from elsewhere
 * (as Redis): it must not take a journal, and its lines show in the
 * snapshot. */
#include <string.h>
#include <unistd.h>

#include <apr_global_mutex.h>

#include "h2c_json.h"
#include "h2c_stats.h"
#include "h2c_store.h"
#include "h2c_wait.h"
#include "unit.h"

#define MSG "\"user\":\"u\",\"text\":\"t\""

typedef struct {
    h2c_seg_t seg;
    h2c_store_t store;
    apr_global_mutex_t *lock;
} fixture_t;

static void setup(fixture_t *f, apr_pool_t *p, const h2c_store_ops_t *ops,
                  uint32_t capacity) {
    apr_size_t size = h2c_seg_size(4, capacity, 256);

    CHECK(h2c_seg_init(&f->seg, apr_pcalloc(p, size), size, 4, capacity, 256, 0) ==
          APR_SUCCESS);
    CHECK(apr_global_mutex_create(&f->lock, NULL, APR_LOCK_DEFAULT, p) == APR_SUCCESS);
    h2c_store_init(&f->store, ops, &f->seg, f->lock, NULL);
}

/* Message `id` of the default room, read as a held stream would. */
static apr_status_t read_id(fixture_t *f, uint64_t id, char *buf, apr_size_t cap,
                            int64_t *t) {
    h2c_rooms_t *rs = h2c_store_history(&f->store);
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;

    h2c_rooms_cursor_at(&cur, id - 1);
    if (h2c_rooms_next(rs, H2C_ROOMS_DEFAULT, &cur, &m) != APR_SUCCESS) {
        return APR_INCOMPLETE;
    }
    if (m.id != id) {
        return APR_NOTFOUND;
    }
    buf[m.len < cap ? m.len : cap - 1] = '\0';
    return h2c_rooms_read(rs, &m, buf, cap - 1, t, NULL);
}

typedef struct {
    uint64_t ids[16];
    int n;
} seen_t;

static void committed(void *ctx, uint64_t id, int64_t time_ms, h2c_entry_kind_t kind,
                      const char *line, uint32_t len) {
    seen_t *s = ctx;

    (void)time_ms, (void)kind;
    if (s->n < 16 && len > 0 && line[0] == '{') {
        s->ids[s->n++] = id;
    }
}

/* publish gives dense ids, the history reads them back, a follower (the
 * journal) sees every commit in order, waiters are woken. */
static void test_shm_publish_read(apr_pool_t *p) {
    fixture_t f;
    seen_t seen = {{0}, 0};
    char buf[256];
    uint32_t seq, dseq;
    uint64_t id;
    int64_t t, t2;
    int i;

    setup(&f, p, &h2c_store_shm_ops, 4);
    CHECK(!strcmp(f.store.ops->name, "shm"));
    CHECK(h2c_store_open(&f.store, p) == APR_SUCCESS); /* nothing to open */
    CHECK(h2c_store_follow(&f.store, committed, &seen) == APR_SUCCESS);
    seq = h2c_wait_read(h2c_rooms_seq(h2c_store_history(&f.store)));
    dseq = h2c_wait_read(h2c_seg_direct_seq(&f.seg));
    for (i = 1; i <= 6; i++) {
        CHECK(h2c_store_publish(&f.store, "", MSG, strlen(MSG), &id, &t) == APR_SUCCESS);
        CHECK(id == (uint64_t)i);
    }
    CHECK(h2c_wait_read(h2c_rooms_seq(h2c_store_history(&f.store))) != seq);
    CHECK(h2c_wait_read(h2c_seg_direct_seq(&f.seg)) == dseq + 6); /* one per commit */
    CHECK(seen.n == 6 && seen.ids[0] == 1 && seen.ids[5] == 6);
    CHECK(h2c_seg_published(&f.seg) == 6);
    /* the last 4 are held; 1 and 2 left */
    CHECK(read_id(&f, 6, buf, sizeof(buf), &t2) == APR_SUCCESS);
    CHECK(t2 == t && strstr(buf, "\"id\":6") != NULL);
    CHECK(read_id(&f, 2, buf, sizeof(buf), &t2) == APR_NOTFOUND);
    CHECK(read_id(&f, 7, buf, sizeof(buf), &t2) == APR_INCOMPLETE);
    /* a message longer than the history's slots is refused, not cut */
    {
        char big[300];

        memset(big, 'x', sizeof(big));
        CHECK(h2c_store_publish(&f.store, "", big, sizeof(big), &id, &t) == APR_ENOSPC);
    }
    CHECK(h2c_rooms_last_id(h2c_store_history(&f.store)) == 6);
    h2c_store_stop(&f.store); /* no stop op: a no-op */
    apr_global_mutex_destroy(f.lock);
}

/* A store whose ids are given elsewhere: no journal, its lines in the
 * snapshot, its messages fed with append_given. */
static void fake_status(h2c_store_t *store, h2c_store_status_t *out) {
    (void)store;
    out->field[0].name = "Fake";
    strcpy(out->field[0].value, "up");
    out->n = 1;
}

static const h2c_store_ops_t fake_ops = {
    "fake", NULL, NULL, NULL, fake_status, NULL, 0,
};

static void test_given_ids(apr_pool_t *p) {
    fixture_t f;
    seen_t seen = {{0}, 0};
    h2c_store_status_t st;
    char buf[256];
    int64_t t;

    setup(&f, p, &fake_ops, 8);
    CHECK(h2c_store_follow(&f.store, committed, &seen) == APR_ENOTIMPL);
    CHECK(h2c_store_append_given(&f.store, "", 5, 100, "{\"id\":5}", 8) == APR_SUCCESS);
    CHECK(h2c_store_append_given(&f.store, "", 5, 100, "{\"id\":5}", 8) == APR_EINVAL);
    CHECK(h2c_store_append_given(&f.store, "", 9, 101, "{\"id\":9}", 8) == APR_SUCCESS);
    CHECK(h2c_seg_published(&f.seg) == 2 && seen.n == 0);
    CHECK(read_id(&f, 9, buf, sizeof(buf), &t) == APR_SUCCESS && t == 101);
    CHECK(read_id(&f, 7, buf, sizeof(buf), &t) == APR_NOTFOUND); /* never written */
    h2c_store_status(&f.store, &st);
    CHECK(st.n == 1 && !strcmp(st.field[0].name, "Fake") &&
          !strcmp(st.field[0].value, "up"));
    h2c_store_status(&(h2c_store_t){.ops = &h2c_store_shm_ops}, &st);
    CHECK(st.n == 0);
    apr_global_mutex_destroy(f.lock);
}

/* Moderation: a delete entry replaces its message in one step (the
 * journal hook sees the entry), a delete of nothing changes nothing, a
 * replayed delete whose message left is kept as an entry, a clear empties
 * the room and stays its only entry. */
static void test_moderate(apr_pool_t *p) {
    static const char del1[] = "{\"type\":\"delete\",\"room\":\"r\",\"id\":1}";
    static const char clr[] = "{\"type\":\"clear\",\"room\":\"r\"}";
    fixture_t f;
    seen_t seen = {{0}, 0};
    h2c_rooms_t *rs;
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;
    uint32_t room;
    uint64_t id;
    int64_t t;

    {
        h2c_seg_shape_t sh = {4, 8, 256, 4, 64 * 1024, 16}; /* rooms beside the default */
        apr_size_t size = h2c_seg_size_shape(&sh);

        CHECK(h2c_seg_init_shape(&f.seg, apr_pcalloc(p, size), size, &sh, 0) ==
              APR_SUCCESS);
        CHECK(apr_global_mutex_create(&f.lock, NULL, APR_LOCK_DEFAULT, p) == APR_SUCCESS);
        h2c_store_init(&f.store, &h2c_store_shm_ops, &f.seg, f.lock, NULL);
    }
    rs = h2c_store_history(&f.store);
    CHECK(h2c_store_follow(&f.store, committed, &seen) == APR_SUCCESS);
    CHECK(h2c_store_publish(&f.store, "r", MSG, strlen(MSG), &id, &t) == APR_SUCCESS);
    CHECK(h2c_store_publish(&f.store, "r", MSG, strlen(MSG), &id, &t) == APR_SUCCESS);
    CHECK(h2c_store_has(&f.store, "r", H2C_ENTRY_DELETE, 1));
    CHECK(!h2c_store_has(&f.store, "r", H2C_ENTRY_DELETE, 3));
    CHECK(!h2c_store_has(&f.store, "nope", H2C_ENTRY_CLEAR, 0));
    CHECK(h2c_store_moderate(&f.store, "r", H2C_ENTRY_DELETE, 1, del1, strlen(del1), &id,
                             &t) == APR_SUCCESS &&
          id == 3 && seen.n == 3 && seen.ids[2] == 3);
    CHECK(h2c_rooms_open(rs, "r", 1, 0, &room) == APR_SUCCESS);
    CHECK(h2c_rooms_room_count(rs, room) == 2);
    h2c_rooms_cursor_at(&cur, 0);
    CHECK(h2c_rooms_next(rs, room, &cur, &m) == APR_SUCCESS && m.id == 2 &&
          m.kind == H2C_ENTRY_MESSAGE);
    h2c_rooms_advance(&cur, &m);
    CHECK(h2c_rooms_next(rs, room, &cur, &m) == APR_SUCCESS && m.id == 3 &&
          m.kind == H2C_ENTRY_DELETE);
    /* nothing to delete: no entry, no id taken; an entry is no message */
    CHECK(h2c_store_moderate(&f.store, "r", H2C_ENTRY_DELETE, 1, del1, strlen(del1), &id,
                             &t) == APR_NOTFOUND);
    CHECK(h2c_store_moderate(&f.store, "r", H2C_ENTRY_DELETE, 3, del1, strlen(del1), &id,
                             &t) == APR_NOTFOUND);
    CHECK(h2c_store_moderate(&f.store, "nope", H2C_ENTRY_CLEAR, 0, clr, strlen(clr), &id,
                             &t) == APR_NOTFOUND);
    CHECK(h2c_rooms_last_id(rs) == 3 && seen.n == 3);
    /* a replay (or a Redis node) meets a delete of what is gone: kept */
    CHECK(h2c_store_append_given(&f.store, "r", 4, 0, del1, strlen(del1)) == APR_SUCCESS);
    CHECK(h2c_rooms_room_count(rs, room) == 3);
    /* a clear: only its entry stays, and readers past it lost the rest */
    CHECK(h2c_store_moderate(&f.store, "r", H2C_ENTRY_CLEAR, 0, clr, strlen(clr), &id,
                             &t) == APR_SUCCESS &&
          id == 5);
    CHECK(h2c_rooms_open(rs, "r", 1, 0, &room) == APR_SUCCESS);
    CHECK(h2c_rooms_room_count(rs, room) == 1 && h2c_rooms_room_gone(rs, room) == 4);
    CHECK(h2c_rooms_tail(rs, room, 5, &m) == APR_SUCCESS && m.id == 5 &&
          m.kind == H2C_ENTRY_CLEAR);
    /* the lines say their kind */
    {
        h2c_entry_kind_t kind;
        uint64_t target;

        CHECK(h2c_json_line_kind(del1, strlen(del1), &kind, &target) == APR_SUCCESS &&
              kind == H2C_ENTRY_DELETE && target == 1);
        CHECK(h2c_json_line_kind(clr, strlen(clr), &kind, &target) == APR_SUCCESS &&
              kind == H2C_ENTRY_CLEAR);
        CHECK(h2c_json_line_kind("{\"type\":\"message\",\"id\":1}", 27, &kind, &target) ==
                  APR_SUCCESS &&
              kind == H2C_ENTRY_MESSAGE);
        CHECK(h2c_json_line_kind("{\"type\":\"delete\"}", 17, &kind, &target) ==
              APR_EINVAL);
        CHECK(h2c_json_line_kind("{\"type\":\"poll\"}", 15, &kind, &target) ==
              APR_EINVAL);
        CHECK(h2c_json_line_kind("nope", 4, &kind, &target) == APR_EINVAL);
    }
    apr_global_mutex_destroy(f.lock);
}

/* restore (a journal replayed before any child) fills the history without
 * counting the messages as published now. */
static void test_restore(apr_pool_t *p) {
    fixture_t f;
    uint64_t id;
    int64_t t;

    setup(&f, p, &h2c_store_shm_ops, 8);
    CHECK(h2c_store_restore(&f.store, "", 3, 1, "{\"id\":3}", 8) == APR_SUCCESS);
    CHECK(h2c_store_restore(&f.store, "", 4, 2, "{\"id\":4}", 8) == APR_SUCCESS);
    CHECK(h2c_seg_published(&f.seg) == 0);
    CHECK(h2c_store_publish(&f.store, "", MSG, strlen(MSG), &id, &t) == APR_SUCCESS &&
          id == 5);
    apr_global_mutex_destroy(f.lock);
}

/* The snapshot: the child table read once (totals agree with the rows),
 * counters, history fill, the store's own lines. */
static void test_stats(apr_pool_t *p) {
    fixture_t f;
    h2c_stats_t st;
    uint32_t a, b;
    uint64_t id;
    int64_t t;

    setup(&f, p, &fake_ops, 8);
    f.store.ops = &h2c_store_shm_ops;
    /* live pids: claim frees the rows of processes that are gone */
    CHECK(h2c_seg_child_claim(&f.seg, (uint32_t)getpid(), &a) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&f.seg, (uint32_t)getppid(), &b) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&f.seg, a, 10) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&f.seg, b, 10) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&f.seg, b, 10) == APR_SUCCESS);
    h2c_seg_direct_count(&f.seg, b, 1, 1);
    h2c_seg_count_stalled(&f.seg);
    h2c_seg_count_refusal(&f.seg, H2C_REFUSED_RATE);
    CHECK(h2c_store_publish(&f.store, "", MSG, strlen(MSG), &id, &t) == APR_SUCCESS);
    h2c_stats_read(&st, &f.store, 10, 5, p);
    CHECK(st.subscribers == 3 && st.max_subscribers == 10 && st.max_per_address == 5);
    CHECK(st.nchildren == 2 && st.children[0].pid == (uint32_t)getpid() &&
          st.children[0].held == 1);
    CHECK(st.children[1].pid == (uint32_t)getppid() && st.children[1].held == 2);
    CHECK(st.direct_conns == 1 && st.direct_held == 1 && st.stalled_dropped == 1);
    CHECK(st.published == 1 && st.last_id == 1);
    CHECK(st.history_count == 1 && st.history_capacity == 8);
    CHECK(st.refused[H2C_REFUSED_RATE] == 1 && st.refused[H2C_REFUSED_CAP] == 0);
    CHECK(st.store.n == 0);
    f.store.ops = &fake_ops;
    h2c_stats_read(&st, &f.store, 10, 5, p);
    CHECK(st.store.n == 1);
    h2c_seg_child_release(&f.seg, a);
    h2c_stats_read(&st, &f.store, 10, 5, p);
    CHECK(st.nchildren == 1 && st.subscribers == 2);
    apr_global_mutex_destroy(f.lock);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_shm_publish_read, pool);
    RUN(test_given_ids, pool);
    RUN(test_restore, pool);
    RUN(test_moderate, pool);
    RUN(test_stats, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_store");
}
