/* h2c_seg: see h2c_seg.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "h2c_seg.h"

struct h2c_seg_hdr_t {
    uint32_t magic;
    uint32_t version;
    uint64_t size;
    uint32_t nchildren;
    uint32_t capacity; /* rooms' settings, to tell whether a restart fits */
    uint32_t max_len;
    uint32_t max_rooms;
    uint64_t memory;
    uint32_t max_members;
    uint32_t pad;
    uint64_t members_off;
    uint64_t children_off;
    uint64_t addr_off;
    uint64_t rate_off;
    uint64_t lat_off;
    uint64_t rooms_off;
    int64_t rate_epoch_ms;
    uint64_t published;
    uint64_t refused[H2C_REFUSED_MAX];
    h2c_seg_shared_t shared;
};

#define ALIGN64(n) (((n) + 63u) & ~(apr_size_t)63u)

/* The pid of a dead child's row while reclaim_dead clears it: neither free
 * (a new child could claim it and count streams that the clearing then
 * wipes) nor live (its counts do not count). */
#define PID_CLEARING UINT32_MAX

static int row_live(uint32_t pid) {
    return pid != 0 && pid != PID_CLEARING;
}

/* 100 µs .. 2.5 s: an idle server delivers in well under a millisecond,
 * H2ChatCoalesce auto holds wake-ups back up to 250 ms, and past a second
 * the client is not keeping up. */
/* whole cache lines per row: children never share one */
_Static_assert(sizeof(h2c_lat_t) % 64 == 0, "h2c_lat_t: whole cache lines");

const uint32_t h2c_lat_bounds_us[H2C_LAT_BUCKETS - 1] = {
    100,   250,   500,    1000,   2500,   5000,    10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

static const char *const refusal_names[H2C_REFUSED_MAX] = {
    "Cap",         "TooLarge", "Invalid", "MediaType", "Method",
    "Unavailable", "Rate",     "Origin",  "Address",   "Rooms"};

const char *h2c_seg_refusal_name(h2c_refusal_t why) {
    return why < H2C_REFUSED_MAX ? refusal_names[why] : "Unknown";
}

static apr_size_t children_off(void) {
    return ALIGN64(sizeof(h2c_seg_hdr_t));
}

static apr_size_t addr_off(uint32_t nchildren) {
    return ALIGN64(children_off() + nchildren * sizeof(h2c_child_t));
}

static apr_size_t rate_off(uint32_t nchildren) {
    return ALIGN64(addr_off(nchildren) +
                   (apr_size_t)nchildren * H2C_SEG_ADDR_BUCKETS * sizeof(uint16_t));
}

static apr_size_t lat_off(uint32_t nchildren) {
    return ALIGN64(rate_off(nchildren) + H2C_RATE_BUCKETS * sizeof(uint64_t));
}

static apr_size_t rooms_off(uint32_t nchildren) {
    return ALIGN64(lat_off(nchildren) + (apr_size_t)nchildren * sizeof(h2c_lat_t));
}

static void shape_default(h2c_seg_shape_t *sh, uint32_t nchildren, uint32_t capacity,
                          uint32_t max_len) {
    sh->nchildren = nchildren;
    sh->history = capacity;
    sh->max_len = max_len;
    sh->max_rooms = 1;
    sh->memory = h2c_rooms_memory_for(capacity, max_len);
    sh->max_members = 16;
}

/* The members' region follows the rooms' (room indexes are theirs). */
static apr_size_t members_off(const h2c_seg_shape_t *sh) {
    return ALIGN64(rooms_off(sh->nchildren) +
                   h2c_rooms_size(sh->max_rooms, sh->nchildren, sh->memory));
}

apr_size_t h2c_seg_size_shape(const h2c_seg_shape_t *sh) {
    return members_off(sh) +
           h2c_members_size(sh->max_members, sh->max_rooms, sh->nchildren);
}

apr_size_t h2c_seg_size(uint32_t nchildren, uint32_t capacity, uint32_t max_len) {
    h2c_seg_shape_t sh;

    shape_default(&sh, nchildren, capacity, max_len);
    return h2c_seg_size_shape(&sh);
}

apr_status_t h2c_seg_init_shape(h2c_seg_t *seg, void *mem, apr_size_t size,
                                const h2c_seg_shape_t *sh, int64_t now_ms) {
    uint32_t nchildren = sh->nchildren;
    char *base = mem;
    apr_status_t rv;

    seg->lat_off = 0; /* sampled unless the caller says otherwise */
    if (nchildren == 0 || size < h2c_seg_size_shape(sh)) {
        return APR_EINVAL;
    }
    memset(mem, 0, rooms_off(nchildren));
    rv = h2c_rooms_init(&seg->rooms, base + rooms_off(nchildren),
                        size - rooms_off(nchildren), sh->max_rooms, nchildren, sh->memory,
                        sh->history, sh->max_len);
    if (rv != APR_SUCCESS ||
        (rv = h2c_members_init(&seg->members, base + members_off(sh),
                               size - members_off(sh), sh->max_members, sh->max_rooms,
                               nchildren)) != APR_SUCCESS) {
        return rv;
    }
    seg->hdr = mem;
    seg->children = (h2c_child_t *)(void *)(base + children_off());
    seg->hdr->version = H2C_SEG_VERSION;
    seg->hdr->size = h2c_seg_size_shape(sh);
    seg->hdr->nchildren = nchildren;
    seg->hdr->capacity = sh->history;
    seg->hdr->max_len = sh->max_len;
    seg->hdr->max_rooms = sh->max_rooms;
    seg->hdr->memory = sh->memory;
    seg->hdr->max_members = sh->max_members;
    seg->hdr->members_off = members_off(sh);
    seg->hdr->children_off = children_off();
    seg->hdr->addr_off = addr_off(nchildren);
    seg->hdr->rate_off = rate_off(nchildren);
    seg->hdr->lat_off = lat_off(nchildren);
    seg->hdr->rooms_off = rooms_off(nchildren);
    seg->hdr->rate_epoch_ms = now_ms;
    seg->addr = (uint16_t *)(void *)(base + addr_off(nchildren));
    seg->lat = (h2c_lat_t *)(void *)(base + lat_off(nchildren));
    seg->rate.words = (uint64_t *)(void *)(base + rate_off(nchildren));
    seg->rate.epoch_ms = now_ms;
    __atomic_store_n(&seg->hdr->magic, H2C_SEG_MAGIC, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

apr_status_t h2c_seg_init(h2c_seg_t *seg, void *mem, apr_size_t size, uint32_t nchildren,
                          uint32_t capacity, uint32_t max_len, int64_t now_ms) {
    h2c_seg_shape_t sh;

    shape_default(&sh, nchildren, capacity, max_len);
    return h2c_seg_init_shape(seg, mem, size, &sh, now_ms);
}

apr_status_t h2c_seg_attach(h2c_seg_t *seg, void *mem, apr_size_t size) {
    h2c_seg_hdr_t *hdr = mem;
    char *base = mem;

    seg->lat_off = 0;
    if (size < sizeof(*hdr) ||
        __atomic_load_n(&hdr->magic, __ATOMIC_ACQUIRE) != H2C_SEG_MAGIC ||
        hdr->version != H2C_SEG_VERSION || hdr->size > size ||
        hdr->children_off != children_off() ||
        hdr->addr_off != addr_off(hdr->nchildren) ||
        hdr->rate_off != rate_off(hdr->nchildren) ||
        hdr->lat_off != lat_off(hdr->nchildren) ||
        hdr->rooms_off != rooms_off(hdr->nchildren) || hdr->rooms_off > hdr->size) {
        return APR_EGENERAL;
    }
    if (h2c_rooms_attach(&seg->rooms, base + hdr->rooms_off,
                         hdr->size - hdr->rooms_off) != APR_SUCCESS ||
        hdr->members_off > hdr->size ||
        h2c_members_attach(&seg->members, base + hdr->members_off,
                           hdr->size - hdr->members_off) != APR_SUCCESS) {
        return APR_EGENERAL;
    }
    seg->hdr = hdr;
    seg->children = (h2c_child_t *)(void *)(base + hdr->children_off);
    seg->addr = (uint16_t *)(void *)(base + hdr->addr_off);
    seg->lat = (h2c_lat_t *)(void *)(base + hdr->lat_off);
    seg->rate.words = (uint64_t *)(void *)(base + hdr->rate_off);
    seg->rate.epoch_ms = hdr->rate_epoch_ms;
    return APR_SUCCESS;
}

int h2c_seg_fits_shape(const h2c_seg_t *seg, const h2c_seg_shape_t *sh) {
    return seg->hdr->nchildren == sh->nchildren && seg->hdr->capacity == sh->history &&
           seg->hdr->max_len == sh->max_len && seg->hdr->max_rooms == sh->max_rooms &&
           seg->hdr->memory == sh->memory && seg->hdr->max_members == sh->max_members;
}

int h2c_seg_fits(const h2c_seg_t *seg, uint32_t nchildren, uint32_t capacity,
                 uint32_t max_len) {
    h2c_seg_shape_t sh;

    shape_default(&sh, nchildren, capacity, max_len);
    return h2c_seg_fits_shape(seg, &sh);
}

/* A killed child stays a zombie until its parent reaps it (httpd's parent
 * looks about once a second): its state in /proc says it is gone already. */
static int pid_zombie(uint32_t pid) {
    char path[32], buf[128], *state;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%u/stat", pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses */
    state = strrchr(buf, ')');
    return state && state[1] == ' ' && (state[2] == 'Z' || state[2] == 'X');
}

static int pid_gone(uint32_t pid) {
    if (!row_live(pid)) {
        return 0;
    }
    /* EPERM means it exists but belongs to someone else: not gone. */
    if (kill((pid_t)pid, 0) != 0) {
        return errno == ESRCH;
    }
    return pid_zombie(pid);
}

static uint16_t *addr_row(const h2c_seg_t *seg, uint32_t slot) {
    return seg->addr + (apr_size_t)slot * H2C_SEG_ADDR_BUCKETS;
}

static void clear_counts(h2c_seg_t *seg, uint32_t slot) {
    h2c_child_t *row = &seg->children[slot];
    uint16_t *addr = addr_row(seg, slot);
    uint32_t b;

    __atomic_store_n(&row->held, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&row->direct_conns, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&row->direct_held, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&row->direct_gen, 0, __ATOMIC_RELEASE);
    /* before the row is free again (release, reclaim_dead), or by its new
     * owner before it counts anything (claim) */
    for (b = 0; b < H2C_SEG_ADDR_BUCKETS; b++) {
        __atomic_store_n(&addr[b], 0, __ATOMIC_RELAXED);
    }
    for (b = 0; b < H2C_LAT_BUCKETS; b++) {
        __atomic_store_n(&seg->lat[slot].bucket[b], 0, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&seg->lat[slot].sum_us, 0, __ATOMIC_RELAXED);
}

/* Frees the rows of children that died without leaving (kill -9, crash):
 * their held streams are gone with them. A row is marked PID_CLEARING
 * while its counts are cleared, and free only after. Returns how many. */
static uint32_t reclaim_dead(h2c_seg_t *seg) {
    uint32_t i, n = seg->hdr->nchildren, old, freed = 0;

    for (i = 0; i < n; i++) {
        old = __atomic_load_n(&seg->children[i].pid, __ATOMIC_ACQUIRE);
        if (pid_gone(old) &&
            __atomic_compare_exchange_n(&seg->children[i].pid, &old, PID_CLEARING, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            clear_counts(seg, i);
            __atomic_store_n(&seg->children[i].pid, 0, __ATOMIC_RELEASE);
            freed++;
        }
    }
    return freed;
}

apr_status_t h2c_seg_child_claim(h2c_seg_t *seg, uint32_t pid, uint32_t *slot) {
    uint32_t i, n = seg->hdr->nchildren, old;

    reclaim_dead(seg);
    for (i = 0; i < n; i++) {
        old = 0;
        if (__atomic_compare_exchange_n(&seg->children[i].pid, &old, pid, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            clear_counts(seg, i);
            *slot = i;
            return APR_SUCCESS;
        }
    }
    return APR_EAGAIN;
}

void h2c_seg_child_release(h2c_seg_t *seg, uint32_t slot) {
    clear_counts(seg, slot);
    __atomic_store_n(&seg->children[slot].pid, 0, __ATOMIC_RELEASE);
}

uint32_t h2c_seg_child_count(const h2c_seg_t *seg) {
    return seg->hdr->nchildren;
}

uint32_t h2c_seg_sub_total(const h2c_seg_t *seg) {
    uint32_t i, total = 0;

    for (i = 0; i < seg->hdr->nchildren; i++) {
        if (row_live(__atomic_load_n(&seg->children[i].pid, __ATOMIC_ACQUIRE))) {
            total += __atomic_load_n(&seg->children[i].held, __ATOMIC_ACQUIRE);
        }
    }
    return total;
}

apr_status_t h2c_seg_sub_enter(h2c_seg_t *seg, uint32_t slot, uint32_t max) {
    /* Count first, then check: two racing entries may both be refused
     * near the cap, but the total never passes it. */
    __atomic_add_fetch(&seg->children[slot].held, 1, __ATOMIC_ACQ_REL);
    /* Before refusing: streams of a child that was killed still count
     * until its row is freed, which otherwise waits for its replacement's
     * child_init; its clients are reconnecting right now. Look again also
     * when this call freed nothing: a racing reconnect of the same dead
     * child's clients may have freed (or be clearing) its row. */
    if (h2c_seg_sub_total(seg) > max) {
        reclaim_dead(seg);
        if (h2c_seg_sub_total(seg) > max) {
            __atomic_sub_fetch(&seg->children[slot].held, 1, __ATOMIC_ACQ_REL);
            return APR_EBUSY;
        }
    }
    return APR_SUCCESS;
}

void h2c_seg_sub_leave(h2c_seg_t *seg, uint32_t slot) {
    __atomic_sub_fetch(&seg->children[slot].held, 1, __ATOMIC_ACQ_REL);
}

uint32_t h2c_seg_addr_bucket(const char *addr) {
    return h2c_rate_hash(addr ? addr : "") % H2C_SEG_ADDR_BUCKETS;
}

uint32_t h2c_seg_addr_total(const h2c_seg_t *seg, uint32_t bucket) {
    uint32_t i, total = 0;

    bucket %= H2C_SEG_ADDR_BUCKETS;
    for (i = 0; i < seg->hdr->nchildren; i++) {
        if (row_live(__atomic_load_n(&seg->children[i].pid, __ATOMIC_ACQUIRE))) {
            total += __atomic_load_n(&addr_row(seg, i)[bucket], __ATOMIC_ACQUIRE);
        }
    }
    return total;
}

/* One more in this child's count of `bucket`, unless it is full. */
static int addr_count_up(uint16_t *count) {
    uint16_t old = __atomic_load_n(count, __ATOMIC_ACQUIRE);

    do {
        if (old == UINT16_MAX) {
            return 0;
        }
    } while (!__atomic_compare_exchange_n(count, &old, (uint16_t)(old + 1), 0,
                                          __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    return 1;
}

apr_status_t h2c_seg_addr_enter(h2c_seg_t *seg, uint32_t slot, uint32_t bucket,
                                uint32_t max) {
    uint16_t *count = &addr_row(seg, slot)[bucket % H2C_SEG_ADDR_BUCKETS];

    /* as h2c_seg_sub_enter: count first, then check (racing entries may
     * both be refused near the limit, never both let past it), and a
     * killed child's streams stop counting before anyone is refused */
    if (!addr_count_up(count)) {
        return APR_EBUSY;
    }
    if (h2c_seg_addr_total(seg, bucket) > max) {
        reclaim_dead(seg);
        if (h2c_seg_addr_total(seg, bucket) > max) {
            __atomic_sub_fetch(count, 1, __ATOMIC_ACQ_REL);
            return APR_EBUSY;
        }
    }
    return APR_SUCCESS;
}

void h2c_seg_addr_leave(h2c_seg_t *seg, uint32_t slot, uint32_t bucket) {
    __atomic_sub_fetch(&addr_row(seg, slot)[bucket % H2C_SEG_ADDR_BUCKETS], 1,
                       __ATOMIC_ACQ_REL);
}

void h2c_seg_direct_count(h2c_seg_t *seg, uint32_t slot, int conns, int held) {
    __atomic_add_fetch(&seg->children[slot].direct_conns, (uint32_t)conns,
                       __ATOMIC_RELAXED);
    __atomic_add_fetch(&seg->children[slot].direct_held, (uint32_t)held,
                       __ATOMIC_RELAXED);
}

uint32_t h2c_seg_direct_conns_add(h2c_seg_t *seg, uint32_t slot, int conns) {
    return __atomic_add_fetch(&seg->children[slot].direct_conns, (uint32_t)conns,
                              __ATOMIC_ACQ_REL);
}

void h2c_seg_direct_taking(h2c_seg_t *seg, uint32_t slot, uint32_t gen1) {
    __atomic_store_n(&seg->children[slot].direct_gen, gen1, __ATOMIC_RELEASE);
}

void h2c_seg_direct_totals(const h2c_seg_t *seg, uint32_t *conns, uint32_t *held) {
    uint32_t i;

    *conns = *held = 0;
    for (i = 0; i < seg->hdr->nchildren; i++) {
        if (row_live(__atomic_load_n(&seg->children[i].pid, __ATOMIC_ACQUIRE))) {
            *conns += __atomic_load_n(&seg->children[i].direct_conns, __ATOMIC_RELAXED);
            *held += __atomic_load_n(&seg->children[i].direct_held, __ATOMIC_RELAXED);
        }
    }
}

void h2c_seg_count_refusal(h2c_seg_t *seg, h2c_refusal_t why) {
    if (why < H2C_REFUSED_MAX) {
        __atomic_add_fetch(&seg->hdr->refused[why], 1, __ATOMIC_RELAXED);
    }
}

uint64_t h2c_seg_refusals(const h2c_seg_t *seg, h2c_refusal_t why) {
    return why < H2C_REFUSED_MAX
               ? __atomic_load_n(&seg->hdr->refused[why], __ATOMIC_RELAXED)
               : 0;
}

void h2c_seg_count_published(h2c_seg_t *seg) {
    __atomic_add_fetch(&seg->hdr->published, 1, __ATOMIC_RELAXED);
}

h2c_seg_shared_t *h2c_seg_shared(h2c_seg_t *seg) {
    return &seg->hdr->shared;
}

apr_status_t h2c_seg_reader_claim(h2c_seg_t *seg, uint32_t pid) {
    uint32_t *word = &seg->hdr->shared.reader_pid;
    uint32_t old = __atomic_load_n(word, __ATOMIC_ACQUIRE);

    if (old == pid) {
        return APR_SUCCESS;
    }
    if (old != 0 && !pid_gone(old)) {
        return APR_EBUSY;
    }
    return __atomic_compare_exchange_n(word, &old, pid, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE)
               ? APR_SUCCESS
               : APR_EBUSY;
}

void h2c_seg_reader_release(h2c_seg_t *seg, uint32_t pid) {
    uint32_t old = pid;

    __atomic_compare_exchange_n(&seg->hdr->shared.reader_pid, &old, 0, 0,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

uint64_t h2c_seg_published(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->published, __ATOMIC_RELAXED);
}

void h2c_seg_child_row(const h2c_seg_t *seg, uint32_t i, h2c_child_t *out) {
    const h2c_child_t *row = &seg->children[i];

    out->pid = __atomic_load_n(&row->pid, __ATOMIC_ACQUIRE);
    if (!row_live(out->pid)) {
        out->pid = 0; /* free, or being cleared */
    }
    out->held = __atomic_load_n(&row->held, __ATOMIC_ACQUIRE);
    out->direct_conns = __atomic_load_n(&row->direct_conns, __ATOMIC_RELAXED);
    out->direct_held = __atomic_load_n(&row->direct_held, __ATOMIC_RELAXED);
    out->direct_gen = __atomic_load_n(&row->direct_gen, __ATOMIC_ACQUIRE);
}

void h2c_seg_count_stalled(h2c_seg_t *seg) {
    __atomic_add_fetch(&seg->hdr->shared.stalled_dropped, 1, __ATOMIC_RELAXED);
}

uint32_t h2c_seg_stalled(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->shared.stalled_dropped, __ATOMIC_RELAXED);
}

volatile uint32_t *h2c_seg_direct_seq(h2c_seg_t *seg) {
    return &seg->hdr->shared.direct_seq;
}

int h2c_seg_redis_set_up(h2c_seg_t *seg, uint32_t up) {
    return __atomic_exchange_n(&seg->hdr->shared.redis_up, up, __ATOMIC_ACQ_REL) != up;
}

uint32_t h2c_seg_redis_up(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->shared.redis_up, __ATOMIC_ACQUIRE);
}

void h2c_seg_redis_set_last_id(h2c_seg_t *seg, uint64_t id) {
    __atomic_store_n(&seg->hdr->shared.redis_last_id, id, __ATOMIC_RELEASE);
}

uint64_t h2c_seg_redis_last_id(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->shared.redis_last_id, __ATOMIC_ACQUIRE);
}

uint32_t h2c_seg_reader_pid(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->shared.reader_pid, __ATOMIC_ACQUIRE);
}

void h2c_seg_count_calm(h2c_seg_t *seg) {
    __atomic_add_fetch(&seg->hdr->shared.direct_calm, 1, __ATOMIC_RELAXED);
}

uint32_t h2c_seg_calm(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->shared.direct_calm, __ATOMIC_RELAXED);
}

h2c_penalty_t *h2c_seg_penalty(h2c_seg_t *seg) {
    return &seg->hdr->shared.penalty;
}

void h2c_seg_count_handed(h2c_seg_t *seg) {
    __atomic_add_fetch(&seg->hdr->shared.direct_handed, 1, __ATOMIC_RELAXED);
}

uint32_t h2c_seg_handed(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->shared.direct_handed, __ATOMIC_RELAXED);
}

void h2c_seg_count_penalized(h2c_seg_t *seg) {
    __atomic_add_fetch(&seg->hdr->shared.direct_penalized, 1, __ATOMIC_RELAXED);
}

uint32_t h2c_seg_penalized(const h2c_seg_t *seg) {
    return __atomic_load_n(&seg->hdr->shared.direct_penalized, __ATOMIC_RELAXED);
}

void h2c_seg_lat_add(h2c_seg_t *seg, uint32_t slot, uint32_t us) {
    uint32_t b = 0;

    while (b < H2C_LAT_BUCKETS - 1 && us > h2c_lat_bounds_us[b]) {
        b++;
    }
    /* relaxed: counts, read by a scrape that needs no order among them */
    __atomic_add_fetch(&seg->lat[slot].bucket[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&seg->lat[slot].sum_us, us, __ATOMIC_RELAXED);
}

void h2c_seg_lat_sample(h2c_seg_t *seg, uint32_t slot, uint32_t commit_us) {
    if (!seg->lat_off) {
        h2c_seg_lat_add(seg, slot, h2c_rooms_clock_us() - commit_us);
    }
}

void h2c_seg_lat_row(const h2c_seg_t *seg, uint32_t i, h2c_lat_t *out) {
    uint32_t b;

    for (b = 0; b < H2C_LAT_BUCKETS; b++) {
        out->bucket[b] = __atomic_load_n(&seg->lat[i].bucket[b], __ATOMIC_RELAXED);
    }
    out->sum_us = __atomic_load_n(&seg->lat[i].sum_us, __ATOMIC_RELAXED);
}
