/* h2c_direct: the module's own HTTP/2 loop for a chat listener (pure unit,
 * no httpd headers; libnghttp2, the library mod_http2 is built on).
 *
 * Why: through mod_http2 every held stream keeps an h2 worker thread and
 * its connection's MPM thread, and each delivery is handed from one to the
 * other through a pipe: ~40-60 µs and ~140 KiB per subscriber, 2 threads
 * (bench/RESULTS.md). Here one thread per child serves every connection it
 * is given from one epoll loop, as nchan does inside nginx: a delivery is
 * a ring read, a DATA frame and one write per connection; no thread per
 * stream, no hand-over.
 *
 * The glue gives it connections that start with the h2c preface on a
 * listener with `H2ChatDirect`; it answers the chat's GET (held stream)
 * and POST (publish) with the same bytes, statuses, limits and counters as
 * the handler, anything else 404. Slow readers never block the loop: a
 * connection's unsent bytes wait in one buffer while the others go on, and
 * its streams stop taking messages until it drains (the ring's gap lines
 * cover what it missed); one that acknowledges nothing for `timeout_us` is
 * dropped, as with the handler (H2C0024). */
#ifndef H2C_DIRECT_H
#define H2C_DIRECT_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <stdint.h>

#include "h2c_policy.h"
#include "h2c_seg.h"
#include "h2c_spread.h"
#include "h2c_store.h"

typedef struct h2c_direct_t h2c_direct_t;

/* What one listener's chat looks like (from its <Location>): fixed for the
 * life of the child, owned by the caller. */
typedef struct {
    const char *path;           /* the only path served, e.g. "/msgs" */
    h2c_policy_conf_t conf;     /* its location's settings */
    h2c_header_limits_t limits; /* the server's LimitRequest*, the header list */
    int64_t timeout_us;         /* Timeout: stalled readers, idle connections */
} h2c_direct_site_t;

/* The process's side: fixed at create. */
typedef struct {
    h2c_seg_t *seg;
    h2c_store_t *store;
    uint32_t child_slot;
    h2c_hold_limits_t limits; /* held streams: the server's caps */
    int64_t penalty_us;       /* H2ChatDirectPenalty (h2c_penalty.h); 0: off */
    uint32_t check_threads;   /* threads for io checks (h2c_direct_io_t.check); 0: none */
    h2c_spread_t *spread;     /* reconnect hints when the loop stops (armed by
                                 the caller before h2c_direct_stop); NULL: none */
    /* one line for the error log; `tag` is one of h2c_tags.h */
    void (*log)(void *ctx, h2c_log_level_t level, const char *tag, const char *msg);
    void *log_ctx;
} h2c_direct_env_t;

/* Makes the loop's state (epoll, eventfd) in pool p; nothing runs yet. */
apr_status_t h2c_direct_create(h2c_direct_t **d, apr_pool_t *p,
                               const h2c_direct_env_t *env);

/* The loop: serves until h2c_direct_stop, then ends every stream (their
 * clients resume with Last-Event-ID; each held stream's last event is its
 * reconnect hint when env->spread is armed), says GOAWAY, closes, and
 * returns. A connection whose socket does not take all of that at once gets
 * a moment (H2C_DIRECT_DRAIN_US) to drain; the streams are not held longer. */
void h2c_direct_run(h2c_direct_t *d);

/* One request as the check sees it: every field NUL-terminated. */
typedef struct h2c_direct_ask_t {
    const char *method, *path, *scheme, *authority;
    const char *headers; /* "name: value\n" per field, as they came */
    int64_t time_us;     /* when its headers came (wall clock) */
} h2c_direct_ask_t;

/* The check's verdict (every pointer malloc'ed, freed by the loop). */
typedef struct h2c_direct_pass_t {
    int allowed;   /* 1: the chat answers it; else the answer below */
    char *user;    /* allowed: the authenticated user, or NULL */
    char *client;  /* allowed: the client's address as httpd sees it, or NULL */
    int status;    /* refused: httpd's answer ... */
    char *headers; /* ... its fields ("name: value\n" lines) ... */
    char *body;    /* ... and body */
    apr_size_t body_len;
} h2c_direct_pass_t;

/* How a connection's bytes move when they are not the socket's own (TLS
 * through mod_ssl's filters: the glue's). Every call is made on the loop
 * thread; the loop still polls `fd` and writes to it what `seal` gave. */
typedef struct {
    /* Up to len bytes of the client's: > 0 their count; 0 the client is
     * gone (end of stream or an error); -1 nothing now. */
    apr_ssize_t (*recv)(void *ctx, char *buf, apr_size_t len);
    /* The bytes for the socket for len bytes of ours (all of them; *out
     * stays valid until the next call). An error: the connection is gone. */
    apr_status_t (*seal)(void *ctx, const char *in, apr_size_t len, const char **out,
                         apr_size_t *outlen);
    /* Closing: the last bytes (a TLS close_notify; may be none). */
    void (*bye)(void *ctx, const char **out, apr_size_t *outlen);
    /* The connection's end: frees ctx and closes fd. */
    void (*release)(void *ctx);
    /* release is never called sooner than this after h2c_direct_add_io
     * (the MPM may still touch what it handed over in that moment) */
    int64_t min_life_us;
    /* httpd's request processing for one request (auth, access, its log
     * line for a refusal), on one of the loop's check threads, never on the
     * loop; NULL: none (the chat's own rules only). */
    void (*check)(void *ctx, const struct h2c_direct_ask_t *ask,
                  struct h2c_direct_pass_t *pass);
    /* The access log line of a request the check let through, once
     * answered (a POST) or ended (a held stream): on a check thread. */
    void (*log)(void *ctx, const struct h2c_direct_ask_t *ask, const char *user,
                int status, uint64_t bytes);
} h2c_direct_io_t;

/* From any thread. Takes fd (a connected, non-blocking TCP socket) and the
 * bytes already read from it (`pre`, starting with the h2c preface). The
 * loop owns fd from here on, also on failure. The connection counts in
 * this child's row (h2c_seg_direct_count) from this call on, or already
 * did (`counted`: the child that handed it over counted it here, so that
 * the others see it at once, h2c_balance). `chk` (NULL: none): httpd's
 * processing of its requests, as an io's check and log with chk_ctx (its
 * bytes stay the socket's); chk->release(chk_ctx) when the connection is
 * gone and no check of it is out, also on failure. */
apr_status_t h2c_direct_add(h2c_direct_t *d, int fd, const char *peer,
                            const h2c_direct_site_t *site, const char *pre,
                            apr_size_t prelen, int counted, const h2c_direct_io_t *chk,
                            void *chk_ctx);

/* As h2c_direct_add for a connection whose bytes go through `io` (ctx):
 * nothing is read before it; it may have some in its buffers already.
 * release(ctx) is called in every case, also on failure. */
apr_status_t h2c_direct_add_io(h2c_direct_t *d, int fd, const char *peer,
                               const h2c_direct_site_t *site, const h2c_direct_io_t *io,
                               void *ctx);

/* From any thread: new messages are in the ring. */
void h2c_direct_wake(h2c_direct_t *d);

/* From any thread: ask the loop to end (h2c_direct_run returns). */
void h2c_direct_stop(h2c_direct_t *d);

/* The loop's connections and held streams are counted in the segment's
 * child table (h2c_seg_direct_totals), for server-status. */

#endif /* H2C_DIRECT_H */
