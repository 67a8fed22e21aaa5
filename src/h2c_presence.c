/* h2c_presence: see h2c_presence.h. */
#include "h2c_presence.h"

#define UNTOLD UINT32_MAX

void h2c_presence_init(h2c_presence_t *p, uint32_t n, uint32_t *told) {
    uint32_t i;

    p->seen = 0;
    p->looked = 0;
    p->next_us = 0;
    p->told = n > 1 ? told : &p->told_one;
    for (i = 0; i < n; i++) {
        p->told[i] = UNTOLD;
    }
}

int h2c_presence_due(const h2c_presence_t *p, const h2c_rooms_t *rs, int64_t now_us,
                     int64_t *wait_us) {
    *wait_us = 0;
    if (p->looked && h2c_rooms_presence_seq(rs) == p->seen) {
        return 0;
    }
    if (now_us < p->next_us) {
        *wait_us = p->next_us - now_us;
        return 0;
    }
    return 1;
}

uint32_t h2c_presence_count(const h2c_rooms_t *rs, uint32_t room) {
    return h2c_rooms_room_holders(rs, room);
}

uint32_t h2c_presence_look(h2c_presence_t *p, const h2c_follow_t *f, int64_t now_us,
                           void (*fn)(void *ctx, uint32_t which, uint32_t count),
                           void *ctx) {
    uint32_t i, n = 0, count;

    /* the word first: a change after this look moves it again */
    p->seen = h2c_rooms_presence_seq(f->rs);
    p->looked = 1;
    p->next_us = now_us + H2C_PRESENCE_EVERY_US;
    for (i = 0; i < f->n; i++) {
        count = h2c_presence_count(f->rs, f->r[i].room);
        if (count != p->told[i]) {
            p->told[i] = count;
            fn(ctx, i, count);
            n++;
        }
    }
    return n;
}
