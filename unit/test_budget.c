/* Unit tests of h2c_budget: the token bucket of work without progress. */
#include "h2c_budget.h"
#include "unit.h"

static void test_bucket(apr_pool_t *p) {
    h2c_budget_t b;
    int i, ok = 1;

    (void)p;
    h2c_budget_init(&b, 10, 1000000);
    for (i = 0; i < 10; i++) {
        ok &= h2c_budget_take(&b, 1, 1000000, 100, 10);
    }
    CHECK(ok);                                        /* the burst */
    CHECK(!h2c_budget_take(&b, 1, 1000000, 100, 10)); /* then empty */
    CHECK(!h2c_budget_take(&b, 1, 1009000, 100, 10)); /* 9 ms: 0.9 tokens */
    CHECK(h2c_budget_take(&b, 1, 1010000, 100, 10));  /* 10 ms at 100/s: one */
    CHECK(!h2c_budget_take(&b, 1, 1010000, 100, 10));
    CHECK(h2c_budget_take(&b, 10, 9000000, 100, 10)); /* refilled, capped at the burst */
    CHECK(!h2c_budget_take(&b, 1, 9000000, 100, 10));
    CHECK(!h2c_budget_take(&b, 100, 20000000, 100, 10)); /* more than a burst: never */
    /* time running backwards gives nothing and takes nothing */
    h2c_budget_init(&b, 5, 5000000);
    CHECK(h2c_budget_take(&b, 5, 4000000, 100, 5));
    CHECK(!h2c_budget_take(&b, 1, 4000000, 100, 5));
}

/* Sub-millisecond steps still add up (the remainder is kept). */
static void test_small_steps(apr_pool_t *p) {
    h2c_budget_t b;
    int64_t t = 0;
    int i, got = 0;

    (void)p;
    h2c_budget_init(&b, 1, 0);
    CHECK(h2c_budget_take(&b, 1, 0, 1000, 1));
    for (i = 0; i < 2000; i++) { /* 1 s in 500 µs steps at 1000/s: 1000 tokens */
        t += 500;
        got += h2c_budget_take(&b, 1, t, 1000, 1);
    }
    CHECK(got >= 990 && got <= 1000);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_bucket, pool);
    RUN(test_small_steps, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_budget");
}
