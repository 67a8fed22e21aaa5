/* mod_h2chat glue: what the httpd-facing units share. */
#ifndef MOD_H2CHAT_H
#define MOD_H2CHAT_H

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>

#include "h2c_direct.h"
#include "h2c_log.h"
#include "h2c_policy.h"
#include "h2c_seg.h"
#include "h2c_spread.h"
#include "h2c_store.h"
#include "h2c_tags.h"

/* APLOG_USE_MODULE for every glue unit: `LogLevel h2chat:debug` works. */
APLOG_USE_MODULE(h2chat);
extern module AP_MODULE_DECLARE_DATA h2chat_module;

#define H2CHAT_DEFAULT_HISTORY 1000
#define H2CHAT_DEFAULT_SNAPSHOT 50
#define H2CHAT_DEFAULT_MAX_BYTES 4096
#define H2CHAT_DEFAULT_HEARTBEAT 20
#define H2CHAT_DEFAULT_ROOMS_PER_STREAM 32
#define H2CHAT_DEFAULT_MAX_ROOMS 10000
#define H2CHAT_DEFAULT_MAX_MEMBERS 10000
#define H2CHAT_DEFAULT_MEMORY (64 * 1024 * 1024)

typedef struct {
    int enabled;          /* -1 unset */
    int snapshot;         /* -1 unset */
    int max_bytes;        /* -1 unset */
    int heartbeat;        /* seconds, -1 unset */
    int rate_interval_ms; /* H2ChatRateLimit: -1 unset, 0 off */
    int rate_burst;
    apr_array_header_t *origins; /* H2ChatAllowOrigin; NULL: any */
    int rooms;                   /* H2ChatRooms: -1 unset, 0 off, 1 on */
    const char *rooms_base;      /* ... the <Location> it was set in */
    const char *location;        /* H2Chat On's literal <Location> path, or NULL */
    int max_rooms_per_stream;    /* H2ChatMaxRoomsPerStream, -1 unset */
    int presence;                /* H2ChatPresence: -1 unset, else h2c_presence_mode_t */
    int anonymous_delete;        /* H2ChatAnonymousDelete: -1 unset, 0 off, 1 on */
    const char *stream_url;      /* H2ChatStreamURL: NULL unset, "" off */
} h2chat_dir_conf_t;

typedef enum { H2CHAT_SYNC_OFF, H2CHAT_SYNC_SECOND, H2CHAT_SYNC_ALWAYS } h2chat_sync_t;
typedef enum { H2CHAT_STORE_SHM, H2CHAT_STORE_REDIS } h2chat_store_kind_t;

typedef struct {
    int history;              /* -1 unset */
    int max_subscribers;      /* -1 unset: derived from the MPM */
    int max_per_address;      /* -1 unset: half the cap; 0 off */
    const char *journal_path; /* H2ChatJournal; NULL: none */
    int journal_sync;         /* h2chat_sync_t, -1 unset */
    int store;                /* h2chat_store_kind_t, -1 unset */
    const char *redis_host;   /* H2ChatRedis; NULL: unset */
    int redis_port;
    int redis_db;
    const char *redis_key;
    int coalesce_ms;                 /* H2ChatCoalesce: -1 unset, -2 auto, 0 off */
    const char *direct_path;         /* H2ChatDirect: NULL unset, "" off */
    const char *direct_own;          /* ... as said in this server itself (not merged) */
    const server_rec *direct_server; /* ... the server it was said in */
    int direct_penalty_s;            /* H2ChatDirectPenalty: -1 unset, 0 off */
    int direct_workers;              /* H2ChatDirectWorkers: -1 unset */
    int direct_requests;             /* H2ChatDirectRequests: -1 unset, 1 httpd, 0 none */
    int latency;                     /* H2ChatLatencyHistogram: -1 unset, 0 off, 1 on */
    int reconnect_spread_s;          /* H2ChatReconnectSpread: -1 unset, -2 auto, 0 off */
    int max_rooms;                   /* H2ChatMaxRooms, -1 unset */
    int max_members;                 /* H2ChatMaxMembers, -1 unset */
    apr_off_t memory;                /* H2ChatMemory (bytes), -1 unset */
} h2chat_srv_conf_t;

/* The process's view of the shared state. */
typedef struct {
    h2c_seg_t seg;
    h2c_store_t store;
    int usable;               /* attached and registered in this process */
    uint32_t child_slot;      /* this process's row in the child table */
    h2c_hold_limits_t limits; /* H2ChatMaxSubscribers[PerAddress], effective */
    volatile int stopping;    /* child_stopping ran: end held streams */
    int spread_conf;          /* H2ChatReconnectSpread (h2c_spread_window_ms) */
    h2c_spread_t spread;      /* the streams' reconnect hints, armed when stopping */
} h2chat_state_t;

/* mod_h2chat_config.c */
extern const command_rec h2chat_cmds[];
void *h2chat_create_dir_conf(apr_pool_t *p, char *dir);
void *h2chat_merge_dir_conf(apr_pool_t *p, void *base, void *add);
void *h2chat_create_srv_conf(apr_pool_t *p, server_rec *s);
void *h2chat_merge_srv_conf(apr_pool_t *p, void *base, void *add);
int h2chat_conf_snapshot(const h2chat_dir_conf_t *dc);
int h2chat_conf_max_bytes(const h2chat_dir_conf_t *dc);
int h2chat_conf_heartbeat(const h2chat_dir_conf_t *dc);
int h2chat_conf_history(server_rec *s);
/* the segment's shape: rooms, and memory for their messages */
uint32_t h2chat_conf_max_rooms(server_rec *s);
uint32_t h2chat_conf_max_members(server_rec *s);
apr_size_t h2chat_conf_memory(server_rec *s, uint32_t history, uint32_t max_len);
h2chat_sync_t h2chat_conf_journal_sync(server_rec *s);
h2chat_store_kind_t h2chat_conf_store(server_rec *s);
int64_t h2chat_conf_coalesce_us(server_rec *s);       /* < 0 auto, 0 off */
const char *h2chat_conf_direct_path(server_rec *s);   /* NULL: off */
const char *h2chat_conf_direct_tls(server_rec *s);    /* NULL: off (said here) */
int64_t h2chat_conf_direct_penalty_us(server_rec *s); /* 0: off */
uint32_t h2chat_conf_direct_workers(server_rec *s);
int h2chat_conf_direct_httpd(server_rec *s);     /* H2ChatDirectRequests httpd (h2c) */
int h2chat_conf_reconnect_spread(server_rec *s); /* s, H2C_SPREAD_AUTO / _OFF */
/* the location's settings as the request policy takes them */
void h2chat_conf_policy(const h2chat_dir_conf_t *dc, h2c_policy_conf_t *pc);
int h2chat_conf_largest_max_bytes(void);
void h2chat_conf_reset(void);

/* mod_h2chat_shm.c: the segment and its lock; the process's state. */
h2chat_state_t *h2chat_state(void);
int h2chat_shm_pre_config(apr_pool_t *pconf);
apr_status_t h2chat_shm_post_config(server_rec *s, int *fresh);
apr_status_t h2chat_shm_child_init(apr_pool_t *pchild, server_rec *s);

/* mod_h2chat_store.c / _redis.c: H2ChatStore, set up over the segment. */
apr_status_t h2chat_store_post_config(server_rec *s, apr_pool_t *pconf,
                                      h2c_store_t *store, h2c_seg_t *seg);
apr_status_t h2chat_redis_store(server_rec *s, apr_pool_t *pconf, h2c_store_t *store,
                                h2c_seg_t *seg);

/* mod_h2chat_journal.c: H2ChatJournal, the store's history on disk. */
void h2chat_journal_post_config(server_rec *s, h2c_store_t *store, int fresh);
void h2chat_journal_child_init(apr_pool_t *pchild, server_rec *s, h2c_store_t *store);

/* mod_h2chat_wake.c: H2ChatCoalesce, the wake-up gate and its waker. */
apr_status_t h2chat_wake_child_init(apr_pool_t *pchild, server_rec *s,
                                    h2c_store_t *store);
void h2chat_wake_child_stopping(void);

/* mod_h2chat_presence.c: the ticker that forgets gone children's holds and
 * wakes the streams when a room's count changed. */
apr_status_t h2chat_presence_child_init(apr_pool_t *pchild, h2c_store_t *store,
                                        uint32_t slot);
void h2chat_presence_child_stopping(void);

/* mod_h2chat_spread.c: H2ChatReconnectSpread, the streams' reconnect hint. */
void h2chat_spread_child_init(server_rec *s);
void h2chat_spread_child_stopping(void);
/* A stream ends because its child stops: 1 and the delay its client is
 * told to wait (ms), or 0 for no hint. */
int h2chat_spread_draw(uint32_t *retry_ms);

/* mod_h2chat_direct.c: H2ChatDirect, the module's own HTTP/2 loop. */
int h2chat_direct_process_connection(conn_rec *c);
apr_status_t h2chat_direct_child_init(apr_pool_t *pchild, server_rec *s);
void h2chat_direct_child_stopping(void);
/* For mod_h2chat_direct_tls.c: a connection about to be handed to the loop
 * is reserved first (NULL: the loop takes none now), then handed (once the
 * MPM let it go); the loop does not stop between the two. */
h2c_direct_site_t *h2chat_direct_reserve(conn_rec *c, server_rec *s, const char *path);
void h2chat_direct_hand_io(conn_rec *c, const h2c_direct_site_t *site,
                           const h2c_direct_io_t *io, void *ctx);

/* mod_h2chat_direct_req.c: httpd's processing of a request of a taken
 * connection c1, on a check thread (h2c_direct_io_t.check). */
void h2chat_direct_check(conn_rec *c1, const h2c_direct_ask_t *ask,
                         h2c_direct_pass_t *pass);
void h2chat_direct_log(conn_rec *c1, const h2c_direct_ask_t *ask, const char *user,
                       int status, uint64_t bytes);
/* h2c connections under `H2ChatDirectRequests httpd`: their checks (only
 * check, log and release; the bytes stay the socket's) and the context
 * of one (malloc'ed; NULL without memory or when the client is gone
 * already; released by the loop). */
const h2c_direct_io_t *h2chat_direct_h2c_checks(void);
void *h2chat_direct_h2c_side(server_rec *s, int fd);
apr_status_t h2chat_direct_req_child_init(apr_pool_t *p);
void h2chat_direct_req_register(void);

/* mod_h2chat_direct_tls.c: H2ChatDirect on a TLS virtual host. */
void h2chat_direct_tls_register(void);
int h2chat_direct_tls_propose(conn_rec *c, request_rec *r, server_rec *s,
                              const apr_array_header_t *offers,
                              apr_array_header_t *proposals);
int h2chat_direct_tls_switch(conn_rec *c, request_rec *r, server_rec *s,
                             const char *protocol);
const char *h2chat_direct_tls_protocol(const conn_rec *c);
int h2chat_direct_tls_process_connection(conn_rec *c);
void h2chat_direct_tls_suspend(conn_rec *c, request_rec *r);

/* mod_h2chat_reply.c: the handler's side of the request policy. */
void h2chat_request_describe(request_rec *r, h2c_request_t *req);
int h2chat_reply_refusal(request_rec *r, const h2c_verdict_t *v);
void h2chat_reply_json(request_rec *r, int status, const char *json);
/* Fields every answer of the location carries: CORS for a listed origin,
 * X-H2Chat-Stream (H2ChatStreamURL). */
void h2chat_reply_fields(request_rec *r, const h2chat_dir_conf_t *dc);
/* OPTIONS with an Origin: a CORS preflight, answered 204. */
int h2chat_reply_preflight(request_rec *r, const h2chat_dir_conf_t *dc);

/* mod_h2chat_log.c: pure units' lines into the error log. */
int h2chat_log_level(h2c_log_level_t level);
void h2chat_log_install(server_rec *s);

/* mod_h2chat_subscribe.c / _publish.c / _status.c */
int h2chat_subscribe(request_rec *r, const h2chat_dir_conf_t *dc);
int h2chat_publish(request_rec *r, const h2chat_dir_conf_t *dc);
int h2chat_moderate(request_rec *r, const h2chat_dir_conf_t *dc);
int h2chat_status_hook(request_rec *r, int flags);

/* mod_h2chat_metrics.c: SetHandler h2chat-metrics (Prometheus). */
int h2chat_metrics_handler(request_rec *r);

#endif /* MOD_H2CHAT_H */
