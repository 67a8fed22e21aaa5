/* h2c_rooms: see h2c_rooms.h. */
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "h2c_rooms.h"

#define ALIGN8(n) (((n) + 7u) & ~(apr_size_t)7u)
#define NONE 0u /* index + 1 fields: 0 is "none" */

struct h2c_rooms_hdr_t {
    uint32_t magic;
    uint32_t version;
    uint32_t max_rooms;
    uint32_t nslots;   /* child rows: holders are counted per row */
    uint32_t nbuckets; /* a power of two */
    uint32_t nchunks;
    uint32_t history;
    uint32_t max_len;
    uint32_t seq; /* futex word: bumped at every commit */
    uint64_t size;
    uint64_t memory;               /* as asked: the chunks' share */
    uint64_t last_id;              /* newest id of any room; atomic */
    uint32_t free_chunk;           /* stack of freed chunks (index + 1) */
    uint32_t free_chunks;          /* freed and never used */
    uint32_t fresh;                /* chunks from here on were never used: a new
                                      segment touches no page of its chunks */
    uint32_t free_rec;             /* list of free records (index + 1) */
    uint32_t rooms;                /* records in use */
    uint32_t idle_head, idle_tail; /* rooms with history, without streams: LRU */
    uint64_t evicted;
    uint64_t rooms_freed;
    uint64_t refused;
    uint32_t presence_seq; /* bumped at every change of holders */
    uint32_t pad;
};

struct h2c_rooms_rec_t {
    uint64_t last_id;    /* newest id in the room; atomic */
    uint64_t gone_id;    /* newest id that left it; atomic */
    uint64_t gone_seq;   /* its room_seq; atomic */
    uint64_t room_seq;   /* messages ever appended */
    uint32_t head, tail; /* oldest / newest message's first chunk + 1; atomic */
    uint32_t count;      /* messages held */
    uint32_t holders;    /* streams holding it */
    uint32_t hash_next;  /* next record of its bucket + 1 */
    uint32_t idle_prev, idle_next;
    uint32_t idle; /* on the idle list */
    uint32_t used;
    uint32_t name_len;
    char name[H2C_ROOMS_NAME_MAX];
    uint32_t pad;
};

/* Every chunk starts with the index + 1 of the next chunk of its message. */
typedef struct {
    uint32_t cont;
    uint32_t kind; /* a message's first chunk: its h2c_entry_kind_t */
} h2c_chunk_t;

/* ... and a message's first chunk then with this. */
typedef struct {
    uint64_t id; /* 0 while being written or once freed; atomic */
    int64_t time_ms;
    uint64_t room_seq;
    uint32_t next_msg; /* the room's next message's first chunk + 1; atomic */
    uint32_t len;
    uint32_t commit_us;
    uint32_t room;
} h2c_msg_t;

#define FIRST_BYTES (H2C_ROOMS_CHUNK - sizeof(h2c_chunk_t) - sizeof(h2c_msg_t))
#define MORE_BYTES (H2C_ROOMS_CHUNK - sizeof(h2c_chunk_t))

static uint32_t chunks_for(uint32_t len) {
    if (len <= FIRST_BYTES) {
        return 1;
    }
    return 1 + (uint32_t)((len - FIRST_BYTES + MORE_BYTES - 1) / MORE_BYTES);
}

static uint32_t buckets_for(uint32_t max_rooms) {
    uint32_t n = 16;

    while (n < 2 * (uint64_t)max_rooms && n < (1u << 30)) {
        n <<= 1;
    }
    return n;
}

typedef struct {
    apr_size_t rec, hash, tomb, slot_total, held, chunks;
} layout_t;

static apr_size_t layout(uint32_t max_rooms, uint32_t nslots, uint32_t nbuckets,
                         layout_t *l) {
    apr_size_t o = ALIGN8(sizeof(h2c_rooms_hdr_t));

    l->rec = o;
    o += ALIGN8((apr_size_t)max_rooms * sizeof(h2c_rooms_rec_t));
    l->hash = o;
    o += ALIGN8((apr_size_t)nbuckets * sizeof(uint32_t));
    l->tomb = o;
    o += (apr_size_t)nbuckets * sizeof(uint64_t);
    l->slot_total = o;
    o += ALIGN8((apr_size_t)nslots * sizeof(uint32_t));
    l->held = o;
    o += ALIGN8((apr_size_t)nslots * max_rooms * sizeof(uint16_t));
    l->chunks = o;
    return o;
}

apr_size_t h2c_rooms_memory_for(uint32_t messages, uint32_t max_len) {
    return (apr_size_t)messages * chunks_for(max_len) * H2C_ROOMS_CHUNK;
}

apr_size_t h2c_rooms_size(uint32_t max_rooms, uint32_t nslots, apr_size_t memory) {
    layout_t l;

    return layout(max_rooms, nslots, buckets_for(max_rooms), &l) +
           memory / H2C_ROOMS_CHUNK * H2C_ROOMS_CHUNK;
}

static void view(h2c_rooms_t *rs, void *mem) {
    layout_t l;

    rs->hdr = mem;
    layout(rs->hdr->max_rooms, rs->hdr->nslots, rs->hdr->nbuckets, &l);
    rs->rec = (h2c_rooms_rec_t *)(void *)((char *)mem + l.rec);
    rs->hash = (uint32_t *)(void *)((char *)mem + l.hash);
    rs->tomb = (uint64_t *)(void *)((char *)mem + l.tomb);
    rs->slot_total = (uint32_t *)(void *)((char *)mem + l.slot_total);
    rs->held = (uint16_t *)(void *)((char *)mem + l.held);
    rs->chunks = (char *)mem + l.chunks;
}

static h2c_chunk_t *chunk_at(const h2c_rooms_t *rs, uint32_t i) {
    return (h2c_chunk_t *)(void *)(rs->chunks + (apr_size_t)i * H2C_ROOMS_CHUNK);
}

static h2c_msg_t *msg_at(const h2c_rooms_t *rs, uint32_t i) {
    return (h2c_msg_t *)(chunk_at(rs, i) + 1);
}

apr_status_t h2c_rooms_init(h2c_rooms_t *rs, void *mem, apr_size_t size,
                            uint32_t max_rooms, uint32_t nslots, apr_size_t memory,
                            uint32_t history, uint32_t max_len) {
    h2c_rooms_hdr_t *hdr = mem;
    uint32_t i, nchunks = (uint32_t)(memory / H2C_ROOMS_CHUNK);

    if (max_rooms == 0 || nslots == 0 || history == 0 || max_len == 0 ||
        memory / H2C_ROOMS_CHUNK > UINT32_MAX - 1 || nchunks < chunks_for(max_len) ||
        size < h2c_rooms_size(max_rooms, nslots, memory)) {
        return APR_EINVAL;
    }
    memset(mem, 0,
           h2c_rooms_size(max_rooms, nslots, memory) -
               (apr_size_t)nchunks * H2C_ROOMS_CHUNK);
    hdr->max_rooms = max_rooms;
    hdr->nslots = nslots;
    hdr->nbuckets = buckets_for(max_rooms);
    hdr->nchunks = nchunks;
    hdr->history = history;
    hdr->max_len = max_len;
    hdr->memory = memory;
    hdr->size = h2c_rooms_size(max_rooms, nslots, memory);
    view(rs, mem);
    hdr->free_chunks = nchunks;
    for (i = max_rooms; i > 1; i--) {
        rs->rec[i - 1].hash_next = hdr->free_rec;
        hdr->free_rec = i;
    }
    rs->rec[H2C_ROOMS_DEFAULT].used = 1; /* name "", in no bucket */
    hdr->rooms = 1;
    hdr->version = H2C_ROOMS_VERSION;
    __atomic_store_n(&hdr->magic, H2C_ROOMS_MAGIC, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

apr_status_t h2c_rooms_attach(h2c_rooms_t *rs, void *mem, apr_size_t size) {
    h2c_rooms_hdr_t *hdr = mem;

    if (size < sizeof(*hdr) ||
        __atomic_load_n(&hdr->magic, __ATOMIC_ACQUIRE) != H2C_ROOMS_MAGIC ||
        hdr->version != H2C_ROOMS_VERSION || hdr->max_rooms == 0 || hdr->nslots == 0 ||
        hdr->nbuckets != buckets_for(hdr->max_rooms) ||
        hdr->size != h2c_rooms_size(hdr->max_rooms, hdr->nslots, hdr->memory) ||
        hdr->size > size || hdr->nchunks != hdr->memory / H2C_ROOMS_CHUNK) {
        return APR_EGENERAL;
    }
    view(rs, mem);
    return APR_SUCCESS;
}

int h2c_rooms_fits(const h2c_rooms_t *rs, uint32_t max_rooms, uint32_t nslots,
                   apr_size_t memory, uint32_t history, uint32_t max_len) {
    return rs->hdr->max_rooms == max_rooms && rs->hdr->nslots == nslots &&
           rs->hdr->memory == memory && rs->hdr->history == history &&
           rs->hdr->max_len == max_len;
}

uint32_t h2c_rooms_max_len(const h2c_rooms_t *rs) {
    return rs->hdr->max_len;
}

uint32_t h2c_rooms_history(const h2c_rooms_t *rs) {
    return rs->hdr->history;
}

/* ---- writer side -------------------------------------------------------- */

/* FNV-1a: names are short and chosen by clients, the table is ours. */
static uint32_t bucket_of(const h2c_rooms_t *rs, const char *name, apr_size_t len) {
    uint32_t h = 2166136261u;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    }
    return h & (rs->hdr->nbuckets - 1);
}

static void idle_unlink(h2c_rooms_t *rs, uint32_t room) {
    h2c_rooms_rec_t *r = &rs->rec[room];

    if (!r->idle) {
        return;
    }
    if (r->idle_prev) {
        rs->rec[r->idle_prev - 1].idle_next = r->idle_next;
    } else {
        rs->hdr->idle_head = r->idle_next;
    }
    if (r->idle_next) {
        rs->rec[r->idle_next - 1].idle_prev = r->idle_prev;
    } else {
        rs->hdr->idle_tail = r->idle_prev;
    }
    r->idle = 0;
    r->idle_prev = r->idle_next = NONE;
}

/* (Re)places a room at the idle list's most recent end, or takes it off
 * when it should not be there: it has streams or holds nothing. */
static void idle_touch(h2c_rooms_t *rs, uint32_t room) {
    h2c_rooms_rec_t *r = &rs->rec[room];

    idle_unlink(rs, room);
    if (r->holders || r->count == 0) {
        return;
    }
    r->idle = 1;
    r->idle_prev = rs->hdr->idle_tail;
    if (rs->hdr->idle_tail) {
        rs->rec[rs->hdr->idle_tail - 1].idle_next = room + 1;
    } else {
        rs->hdr->idle_head = room + 1;
    }
    rs->hdr->idle_tail = room + 1;
}

/* A free chunk (index + 1): a freed one, else one never used. */
static uint32_t chunk_take(h2c_rooms_t *rs) {
    uint32_t i = rs->hdr->free_chunk;

    rs->hdr->free_chunks--;
    if (i) {
        rs->hdr->free_chunk = chunk_at(rs, i - 1)->cont;
        return i;
    }
    return ++rs->hdr->fresh;
}

static void chunks_free(h2c_rooms_t *rs, uint32_t first) {
    uint32_t i = first, next;

    while (i) {
        next = chunk_at(rs, i - 1)->cont;
        chunk_at(rs, i - 1)->cont = rs->hdr->free_chunk;
        rs->hdr->free_chunk = i;
        rs->hdr->free_chunks++;
        i = next;
    }
}

/* Drops the room's oldest message: the room moves on first, then the
 * message is marked gone, then its chunks are free to take. `gone`: its
 * readers lost it (evicted, cleared), else it was deleted on purpose. */
static void unlink_oldest(h2c_rooms_t *rs, uint32_t room, int gone) {
    h2c_rooms_rec_t *r = &rs->rec[room];
    uint32_t first = r->head;
    h2c_msg_t *m;

    if (!first) {
        return;
    }
    m = msg_at(rs, first - 1);
    __atomic_store_n(&r->head, m->next_msg, __ATOMIC_RELEASE);
    if (!m->next_msg) {
        __atomic_store_n(&r->tail, NONE, __ATOMIC_RELEASE);
    }
    r->count--;
    if (gone) {
        __atomic_store_n(&r->gone_seq, m->room_seq, __ATOMIC_RELAXED);
        __atomic_store_n(&r->gone_id, m->id, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&m->id, 0, __ATOMIC_RELEASE);
    /* a release store keeps what came before it, not what comes after: the
     * fence keeps the chunks' reuse (their links, new bytes) behind id 0, so
     * a reader that sees any of it sees the message gone */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    chunks_free(rs, first);
}

static void drop_oldest(h2c_rooms_t *rs, uint32_t room) {
    unlink_oldest(rs, room, 1);
}

static void rec_free(h2c_rooms_t *rs, uint32_t room) {
    h2c_rooms_rec_t *r = &rs->rec[room];
    uint32_t b = bucket_of(rs, r->name, r->name_len), *p = &rs->hash[b];
    uint64_t last = __atomic_load_n(&r->last_id, __ATOMIC_RELAXED);

    while (*p && *p != room + 1) {
        p = &rs->rec[*p - 1].hash_next;
    }
    if (*p) {
        *p = r->hash_next;
    }
    if (last > rs->tomb[b]) {
        rs->tomb[b] = last;
    }
    idle_unlink(rs, room);
    memset(r, 0, sizeof(*r));
    r->hash_next = rs->hdr->free_rec;
    rs->hdr->free_rec = room + 1;
    rs->hdr->rooms--;
}

/* A record that holds nothing and has no streams has nothing to keep. */
static void rec_maybe_free(h2c_rooms_t *rs, uint32_t room) {
    h2c_rooms_rec_t *r = &rs->rec[room];

    if (room != H2C_ROOMS_DEFAULT && r->used && !r->holders && !r->count) {
        rec_free(rs, room);
    }
}

apr_status_t h2c_rooms_open(h2c_rooms_t *rs, const char *name, apr_size_t len, int create,
                            uint32_t *room) {
    uint32_t b, i, victim;
    h2c_rooms_rec_t *r;

    if (len == 0) {
        *room = H2C_ROOMS_DEFAULT;
        return APR_SUCCESS;
    }
    if (len > H2C_ROOMS_NAME_MAX) {
        return APR_EINVAL;
    }
    b = bucket_of(rs, name, len);
    for (i = rs->hash[b]; i; i = rs->rec[i - 1].hash_next) {
        r = &rs->rec[i - 1];
        if (r->name_len == len && !memcmp(r->name, name, len)) {
            *room = i - 1;
            return APR_SUCCESS;
        }
    }
    if (!create) {
        return APR_NOTFOUND;
    }
    if (!rs->hdr->free_rec) {
        /* the least recently written room without streams gives its record */
        victim = rs->hdr->idle_head;
        if (!victim || victim - 1 == H2C_ROOMS_DEFAULT) {
            victim = victim ? rs->rec[victim - 1].idle_next : NONE;
        }
        if (!victim) {
            rs->hdr->refused++;
            return APR_EBUSY;
        }
        while (rs->rec[victim - 1].count) {
            drop_oldest(rs, victim - 1);
            rs->hdr->evicted++;
        }
        rec_free(rs, victim - 1);
        rs->hdr->rooms_freed++;
    }
    i = rs->hdr->free_rec;
    r = &rs->rec[i - 1];
    rs->hdr->free_rec = r->hash_next;
    memset(r, 0, sizeof(*r));
    r->used = 1;
    r->name_len = (uint32_t)len;
    memcpy(r->name, name, len);
    /* a room of this name (or bucket) may have been freed with newer ids */
    __atomic_store_n(&r->gone_id, rs->tomb[b], __ATOMIC_RELEASE);
    r->hash_next = rs->hash[b];
    rs->hash[b] = i;
    rs->hdr->rooms++;
    *room = i - 1;
    return APR_SUCCESS;
}

static uint16_t *held_at(const h2c_rooms_t *rs, uint32_t slot, uint32_t room) {
    return &rs->held[(apr_size_t)slot * rs->hdr->max_rooms + room];
}

/* holders and the row's counts move together; relaxed atomics: presence
 * reads them without the lock */
static void holders_add(h2c_rooms_t *rs, uint32_t slot, uint32_t room, int delta) {
    __atomic_add_fetch(&rs->rec[room].holders, (uint32_t)delta, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rs->slot_total[slot], (uint32_t)delta, __ATOMIC_RELAXED);
    *held_at(rs, slot, room) = (uint16_t)(*held_at(rs, slot, room) + delta);
    __atomic_add_fetch(&rs->hdr->presence_seq, 1, __ATOMIC_RELEASE);
    idle_touch(rs, room);
    rec_maybe_free(rs, room);
}

apr_status_t h2c_rooms_hold(h2c_rooms_t *rs, uint32_t slot, uint32_t room, int delta) {
    uint16_t have;

    if (slot >= rs->hdr->nslots || room >= rs->hdr->max_rooms) {
        return APR_EINVAL;
    }
    have = *held_at(rs, slot, room);
    if (delta > 0 && (uint32_t)have + (uint32_t)delta > UINT16_MAX) {
        return APR_EBUSY;
    }
    if (delta < 0 && have < (uint32_t)-delta) {
        delta = -(int)have; /* its row was forgotten meanwhile: nothing left */
    }
    if (delta) {
        holders_add(rs, slot, room, delta);
    }
    return APR_SUCCESS;
}

void h2c_rooms_forget(h2c_rooms_t *rs, uint32_t slot) {
    uint32_t room;

    for (room = 0;
         slot < rs->hdr->nslots && rs->slot_total[slot] && room < rs->hdr->max_rooms;
         room++) {
        uint16_t n = *held_at(rs, slot, room);

        if (n) {
            holders_add(rs, slot, room, -(int)n);
        }
    }
}

uint32_t h2c_rooms_slot_holds(const h2c_rooms_t *rs, uint32_t slot) {
    return slot < rs->hdr->nslots
               ? __atomic_load_n(&rs->slot_total[slot], __ATOMIC_RELAXED)
               : 0;
}

uint32_t h2c_rooms_presence_seq(const h2c_rooms_t *rs) {
    return __atomic_load_n(&rs->hdr->presence_seq, __ATOMIC_ACQUIRE);
}

uint64_t h2c_rooms_next_id(const h2c_rooms_t *rs) {
    return h2c_rooms_last_id(rs) + 1;
}

/* Frees chunks until `need` are free: idle rooms' oldest first, least
 * recently written room first, then the writing room's own oldest. */
static int make_room(h2c_rooms_t *rs, uint32_t room, uint32_t need) {
    uint32_t v;

    while (rs->hdr->free_chunks < need) {
        v = rs->hdr->idle_head;
        if (v == room + 1) {
            v = rs->rec[v - 1].idle_next;
        }
        if (v) {
            drop_oldest(rs, v - 1);
            if (!rs->rec[v - 1].count) { /* off the list once it holds nothing; */
                idle_unlink(rs, v - 1);  /* else it stays the least recent */
                rec_maybe_free(rs, v - 1);
            }
        } else if (rs->rec[room].count) {
            drop_oldest(rs, room);
        } else {
            return 0;
        }
        rs->hdr->evicted++;
    }
    return 1;
}

apr_status_t h2c_rooms_append(h2c_rooms_t *rs, uint32_t room, h2c_entry_kind_t kind,
                              uint64_t id, int64_t time_ms, const char *data,
                              uint32_t len) {
    h2c_rooms_rec_t *r = &rs->rec[room];
    uint32_t need = chunks_for(len), first = NONE, i, n, prev = NONE;
    apr_size_t off = 0, take;
    h2c_msg_t *m;

    if (len > rs->hdr->max_len) {
        return APR_ENOSPC;
    }
    if (id <= h2c_rooms_last_id(rs)) {
        return APR_EINVAL;
    }
    while (r->count >= rs->hdr->history) {
        drop_oldest(rs, room);
    }
    if (!make_room(rs, room, need)) {
        rs->hdr->refused++;
        return APR_ENOMEM;
    }
    /* take `need` chunks, filling each as it comes */
    for (n = 0; n < need; n++) {
        i = chunk_take(rs);
        if (n == 0) {
            first = i;
        }
        chunk_at(rs, i - 1)->cont = NONE;
        if (prev) {
            chunk_at(rs, prev - 1)->cont = i;
        }
        if (n == 0) {
            m = msg_at(rs, i - 1);
            __atomic_store_n(&m->id, 0, __ATOMIC_RELAXED);
            __atomic_thread_fence(__ATOMIC_RELEASE);
            take = len < FIRST_BYTES ? len : FIRST_BYTES;
            memcpy(m + 1, data, take);
        } else {
            take = len - off < MORE_BYTES ? len - off : MORE_BYTES;
            memcpy(chunk_at(rs, i - 1) + 1, data + off, take);
        }
        off += take;
        prev = i;
    }
    chunk_at(rs, first - 1)->kind = (uint32_t)kind;
    m = msg_at(rs, first - 1);
    m->time_ms = time_ms;
    m->room_seq = ++r->room_seq;
    m->next_msg = NONE;
    m->len = len;
    m->room = room;
    m->commit_us = h2c_rooms_clock_us();
    __atomic_store_n(&m->id, id, __ATOMIC_RELEASE);
    /* linked in only once whole: readers that find it read it whole */
    if (r->tail) {
        __atomic_store_n(&msg_at(rs, r->tail - 1)->next_msg, first, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&r->head, first, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&r->tail, first, __ATOMIC_RELEASE);
    r->count++;
    __atomic_store_n(&r->last_id, id, __ATOMIC_RELEASE);
    __atomic_store_n(&rs->hdr->last_id, id, __ATOMIC_RELEASE);
    idle_touch(rs, room);
    __atomic_add_fetch(&rs->hdr->seq, 1, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

apr_status_t h2c_rooms_delete(h2c_rooms_t *rs, uint32_t room, uint64_t id) {
    h2c_rooms_rec_t *r = &rs->rec[room];
    uint32_t i = r->head, prev = NONE;
    h2c_msg_t *m;

    while (i && (msg_at(rs, i - 1)->id != id || chunk_at(rs, i - 1)->kind)) {
        prev = i;
        i = msg_at(rs, i - 1)->next_msg;
    }
    if (!i) {
        return APR_NOTFOUND;
    }
    if (!prev) {
        unlink_oldest(rs, room, 0); /* not a gap for anyone */
    } else {
        m = msg_at(rs, i - 1);
        __atomic_store_n(&msg_at(rs, prev - 1)->next_msg, m->next_msg, __ATOMIC_RELEASE);
        if (r->tail == i) {
            __atomic_store_n(&r->tail, prev, __ATOMIC_RELEASE);
        }
        r->count--;
        __atomic_store_n(&m->id, 0, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_RELEASE); /* as in unlink_oldest */
        chunks_free(rs, i);
    }
    idle_touch(rs, room);
    return APR_SUCCESS;
}

void h2c_rooms_clear(h2c_rooms_t *rs, uint32_t room) {
    while (rs->rec[room].count) {
        drop_oldest(rs, room);
    }
    /* readers past any id up to the room's newest lost what was there */
    __atomic_store_n(&rs->rec[room].gone_id, rs->rec[room].last_id, __ATOMIC_RELEASE);
    idle_touch(rs, room);
    rec_maybe_free(rs, room);
}

/* ---- reader side -------------------------------------------------------- */

/* CLOCK_MONOTONIC is one clock for every process of the machine, and
 * wall-clock steps do not make a latency negative; 32 bits of µs wrap
 * after 71 minutes, far longer than a message waits to be sent. */
uint32_t h2c_rooms_clock_us(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

uint64_t h2c_rooms_last_id(const h2c_rooms_t *rs) {
    return __atomic_load_n(&rs->hdr->last_id, __ATOMIC_ACQUIRE);
}

uint64_t h2c_rooms_room_last(const h2c_rooms_t *rs, uint32_t room) {
    return __atomic_load_n(&rs->rec[room].last_id, __ATOMIC_ACQUIRE);
}

uint64_t h2c_rooms_room_gone(const h2c_rooms_t *rs, uint32_t room) {
    return __atomic_load_n(&rs->rec[room].gone_id, __ATOMIC_ACQUIRE);
}

uint64_t h2c_rooms_room_gone_seq(const h2c_rooms_t *rs, uint32_t room) {
    return __atomic_load_n(&rs->rec[room].gone_seq, __ATOMIC_ACQUIRE);
}

uint32_t h2c_rooms_room_count(const h2c_rooms_t *rs, uint32_t room) {
    return __atomic_load_n(&rs->rec[room].count, __ATOMIC_RELAXED);
}

uint32_t h2c_rooms_room_holders(const h2c_rooms_t *rs, uint32_t room) {
    return __atomic_load_n(&rs->rec[room].holders, __ATOMIC_RELAXED);
}

void h2c_rooms_room_name(const h2c_rooms_t *rs, uint32_t room, char *buf) {
    uint32_t n = rs->rec[room].name_len;

    n = n > H2C_ROOMS_NAME_MAX ? H2C_ROOMS_NAME_MAX : n;
    memcpy(buf, rs->rec[room].name, n);
    buf[n] = '\0';
}

volatile uint32_t *h2c_rooms_seq(h2c_rooms_t *rs) {
    return &rs->hdr->seq;
}

void h2c_rooms_cursor_at(h2c_rooms_cursor_t *cur, uint64_t after) {
    cur->chunk = NONE;
    cur->id = after;
    cur->room_seq = 0;
}

void h2c_rooms_advance(h2c_rooms_cursor_t *cur, const h2c_rooms_msg_t *m) {
    cur->chunk = m->chunk + 1;
    cur->id = m->id;
    cur->room_seq = m->room_seq;
}

/* Message at chunk index + 1 `i` of `room`, if it still is the one with a
 * valid header: fills *m and its next link. 0 if it changed under us, or
 * if the chunk now starts a message of another room (a link read just
 * before its message left and the chunk was taken again). */
static int look(const h2c_rooms_t *rs, uint32_t room, uint32_t i, h2c_rooms_msg_t *m,
                uint32_t *next) {
    const h2c_msg_t *h;
    uint64_t id;
    uint32_t in;

    /* i may be stale (a cursor's): the chunk may carry another message's
     * text now, which never reads as the small id a reader compares with */
    if (i == NONE || i > rs->hdr->nchunks) {
        return 0;
    }
    h = msg_at(rs, i - 1);
    id = __atomic_load_n(&h->id, __ATOMIC_ACQUIRE);
    if (id == 0) {
        return 0;
    }
    m->chunk = i - 1;
    m->room_seq = h->room_seq;
    m->len = h->len;
    m->kind = chunk_at(rs, i - 1)->kind;
    in = h->room;
    *next = __atomic_load_n(&h->next_msg, __ATOMIC_ACQUIRE);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&h->id, __ATOMIC_RELAXED) != id || m->len > rs->hdr->max_len ||
        in != room) {
        return 0;
    }
    m->id = id;
    return 1;
}

/* From the head: the first message above `after`. Bounded: a walk that
 * keeps meeting freed messages gives up as "none yet" (the writer is
 * rewriting this room; the next wake looks again). */
static apr_status_t walk(const h2c_rooms_t *rs, uint32_t room, uint64_t after,
                         h2c_rooms_msg_t *m) {
    const h2c_rooms_rec_t *r = &rs->rec[room];
    uint32_t i, next, steps, tries;

    for (tries = 0; tries < 8; tries++) {
        i = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        for (steps = 0; i && steps <= rs->hdr->history; steps++) {
            if (!look(rs, room, i, m, &next)) {
                break; /* freed under us: start over */
            }
            if (m->id > after) {
                return APR_SUCCESS;
            }
            i = next;
        }
        if (!i) {
            return APR_INCOMPLETE;
        }
    }
    return APR_INCOMPLETE;
}

apr_status_t h2c_rooms_next(const h2c_rooms_t *rs, uint32_t room,
                            const h2c_rooms_cursor_t *cur, h2c_rooms_msg_t *m) {
    h2c_rooms_msg_t at;
    uint32_t next;

    if (h2c_rooms_room_last(rs, room) <= cur->id) {
        return APR_INCOMPLETE;
    }
    /* the common case: the message read last is still there, and links on */
    if (cur->chunk && look(rs, room, cur->chunk, &at, &next) && at.id == cur->id &&
        next && look(rs, room, next, m, &next) && m->id > cur->id) {
        return APR_SUCCESS;
    }
    return walk(rs, room, cur->id, m);
}

apr_status_t h2c_rooms_tail(const h2c_rooms_t *rs, uint32_t room, uint32_t n,
                            h2c_rooms_msg_t *m) {
    uint32_t count = h2c_rooms_room_count(rs, room), skip, next, i, tries;

    for (tries = 0; tries < 8; tries++) {
        skip = count > n ? count - n : 0;
        i = __atomic_load_n(&rs->rec[room].head, __ATOMIC_ACQUIRE);
        while (i && look(rs, room, i, m, &next)) {
            if (skip-- == 0) {
                return APR_SUCCESS;
            }
            i = next;
        }
        if (!i) {
            return APR_INCOMPLETE;
        }
        count = h2c_rooms_room_count(rs, room);
    }
    return APR_INCOMPLETE;
}

apr_status_t h2c_rooms_read(const h2c_rooms_t *rs, const h2c_rooms_msg_t *m, char *buf,
                            apr_size_t cap, int64_t *time_ms, uint32_t *commit_us) {
    const h2c_msg_t *h = msg_at(rs, m->chunk);
    uint32_t i = m->chunk + 1, len = m->len;
    apr_size_t off = 0, take;

    if (cap < len) {
        return APR_ENOSPC;
    }
    if (__atomic_load_n(&h->id, __ATOMIC_ACQUIRE) != m->id) {
        return APR_NOTFOUND;
    }
    if (time_ms) {
        *time_ms = h->time_ms;
    }
    if (commit_us) {
        *commit_us = h->commit_us;
    }
    take = len < FIRST_BYTES ? len : FIRST_BYTES;
    memcpy(buf, h + 1, take);
    off = take;
    /* a chain rewritten under us may point anywhere: stay in the region */
    i = chunk_at(rs, i - 1)->cont;
    while (off < len && i && i <= rs->hdr->nchunks) {
        take = len - off < MORE_BYTES ? len - off : MORE_BYTES;
        memcpy(buf + off, chunk_at(rs, i - 1) + 1, take);
        off += take;
        i = chunk_at(rs, i - 1)->cont;
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (off < len || __atomic_load_n(&h->id, __ATOMIC_RELAXED) != m->id) {
        return APR_NOTFOUND;
    }
    return APR_SUCCESS;
}

static int by_id(const void *a, const void *b) {
    uint64_t x = ((const h2c_rooms_msg_t *)a)->id, y = ((const h2c_rooms_msg_t *)b)->id;

    return x < y ? -1 : x > y;
}

apr_status_t h2c_rooms_each(const h2c_rooms_t *rs,
                            int (*fn)(void *ctx, const h2c_rooms_msg_t *m), void *ctx) {
    apr_size_t n = 0, cap = 0, k;
    h2c_rooms_msg_t *all, m;
    uint32_t r, i, next;

    for (r = 0; r < rs->hdr->max_rooms; r++) {
        cap += rs->rec[r].used ? rs->rec[r].count : 0;
    }
    if (!(all = malloc((cap ? cap : 1) * sizeof(*all)))) {
        return APR_ENOMEM;
    }
    for (r = 0; r < rs->hdr->max_rooms; r++) {
        for (i = rs->rec[r].used ? rs->rec[r].head : NONE; i && n < cap; i = next) {
            if (!look(rs, r, i, &m, &next)) {
                break;
            }
            all[n++] = m;
        }
    }
    qsort(all, n, sizeof(*all), by_id);
    for (k = 0; k < n && !fn(ctx, &all[k]); k++) {
    }
    free(all);
    return APR_SUCCESS;
}

void h2c_rooms_stats(const h2c_rooms_t *rs, h2c_rooms_stats_t *out) {
    const h2c_rooms_hdr_t *h = rs->hdr;

    out->rooms = __atomic_load_n(&h->rooms, __ATOMIC_RELAXED);
    out->max_rooms = h->max_rooms;
    out->chunks = h->nchunks;
    out->chunks_used = h->nchunks - __atomic_load_n(&h->free_chunks, __ATOMIC_RELAXED);
    out->evicted = __atomic_load_n(&h->evicted, __ATOMIC_RELAXED);
    out->rooms_freed = __atomic_load_n(&h->rooms_freed, __ATOMIC_RELAXED);
    out->refused = __atomic_load_n(&h->refused, __ATOMIC_RELAXED);
    {
        layout_t l;

        layout(h->max_rooms, h->nslots, h->nbuckets, &l);
        out->record_bytes = (uint32_t)((l.chunks - l.rec) / h->max_rooms);
    }
}
