/* Unit tests of h2c_balance: which child's loop takes a new connection. */
#include <unistd.h>

#include "h2c_balance.h"
#include "unit.h"

/* Three live rows (this process, its parent, init), all loops of
 * generation 5 (gen1 = 6) unless a test says otherwise. */
static void make(h2c_seg_t *seg, apr_pool_t *p, uint32_t slot[3]) {
    apr_size_t size = h2c_seg_size(4, 4, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t pids[3] = {(uint32_t)getpid(), (uint32_t)getppid(), 1}, i;

    CHECK(h2c_seg_init(seg, mem, size, 4, 4, 16, 0) == APR_SUCCESS);
    for (i = 0; i < 3; i++) {
        CHECK(h2c_seg_child_claim(seg, pids[i], &slot[i]) == APR_SUCCESS);
        h2c_seg_direct_taking(seg, slot[i], 6);
    }
}

/* One new connection in child `self`: counted there first, as the glue does. */
static int place(h2c_seg_t *seg, uint32_t self, uint32_t gen1, int must, uint32_t *to,
                 uint32_t *pid) {
    h2c_seg_direct_conns_add(seg, self, 1);
    if (h2c_balance_place(seg, self, gen1, must, to, pid)) {
        return 1;
    }
    h2c_seg_direct_conns_add(seg, self, -1); /* the tests count only moves */
    return 0;
}

static uint32_t count(h2c_seg_t *seg, uint32_t slot) {
    h2c_child_t row;

    h2c_seg_child_row(seg, slot, &row);
    return row.direct_conns;
}

/* Many pickers at once (the workers of every child in a reconnect wave):
 * each hand-over is counted and checked in one step, so the target never
 * gets more than keeps it within the slack of the giver. */
static void test_no_pile_up(apr_pool_t *p) {
    h2c_seg_t seg;
    uint32_t s[3], to, pid, i, handed = 0;

    make(&seg, p, s);
    h2c_seg_direct_count(&seg, s[0], 1000, 0);
    h2c_seg_direct_count(&seg, s[2], 1000, 0);
    for (i = 0; i < 1000; i++) {
        handed += (uint32_t)place(&seg, s[0], 6, 0, &to, &pid);
    }
    CHECK(count(&seg, s[1]) == handed);
    CHECK(handed > 900 &&
          count(&seg, s[1]) + H2C_BALANCE_SLACK + 1000 / H2C_BALANCE_SHARE <= 1000);
}

static void test_least_loaded(apr_pool_t *p) {
    h2c_seg_t seg;
    uint32_t s[3], to = 99, pid = 0;

    make(&seg, p, s);
    /* all empty: keep */
    CHECK(!place(&seg, s[0], 6, 0, &to, &pid));
    /* within the slack: keep */
    h2c_seg_direct_count(&seg, s[0], 8, 0);
    CHECK(!place(&seg, s[0], 6, 0, &to, &pid));
    /* past it: the least loaded of the others, counted there at once */
    h2c_seg_direct_count(&seg, s[0], 2, 0);
    h2c_seg_direct_count(&seg, s[1], 1, 0);
    CHECK(place(&seg, s[0], 6, 0, &to, &pid));
    CHECK(to == s[2] && pid == 1 && count(&seg, s[2]) == 1);
    /* more to the others while 1 + theirs + 8 <= 10 (this child's 10) */
    while (place(&seg, s[0], 6, 0, &to, &pid)) {
    }
    CHECK(count(&seg, s[1]) == 2 && count(&seg, s[2]) == 2 && count(&seg, s[0]) == 10);
    h2c_seg_direct_count(&seg, s[1], -1, 0);
    h2c_seg_direct_count(&seg, s[2], -2, 0);
    h2c_seg_direct_count(&seg, s[0], -1, 0);
    /* at scale the slack grows with the count: 1000 vs 970 stays */
    h2c_seg_direct_count(&seg, s[0], 1000 - 9, 0);
    h2c_seg_direct_count(&seg, s[1], 970 - 1, 0);
    h2c_seg_direct_count(&seg, s[2], 970, 0);
    CHECK(!place(&seg, s[0], 6, 0, &to, &pid));
    h2c_seg_direct_count(&seg, s[0], 100, 0); /* 1100 vs 970: hand */
    CHECK(place(&seg, s[0], 6, 0, &to, &pid));
    /* the least loaded never hands, unless it must (out of open files) */
    CHECK(!place(&seg, s[1], 6, 0, &to, &pid));
    CHECK(place(&seg, s[1], 6, 1, &to, &pid) && to == s[2]);
}

/* Rows of another generation, or loops that take nothing (stopping), are
 * no target; nor is anything when this child's own generation is 0. */
static void test_generation(apr_pool_t *p) {
    h2c_seg_t seg;
    uint32_t s[3], to = 99, pid = 0;

    make(&seg, p, s);
    h2c_seg_direct_count(&seg, s[0], 100, 0);
    h2c_seg_direct_taking(&seg, s[1], 5); /* an old generation, draining */
    h2c_seg_direct_taking(&seg, s[2], 0); /* stopping */
    CHECK(!place(&seg, s[0], 6, 0, &to, &pid));
    CHECK(!place(&seg, s[0], 6, 1, &to, &pid)); /* nobody to take it */
    h2c_seg_direct_taking(&seg, s[2], 6);
    CHECK(place(&seg, s[0], 6, 0, &to, &pid) && to == s[2]);
    CHECK(!place(&seg, s[0], 0, 0, &to, &pid));
    /* a released row is no target */
    h2c_seg_child_release(&seg, s[2]);
    CHECK(!place(&seg, s[0], 6, 0, &to, &pid));
}

/* Who may hand a connection: a live row's pid of the same generation. */
static void test_peer(apr_pool_t *p) {
    h2c_seg_t seg;
    uint32_t s[3];

    make(&seg, p, s);
    CHECK(h2c_balance_peer(&seg, (uint32_t)getppid(), 6));
    CHECK(!h2c_balance_peer(&seg, (uint32_t)getppid(), 5)); /* another generation */
    CHECK(!h2c_balance_peer(&seg, 12345678, 6));            /* not a child */
    CHECK(!h2c_balance_peer(&seg, 0, 6) && !h2c_balance_peer(&seg, 1, 0));
    h2c_seg_direct_taking(&seg, s[1], 0); /* stopping */
    CHECK(!h2c_balance_peer(&seg, (uint32_t)getppid(), 6));
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_least_loaded, pool);
    RUN(test_no_pile_up, pool);
    RUN(test_generation, pool);
    RUN(test_peer, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_balance");
}
