/* h2c_budget: a token bucket for work a peer makes us do without progress
 * (pure unit). One per direct-loop connection: frames that move nothing
 * (WINDOW_UPDATE on a full window, empty DATA, PRIORITY, PING, SETTINGS,
 * resets, refused header lists, bytes no frame accounts for) take tokens;
 * time gives them back at `rate` per second up to `burst`. A peer that
 * spends them all is told ENHANCE_YOUR_CALM and closed. */
#ifndef H2C_BUDGET_H
#define H2C_BUDGET_H

#include <stdint.h>

typedef struct {
    int64_t milli;   /* tokens × 1000 */
    int64_t last_us; /* when they were last counted */
} h2c_budget_t;

/* A full bucket at now_us. */
void h2c_budget_init(h2c_budget_t *b, uint32_t burst, int64_t now_us);

/* Takes `cost` tokens at now_us: 1 if there were enough, else 0 and
 * nothing is taken. */
int h2c_budget_take(h2c_budget_t *b, uint32_t cost, int64_t now_us, uint32_t rate,
                    uint32_t burst);

#endif /* H2C_BUDGET_H */
