/* Unit tests of h2c_presence: when a stream looks at its rooms' counts and
 * what it tells. */
#include <string.h>

#include "h2c_presence.h"
#include "unit.h"

typedef struct {
    uint32_t which[8], count[8];
    int n;
} told_t;

static void tell(void *ctx, uint32_t which, uint32_t count) {
    told_t *t = ctx;

    t->which[t->n] = which;
    t->count[t->n++] = count;
}

static void test_counts(apr_pool_t *p) {
    apr_size_t size = h2c_rooms_size(4, 2, 64 * 1024);
    h2c_rooms_t rs;
    uint32_t r[2], told[2];
    h2c_follow_room_t mem[2];
    h2c_presence_t pr;
    h2c_follow_t f;
    told_t t;
    int reset;
    int64_t wait, now = 5000000;

    CHECK(h2c_rooms_init(&rs, apr_pcalloc(p, size), size, 4, 2, 64 * 1024, 10, 256) ==
          APR_SUCCESS);
    CHECK(h2c_rooms_open(&rs, "a", 1, 1, &r[0]) == APR_SUCCESS);
    CHECK(h2c_rooms_open(&rs, "b", 1, 1, &r[1]) == APR_SUCCESS);
    h2c_rooms_hold(&rs, 0, r[0], 1);
    h2c_rooms_hold(&rs, 0, r[1], 1);
    h2c_rooms_hold(&rs, 1, r[1], 1);
    h2c_follow_start(&f, &rs, r, 2, mem, 0, 0, 0, &reset);
    h2c_presence_init(&pr, 2, told);
    /* a new stream looks at once and tells every room */
    CHECK(h2c_presence_due(&pr, &rs, now, &wait));
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_look(&pr, &f, now, tell, &t) == 2);
    CHECK(t.which[0] == 0 && t.count[0] == 1 && t.which[1] == 1 && t.count[1] == 2);
    /* nothing changed: no look, nothing to wait for */
    CHECK(!h2c_presence_due(&pr, &rs, now + 2000000, &wait) && wait == 0);
    /* a change within the second: wait for the rest of it */
    h2c_rooms_hold(&rs, 1, r[0], 1);
    CHECK(!h2c_presence_due(&pr, &rs, now + 400000, &wait) && wait == 600000);
    CHECK(h2c_presence_due(&pr, &rs, now + 1000000, &wait));
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_look(&pr, &f, now + 1000000, tell, &t) == 1);
    CHECK(t.which[0] == 0 && t.count[0] == 2);
    /* a change that changes back: a look, nothing told */
    h2c_rooms_hold(&rs, 1, r[1], -1);
    h2c_rooms_hold(&rs, 1, r[1], 1);
    CHECK(h2c_presence_due(&pr, &rs, now + 3000000, &wait));
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_look(&pr, &f, now + 3000000, tell, &t) == 0);
    /* a gone child's streams leave the counts when its row is forgotten */
    h2c_rooms_forget(&rs, 1);
    CHECK(h2c_presence_count(&rs, r[0]) == 1 && h2c_presence_count(&rs, r[1]) == 1);
    memset(&t, 0, sizeof(t));
    CHECK(h2c_presence_due(&pr, &rs, now + 5000000, &wait));
    CHECK(h2c_presence_look(&pr, &f, now + 5000000, tell, &t) == 2);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_counts, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_presence");
}
