/* h2c_members: see h2c_members.h. */
#include <string.h>

#include "h2c_members.h"

#define ALIGN8(n) (((n) + 7u) & ~(apr_size_t)7u)
#define NONE 0u /* index + 1 fields: 0 is "none" */
#define LIST_TRIES 8

struct h2c_members_hdr_t {
    uint32_t magic;
    uint32_t version;
    uint32_t max_members;
    uint32_t max_rooms;
    uint32_t nslots;
    uint32_t nbuckets;
    uint32_t free_rec; /* list of free records (index + 1) */
    uint32_t members;  /* records in use */
    uint32_t changes;  /* bumped around every change of a room's list; atomic */
    uint32_t pad;
    uint64_t seq; /* events logged; atomic */
    uint64_t size;
};

struct h2c_members_rec_t {
    uint32_t gen; /* odd while its fields change; atomic */
    uint32_t used;
    uint32_t room;
    uint32_t streams;   /* on every row */
    uint32_t hash_next; /* + 1 */
    uint32_t room_prev, room_next;
    uint32_t len;
    char name[H2C_MEMBERS_NAME_MAX];
};

struct h2c_members_ev_t {
    uint64_t seq; /* 0 while written; atomic */
    uint32_t room;
    uint32_t kind;
    uint32_t len;
    uint32_t pad;
    char name[H2C_MEMBERS_NAME_MAX];
};

typedef struct {
    apr_size_t rec, hash, room_first, held, ev, end;
} layout_t;

static uint32_t buckets_for(uint32_t max_members) {
    uint32_t n = 16;

    while (n < 2 * (uint64_t)max_members && n < (1u << 30)) {
        n <<= 1;
    }
    return n;
}

static apr_size_t layout(uint32_t max_members, uint32_t max_rooms, uint32_t nslots,
                         layout_t *l) {
    apr_size_t o = ALIGN8(sizeof(h2c_members_hdr_t));

    l->rec = o;
    o += ALIGN8((apr_size_t)max_members * sizeof(h2c_members_rec_t));
    l->hash = o;
    o += ALIGN8((apr_size_t)buckets_for(max_members) * sizeof(uint32_t));
    l->room_first = o;
    o += ALIGN8((apr_size_t)max_rooms * sizeof(uint32_t));
    l->held = o;
    o += ALIGN8((apr_size_t)nslots * max_members * sizeof(uint16_t));
    l->ev = o;
    o += (apr_size_t)H2C_MEMBERS_EVENTS * sizeof(h2c_members_ev_t);
    l->end = o;
    return o;
}

apr_size_t h2c_members_size(uint32_t max_members, uint32_t max_rooms, uint32_t nslots) {
    layout_t l;

    return layout(max_members, max_rooms, nslots, &l);
}

static void view(h2c_members_t *ms, void *mem) {
    h2c_members_hdr_t *h = mem;
    layout_t l;

    layout(h->max_members, h->max_rooms, h->nslots, &l);
    ms->hdr = h;
    ms->rec = (h2c_members_rec_t *)(void *)((char *)mem + l.rec);
    ms->hash = (uint32_t *)(void *)((char *)mem + l.hash);
    ms->room_first = (uint32_t *)(void *)((char *)mem + l.room_first);
    ms->held = (uint16_t *)(void *)((char *)mem + l.held);
    ms->ev = (h2c_members_ev_t *)(void *)((char *)mem + l.ev);
}

apr_status_t h2c_members_init(h2c_members_t *ms, void *mem, apr_size_t size,
                              uint32_t max_members, uint32_t max_rooms, uint32_t nslots) {
    h2c_members_hdr_t *h = mem;
    uint32_t i;

    if (max_members == 0 || max_rooms == 0 || nslots == 0 ||
        size < h2c_members_size(max_members, max_rooms, nslots)) {
        return APR_EINVAL;
    }
    memset(mem, 0, h2c_members_size(max_members, max_rooms, nslots));
    h->max_members = max_members;
    h->max_rooms = max_rooms;
    h->nslots = nslots;
    h->nbuckets = buckets_for(max_members);
    h->size = h2c_members_size(max_members, max_rooms, nslots);
    view(ms, mem);
    for (i = max_members; i > 0; i--) {
        ms->rec[i - 1].hash_next = h->free_rec;
        h->free_rec = i;
    }
    h->version = H2C_MEMBERS_VERSION;
    __atomic_store_n(&h->magic, H2C_MEMBERS_MAGIC, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

apr_status_t h2c_members_attach(h2c_members_t *ms, void *mem, apr_size_t size) {
    h2c_members_hdr_t *h = mem;

    if (size < sizeof(*h) ||
        __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != H2C_MEMBERS_MAGIC ||
        h->version != H2C_MEMBERS_VERSION || h->max_members == 0 || h->max_rooms == 0 ||
        h->nslots == 0 || h->nbuckets != buckets_for(h->max_members) ||
        h->size != h2c_members_size(h->max_members, h->max_rooms, h->nslots) ||
        h->size > size) {
        return APR_EGENERAL;
    }
    view(ms, mem);
    return APR_SUCCESS;
}

/* ---- writer side -------------------------------------------------------- */

/* FNV-1a over the room and the name. */
static uint32_t bucket_of(const h2c_members_t *ms, uint32_t room, const char *name,
                          apr_size_t len) {
    uint32_t h = 2166136261u;
    apr_size_t i;

    for (i = 0; i < sizeof(room); i++) {
        h = (h ^ ((room >> (8 * i)) & 0xffu)) * 16777619u;
    }
    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    }
    return h & (ms->hdr->nbuckets - 1);
}

static uint16_t *held_at(const h2c_members_t *ms, uint32_t slot, uint32_t member) {
    return &ms->held[(apr_size_t)slot * ms->hdr->max_members + member];
}

static void log_event(h2c_members_t *ms, uint32_t room, h2c_member_kind_t kind,
                      const char *name, uint32_t len) {
    uint64_t seq = ms->hdr->seq + 1;
    h2c_members_ev_t *ev = &ms->ev[seq & (H2C_MEMBERS_EVENTS - 1)];

    __atomic_store_n(&ev->seq, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    ev->room = room;
    ev->kind = (uint32_t)kind;
    ev->len = len;
    memcpy(ev->name, name, len);
    __atomic_store_n(&ev->seq, seq, __ATOMIC_RELEASE);
    __atomic_store_n(&ms->hdr->seq, seq, __ATOMIC_RELEASE);
}

/* A room's list changes between two bumps: a lock-free lister that saw
 * the word move (or odd) walks again. */
static void changing(h2c_members_t *ms) {
    __atomic_add_fetch(&ms->hdr->changes, 1, __ATOMIC_ACQ_REL);
}

static apr_status_t make(h2c_members_t *ms, uint32_t room, const char *name,
                         apr_size_t len, uint32_t b, uint32_t *member) {
    uint32_t i = ms->hdr->free_rec;
    h2c_members_rec_t *r;

    if (!i) {
        return APR_EBUSY;
    }
    r = &ms->rec[i - 1];
    ms->hdr->free_rec = r->hash_next;
    changing(ms);
    __atomic_add_fetch(&r->gen, 1, __ATOMIC_ACQ_REL); /* odd: being written */
    r->used = 1;
    r->room = room;
    r->streams = 0;
    r->len = (uint32_t)len;
    memcpy(r->name, name, len);
    r->hash_next = ms->hash[b];
    ms->hash[b] = i;
    r->room_prev = NONE;
    r->room_next = ms->room_first[room];
    if (r->room_next) {
        ms->rec[r->room_next - 1].room_prev = i;
    }
    __atomic_add_fetch(&r->gen, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&ms->room_first[room], i, __ATOMIC_RELEASE);
    changing(ms);
    ms->hdr->members++;
    *member = i - 1;
    return APR_SUCCESS;
}

static void unmake(h2c_members_t *ms, uint32_t member) {
    h2c_members_rec_t *r = &ms->rec[member];
    uint32_t *p = &ms->hash[bucket_of(ms, r->room, r->name, r->len)];

    while (*p && *p != member + 1) {
        p = &ms->rec[*p - 1].hash_next;
    }
    if (*p) {
        *p = r->hash_next;
    }
    changing(ms);
    if (r->room_prev) {
        ms->rec[r->room_prev - 1].room_next = r->room_next;
    } else {
        __atomic_store_n(&ms->room_first[r->room], r->room_next, __ATOMIC_RELEASE);
    }
    if (r->room_next) {
        ms->rec[r->room_next - 1].room_prev = r->room_prev;
    }
    __atomic_add_fetch(&r->gen, 1, __ATOMIC_ACQ_REL);
    r->used = 0;
    __atomic_add_fetch(&r->gen, 1, __ATOMIC_ACQ_REL);
    changing(ms);
    r->hash_next = ms->hdr->free_rec;
    ms->hdr->free_rec = member + 1;
    ms->hdr->members--;
}

apr_status_t h2c_members_join(h2c_members_t *ms, uint32_t slot, uint32_t room,
                              const char *name, apr_size_t len, uint32_t *member) {
    uint32_t b, i;
    apr_status_t rv;

    if (!name || len == 0 || len > H2C_MEMBERS_NAME_MAX || slot >= ms->hdr->nslots ||
        room >= ms->hdr->max_rooms) {
        return APR_EINVAL;
    }
    b = bucket_of(ms, room, name, len);
    for (i = ms->hash[b]; i; i = ms->rec[i - 1].hash_next) {
        h2c_members_rec_t *r = &ms->rec[i - 1];

        if (r->room == room && r->len == len && !memcmp(r->name, name, len)) {
            break;
        }
    }
    if (i) {
        *member = i - 1;
    } else if ((rv = make(ms, room, name, len, b, member)) != APR_SUCCESS) {
        return rv;
    }
    if (*held_at(ms, slot, *member) == UINT16_MAX) {
        return APR_EBUSY; /* an old member: nothing to undo */
    }
    (*held_at(ms, slot, *member))++;
    if (ms->rec[*member].streams++ == 0) {
        log_event(ms, room, H2C_MEMBER_JOIN, name, (uint32_t)len);
    }
    return APR_SUCCESS;
}

/* `n` streams of row `slot` of `member` ended. */
static void drop(h2c_members_t *ms, uint32_t slot, uint32_t member, uint16_t n) {
    h2c_members_rec_t *r = &ms->rec[member];

    *held_at(ms, slot, member) = (uint16_t)(*held_at(ms, slot, member) - n);
    r->streams = r->streams > n ? r->streams - n : 0;
    if (r->streams == 0) {
        log_event(ms, r->room, H2C_MEMBER_LEAVE, r->name, r->len);
        unmake(ms, member);
    }
}

void h2c_members_leave(h2c_members_t *ms, uint32_t slot, uint32_t member) {
    if (slot < ms->hdr->nslots && member < ms->hdr->max_members && ms->rec[member].used &&
        *held_at(ms, slot, member)) {
        drop(ms, slot, member, 1);
    }
}

void h2c_members_forget(h2c_members_t *ms, uint32_t slot) {
    uint32_t m;

    for (m = 0; slot < ms->hdr->nslots && m < ms->hdr->max_members; m++) {
        uint16_t n = *held_at(ms, slot, m);

        if (n && ms->rec[m].used) {
            drop(ms, slot, m, n);
        }
    }
}

/* ---- reader side -------------------------------------------------------- */

uint64_t h2c_members_seq(const h2c_members_t *ms) {
    return __atomic_load_n(&ms->hdr->seq, __ATOMIC_ACQUIRE);
}

apr_status_t h2c_members_event(const h2c_members_t *ms, uint64_t seq,
                               h2c_member_event_t *ev) {
    const h2c_members_ev_t *e = &ms->ev[seq & (H2C_MEMBERS_EVENTS - 1)];

    if (seq == 0 || seq > h2c_members_seq(ms)) {
        return APR_NOTFOUND;
    }
    if (__atomic_load_n(&e->seq, __ATOMIC_ACQUIRE) != seq) {
        return APR_NOTFOUND;
    }
    ev->seq = seq;
    ev->room = e->room;
    ev->kind = (h2c_member_kind_t)e->kind;
    ev->len = e->len > H2C_MEMBERS_NAME_MAX ? H2C_MEMBERS_NAME_MAX : e->len;
    memcpy(ev->name, e->name, ev->len);
    ev->name[ev->len] = '\0';
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&e->seq, __ATOMIC_RELAXED) == seq ? APR_SUCCESS : APR_NOTFOUND;
}

/* One walk of the room's chain, fn for each member seen whole: 1 if no
 * writer changed a list meanwhile (the walk saw one state), else 0. */
static int walk(const h2c_members_t *ms, uint32_t room,
                void (*fn)(void *ctx, const char *name, uint32_t len), void *ctx,
                uint32_t *n) {
    uint32_t before = __atomic_load_n(&ms->hdr->changes, __ATOMIC_ACQUIRE), i, steps;
    char name[H2C_MEMBERS_NAME_MAX];
    int clean = !(before & 1);

    *n = 0;
    i = __atomic_load_n(&ms->room_first[room], __ATOMIC_ACQUIRE);
    for (steps = 0; i && i <= ms->hdr->max_members && steps < ms->hdr->max_members;
         steps++) {
        const h2c_members_rec_t *r = &ms->rec[i - 1];
        uint32_t gen = __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE), len = r->len,
                 next = r->room_next;
        int ok = !(gen & 1) && r->used && r->room == room && len <= H2C_MEMBERS_NAME_MAX;

        if (ok) {
            memcpy(name, r->name, len);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (ok && __atomic_load_n(&r->gen, __ATOMIC_RELAXED) == gen) {
            fn(ctx, name, len);
            (*n)++;
        } else {
            clean = 0;
        }
        i = next;
    }
    return clean && __atomic_load_n(&ms->hdr->changes, __ATOMIC_ACQUIRE) == before;
}

uint32_t h2c_members_list(const h2c_members_t *ms, uint32_t room,
                          void (*fn)(void *ctx, const char *name, uint32_t len),
                          void *ctx) {
    uint32_t n = 0, tries;

    if (room >= ms->hdr->max_rooms) {
        return 0;
    }
    /* a walk a writer crossed starts over (fn(ctx, NULL, 0): forget what
     * it was given); the last one stands as it is */
    for (tries = 1; !walk(ms, room, fn, ctx, &n) && tries < LIST_TRIES; tries++) {
        fn(ctx, NULL, 0);
    }
    return n;
}

uint32_t h2c_members_count(const h2c_members_t *ms) {
    return __atomic_load_n(&ms->hdr->members, __ATOMIC_RELAXED);
}

uint32_t h2c_members_max(const h2c_members_t *ms) {
    return ms->hdr->max_members;
}
