/* Unit tests of h2c_gate: when a publish wakes at once, when it defers and
 * until when, and what the waker does. Times in microseconds. */
#include <string.h>

#include "h2c_gate.h"
#include "unit.h"

#define T 100000 /* 100 ms */

static void test_interval(apr_pool_t *p) {
    (void)p;
    CHECK(h2c_gate_interval(0, 5000, 40, 250000) == 0);         /* off */
    CHECK(h2c_gate_interval(30000, 5000, 40, 250000) == 30000); /* fixed */
    CHECK(h2c_gate_interval(-1, 0, 40, 250000) == 0);           /* auto, idle */
    CHECK(h2c_gate_interval(-1, 1000, 40, 250000) == 40000);    /* auto */
    CHECK(h2c_gate_interval(-1, 5000, 40, 250000) == 200000);   /* auto */
    CHECK(h2c_gate_interval(-1, 100000, 40, 250000) == 250000); /* capped */
}

/* A quiet gate wakes at once; a second publish within T defers to last + T;
 * the waker waits until then, wakes once, then is idle. */
static void test_burst(apr_pool_t *p) {
    h2c_gate_t g;
    int64_t due = 0;

    (void)p;
    memset(&g, 0, sizeof(g));
    CHECK(h2c_gate_fire(&g, 5, T, &due) == H2C_GATE_IDLE);
    CHECK(h2c_gate_publish(&g, 1000000, T, &due) == H2C_GATE_WAKE);
    CHECK(g.last_wake_us == 1000000 && g.pending == 0);
    CHECK(h2c_gate_publish(&g, 1000010, T, &due) == H2C_GATE_DEFER);
    CHECK(due == 1000000 + T && g.pending == 1);
    CHECK(h2c_gate_publish(&g, 1050000, T, &due) == H2C_GATE_DEFER);
    CHECK(due == 1000000 + T);
    CHECK(h2c_gate_fire(&g, 1060000, T, &due) == H2C_GATE_WAIT);
    CHECK(due == 1000000 + T);
    CHECK(h2c_gate_fire(&g, 1000000 + T, T, &due) == H2C_GATE_WAKE);
    CHECK(g.pending == 0 && g.last_wake_us == 1000000 + T);
    CHECK(h2c_gate_fire(&g, 1000000 + T + 1, T, &due) == H2C_GATE_IDLE);
    /* a second waker (another child) finds nothing left to do */
    CHECK(h2c_gate_fire(&g, 1000000 + 2 * T, T, &due) == H2C_GATE_IDLE);
}

/* After a quiet spell of at least T the next publish wakes at once, and
 * that wake-up takes over anything still marked pending. */
static void test_quiet_again(apr_pool_t *p) {
    h2c_gate_t g;
    int64_t due = 0;

    (void)p;
    memset(&g, 0, sizeof(g));
    CHECK(h2c_gate_publish(&g, 1000000, T, &due) == H2C_GATE_WAKE);
    CHECK(h2c_gate_publish(&g, 1000001, T, &due) == H2C_GATE_DEFER);
    CHECK(h2c_gate_publish(&g, 1000000 + T, T, &due) == H2C_GATE_WAKE);
    CHECK(g.pending == 0);
    CHECK(h2c_gate_fire(&g, 1000000 + 2 * T, T, &due) == H2C_GATE_IDLE);
    CHECK(h2c_gate_publish(&g, 5000000, T, &due) == H2C_GATE_WAKE);
}

/* Interval 0 (auto with no held stream): every publish wakes at once. */
static void test_zero(apr_pool_t *p) {
    h2c_gate_t g;
    int64_t due = 0;

    (void)p;
    memset(&g, 0, sizeof(g));
    CHECK(h2c_gate_publish(&g, 7, 0, &due) == H2C_GATE_WAKE);
    CHECK(h2c_gate_publish(&g, 7, 0, &due) == H2C_GATE_WAKE);
    CHECK(h2c_gate_publish(&g, 8, 0, &due) == H2C_GATE_WAKE);
}

/* The interval shrinks while a message is pending (streams left): the
 * waker uses the interval of the moment it looks. */
static void test_shrink(apr_pool_t *p) {
    h2c_gate_t g;
    int64_t due = 0;

    (void)p;
    memset(&g, 0, sizeof(g));
    CHECK(h2c_gate_publish(&g, 1000000, T, &due) == H2C_GATE_WAKE);
    CHECK(h2c_gate_publish(&g, 1000001, T, &due) == H2C_GATE_DEFER);
    CHECK(h2c_gate_fire(&g, 1000002, 0, &due) == H2C_GATE_WAKE);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_interval, pool);
    RUN(test_burst, pool);
    RUN(test_quiet_again, pool);
    RUN(test_zero, pool);
    RUN(test_shrink, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_gate");
}
