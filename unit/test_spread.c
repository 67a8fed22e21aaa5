/* Unit tests of h2c_spread: the window H2ChatReconnectSpread gives (auto,
 * fixed, off), that hints fall in [0, W) and spread over it, and that
 * threads drawing at once lose no draw. */
#include <string.h>

#include <apr_thread_proc.h>

#include "h2c_spread.h"
#include "unit.h"

static void test_window(apr_pool_t *p) {
    (void)p;
    CHECK(h2c_spread_window_ms(H2C_SPREAD_OFF, 50000) == 0);
    CHECK(h2c_spread_window_ms(-7, 50000) == 0); /* anything else unknown: off */
    CHECK(h2c_spread_window_ms(1, 0) == 1000);   /* fixed, whatever is held */
    CHECK(h2c_spread_window_ms(30, 1000000) == 30000);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_FIXED_MAX_S, 0) == 300000);
    /* auto: held / 5,000 per second, clamped to [1 s, 10 s] */
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, 0) == 1000);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, 20) == 1000);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, 5000) == 1000);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, 12500) == 2500);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, 25000) == 5000);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, 50000) == 10000);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, 400000) == 10000);
    CHECK(h2c_spread_window_ms(H2C_SPREAD_AUTO, UINT32_MAX) == 10000); /* no overflow */
}

static void test_pick(apr_pool_t *p) {
    (void)p;
    CHECK(h2c_spread_pick(0, 1000) == 0);
    CHECK(h2c_spread_pick(UINT64_MAX, 1000) == 999); /* below W, never W */
    CHECK(h2c_spread_pick(UINT64_MAX, 300000) == 299999);
    CHECK(h2c_spread_pick(UINT64_MAX, 1) == 0);
    CHECK(h2c_spread_pick(0x8000000000000000ull, 1000) == 500);
    CHECK(h2c_spread_pick(12345, 0) == 0);
}

static void test_unarmed(apr_pool_t *p) {
    h2c_spread_t sp;
    uint32_t ms = 77;

    (void)p;
    memset(&sp, 0, sizeof(sp));
    CHECK(!h2c_spread_draw(&sp, &ms) && ms == 77); /* zero: no hint */
    h2c_spread_seed(&sp, 42);
    CHECK(!h2c_spread_draw(&sp, &ms));
    h2c_spread_arm(&sp, h2c_spread_window_ms(H2C_SPREAD_OFF, 100));
    CHECK(!h2c_spread_draw(&sp, &ms)); /* off */
}

/* 10,000 draws over W = 10 s: all in [0, W), each tenth of the window gets
 * its share (within 20 %), nearly all values distinct. */
static void test_uniform(apr_pool_t *p) {
    enum { N = 10000, W = 10000 };
    h2c_spread_t sp;
    uint32_t tenths[10] = {0}, ms, lo = W, hi = 0;
    static unsigned char seen[W];
    int i, ok = 1, distinct = 0;

    (void)p;
    memset(seen, 0, sizeof(seen));
    h2c_spread_seed(&sp, 0x1234);
    h2c_spread_arm(&sp, W);
    for (i = 0; i < N; i++) {
        if (!h2c_spread_draw(&sp, &ms) || ms >= W) {
            ok = 0;
            break;
        }
        tenths[ms / (W / 10)]++;
        lo = ms < lo ? ms : lo;
        hi = ms > hi ? ms : hi;
        distinct += !seen[ms];
        seen[ms] = 1;
    }
    CHECK(ok);
    CHECK(lo < 50 && hi >= W - 50);
    for (i = 0; i < 10; i++) {
        CHECK(tenths[i] > N / 10 * 8 / 10 && tenths[i] < N / 10 * 12 / 10);
    }
    /* 10,000 draws into 10,000 values: ~63 % distinct if uniform */
    CHECK(distinct > N / 2);
}

/* Two children (seeds) draw different sequences; one seed repeats. */
static void test_seeds(apr_pool_t *p) {
    h2c_spread_t a, b, c;
    uint32_t x, y, z;
    int i, same_ab = 0, same_ac = 0;

    (void)p;
    h2c_spread_seed(&a, 1001), h2c_spread_seed(&b, 1002), h2c_spread_seed(&c, 1001);
    h2c_spread_arm(&a, 60000), h2c_spread_arm(&b, 60000), h2c_spread_arm(&c, 60000);
    for (i = 0; i < 100; i++) {
        h2c_spread_draw(&a, &x), h2c_spread_draw(&b, &y), h2c_spread_draw(&c, &z);
        same_ab += x == y;
        same_ac += x == z;
    }
    CHECK(same_ab < 5);
    CHECK(same_ac == 100);
}

enum { THREADS = 4, DRAWS = 20000 };

static void *APR_THREAD_FUNC drawer(apr_thread_t *t, void *data) {
    h2c_spread_t *sp = data;
    uint32_t ms;
    int i, bad = 0;

    for (i = 0; i < DRAWS; i++) {
        bad += !h2c_spread_draw(sp, &ms) || ms >= 2000;
    }
    apr_thread_exit(t, bad ? APR_EGENERAL : APR_SUCCESS);
    return NULL;
}

/* Threads drawing at once: every draw advances the counter once (none
 * lost, none doubled), and each value is in range. */
static void test_threads(apr_pool_t *p) {
    h2c_spread_t sp;
    apr_thread_t *t[THREADS];
    apr_status_t rv, all = APR_SUCCESS;
    uint64_t start;
    int i;

    h2c_spread_seed(&sp, 99);
    h2c_spread_arm(&sp, 2000);
    start = sp.counter;
    for (i = 0; i < THREADS; i++) {
        CHECK(apr_thread_create(&t[i], NULL, drawer, &sp, p) == APR_SUCCESS);
    }
    for (i = 0; i < THREADS; i++) {
        apr_thread_join(&rv, t[i]);
        all = rv != APR_SUCCESS ? rv : all;
    }
    CHECK(all == APR_SUCCESS);
    CHECK(sp.counter == start + (uint64_t)THREADS * DRAWS * 0x9E3779B97F4A7C15ull);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_window, pool);
    RUN(test_pick, pool);
    RUN(test_unarmed, pool);
    RUN(test_uniform, pool);
    RUN(test_seeds, pool);
    RUN(test_threads, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_spread");
}
