/* Unit tests of h2c_penalty: addresses refused for a while. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2c_penalty.h"
#include "unit.h"

#define S 1000000 /* µs */

static void test_refuse_and_expire(apr_pool_t *p) {
    h2c_penalty_t *t = apr_pcalloc(p, sizeof(*t));

    CHECK(!h2c_penalty_has(t, "192.0.2.7", 0));
    CHECK(h2c_penalty_add(t, "192.0.2.7", 10 * S, 0)); /* new */
    CHECK(h2c_penalty_has(t, "192.0.2.7", 9 * S));
    CHECK(!h2c_penalty_has(t, "192.0.2.70", 9 * S)); /* exact address, not a prefix */
    CHECK(!h2c_penalty_has(t, "192.0.2.7", 10 * S)); /* ends at until */
    /* again while refused: not new, the end moves later, never earlier */
    CHECK(h2c_penalty_add(t, "192.0.2.7", 20 * S, 10 * S));
    CHECK(!h2c_penalty_add(t, "192.0.2.7", 15 * S, 12 * S));
    CHECK(h2c_penalty_has(t, "192.0.2.7", 19 * S));
    CHECK(!h2c_penalty_add(t, "", 5 * S, 0) && !h2c_penalty_has(t, "", 0));
    CHECK(!h2c_penalty_add(t, NULL, 5 * S, 0) && !h2c_penalty_has(t, NULL, 0));
}

/* Keys: never 0 (0 marks a slot never used), and they tell addresses apart. */
static void test_keys(apr_pool_t *p) {
    (void)p;
    CHECK(h2c_penalty_key("") != 0 && h2c_penalty_key(NULL) != 0);
    CHECK(h2c_penalty_key("127.0.0.1") != h2c_penalty_key("127.0.0.10"));
    CHECK(h2c_penalty_key("::1") == h2c_penalty_key("::1"));
}

/* A flood of addresses: the table never grows, the newest are refused,
 * and an address refused long ago in its window ends, not a fresh one. */
static void test_full_table(apr_pool_t *p) {
    h2c_penalty_t *t = apr_pcalloc(p, sizeof(*t));
    char a[32];
    int i, held = 0;

    for (i = 0; i < 20000; i++) {
        snprintf(a, sizeof(a), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        h2c_penalty_add(t, a, (int64_t)(100 + i) * S, 0);
        CHECK(h2c_penalty_has(t, a, 0)); /* the one just added is always in */
    }
    for (i = 0; i < 20000; i++) {
        snprintf(a, sizeof(a), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        held += h2c_penalty_has(t, a, 0);
    }
    CHECK(held <= (int)H2C_PENALTY_SLOTS && held > (int)H2C_PENALTY_SLOTS / 2);
    /* ended entries are taken before live ones */
    memset(t, 0, sizeof(*t));
    h2c_penalty_add(t, "198.51.100.1", 5 * S, 0);
    for (i = 0; i < 5000; i++) {
        snprintf(a, sizeof(a), "10.1.%d.%d", (i >> 8) & 255, i & 255);
        h2c_penalty_add(t, a, 1000 * S, 10 * S);
    }
    held = 0;
    for (i = 4000; i < 5000; i++) {
        snprintf(a, sizeof(a), "10.1.%d.%d", (i >> 8) & 255, i & 255);
        held += h2c_penalty_has(t, a, 10 * S);
    }
    CHECK(held > 500);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_refuse_and_expire, pool);
    RUN(test_keys, pool);
    RUN(test_full_table, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_penalty");
}
