/* h2c_rate: see h2c_rate.h. GCRA: a client's word holds the time at which
 * its bucket would be empty again; a message is allowed while that lies at
 * most (burst - 1) intervals in the future. */
#include "h2c_rate.h"

#define TAT_BITS 40
#define TAT_MASK ((UINT64_C(1) << TAT_BITS) - 1)

uint32_t h2c_rate_hash(const char *s) {
    uint32_t h = 2166136261u;

    while (*s) {
        h = (h ^ (unsigned char)*s++) * 16777619u;
    }
    return h;
}

apr_status_t h2c_rate_take(h2c_rate_t *rate, const h2c_rate_limit_t *limit,
                           const char *addr, int64_t now_ms, int64_t *retry_ms) {
    uint32_t h = h2c_rate_hash(addr);
    uint64_t *word = &rate->words[h % H2C_RATE_BUCKETS];
    uint64_t key = (h >> 8) & 0xFFFFFFu; /* other bits than the index's */
    int64_t now = now_ms - rate->epoch_ms;
    int64_t tau = (int64_t)(limit->burst ? limit->burst - 1 : 0) * limit->interval_ms;
    uint64_t old = __atomic_load_n(word, __ATOMIC_ACQUIRE), neu;

    if (now < 0) {
        now = 0; /* clock stepped back past the epoch */
    }
    do {
        int64_t tat = (int64_t)(old & TAT_MASK);

        if ((old >> TAT_BITS) != key && tat <= now) {
            tat = now; /* an idle bucket of another client: ours now */
        }
        if (tat < now) {
            tat = now;
        }
        if (tat - now > tau) {
            *retry_ms = tat - now - tau;
            return APR_EAGAIN;
        }
        neu = (key << TAT_BITS) | ((uint64_t)(tat + limit->interval_ms) & TAT_MASK);
    } while (!__atomic_compare_exchange_n(word, &old, neu, 0, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
    return APR_SUCCESS;
}
