/* h2c_presence: see h2c_presence.h. */
#include <apr_strings.h>

#include "h2c_presence.h"

#define UNTOLD UINT32_MAX

void h2c_presence_init(h2c_presence_t *p, uint32_t n, uint32_t *told,
                       const h2c_members_t *ms) {
    uint32_t i;

    p->ms = ms;
    p->mseq = 0;
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

/* Every room's member list; the ring's place first, so an event logged
 * while listing is read next time (a name then told twice, not missed). */
static uint32_t list_all(h2c_presence_t *p, const h2c_follow_t *f,
                         const h2c_presence_fns_t *fns, void *ctx) {
    uint32_t i;

    p->mseq = h2c_members_seq(p->ms);
    for (i = 0; i < f->n; i++) {
        fns->list(ctx, i);
    }
    return f->n;
}

/* The joins and leaves of the stream's rooms logged since the last look. */
static uint32_t members_since(h2c_presence_t *p, const h2c_follow_t *f,
                              const h2c_presence_fns_t *fns, void *ctx) {
    uint64_t top = h2c_members_seq(p->ms);
    h2c_member_event_t ev;
    uint32_t i, n = 0;

    for (; p->mseq < top; p->mseq++) {
        if (h2c_members_event(p->ms, p->mseq + 1, &ev) != APR_SUCCESS) {
            return n + list_all(p, f, fns, ctx); /* the ring moved past */
        }
        for (i = 0; i < f->n; i++) {
            if (f->r[i].room == ev.room) {
                fns->member(ctx, i, ev.kind, ev.name, ev.len);
                n++;
            }
        }
    }
    return n;
}

uint32_t h2c_presence_look(h2c_presence_t *p, const h2c_follow_t *f, int64_t now_us,
                           const h2c_presence_fns_t *fns, void *ctx) {
    uint32_t i, n = 0, count;
    int first = !p->looked;

    /* the word first: a change after this look moves it again */
    p->seen = h2c_rooms_presence_seq(f->rs);
    p->looked = 1;
    p->next_us = now_us + H2C_PRESENCE_EVERY_US;
    for (i = 0; i < f->n; i++) {
        count = h2c_presence_count(f->rs, f->r[i].room);
        if (count != p->told[i]) {
            p->told[i] = count;
            fns->count(ctx, i, count);
            n++;
        }
    }
    if (p->ms) {
        n += first ? list_all(p, f, fns, ctx) : members_since(p, f, fns, ctx);
    }
    return n;
}

static void add_name(void *ctx, const char *name, uint32_t len) {
    apr_array_header_t *names = ctx;

    if (!name) {
        apr_array_clear(names); /* the walk starts over */
        return;
    }
    APR_ARRAY_PUSH(names, const char *) = apr_pstrmemdup(names->pool, name, len);
}

apr_array_header_t *h2c_presence_names(const h2c_members_t *ms, uint32_t room,
                                       apr_pool_t *p) {
    apr_array_header_t *names = apr_array_make(p, 8, sizeof(const char *));

    h2c_members_list(ms, room, add_name, names);
    return names;
}
