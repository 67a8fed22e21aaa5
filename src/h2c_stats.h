/* h2c_stats: one snapshot of the shared statistics (pure unit, no httpd
 * headers). Read once per request of server-status (both forms) and of
 * the h2chat-metrics handler (h2c_metrics): outputs render the snapshot,
 * none reads the segment itself. */
#ifndef H2C_STATS_H
#define H2C_STATS_H

#include <apr_pools.h>
#include <stdint.h>

#include "h2c_seg.h"
#include "h2c_store.h"

typedef struct {
    uint32_t subscribers; /* held streams, all children */
    uint32_t max_subscribers;
    uint32_t max_per_address; /* 0: off */
    uint64_t published;
    uint64_t last_id;
    uint32_t history_count, history_capacity; /* the location's own room */
    h2c_rooms_stats_t rooms;                  /* all rooms: count, memory, evictions */
    uint32_t members, max_members;            /* H2ChatPresence members */
    uint32_t direct_conns, direct_held;       /* H2ChatDirect's share */
    uint32_t stalled_dropped;
    uint32_t direct_calm;      /* direct connections told ENHANCE_YOUR_CALM */
    uint32_t direct_penalized; /* ... refused at once for their address */
    uint32_t direct_handed;    /* ... handed to a less loaded child */
    uint64_t refused[H2C_REFUSED_MAX];
    uint32_t nchildren;       /* live rows in children[] */
    h2c_child_t *children;    /* in p */
    h2c_lat_t *lat;           /* in p: children[i]'s delivery latency */
    h2c_store_status_t store; /* the store's own lines */
    const char *store_name;   /* H2ChatStore: "shm", "redis" */
} h2c_stats_t;

/* Reads the snapshot (children[] allocated from p). */
void h2c_stats_read(h2c_stats_t *st, h2c_store_t *store, uint32_t max_subscribers,
                    uint32_t max_per_address, apr_pool_t *p);

#endif /* H2C_STATS_H */
