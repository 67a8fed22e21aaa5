/* h2c_budget: see h2c_budget.h. */
#include "h2c_budget.h"

void h2c_budget_init(h2c_budget_t *b, uint32_t burst, int64_t now_us) {
    b->milli = (int64_t)burst * 1000;
    b->last_us = now_us;
}

int h2c_budget_take(h2c_budget_t *b, uint32_t cost, int64_t now_us, uint32_t rate,
                    uint32_t burst) {
    int64_t cap = (int64_t)burst * 1000;

    if (now_us > b->last_us) {
        /* rate tokens per second = rate milli-tokens per millisecond */
        b->milli += (now_us - b->last_us) / 1000 * (int64_t)rate;
        b->last_us = now_us - (now_us - b->last_us) % 1000;
        if (b->milli > cap) {
            b->milli = cap;
        }
    }
    if (b->milli < (int64_t)cost * 1000) {
        return 0;
    }
    b->milli -= (int64_t)cost * 1000;
    return 1;
}
