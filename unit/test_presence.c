/* Unit tests of h2c_presence: when a stream looks at its rooms' counts and
 * what it tells. */
#include <stdio.h>
#include <string.h>

#include "h2c_presence.h"
#include "unit.h"

typedef struct {
    uint32_t which[8], count[8];
    int n;
    /* members: what it was told, as "which:+name", "which:-name", "which:list" */
    char said[16][40];
    int nsaid;
} told_t;

static void tell(void *ctx, uint32_t which, uint32_t count) {
    told_t *t = ctx;

    t->which[t->n] = which;
    t->count[t->n++] = count;
}

static void tell_list(void *ctx, uint32_t which) {
    told_t *t = ctx;

    if (t->nsaid < 16) {
        snprintf(t->said[t->nsaid++], 40, "%u:list", which);
    }
}

static void tell_member(void *ctx, uint32_t which, h2c_member_kind_t kind,
                        const char *name, uint32_t len) {
    told_t *t = ctx;

    if (t->nsaid < 16) {
        snprintf(t->said[t->nsaid++], 40, "%u:%c%.*s", which,
                 kind == H2C_MEMBER_JOIN ? '+' : '-', (int)len, name);
    }
}

static const h2c_presence_fns_t fns = {tell, tell_list, tell_member};

/* Rooms for 4 records and 2 child rows, with rooms "a", "b", ... (n of
 * them) made: their indexes in r. */
static void make_rooms(apr_pool_t *p, h2c_rooms_t *rs, uint32_t *r, uint32_t n) {
    apr_size_t size = h2c_rooms_size(4, 2, 64 * 1024);
    char name[2] = "a";
    uint32_t i;

    CHECK(h2c_rooms_init(rs, apr_pcalloc(p, size), size, 4, 2, 64 * 1024, 10, 256) ==
          APR_SUCCESS);
    for (i = 0; i < n; i++, name[0]++) {
        CHECK(h2c_rooms_open(rs, name, 1, 1, &r[i]) == APR_SUCCESS);
    }
}

static void test_counts(apr_pool_t *p) {
    h2c_rooms_t rs;
    uint32_t r[2], told[2];
    h2c_follow_room_t mem[2];
    h2c_presence_t pr;
    h2c_follow_t f;
    told_t t;
    int reset;
    int64_t wait, now = 5000000;

    make_rooms(p, &rs, r, 2);
    h2c_rooms_hold(&rs, 0, r[0], 1);
    h2c_rooms_hold(&rs, 0, r[1], 1);
    h2c_rooms_hold(&rs, 1, r[1], 1);
    h2c_follow_start(&f, &rs, r, 2, mem, 0, 0, 0, &reset);
    h2c_presence_init(&pr, 2, told, NULL);
    /* a new stream looks at once and tells every room */
    CHECK(h2c_presence_due(&pr, &rs, now, &wait));
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_look(&pr, &f, now, &fns, &t) == 2);
    CHECK(t.which[0] == 0 && t.count[0] == 1 && t.which[1] == 1 && t.count[1] == 2);
    /* nothing changed: no look, nothing to wait for */
    CHECK(!h2c_presence_due(&pr, &rs, now + 2000000, &wait) && wait == 0);
    /* a change within the second: wait for the rest of it */
    h2c_rooms_hold(&rs, 1, r[0], 1);
    CHECK(!h2c_presence_due(&pr, &rs, now + 400000, &wait) && wait == 600000);
    CHECK(h2c_presence_due(&pr, &rs, now + 1000000, &wait));
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_look(&pr, &f, now + 1000000, &fns, &t) == 1);
    CHECK(t.which[0] == 0 && t.count[0] == 2);
    /* a change that changes back: a look, nothing told */
    h2c_rooms_hold(&rs, 1, r[1], -1);
    h2c_rooms_hold(&rs, 1, r[1], 1);
    CHECK(h2c_presence_due(&pr, &rs, now + 3000000, &wait));
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_look(&pr, &f, now + 3000000, &fns, &t) == 0);
    /* a gone child's streams leave the counts when its row is forgotten */
    h2c_rooms_forget(&rs, 1);
    CHECK(h2c_presence_count(&rs, r[0]) == 1 && h2c_presence_count(&rs, r[1]) == 1);
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_due(&pr, &rs, now + 5000000, &wait));
    CHECK(h2c_presence_look(&pr, &f, now + 5000000, &fns, &t) == 2);
}

/* H2ChatPresence members: the lists at the first look, then the joins and
 * leaves of the stream's rooms only, in order; a stream a whole ring
 * behind is given the lists again. */
static void test_members(apr_pool_t *p) {
    apr_size_t msize = h2c_members_size(8, 4, 2);
    h2c_rooms_t rs;
    h2c_members_t ms;
    uint32_t r[3], told[2], m, i;
    h2c_follow_room_t mem[2];
    h2c_presence_t pr;
    h2c_follow_t f;
    told_t t;
    int reset;
    int64_t wait, now = 5000000;

    make_rooms(p, &rs, r, 3);
    CHECK(h2c_members_init(&ms, apr_pcalloc(p, msize), msize, 8, 4, 2) == APR_SUCCESS);
    h2c_rooms_hold(&rs, 0, r[0], 1);
    h2c_rooms_hold(&rs, 0, r[1], 1);
    h2c_members_join(&ms, 0, r[0], "ann", 3, &m);
    h2c_follow_start(&f, &rs, r, 2, mem, 0, 0, 0, &reset);
    h2c_presence_init(&pr, 2, told, &ms);
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_due(&pr, &rs, now, &wait));
    CHECK(h2c_presence_look(&pr, &f, now, &fns, &t) == 4); /* 2 counts, 2 lists */
    CHECK(t.nsaid == 2 && !strcmp(t.said[0], "0:list") && !strcmp(t.said[1], "1:list"));
    /* bob joins b, someone joins c (not this stream's), ann leaves a */
    h2c_rooms_hold(&rs, 1, r[1], 1);
    h2c_members_join(&ms, 1, r[1], "bob", 3, &m);
    h2c_rooms_hold(&rs, 1, r[2], 1);
    h2c_members_join(&ms, 1, r[2], "cy", 2, &m);
    h2c_members_forget(&ms, 0);
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_due(&pr, &rs, now + 1000000, &wait));
    h2c_presence_look(&pr, &f, now + 1000000, &fns, &t);
    CHECK(t.nsaid == 2 && !strcmp(t.said[0], "1:+bob") && !strcmp(t.said[1], "0:-ann"));
    /* far behind: the ring moved past its place, so the lists again */
    for (i = 0; i < H2C_MEMBERS_EVENTS; i++) {
        h2c_members_join(&ms, 1, r[2], "dee", 3, &m);
        h2c_members_leave(&ms, 1, m);
    }
    h2c_rooms_hold(&rs, 1, r[2], -1);
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_due(&pr, &rs, now + 2000000, &wait));
    h2c_presence_look(&pr, &f, now + 2000000, &fns, &t);
    CHECK(t.nsaid == 2 && !strcmp(t.said[0], "0:list") && !strcmp(t.said[1], "1:list"));
    /* and the names a list gives */
    {
        apr_array_header_t *names = h2c_presence_names(&ms, r[1], p);

        CHECK(names->nelts == 1 && !strcmp(APR_ARRAY_IDX(names, 0, const char *), "bob"));
        CHECK(h2c_presence_names(&ms, r[0], p)->nelts == 0);
    }
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_counts, pool);
    RUN(test_members, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_presence");
}
