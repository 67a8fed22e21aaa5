/* h2c_spread: see h2c_spread.h. */
#include "h2c_spread.h"

#define GOLDEN 0x9E3779B97F4A7C15ull /* splitmix64's increment */

uint32_t h2c_spread_window_ms(int conf_s, uint32_t held) {
    uint64_t w;

    if (conf_s > 0) {
        return (uint32_t)conf_s * 1000u;
    }
    if (conf_s != H2C_SPREAD_AUTO) {
        return 0;
    }
    w = (uint64_t)held * 1000u / H2C_SPREAD_AUTO_RATE;
    if (w < H2C_SPREAD_AUTO_MIN_MS) {
        return H2C_SPREAD_AUTO_MIN_MS;
    }
    return w > H2C_SPREAD_AUTO_MAX_MS ? H2C_SPREAD_AUTO_MAX_MS : (uint32_t)w;
}

/* The high 32 bits scaled to the window (Lemire's multiply-shift): no
 * division, and a bias below window / 2^32, far under a millisecond. */
uint32_t h2c_spread_pick(uint64_t random, uint32_t window_ms) {
    return (uint32_t)(((random >> 32) * (uint64_t)window_ms) >> 32);
}

uint64_t h2c_spread_mix(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void h2c_spread_seed(h2c_spread_t *sp, uint64_t seed) {
    __atomic_store_n(&sp->counter, h2c_spread_mix(seed), __ATOMIC_RELAXED);
    __atomic_store_n(&sp->window_ms, 0, __ATOMIC_RELAXED);
}

void h2c_spread_arm(h2c_spread_t *sp, uint32_t window_ms) {
    __atomic_store_n(&sp->window_ms, window_ms, __ATOMIC_RELEASE);
}

int h2c_spread_draw(h2c_spread_t *sp, uint32_t *retry_ms) {
    uint32_t w = __atomic_load_n(&sp->window_ms, __ATOMIC_ACQUIRE);

    if (!w) {
        return 0;
    }
    *retry_ms = h2c_spread_pick(
        h2c_spread_mix(__atomic_add_fetch(&sp->counter, GOLDEN, __ATOMIC_RELAXED)), w);
    return 1;
}
