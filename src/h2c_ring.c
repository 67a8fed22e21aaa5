/* h2c_ring: see h2c_ring.h. */
#include <string.h>
#include <time.h>

#include "h2c_ring.h"

struct h2c_ring_hdr_t {
    uint32_t magic;
    uint32_t version;
    uint32_t capacity;  /* slots */
    uint32_t slot_size; /* bytes per slot, header included, 8-aligned */
    uint64_t size;      /* bytes of the whole region */
    uint64_t last_id;   /* newest committed id, atomic */
    uint32_t seq;       /* futex word, bumped after each commit */
    uint32_t pad;
};

typedef struct {
    uint64_t id; /* 0 while being written; atomic */
    int64_t time_ms;
    uint32_t len;
    uint32_t commit_us; /* h2c_ring_clock_us() at commit: delivery latency */
    /* message bytes follow */
} h2c_slot_t;

#define ALIGN8(n) (((n) + 7u) & ~(apr_size_t)7u)

static apr_size_t slot_size(uint32_t max_len) {
    return ALIGN8(sizeof(h2c_slot_t) + (apr_size_t)max_len);
}

apr_size_t h2c_ring_size(uint32_t capacity, uint32_t max_len) {
    return ALIGN8(sizeof(h2c_ring_hdr_t)) + (apr_size_t)capacity * slot_size(max_len);
}

static h2c_slot_t *slot_of(const h2c_ring_t *ring, uint64_t id) {
    uint64_t i = id % ring->hdr->capacity;
    return (h2c_slot_t *)(void *)(ring->slots + i * ring->hdr->slot_size);
}

apr_status_t h2c_ring_init(h2c_ring_t *ring, void *mem, apr_size_t size,
                           uint32_t capacity, uint32_t max_len) {
    if (capacity == 0 || max_len == 0 || size < h2c_ring_size(capacity, max_len)) {
        return APR_EINVAL;
    }
    memset(mem, 0, h2c_ring_size(capacity, max_len));
    ring->hdr = mem;
    ring->slots = (char *)mem + ALIGN8(sizeof(h2c_ring_hdr_t));
    ring->hdr->capacity = capacity;
    ring->hdr->slot_size = (uint32_t)slot_size(max_len);
    ring->hdr->size = h2c_ring_size(capacity, max_len);
    ring->hdr->version = H2C_RING_VERSION;
    __atomic_store_n(&ring->hdr->magic, H2C_RING_MAGIC, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

apr_status_t h2c_ring_attach(h2c_ring_t *ring, void *mem, apr_size_t size) {
    h2c_ring_hdr_t *hdr = mem;

    if (size < sizeof(*hdr) ||
        __atomic_load_n(&hdr->magic, __ATOMIC_ACQUIRE) != H2C_RING_MAGIC ||
        hdr->version != H2C_RING_VERSION || hdr->size > size || hdr->capacity == 0 ||
        hdr->size != ALIGN8(sizeof(*hdr)) + (uint64_t)hdr->capacity * hdr->slot_size) {
        return APR_EGENERAL;
    }
    ring->hdr = hdr;
    ring->slots = (char *)mem + ALIGN8(sizeof(h2c_ring_hdr_t));
    return APR_SUCCESS;
}

uint32_t h2c_ring_capacity(const h2c_ring_t *ring) {
    return ring->hdr->capacity;
}

uint32_t h2c_ring_max_len(const h2c_ring_t *ring) {
    return ring->hdr->slot_size - (uint32_t)sizeof(h2c_slot_t);
}

uint64_t h2c_ring_last_id(const h2c_ring_t *ring) {
    return __atomic_load_n(&ring->hdr->last_id, __ATOMIC_ACQUIRE);
}

uint64_t h2c_ring_first_id(const h2c_ring_t *ring) {
    uint64_t last = h2c_ring_last_id(ring);
    uint64_t cap = ring->hdr->capacity;

    return last < cap ? 1 : last - cap + 1;
}

uint32_t h2c_ring_count(const h2c_ring_t *ring) {
    uint64_t last = h2c_ring_last_id(ring);

    return (uint32_t)(last < ring->hdr->capacity ? last : ring->hdr->capacity);
}

volatile uint32_t *h2c_ring_seq(h2c_ring_t *ring) {
    return &ring->hdr->seq;
}

/* CLOCK_MONOTONIC is one clock for every process of the machine, and
 * wall-clock steps do not make a latency negative; 32 bits of µs wrap
 * after 71 minutes, far longer than a message stays in a ring that is
 * being read. */
uint32_t h2c_ring_clock_us(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

apr_status_t h2c_ring_reserve(h2c_ring_t *ring, uint64_t *id, char **buf) {
    h2c_slot_t *slot;

    *id = h2c_ring_last_id(ring) + 1;
    slot = slot_of(ring, *id);
    /* Mark the slot torn before touching its bytes: readers of the old id
     * see the change and report eviction instead of mixed bytes. */
    __atomic_store_n(&slot->id, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    *buf = (char *)(slot + 1);
    return APR_SUCCESS;
}

void h2c_ring_commit(h2c_ring_t *ring, uint64_t id, int64_t time_ms, uint32_t len) {
    h2c_slot_t *slot = slot_of(ring, id);

    slot->time_ms = time_ms;
    slot->len = len;
    __atomic_store_n(&slot->commit_us, h2c_ring_clock_us(), __ATOMIC_RELAXED);
    __atomic_store_n(&slot->id, id, __ATOMIC_RELEASE);
    __atomic_store_n(&ring->hdr->last_id, id, __ATOMIC_RELEASE);
    __atomic_add_fetch(&ring->hdr->seq, 1, __ATOMIC_RELEASE);
}

apr_status_t h2c_ring_put(h2c_ring_t *ring, uint64_t id, int64_t time_ms,
                          const char *data, uint32_t len) {
    h2c_slot_t *slot;

    if (id <= h2c_ring_last_id(ring)) {
        return APR_EINVAL;
    }
    if (len > h2c_ring_max_len(ring)) {
        return APR_ENOSPC;
    }
    slot = slot_of(ring, id);
    __atomic_store_n(&slot->id, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(slot + 1, data, len);
    h2c_ring_commit(ring, id, time_ms, len);
    return APR_SUCCESS;
}

static apr_status_t check_id(const h2c_ring_t *ring, uint64_t id) {
    uint64_t last = h2c_ring_last_id(ring);

    if (id == 0 || id > last) {
        return APR_INCOMPLETE;
    }
    if (last - id >= ring->hdr->capacity) {
        return APR_NOTFOUND;
    }
    return APR_SUCCESS;
}

apr_status_t h2c_ring_peek_len(const h2c_ring_t *ring, uint64_t id, uint32_t *len) {
    const h2c_slot_t *slot = slot_of(ring, id);
    apr_status_t rv = check_id(ring, id);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (__atomic_load_n(&slot->id, __ATOMIC_ACQUIRE) != id) {
        return APR_NOTFOUND;
    }
    *len = __atomic_load_n(&slot->len, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&slot->id, __ATOMIC_RELAXED) != id) {
        return APR_NOTFOUND;
    }
    return APR_SUCCESS;
}

apr_status_t h2c_ring_read(const h2c_ring_t *ring, uint64_t id, char *buf, apr_size_t cap,
                           uint32_t *len, int64_t *time_ms) {
    const h2c_slot_t *slot = slot_of(ring, id);
    apr_status_t rv = check_id(ring, id);
    uint32_t n;

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (__atomic_load_n(&slot->id, __ATOMIC_ACQUIRE) != id) {
        return APR_NOTFOUND;
    }
    n = __atomic_load_n(&slot->len, __ATOMIC_RELAXED);
    if (n > h2c_ring_max_len(ring)) {
        return APR_NOTFOUND; /* torn by a concurrent overwrite */
    }
    if (n > cap) {
        return APR_ENOSPC;
    }
    memcpy(buf, slot + 1, n);
    if (time_ms) {
        *time_ms = slot->time_ms;
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&slot->id, __ATOMIC_RELAXED) != id) {
        return APR_NOTFOUND;
    }
    *len = n;
    return APR_SUCCESS;
}

apr_status_t h2c_ring_committed_at(const h2c_ring_t *ring, uint64_t id, uint32_t *us) {
    const h2c_slot_t *slot = slot_of(ring, id);
    apr_status_t rv = check_id(ring, id);
    uint32_t t;

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (__atomic_load_n(&slot->id, __ATOMIC_ACQUIRE) != id) {
        return APR_NOTFOUND;
    }
    t = __atomic_load_n(&slot->commit_us, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&slot->id, __ATOMIC_RELAXED) != id) {
        return APR_NOTFOUND;
    }
    *us = t;
    return APR_SUCCESS;
}
