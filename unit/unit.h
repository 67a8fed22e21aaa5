/* A minimal unit-test harness: CHECK records, the summary line is the one
 * CI reads ("N passed, N failed"). */
#ifndef H2C_UNIT_H
#define H2C_UNIT_H

#include <stdio.h>
#include <apr_general.h>
#include <apr_pools.h>

static int unit_passed, unit_failed;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (cond) {                                                                      \
            unit_passed++;                                                               \
        } else {                                                                         \
            unit_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

#define RUN(fn, pool)                                                                    \
    do {                                                                                 \
        apr_pool_t *sub_;                                                                \
        apr_pool_create(&sub_, pool);                                                    \
        fn(sub_);                                                                        \
        apr_pool_destroy(sub_);                                                          \
    } while (0)

static int unit_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}

#endif /* H2C_UNIT_H */
