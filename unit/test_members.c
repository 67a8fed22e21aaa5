/* Unit tests of h2c_members: a person is one member however many streams
 * and rows hold them (first join, last leave), a killed row's streams
 * leave, the event ring and a reader that fell behind, the lock-free list,
 * a full table. */
#include <stdlib.h>
#include <string.h>

#include "h2c_members.h"
#include "unit.h"

static h2c_members_t *make(apr_pool_t *p, uint32_t max_members) {
    apr_size_t size = h2c_members_size(max_members, 4, 3);
    h2c_members_t *ms = apr_pcalloc(p, sizeof(*ms));

    CHECK(h2c_members_init(ms, apr_pcalloc(p, size), size, max_members, 4, 3) ==
          APR_SUCCESS);
    return ms;
}

typedef struct {
    char names[8][H2C_MEMBERS_NAME_MAX + 1];
    int n;
} seen_t;

static void collect(void *ctx, const char *name, uint32_t len) {
    seen_t *s = ctx;

    if (!name) {
        s->n = 0;
        return;
    }
    if (s->n < 8) {
        memcpy(s->names[s->n], name, len);
        s->names[s->n++][len] = '\0';
    }
}

static int has(const seen_t *s, const char *name) {
    int i;

    for (i = 0; i < s->n; i++) {
        if (!strcmp(s->names[i], name)) {
            return 1;
        }
    }
    return 0;
}

static void test_join_leave(apr_pool_t *p) {
    h2c_members_t *ms = make(p, 8);
    h2c_member_event_t ev;
    uint32_t ann1, ann2, ann3, bob;
    seen_t s = {{{0}}, 0};

    CHECK(h2c_members_seq(ms) == 0);
    /* ann: two tabs on row 0, one stream on row 1: one member, one join */
    CHECK(h2c_members_join(ms, 0, 1, "ann", 3, &ann1) == APR_SUCCESS);
    CHECK(h2c_members_join(ms, 0, 1, "ann", 3, &ann2) == APR_SUCCESS && ann2 == ann1);
    CHECK(h2c_members_join(ms, 1, 1, "ann", 3, &ann3) == APR_SUCCESS && ann3 == ann1);
    CHECK(h2c_members_seq(ms) == 1 && h2c_members_count(ms) == 1);
    CHECK(h2c_members_event(ms, 1, &ev) == APR_SUCCESS && ev.kind == H2C_MEMBER_JOIN &&
          ev.room == 1 && !strcmp(ev.name, "ann") && ev.len == 3);
    /* the same name in another room is another member */
    CHECK(h2c_members_join(ms, 0, 2, "ann", 3, &bob) == APR_SUCCESS && bob != ann1);
    CHECK(h2c_members_join(ms, 2, 1, "bob", 3, &bob) == APR_SUCCESS);
    CHECK(h2c_members_seq(ms) == 3 && h2c_members_count(ms) == 3);
    CHECK(h2c_members_list(ms, 1, collect, &s) == 2 && has(&s, "ann") && has(&s, "bob"));
    /* ann's streams end one by one: the leave comes with the last */
    h2c_members_leave(ms, 0, ann1);
    h2c_members_leave(ms, 0, ann1);
    CHECK(h2c_members_seq(ms) == 3);
    h2c_members_leave(ms, 0, ann1); /* row 0 holds none any more: ignored */
    CHECK(h2c_members_seq(ms) == 3);
    h2c_members_leave(ms, 1, ann1);
    CHECK(h2c_members_seq(ms) == 4 && h2c_members_count(ms) == 2);
    CHECK(h2c_members_event(ms, 4, &ev) == APR_SUCCESS && ev.kind == H2C_MEMBER_LEAVE &&
          ev.room == 1 && !strcmp(ev.name, "ann"));
    s.n = 0;
    CHECK(h2c_members_list(ms, 1, collect, &s) == 1 && has(&s, "bob"));
    /* events not logged yet, bad names */
    CHECK(h2c_members_event(ms, 5, &ev) == APR_NOTFOUND);
    CHECK(h2c_members_event(ms, 0, &ev) == APR_NOTFOUND);
    CHECK(h2c_members_join(ms, 0, 1, "", 0, &ann1) == APR_EINVAL);
    {
        char long_name[H2C_MEMBERS_NAME_MAX + 1];

        memset(long_name, 'x', sizeof(long_name));
        CHECK(h2c_members_join(ms, 0, 1, long_name, sizeof(long_name), &ann1) ==
              APR_EINVAL);
        CHECK(h2c_members_join(ms, 0, 1, long_name, H2C_MEMBERS_NAME_MAX, &ann1) ==
              APR_SUCCESS);
    }
    CHECK(h2c_members_join(ms, 3, 1, "x", 1, &ann1) == APR_EINVAL); /* no such row */
    CHECK(h2c_members_join(ms, 0, 4, "x", 1, &ann1) == APR_EINVAL); /* no such room */
}

/* A killed child's row: its streams leave; members others hold stay. */
static void test_forget(apr_pool_t *p) {
    h2c_members_t *ms = make(p, 8);
    uint32_t m;
    seen_t s = {{{0}}, 0};

    h2c_members_join(ms, 1, 0, "ann", 3, &m);
    h2c_members_join(ms, 1, 0, "ann", 3, &m);
    h2c_members_join(ms, 1, 0, "bob", 3, &m);
    h2c_members_join(ms, 2, 0, "bob", 3, &m);
    CHECK(h2c_members_seq(ms) == 2);
    h2c_members_forget(ms, 1);
    CHECK(h2c_members_seq(ms) == 3 && h2c_members_count(ms) == 1);
    CHECK(h2c_members_list(ms, 0, collect, &s) == 1 && has(&s, "bob"));
    h2c_members_leave(ms, 2, m);
    CHECK(h2c_members_count(ms) == 0 && h2c_members_seq(ms) == 4);
}

/* A full table refuses a new member, not a stream of an old one; the ring
 * keeps the newest events only. */
static void test_full_and_ring(apr_pool_t *p) {
    h2c_members_t *ms = make(p, 2);
    h2c_member_event_t ev;
    uint32_t a, b, c, i;

    CHECK(h2c_members_join(ms, 0, 0, "a", 1, &a) == APR_SUCCESS);
    CHECK(h2c_members_join(ms, 0, 0, "b", 1, &b) == APR_SUCCESS);
    CHECK(h2c_members_join(ms, 0, 0, "c", 1, &c) == APR_EBUSY);
    CHECK(h2c_members_join(ms, 1, 0, "a", 1, &c) == APR_SUCCESS && c == a);
    CHECK(h2c_members_count(ms) == 2 && h2c_members_max(ms) == 2);
    for (i = 0; i < H2C_MEMBERS_EVENTS; i++) {
        h2c_members_leave(ms, 0, b);
        h2c_members_join(ms, 0, 0, "b", 1, &b);
    }
    CHECK(h2c_members_seq(ms) == 2 + 2 * (uint64_t)H2C_MEMBERS_EVENTS);
    CHECK(h2c_members_event(ms, 1, &ev) == APR_NOTFOUND); /* overwritten */
    CHECK(h2c_members_event(ms, h2c_members_seq(ms), &ev) == APR_SUCCESS &&
          ev.kind == H2C_MEMBER_JOIN && !strcmp(ev.name, "b"));
    CHECK(h2c_members_event(ms, h2c_members_seq(ms) - H2C_MEMBERS_EVENTS + 1, &ev) ==
          APR_SUCCESS);
    CHECK(h2c_members_event(ms, h2c_members_seq(ms) - H2C_MEMBERS_EVENTS, &ev) ==
          APR_NOTFOUND);
}

static void test_attach(apr_pool_t *p) {
    apr_size_t size = h2c_members_size(4, 2, 2);
    void *mem = apr_pcalloc(p, size);
    h2c_members_t a, b;
    uint32_t m;

    CHECK(h2c_members_attach(&a, mem, size) == APR_EGENERAL);
    CHECK(h2c_members_init(&a, mem, size - 1, 4, 2, 2) == APR_EINVAL);
    CHECK(h2c_members_init(&a, mem, size, 4, 2, 2) == APR_SUCCESS);
    CHECK(h2c_members_attach(&b, mem, size) == APR_SUCCESS);
    CHECK(h2c_members_join(&a, 1, 1, "ann", 3, &m) == APR_SUCCESS);
    CHECK(h2c_members_seq(&b) == 1 && h2c_members_count(&b) == 1);
    CHECK(h2c_members_attach(&b, mem, size - 1) == APR_EGENERAL);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_join_leave, pool);
    RUN(test_forget, pool);
    RUN(test_full_and_ring, pool);
    RUN(test_attach, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_members");
}
