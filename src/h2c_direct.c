/* h2c_direct: see h2c_direct.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <nghttp2/nghttp2.h>

#include "h2c_direct.h"
#include "h2c_frame.h"
#include "h2c_json.h"
#include "h2c_rate.h"
#include "h2c_sock.h"
#include "h2c_text.h"
#include "mod_h2chat_tags.h"

#define H2C_DIRECT_READ 16384
#define H2C_DIRECT_COALESCE 65536 /* frames gathered into one write */
#define H2C_DIRECT_TICK_MS 1000   /* heartbeats, stall and idle looks */
#define H2C_DIRECT_HEADER_MAX 4096
#define H2C_DIRECT_MAX_STREAMS 100

/* one header into nv[n++]: names and values are copied by nghttp2 */
#define NV(k, v)                                                                         \
    nv[n++] = (nghttp2_nv) {                                                             \
        (uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE       \
    }

typedef struct conn_t conn_t;
typedef struct strm_t strm_t;

typedef enum { STRM_NEW, STRM_SUB, STRM_REPLY, STRM_DROP } strm_kind_t;

struct strm_t {
    conn_t *c;
    int32_t id;
    strm_kind_t kind;
    strm_t *lprev, *lnext; /* the connection's streams */
    /* the request */
    char *method, *path, *ctype, *accept, *last_event_id, *origin;
    int64_t clen; /* -1: not given */
    char *body;
    uint32_t body_len;
    int body_over;
    /* a reply, or a subscriber's protocol lines and split messages */
    char *out;
    apr_size_t out_len, out_off;
    /* a subscriber */
    uint64_t next; /* next message id to send */
    int sse;
    int entered;  /* counted in the segment */
    int deferred; /* nghttp2 waits for resume_data */
    int ending;   /* send what is pending, then end the stream */
    int64_t heartbeat_due;
    uint64_t sent;
};

struct conn_t {
    h2c_direct_t *d;
    int fd;
    nghttp2_session *ngh;
    const h2c_direct_site_t *site;
    char peer[64];
    strm_t *streams;
    conn_t *prev, *next;
    char *pend; /* bytes nghttp2 made that the socket did not take yet */
    apr_size_t pend_len, pend_off;
    int want_out; /* EPOLLOUT armed */
    int closing;
    int64_t active;  /* last byte in or out (idle connections) */
    int64_t check_due;
    h2c_stall_t stall;
    conn_t *q_next; /* queued by h2c_direct_add; the dead list */
    int dead;       /* closed; freed at the end of the loop pass */
    char *pre;
    apr_size_t prelen;
};

struct h2c_direct_t {
    h2c_direct_env_t env;
    apr_pool_t *pool;
    apr_pool_t *scratch; /* cleared every loop pass */
    int ep, evfd;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    conn_t *conns;
    apr_thread_mutex_t *lock; /* the queue and the flags below */
    conn_t *queue;
    conn_t *dead; /* closed this pass: epoll events may still name them */
    int stop;
    uint32_t nconns, nstreams; /* read racily by server-status */
    int64_t now_us;
    uint64_t delivered; /* the ring's last id at the last delivery pass */
    char buf[H2C_DIRECT_COALESCE];
};

static int64_t mono_us(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logf_(h2c_direct_t *d, h2c_log_level_t level, const char *tag, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

static void logf_(h2c_direct_t *d, h2c_log_level_t level, const char *tag, const char *fmt,
                  ...) {
    char msg[512];
    va_list ap;

    if (!d->env.log) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    d->env.log(d->env.log_ctx, level, tag, msg);
}

static void ring_bell(h2c_direct_t *d) {
    uint64_t one = 1;
    ssize_t n = write(d->evfd, &one, sizeof(one));

    (void)n; /* EAGAIN: the counter is already non-zero, the loop will look */
}

/* ---- replies ---------------------------------------------------------- */

static int level_of(int status) {
    if (status >= 500) {
        return status == 503 ? H2C_LOG_WARN : H2C_LOG_ERR;
    }
    return H2C_LOG_INFO;
}

static ssize_t out_read(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *src, void *user) {
    strm_t *s = src->ptr;
    apr_size_t n = s->out_len - s->out_off;

    (void)ngh, (void)id, (void)user;
    if (n > length) {
        n = length;
    }
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    if (s->out_off == s->out_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void set_out(strm_t *s, const char *data, apr_size_t len) {
    free(s->out);
    s->out = malloc(len ? len : 1);
    memcpy(s->out, data, len);
    s->out_len = len;
    s->out_off = 0;
}

/* A complete answer: status, JSON body and headers. */
static void reply(strm_t *s, int status, const char *json, const char *retry_after,
                  const char *allow) {
    char st[4];
    nghttp2_nv nv[5];
    size_t n = 0;
    nghttp2_data_provider dp;
    char *body = apr_pstrcat(s->c->d->scratch, json, "\n", NULL);

    snprintf(st, sizeof(st), "%d", status);
    NV(":status", st);
    NV("content-type", "application/json");
    NV("cache-control", "no-store");
    if (retry_after) {
        NV("retry-after", retry_after);
    }
    if (allow) {
        NV("allow", allow);
    }
    s->kind = STRM_REPLY;
    set_out(s, body, strlen(body));
    dp.source.ptr = s;
    dp.read_callback = out_read;
    nghttp2_submit_response(s->c->ngh, s->id, nv, n, &dp);
}

/* Refusals: status, {"error":..} and one tagged log line, as the handler. */
static void refuse(strm_t *s, int status, h2c_refusal_t why, const char *tag, const char *msg,
                   const char *retry_after) {
    h2c_direct_t *d = s->c->d;

    logf_(d, level_of(status), tag, "%s: %d %s (client %s, direct)", tag, status, msg,
          s->c->peer);
    h2c_seg_count_refusal(d->env.seg, why);
    if (status == 503 && !retry_after) {
        retry_after = "5";
    }
    reply(s, status, h2c_json_error(d->scratch, msg), retry_after,
          status == 405 ? "GET, POST" : NULL);
}

/* ---- subscribers ------------------------------------------------------ */

static void sub_line(strm_t *s, const char *event, const char *json) {
    apr_size_t n = h2c_frame_event(s->sse, event, json, NULL, 0), keep = s->out_len - s->out_off;
    char *buf = malloc(keep + n + 1);

    memcpy(buf, s->out + s->out_off, keep);
    h2c_frame_event(s->sse, event, json, buf + keep, n + 1);
    free(s->out);
    s->out = buf;
    s->out_len = keep + n;
    s->out_off = 0;
}

/* A message too big for the room left in this DATA frame goes through
 * `out`, to be split across frames. */
static int sub_spill(strm_t *s, uint64_t id) {
    h2c_ring_t *ring = &s->c->d->env.seg->ring;
    uint32_t len;
    apr_size_t n;
    char *buf;

    if (h2c_ring_peek_len(ring, id, &len) != APR_SUCCESS) {
        return 0;
    }
    buf = malloc(len + H2C_FRAME_OVERHEAD);
    if (h2c_frame_message(ring, id, s->sse, buf, len + H2C_FRAME_OVERHEAD, &n) !=
        APR_SUCCESS) {
        free(buf);
        return 0;
    }
    free(s->out);
    s->out = buf;
    s->out_len = n;
    s->out_off = 0;
    return 1;
}

static void sub_gap(strm_t *s) {
    h2c_direct_t *d = s->c->d;
    uint64_t resume = h2c_frame_skip(&d->env.seg->ring, s->next);

    sub_line(s, "gap", h2c_json_gap(d->scratch, resume - s->next, s->next, resume - 1));
    s->next = resume;
}

/* nghttp2 asks for the next DATA frame's bytes: pending lines first, then
 * every message the stream has not sent, straight from the ring. */
static ssize_t sub_read(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *src, void *user) {
    strm_t *s = src->ptr;
    h2c_ring_t *ring = &s->c->d->env.seg->ring;
    uint64_t last = h2c_ring_last_id(ring);
    apr_size_t n = 0, m;

    (void)ngh, (void)id, (void)user;
    for (;;) {
        if (s->out_off < s->out_len) {
            m = s->out_len - s->out_off;
            m = m < length - n ? m : length - n;
            memcpy(buf + n, s->out + s->out_off, m);
            s->out_off += m;
            n += m;
            if (s->out_off < s->out_len) {
                break;
            }
            continue;
        }
        if (s->ending) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            break;
        }
        if (s->next > last || n == length) {
            break;
        }
        switch (h2c_frame_message(ring, s->next, s->sse, (char *)buf + n, length - n, &m)) {
        case APR_SUCCESS:
            n += m;
            s->next++;
            s->sent++;
            continue;
        case APR_NOTFOUND:
            sub_gap(s);
            continue;
        case APR_ENOSPC:
            if (n == 0 && sub_spill(s, s->next)) {
                s->next++;
                s->sent++;
                continue;
            }
            break;
        default:
            break; /* not committed yet: the next wake brings it */
        }
        break;
    }
    if (n == 0 && !(*flags & NGHTTP2_DATA_FLAG_EOF)) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    s->heartbeat_due = s->c->d->now_us + s->c->site->heartbeat_us;
    return (ssize_t)n;
}

static void subscribe(strm_t *s, const char *args, int head) {
    h2c_direct_t *d = s->c->d;
    const h2c_direct_site_t *site = s->c->site;
    uint64_t since = 0;
    int resume = h2c_text_parse_resume(args, s->last_event_id, &since), reset;
    char hb[24];
    nghttp2_nv nv[5];
    size_t n = 0;
    nghttp2_data_provider dp;

    if (resume < 0) {
        refuse(s, 400, H2C_REFUSED_INVALID, H2C_TAG_BAD_RESUME,
               "since / Last-Event-ID must be a message id (decimal digits, at most "
               "2^53-1)",
               NULL);
        return;
    }
    s->sse = s->accept && strstr(s->accept, "text/event-stream") != NULL;
    if (!head && h2c_seg_sub_enter(d->env.seg, d->env.child_slot, d->env.max_subscribers) !=
                     APR_SUCCESS) {
        refuse(s, 503, H2C_REFUSED_CAP, H2C_TAG_CAP, "too many subscribers, retry later",
               NULL);
        return;
    }
    snprintf(hb, sizeof(hb), "%lld", (long long)(site->heartbeat_us / 1000000));
    NV(":status", "200");
    NV("content-type", s->sse ? "text/event-stream" : "application/x-ndjson; charset=utf-8");
    NV("cache-control", "no-cache, no-store");
    NV("x-accel-buffering", "no");
    NV("x-h2chat-heartbeat", hb);
    if (head) {
        s->kind = STRM_REPLY;
        nghttp2_submit_response(s->c->ngh, s->id, nv, n, NULL);
        return;
    }
    s->kind = STRM_SUB;
    s->entered = 1;
    d->nstreams++;
    s->next = h2c_frame_start(&d->env.seg->ring, resume > 0, since, site->snapshot, &reset);
    if (reset) {
        sub_line(s, "reset", h2c_json_reset(d->scratch, h2c_ring_last_id(&d->env.seg->ring)));
    }
    s->heartbeat_due = d->now_us + site->heartbeat_us;
    logf_(d, H2C_LOG_DEBUG, H2C_TAG_SUB_START,
          "%s: subscriber starts at id %llu (%s, direct, client %s)", H2C_TAG_SUB_START,
          (unsigned long long)s->next, s->sse ? "sse" : "ndjson", s->c->peer);
    dp.source.ptr = s;
    dp.read_callback = sub_read;
    nghttp2_submit_response(s->c->ngh, s->id, nv, n, &dp);
}

/* ---- publishers ------------------------------------------------------- */

static void publish(strm_t *s) {
    h2c_direct_t *d = s->c->d;
    const h2c_direct_site_t *site = s->c->site;
    char *fields, retry[24];
    apr_size_t flen;
    const char *why;
    uint64_t id;
    int64_t time_ms, retry_ms;

    if (site->origin_ok && !site->origin_ok(site->origin_ctx, s->origin)) {
        refuse(s, 403, H2C_REFUSED_ORIGIN, H2C_TAG_ORIGIN, "this Origin may not post here",
               NULL);
        return;
    }
    if (!h2c_text_is_json_type(s->ctype)) {
        refuse(s, 415, H2C_REFUSED_MEDIA_TYPE, H2C_TAG_MEDIA_TYPE,
               "Content-Type must be application/json", NULL);
        return;
    }
    if (site->rate_interval_ms > 0) {
        h2c_rate_limit_t limit = {site->rate_interval_ms, site->rate_burst};

        if (h2c_rate_take(&d->env.seg->rate, &limit, s->c->peer, wall_ms(), &retry_ms) !=
            APR_SUCCESS) {
            snprintf(retry, sizeof(retry), "%d", (int)((retry_ms + 999) / 1000));
            refuse(s, 429, H2C_REFUSED_RATE, H2C_TAG_RATE, "too many messages, slow down",
                   retry);
            return;
        }
    }
    if (s->body_over || s->clen > (int64_t)site->max_bytes) {
        refuse(s, 413, H2C_REFUSED_TOO_LARGE, H2C_TAG_TOO_LARGE,
               apr_psprintf(d->scratch, "body over %u bytes", site->max_bytes), NULL);
        return;
    }
    if (h2c_json_parse_post(s->body ? s->body : "", s->body_len, NULL, d->scratch, &fields,
                            &flen, &why) != APR_SUCCESS) {
        refuse(s, 400, H2C_REFUSED_INVALID, H2C_TAG_BAD_MESSAGE, why, NULL);
        return;
    }
    if (h2c_store_publish(d->env.store, fields, flen, &id, &time_ms) != APR_SUCCESS) {
        refuse(s, 503, H2C_REFUSED_UNAVAILABLE, H2C_TAG_PUBLISH, "chat store could not publish",
               NULL);
        return;
    }
    reply(s, 201, h2c_json_published(d->scratch, id, time_ms), NULL, NULL);
}

/* A whole request is in (END_STREAM): answer it. */
static void dispatch(strm_t *s) {
    const char *q = s->path ? strchr(s->path, '?') : NULL;
    apr_size_t plen = s->path ? (q ? (apr_size_t)(q - s->path) : strlen(s->path)) : 0;
    const char *want = s->c->site->path;

    if (s->kind != STRM_NEW) {
        return; /* answered early (a body over the limit) */
    }
    if (!s->method || !s->path || plen != strlen(want) || memcmp(s->path, want, plen)) {
        logf_(s->c->d, H2C_LOG_INFO, H2C_TAG_DIRECT_PATH,
              "%s: 404 %s (client %s): this listener serves only %s", H2C_TAG_DIRECT_PATH,
              s->path ? s->path : "-", s->c->peer, want);
        reply(s, 404,
              h2c_json_error(s->c->d->scratch,
                             apr_pstrcat(s->c->d->scratch, "not found: this listener (H2ChatDirect) serves only ",
                                         want, NULL)),
              NULL, NULL);
        return;
    }
    if (!strcmp(s->method, "GET") || !strcmp(s->method, "HEAD")) {
        subscribe(s, q ? q + 1 : NULL, !strcmp(s->method, "HEAD"));
    } else if (!strcmp(s->method, "POST")) {
        publish(s);
    } else {
        refuse(s, 405, H2C_REFUSED_METHOD, H2C_TAG_METHOD, "method not allowed: use GET or POST",
               NULL);
    }
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

static int on_begin_headers(nghttp2_session *ngh, const nghttp2_frame *frame, void *user) {
    conn_t *c = user;
    strm_t *s;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->c = c;
    s->id = frame->hd.stream_id;
    s->clen = -1;
    s->lnext = c->streams;
    if (c->streams) {
        c->streams->lprev = s;
    }
    c->streams = s;
    nghttp2_session_set_stream_user_data(ngh, s->id, s);
    return 0;
}

static char *dup_value(const uint8_t *v, size_t len) {
    char *p = malloc(len + 1);

    memcpy(p, v, len);
    p[len] = '\0';
    return p;
}

/* The request headers the chat looks at; the first of each counts. */
static int on_header(nghttp2_session *ngh, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
    strm_t *s = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    char **slot = NULL;

    (void)flags, (void)user;
    if (!s || frame->hd.type != NGHTTP2_HEADERS || valuelen > H2C_DIRECT_HEADER_MAX) {
        return 0;
    }
#define IS(k) (namelen == sizeof(k) - 1 && !memcmp(name, k, namelen))
    if (IS(":method")) {
        slot = &s->method;
    } else if (IS(":path")) {
        slot = &s->path;
    } else if (IS("content-type")) {
        slot = &s->ctype;
    } else if (IS("accept")) {
        slot = &s->accept;
    } else if (IS("last-event-id")) {
        slot = &s->last_event_id;
    } else if (IS("origin")) {
        slot = &s->origin;
    } else if (IS("content-length")) {
        char *v = dup_value(value, valuelen);

        s->clen = strtoll(v, NULL, 10);
        free(v);
    }
#undef IS
    if (slot && !*slot) {
        *slot = dup_value(value, valuelen);
    }
    return 0;
}

static int on_data(nghttp2_session *ngh, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *user) {
    strm_t *s = nghttp2_session_get_stream_user_data(ngh, id);
    uint32_t max;

    (void)flags, (void)user;
    if (!s || s->kind != STRM_NEW) {
        return 0;
    }
    max = s->c->site->max_bytes;
    if (s->body_over || len > max - s->body_len) {
        s->body_over = 1; /* never kept: answered 413 at the end */
        return 0;
    }
    if (!s->body && !(s->body = malloc(max + 1))) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += (uint32_t)len;
    return 0;
}

static void resume_subs(conn_t *c, int all);

static int on_frame(nghttp2_session *ngh, const nghttp2_frame *frame, void *user) {
    conn_t *c = user;
    strm_t *s;

    switch (frame->hd.type) {
    case NGHTTP2_WINDOW_UPDATE:
        resume_subs(c, 0); /* a stream may have waited for window */
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    s = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    if (!s) {
        return 0;
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        dispatch(s);
    } else if (frame->hd.type == NGHTTP2_HEADERS && s->clen > (int64_t)c->site->max_bytes &&
               s->method && !strcmp(s->method, "POST")) {
        publish(s); /* refused by its declared length, before any byte of it */
    }
    return 0;
}

static void strm_free(strm_t *s) {
    conn_t *c = s->c;

    if (s->entered) {
        h2c_seg_sub_leave(c->d->env.seg, c->d->env.child_slot);
        c->d->nstreams--;
        logf_(c->d, H2C_LOG_DEBUG, H2C_TAG_SUB_END,
              "%s: subscriber ends after %llu messages (direct, client %s)", H2C_TAG_SUB_END,
              (unsigned long long)s->sent, c->peer);
    }
    if (s->lprev) {
        s->lprev->lnext = s->lnext;
    } else {
        c->streams = s->lnext;
    }
    if (s->lnext) {
        s->lnext->lprev = s->lprev;
    }
    free(s->method), free(s->path), free(s->ctype), free(s->accept);
    free(s->last_event_id), free(s->origin), free(s->body), free(s->out);
    free(s);
}

static int on_close(nghttp2_session *ngh, int32_t id, uint32_t code, void *user) {
    strm_t *s = nghttp2_session_get_stream_user_data(ngh, id);

    (void)code, (void)user;
    if (s) {
        nghttp2_session_set_stream_user_data(ngh, id, NULL);
        strm_free(s);
    }
    return 0;
}

/* ---- connections ------------------------------------------------------ */

/* Closes at once; the memory goes at the end of the pass (conn_reap),
 * since events of this epoll batch may still point at it. */
static void conn_close(conn_t *c) {
    h2c_direct_t *d = c->d;

    if (c->dead) {
        return;
    }
    while (c->streams) {
        strm_free(c->streams);
    }
    nghttp2_session_del(c->ngh);
    c->ngh = NULL;
    epoll_ctl(d->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        d->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    d->nconns--;
    c->dead = 1;
    c->q_next = d->dead;
    d->dead = c;
}

static void conn_reap(h2c_direct_t *d) {
    conn_t *c;

    while ((c = d->dead)) {
        d->dead = c->q_next;
        free(c->pend);
        free(c->pre);
        free(c);
    }
}

static void arm_out(conn_t *c, int on) {
    struct epoll_event ev;

    if (c->want_out == on) {
        return;
    }
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(c->d->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Writes what the socket takes; 1 if all of it, 0 if some waits, -1 on a
 * dead connection. */
static int write_some(conn_t *c, const char *data, apr_size_t len, apr_size_t *done) {
    *done = 0;
    while (*done < len) {
        ssize_t w = write(c->fd, data + *done, len - *done);

        if (w > 0) {
            *done += (apr_size_t)w;
            c->active = c->d->now_us;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            return -1;
        }
    }
    return 1;
}

/* Sends what nghttp2 has, gathered into few writes. What the socket does
 * not take waits in c->pend, and nothing more is made for this connection
 * until it drained: the backlog of a slow reader stays one buffer. */
static void conn_send(conn_t *c) {
    h2c_direct_t *d = c->d;
    apr_size_t have = 0, done;
    int r;

    if (c->pend_off < c->pend_len) {
        r = write_some(c, c->pend + c->pend_off, c->pend_len - c->pend_off, &done);
        c->pend_off += done;
        if (r < 0) {
            c->closing = 1;
            return;
        }
        if (r == 0) {
            arm_out(c, 1);
            return;
        }
        c->pend_off = c->pend_len = 0;
    }
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->ngh, &data);

        if (n < 0) {
            c->closing = 1;
            return;
        }
        if (n > 0 && have + (apr_size_t)n <= sizeof(d->buf)) {
            memcpy(d->buf + have, data, (size_t)n);
            have += (apr_size_t)n;
            continue;
        }
        /* flush what was gathered, then the chunk that did not fit */
        r = write_some(c, d->buf, have, &done);
        if (r == 1 && n > 0) {
            memcpy(d->buf, data, (size_t)n);
            have = (apr_size_t)n;
            continue;
        }
        if (r < 0) {
            c->closing = 1;
            return;
        }
        if (r == 0 || (n > 0)) {
            apr_size_t rest = have - done + (n > 0 ? (apr_size_t)n : 0);

            free(c->pend);
            c->pend = malloc(rest);
            memcpy(c->pend, d->buf + done, have - done);
            if (n > 0) {
                memcpy(c->pend + have - done, data, (size_t)n);
            }
            c->pend_len = rest;
            c->pend_off = 0;
            arm_out(c, 1);
            return;
        }
        break;
    }
    arm_out(c, 0);
    if (!nghttp2_session_want_read(c->ngh) && !nghttp2_session_want_write(c->ngh)) {
        c->closing = 1;
    }
}

static void conn_recv(conn_t *c) {
    uint8_t buf[H2C_DIRECT_READ];

    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof(buf));

        if (n > 0) {
            c->active = c->d->now_us;
            if (nghttp2_session_mem_recv(c->ngh, buf, (size_t)n) < 0) {
                c->closing = 1;
                return;
            }
            if ((size_t)n < sizeof(buf)) {
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        c->closing = 1; /* EOF or error: the client is gone */
        return;
    }
}

/* Streams waiting for messages take them now. all: also the ones whose
 * only news is that they end. */
static void resume_subs(conn_t *c, int all) {
    uint64_t last = h2c_ring_last_id(&c->d->env.seg->ring);
    strm_t *s;

    for (s = c->streams; s; s = s->lnext) {
        if (s->kind == STRM_SUB && s->deferred &&
            (all || s->next <= last || s->out_off < s->out_len)) {
            s->deferred = 0;
            nghttp2_session_resume_data(c->ngh, s->id);
        }
    }
}

static void conn_start(h2c_direct_t *d, conn_t *c) {
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2C_DIRECT_MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
    };
    struct epoll_event ev;

    c->d = d;
    c->active = d->now_us;
    c->check_due = d->now_us + 2000000;
    c->next = d->conns;
    if (d->conns) {
        d->conns->prev = c;
    }
    d->conns = c;
    d->nconns++;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    if (nghttp2_session_server_new2(&c->ngh, d->cbs, c, d->opt) != 0 ||
        epoll_ctl(d->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        logf_(d, H2C_LOG_ERR, H2C_TAG_DIRECT_CONN,
              "%s: connection from %s could not be taken: %s", H2C_TAG_DIRECT_CONN, c->peer,
              strerror(errno));
        if (!c->ngh) {
            nghttp2_session_server_new2(&c->ngh, d->cbs, c, d->opt);
        }
        conn_close(c);
        return;
    }
    nghttp2_submit_settings(c->ngh, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (nghttp2_session_mem_recv(c->ngh, (const uint8_t *)c->pre, c->prelen) < 0) {
        c->closing = 1;
    }
    free(c->pre);
    c->pre = NULL;
    conn_recv(c);
}

/* Ends every held stream; the client resumes elsewhere with Last-Event-ID. */
static void conn_goaway(conn_t *c) {
    strm_t *s;

    for (s = c->streams; s; s = s->lnext) {
        if (s->kind == STRM_SUB) {
            s->ending = 1;
        }
    }
    resume_subs(c, 1);
    nghttp2_submit_goaway(c->ngh, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->ngh), NGHTTP2_NO_ERROR,
                          NULL, 0);
    conn_send(c);
}

/* Once a second: heartbeats due, readers that stopped, idle connections. */
static void tick(h2c_direct_t *d) {
    conn_t *c, *nx;
    strm_t *s;
    uint32_t queued;
    uint64_t acked;

    for (c = d->conns; c; c = nx) {
        const h2c_direct_site_t *site = c->site;

        nx = c->next;
        for (s = c->streams; s; s = s->lnext) {
            if (s->kind == STRM_SUB && s->deferred && d->now_us >= s->heartbeat_due) {
                sub_line(s, "heartbeat", h2c_json_heartbeat(d->scratch, wall_ms()));
                s->deferred = 0;
                nghttp2_session_resume_data(c->ngh, s->id);
            }
        }
        if (d->now_us >= c->check_due) {
            c->check_due = d->now_us + 2000000;
            if (h2c_sock_queue(c->fd, &queued, &acked) == 0 &&
                h2c_stall_update(&c->stall, queued, acked, d->now_us, site->timeout_us)) {
                __atomic_add_fetch(&h2c_seg_shared(d->env.seg)->stalled_dropped, 1,
                                   __ATOMIC_RELAXED);
                logf_(d, H2C_LOG_INFO, H2C_TAG_STALLED,
                      "%s: connection dropped: client %s acknowledged nothing for %lld s "
                      "with %u bytes waiting (direct)",
                      H2C_TAG_STALLED, c->peer,
                      (long long)((d->now_us - c->stall.since) / 1000000), queued);
                conn_close(c);
                continue;
            }
            if (!c->streams && d->now_us - c->active > site->timeout_us) {
                c->closing = 1; /* idle, nothing held: as KeepAliveTimeout */
            }
        }
        conn_send(c);
        if (c->closing) {
            conn_close(c);
        }
    }
}

static void take_queue(h2c_direct_t *d) {
    conn_t *q, *c;

    apr_thread_mutex_lock(d->lock);
    q = d->queue;
    d->queue = NULL;
    apr_thread_mutex_unlock(d->lock);
    while ((c = q)) {
        q = c->q_next;
        conn_start(d, c);
        if (!c->closing) {
            conn_send(c);
        }
        if (c->closing) {
            conn_close(c);
        }
    }
}

/* A pass over every connection, only when the ring has news: the bell
 * also rings for new connections. */
static void deliver(h2c_direct_t *d) {
    uint64_t last = h2c_ring_last_id(&d->env.seg->ring);
    conn_t *c, *nx;

    if (last == d->delivered) {
        return;
    }
    d->delivered = last;
    for (c = d->conns; c; c = nx) {
        nx = c->next;
        if (c->pend_off < c->pend_len) {
            continue; /* still draining: its streams catch up when it has */
        }
        resume_subs(c, 0);
        conn_send(c);
        if (c->closing) {
            conn_close(c);
        }
    }
}

void h2c_direct_run(h2c_direct_t *d) {
    struct epoll_event evs[256];
    int64_t tick_due = mono_us() + H2C_DIRECT_TICK_MS * 1000;
    int stop = 0, i, n;

    while (!stop) {
        n = epoll_wait(d->ep, evs, 256, H2C_DIRECT_TICK_MS);
        d->now_us = mono_us();
        apr_pool_clear(d->scratch);
        for (i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;

            if (!c) {
                uint64_t v;
                ssize_t r = read(d->evfd, &v, sizeof(v));

                (void)r;
                apr_thread_mutex_lock(d->lock);
                stop = d->stop;
                apr_thread_mutex_unlock(d->lock);
                take_queue(d);
                deliver(d);
                continue;
            }
            if (c->dead) {
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                conn_recv(c);
            }
            if (!c->closing) {
                int draining = c->pend_off < c->pend_len;

                conn_send(c);
                if (draining && c->pend_off == c->pend_len) {
                    resume_subs(c, 0); /* drained: catch up */
                    conn_send(c);
                }
            }
            if (c->closing) {
                conn_close(c);
            }
        }
        if (d->now_us >= tick_due) {
            tick_due = d->now_us + H2C_DIRECT_TICK_MS * 1000;
            tick(d);
        }
        conn_reap(d);
    }
    while (d->conns) {
        conn_goaway(d->conns);
        conn_close(d->conns);
    }
    take_queue(d); /* handed over while stopping: closed at once */
    while (d->conns) {
        conn_close(d->conns);
    }
    conn_reap(d);
}

static apr_status_t direct_cleanup(void *data) {
    h2c_direct_t *d = data;
    conn_t *c;

    while ((c = d->queue)) {
        d->queue = c->q_next;
        close(c->fd);
        free(c->pre);
        free(c);
    }
    nghttp2_session_callbacks_del(d->cbs);
    nghttp2_option_del(d->opt);
    close(d->ep);
    close(d->evfd);
    return APR_SUCCESS;
}

apr_status_t h2c_direct_create(h2c_direct_t **dp, apr_pool_t *p, const h2c_direct_env_t *env) {
    h2c_direct_t *d = apr_pcalloc(p, sizeof(*d));
    struct epoll_event ev;
    apr_status_t rv;

    d->env = *env;
    d->pool = p;
    d->ep = epoll_create1(EPOLL_CLOEXEC);
    d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->ep < 0 || d->evfd < 0) {
        rv = APR_FROM_OS_ERROR(errno);
        if (d->ep >= 0) {
            close(d->ep);
        }
        return rv;
    }
    if ((rv = apr_thread_mutex_create(&d->lock, APR_THREAD_MUTEX_DEFAULT, p)) != APR_SUCCESS ||
        (rv = apr_pool_create(&d->scratch, p)) != APR_SUCCESS) {
        close(d->ep);
        close(d->evfd);
        return rv;
    }
    nghttp2_session_callbacks_new(&d->cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(d->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(d->cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(d->cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(d->cbs, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(d->cbs, on_close);
    nghttp2_option_new(&d->opt);
    /* the preface was checked by the glue and is fed like any other byte */
    apr_pool_cleanup_register(p, d, direct_cleanup, apr_pool_cleanup_null);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(d->ep, EPOLL_CTL_ADD, d->evfd, &ev);
    d->now_us = mono_us();
    d->delivered = h2c_ring_last_id(&env->seg->ring);
    *dp = d;
    return APR_SUCCESS;
}

apr_status_t h2c_direct_add(h2c_direct_t *d, int fd, const char *peer,
                            const h2c_direct_site_t *site, const char *pre,
                            apr_size_t prelen) {
    conn_t *c = calloc(1, sizeof(*c));
    int stopped;

    if (!c || !(c->pre = malloc(prelen ? prelen : 1))) {
        free(c);
        close(fd);
        return APR_ENOMEM;
    }
    c->fd = fd;
    c->site = site;
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "-");
    memcpy(c->pre, pre, prelen);
    c->prelen = prelen;
    apr_thread_mutex_lock(d->lock);
    stopped = d->stop;
    if (!stopped) {
        c->q_next = d->queue;
        d->queue = c;
    }
    apr_thread_mutex_unlock(d->lock);
    if (stopped) {
        close(fd);
        free(c->pre);
        free(c);
        return APR_EOF;
    }
    ring_bell(d);
    return APR_SUCCESS;
}

void h2c_direct_wake(h2c_direct_t *d) {
    ring_bell(d);
}

void h2c_direct_stop(h2c_direct_t *d) {
    apr_thread_mutex_lock(d->lock);
    d->stop = 1;
    apr_thread_mutex_unlock(d->lock);
    ring_bell(d);
}

void h2c_direct_counts(h2c_direct_t *d, uint32_t *conns, uint32_t *streams) {
    *conns = __atomic_load_n(&d->nconns, __ATOMIC_RELAXED);
    *streams = __atomic_load_n(&d->nstreams, __ATOMIC_RELAXED);
}
