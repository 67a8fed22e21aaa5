/* h2c_penalty: see h2c_penalty.h. */
#include <stddef.h>

#include "h2c_penalty.h"

uint64_t h2c_penalty_key(const char *addr) {
    uint64_t h = 14695981039346656037ULL;

    while (addr && *addr) {
        h = (h ^ (uint8_t)*addr++) * 1099511628211ULL;
    }
    return h ? h : 1;
}

static h2c_penalty_slot_t *probe(const h2c_penalty_t *t, uint64_t key, uint32_t i) {
    return (h2c_penalty_slot_t *)&t->slot[(key + i) % H2C_PENALTY_SLOTS];
}

int h2c_penalty_add(h2c_penalty_t *t, const char *addr, int64_t until_us,
                    int64_t now_us) {
    uint64_t key, seen, pick_key = 0;
    h2c_penalty_slot_t *s, *pick = NULL;
    int64_t end, pick_end = 0;
    uint32_t i;

    if (!addr || !addr[0]) {
        return 0;
    }
    key = h2c_penalty_key(addr);
    for (i = 0; i < H2C_PENALTY_PROBE; i++) {
        s = probe(t, key, i);
        seen = __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
        end = __atomic_load_n(&s->until_us, __ATOMIC_ACQUIRE);
        if (seen == key) {
            while (end < until_us &&
                   !__atomic_compare_exchange_n(&s->until_us, &end, until_us, 0,
                                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            }
            return end <= now_us;
        }
        /* a free or ended slot; else the live one that ends first */
        if (end <= now_us) {
            end = 0;
        }
        if (!pick || end < pick_end) {
            pick = s, pick_key = seen, pick_end = end;
        }
    }
    if (!__atomic_compare_exchange_n(&pick->key, &pick_key, key, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        return 0; /* another child took the slot this instant */
    }
    __atomic_store_n(&pick->until_us, until_us, __ATOMIC_RELEASE);
    return 1;
}

int h2c_penalty_has(const h2c_penalty_t *t, const char *addr, int64_t now_us) {
    uint64_t key;
    uint32_t i;

    if (!addr || !addr[0]) {
        return 0;
    }
    key = h2c_penalty_key(addr);
    for (i = 0; i < H2C_PENALTY_PROBE; i++) {
        const h2c_penalty_slot_t *s = probe(t, key, i);

        if (__atomic_load_n(&s->key, __ATOMIC_ACQUIRE) == key) {
            return __atomic_load_n(&s->until_us, __ATOMIC_ACQUIRE) > now_us;
        }
    }
    return 0;
}
