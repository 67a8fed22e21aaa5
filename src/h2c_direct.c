/* h2c_direct: the loop, its connections and the public calls (see
 * h2c_direct.h; the requests are in h2c_direct_req.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <apr_strings.h>

#include "h2c_direct_int.h"
#include "h2c_tags.h"

#define H2C_DIRECT_TICK_MS 1000    /* heartbeats, stuck streams, stalled and idle looks */
#define H2C_DIRECT_LOOK_US 2000000 /* the send-queue look, as the handler's */
#define H2C_DIRECT_MAX_STREAMS 100
#define H2C_DIRECT_GOAWAY_US 2000000 /* a terminated connection closes after this */
/* stopping: what a full socket (or a closed window) still holds of the
 * streams' last bytes gets this long to leave; the child is not held for
 * the reconnect window itself (the hint does the spreading) */
#define H2C_DIRECT_DRAIN_US 1000000

static int64_t mono_us(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t h2c_direct_wall_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h2c_direct_ring(h2c_direct_t *d) {
    uint64_t one = 1;
    ssize_t n = write(d->evfd, &one, sizeof(one));

    (void)n; /* EAGAIN: the counter is already non-zero, the loop will look */
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
        h2c_direct_strm_free(c->streams);
    }
    nghttp2_session_del(c->ngh); /* calls no callback */
    c->ngh = NULL;
    epoll_ctl(d->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->more) {
        h2c_direct_more_remove(c);
    }
    /* a check thread may still read the connection's TLS state (mod_ssl's
     * variables of its request): its close_notify, which frees that state,
     * waits until none is out (conn_free) */
    if (c->io && c->checking) {
        c->linger_due = 1;
    } else {
        h2c_direct_linger(c);
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        d->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    h2c_seg_direct_count(d->env.seg, d->env.child_slot, -1, 0);
    c->dead = 1;
    c->q_next = d->dead;
    d->dead = c;
}

/* An h2c connection's check context (a TLS one's is its io's). */
static void chk_release(conn_t *c) {
    if (c->chk && c->chk != c->io && c->chk->release) {
        c->chk->release(c->chk_ctx);
    }
    c->chk = NULL;
}

/* A closed (or never started) connection's memory; an io connection's
 * release waits until its io allows (h2c_direct_io_t.min_life_us). */
static void conn_free(h2c_direct_t *d, conn_t *c) {
    if (c->checking || (c->io && mono_us() < c->release_at)) {
        c->q_next = d->late;
        d->late = c;
        return;
    }
    if (c->linger_due) {
        h2c_direct_linger(c);
    }
    chk_release(c);
    if (c->io) {
        c->io->release(c->io_ctx);
    }
    free(c->pend);
    free(c->pre);
    free(c);
}

static void conn_reap(h2c_direct_t *d) {
    conn_t *c;

    while ((c = d->dead)) {
        d->dead = c->q_next;
        conn_free(d, c);
    }
}

/* The late ones whose time came; `wait`: all of them (the loop ends). */
static void reap_late(h2c_direct_t *d, int wait) {
    conn_t *c = d->late, *nx;

    d->late = NULL;
    for (; c; c = nx) {
        int64_t left = c->release_at - mono_us();

        nx = c->q_next;
        if (wait && left > 0) {
            apr_sleep(left);
        }
        conn_free(d, c); /* back on the list if still too young */
    }
}

void h2c_direct_conn_drop(h2c_direct_t *d, conn_t *c) {
    if (!c->io) {
        close(c->fd);
    }
    conn_free(d, c);
}

/* Streams waiting for messages take them now. all: also the ones whose
 * only news is that they end. */
void h2c_direct_resume(conn_t *c, int all) {
    strm_t *s;

    for (s = c->streams; s; s = s->lnext) {
        if (s->kind == STRM_SUB && s->deferred &&
            (all || s->ending || s->out_off < s->out_len ||
             h2c_follow_pending(&s->follow))) {
            s->deferred = 0;
            nghttp2_session_resume_data(c->ngh, s->id); /* calls nothing back */
        }
    }
}

/* nghttp2's memory for an io (TLS) connection's session. Its one big block,
 * the 16 KiB buffer it makes frames in, is mapped on its own: only the pages
 * frames were written to are resident (the loop's DATA frames are at most
 * H2C_DIRECT_DATA_MAX), where from malloc it came out of the loop thread's
 * arena, whose pages TLS records (OpenSSL's buffers) have all been through:
 * resident whole, for the connection's life. Every block says how it came;
 * a failed mapping falls back to malloc. h2c sessions keep malloc. */
#define H2C_DIRECT_MAP_MIN (8 * 1024)

typedef struct {
    size_t len;
    size_t mapped;
} mem_hdr_t; /* 16 bytes: malloc's alignment is kept */

static void *mem_get(size_t n, int zero) {
    mem_hdr_t *h = MAP_FAILED;

    if (n > SIZE_MAX / 2) {
        return NULL;
    }
    if (n >= H2C_DIRECT_MAP_MIN) {
        h = mmap(NULL, n + sizeof(*h), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (h != MAP_FAILED) {
        h->mapped = 1; /* zeros already */
    } else if ((h = zero ? calloc(1, n + sizeof(*h)) : malloc(n + sizeof(*h)))) {
        h->mapped = 0;
    } else {
        return NULL;
    }
    h->len = n;
    return h + 1;
}

static void mem_free(void *p, void *u) {
    mem_hdr_t *h;

    (void)u;
    if (!p) {
        return;
    }
    h = (mem_hdr_t *)p - 1;
    if (h->mapped) {
        munmap(h, h->len + sizeof(*h));
    } else {
        free(h);
    }
}

static void *mem_malloc(size_t n, void *u) {
    (void)u;
    return mem_get(n, 0);
}

static void *mem_calloc(size_t nmemb, size_t size, void *u) {
    (void)u;
    return size && nmemb > SIZE_MAX / size ? NULL : mem_get(nmemb * size, 1);
}

static void *mem_realloc(void *p, size_t n, void *u) {
    mem_hdr_t *h;
    void *q;

    if (!p) {
        return mem_get(n, 0);
    }
    h = (mem_hdr_t *)p - 1;
    if (!h->mapped && n < H2C_DIRECT_MAP_MIN) {
        if (!(h = realloc(h, n + sizeof(*h)))) {
            return NULL;
        }
        h->len = n;
        return h + 1;
    }
    if (!(q = mem_get(n, 0))) {
        return NULL;
    }
    memcpy(q, p, h->len < n ? h->len : n);
    mem_free(p, u);
    return q;
}

static nghttp2_mem io_mem = {NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};

/* 0 if the connection could not be set up (it is closed then). */
static int conn_start(h2c_direct_t *d, conn_t *c) {
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2C_DIRECT_MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->site->limits.max_list_bytes},
    };
    nghttp2_session *ngh = NULL;
    struct epoll_event ev;
    const char *why = NULL;

    c->d = d;
    c->active = d->now_us;
    h2c_direct_guard_start(c);
    c->check_due = d->now_us + H2C_DIRECT_LOOK_US;
    c->next = d->conns;
    if (d->conns) {
        d->conns->prev = c;
    }
    d->conns = c; /* counted since h2c_direct_add */
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    if ((c->io ? nghttp2_session_server_new3(&ngh, d->cbs, c, d->opt, &io_mem)
               : nghttp2_session_server_new2(&ngh, d->cbs, c, d->opt)) != 0) {
        why = "no memory for an HTTP/2 session";
    } else if (c->ngh = ngh, epoll_ctl(d->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        why = strerror(errno);
    }
    if (why) {
        h2c_log(H2C_LOG_ERR, H2C_TAG_DIRECT_CONN,
                "connection from %s could not be taken: %s", c->peer, why);
        conn_close(c);
        return 0;
    }
    nghttp2_submit_settings(c->ngh, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (c->prelen &&
        nghttp2_session_mem_recv(c->ngh, (const uint8_t *)c->pre, c->prelen) < 0) {
        c->closing = 1;
    }
    free(c->pre);
    c->pre = NULL;
    /* the rest waits for its turn in the loop (epoll is level-triggered):
     * read here, a burst of new connections would all be read before any
     * news is delivered. An io connection's first bytes may sit in its
     * buffers already (read with the TLS handshake): epoll would not tell. */
    if (c->io) {
        h2c_direct_more_add(c);
    }
    return 1;
}

/* Says goodbye: held streams end (their clients resume elsewhere with
 * Last-Event-ID; with `hint`, after their reconnect hint), GOAWAY, and what
 * the socket takes now goes. */
static void conn_goodbye(conn_t *c, int hint) {
    strm_t *s;

    if (c->ngh && !c->closing && !c->goaway) {
        for (s = c->streams; s; s = s->lnext) {
            if (s->kind == STRM_SUB) {
                if (hint) {
                    h2c_direct_hint(s);
                }
                s->ending = 1;
            }
        }
        h2c_direct_resume(c, 1);
        nghttp2_submit_goaway(c->ngh, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->ngh),
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2c_direct_send(c);
    }
}

/* Ends the connection politely: goodbye, then FIN. */
static void conn_finish(conn_t *c) {
    conn_goodbye(c, 0);
    conn_close(c);
}

/* After goodbye: every held stream's last bytes and END_STREAM went out,
 * and nothing waits for the socket (or nothing can go any more). */
static int conn_drained(const conn_t *c) {
    const strm_t *s;

    if (c->closing) {
        return 1;
    }
    if (c->pend_off < c->pend_len || nghttp2_session_want_write(c->ngh)) {
        return 0;
    }
    for (s = c->streams; s; s = s->lnext) {
        if (s->kind == STRM_SUB) {
            return 0; /* its window is shut: a WINDOW_UPDATE may still come */
        }
    }
    return 1;
}

/* A stream with something to send that moved nothing for `timeout` (the
 * client's window keeps it back), or a request that never completes: it
 * holds a subscriber slot and memory, so it is reset. */
static int stream_stuck(conn_t *c, strm_t *s) {
    h2c_direct_t *d = c->d;

    /* a connection whose socket is full is the send-queue look's business:
     * a slow reader that still takes bytes is left alone */
    if (!h2c_direct_has_pending(s) || c->pend_off < c->pend_len) {
        s->pending_since = 0;
        return 0;
    }
    if (!s->pending_since) {
        s->pending_since = d->now_us;
    }
    return d->now_us - (s->progress > s->pending_since ? s->progress : s->pending_since) >
           c->site->timeout_us;
}

static void drop_stalled(conn_t *c, uint32_t queued) {
    h2c_direct_t *d = c->d;

    h2c_seg_count_stalled(d->env.seg);
    h2c_log(H2C_LOG_INFO, H2C_TAG_STALLED,
            "connection dropped: client %s acknowledged nothing for %" APR_INT64_T_FMT
            " s with %u bytes waiting (direct)",
            c->peer, (d->now_us - c->stall.since) / 1000000, queued);
    conn_close(c);
}

/* Once a second per connection: heartbeats due, stuck streams; every 2 s a
 * look at the send queue (a reader that stopped) and at idleness. */
static void conn_tick(conn_t *c) {
    h2c_direct_t *d = c->d;
    strm_t *s, *nx;
    uint32_t queued;
    uint64_t acked;

    for (s = c->streams; s; s = nx) {
        nx = s->lnext;
        if (stream_stuck(c, s)) {
            h2c_seg_count_stalled(d->env.seg);
            h2c_log(H2C_LOG_INFO, H2C_TAG_STALLED,
                    "stream %d of client %s reset: nothing of it moved for "
                    "%" APR_INT64_T_FMT " s (direct)",
                    s->id, c->peer, c->site->timeout_us / 1000000);
            s->pending_since = 0;
            s->progress = d->now_us; /* once: the reset goes out now */
            nghttp2_submit_rst_stream(c->ngh, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        } else if (s->kind == STRM_SUB && s->deferred &&
                   (h2c_direct_presence(s) || d->now_us >= s->heartbeat_due)) {
            if (d->now_us >= s->heartbeat_due && s->out_off >= s->out_len) {
                h2c_direct_heartbeat(s);
            }
            s->deferred = 0;
            nghttp2_session_resume_data(c->ngh, s->id);
        }
    }
    if (c->goaway && d->now_us - c->goaway_at > H2C_DIRECT_GOAWAY_US) {
        conn_close(c); /* its GOAWAY had its chance; the peer does not read */
        return;
    }
    if (d->now_us >= c->check_due) {
        c->check_due = d->now_us + H2C_DIRECT_LOOK_US;
        if (h2c_sock_queue(c->fd, &queued, &acked) == 0 &&
            h2c_stall_update(&c->stall, queued, acked, d->now_us, c->site->timeout_us)) {
            drop_stalled(c, queued);
            return;
        }
        if (!c->streams && d->now_us - c->active > c->site->timeout_us) {
            conn_finish(c); /* idle, nothing held: as KeepAliveTimeout */
            return;
        }
    }
    h2c_direct_send(c);
    if (c->closing) {
        conn_close(c);
    }
}

static void tick(h2c_direct_t *d) {
    conn_t *c, *nx;

    for (c = d->conns; c; c = nx) {
        nx = c->next;
        conn_tick(c);
    }
}

static void deliver(h2c_direct_t *d);

static void take_queue(h2c_direct_t *d) {
    conn_t *q, *c;

    apr_thread_mutex_lock(d->lock);
    q = d->queue;
    d->queue = NULL;
    apr_thread_mutex_unlock(d->lock);
    while ((c = q)) {
        q = c->q_next;
        c->q_next = NULL;
        if (h2c_direct_refuse_penalized(d, c)) {
            continue;
        }
        if (conn_start(d, c)) {
            h2c_direct_send(c);
            if (c->closing) {
                conn_close(c);
            }
        }
        deliver(d);
    }
}

/* Answers for the publishes the publisher thread finished. */
static void take_published(h2c_direct_t *d) {
    job_t *done, *job;

    apr_thread_mutex_lock(d->lock);
    done = d->jobs_out;
    d->jobs_out = NULL;
    apr_thread_mutex_unlock(d->lock);
    while ((job = done)) {
        conn_t *c = job->s ? job->s->c : NULL;

        done = job->next;
        h2c_direct_published(d, job);
        if (c) {
            h2c_direct_send(c);
            if (c->closing) {
                conn_close(c);
            }
        }
    }
}

/* A pass over every connection, only when the rooms have news: the bell
 * also rings for new connections and finished publishes. */
static void deliver(h2c_direct_t *d) {
    uint64_t last = h2c_rooms_last_id(d->rooms);
    uint32_t presence = h2c_rooms_presence_seq(d->rooms);
    int counts = presence != d->presence_seen;
    conn_t *c, *nx;
    strm_t *s;

    if (last == d->delivered && !counts) {
        return;
    }
    d->delivered = last;
    d->presence_seen = presence;
    for (c = d->conns; c; c = nx) {
        uint64_t data_out0 = c->data_out;

        nx = c->next;
        if (c->pend_off < c->pend_len) {
            continue; /* still draining: its streams catch up when it has */
        }
        for (s = counts ? c->streams : NULL; s; s = s->lnext) {
            h2c_direct_presence(s); /* a count changed: lines for who may look */
        }
        h2c_direct_resume(c, 0);
        h2c_direct_send(c);
        h2c_direct_sample_latency(c, data_out0);
        if (c->closing) {
            conn_close(c);
        }
    }
}

static int on_bell(h2c_direct_t *d) {
    uint64_t v;
    ssize_t r = read(d->evfd, &v, sizeof(v));
    int stop;

    (void)r;
    apr_thread_mutex_lock(d->lock);
    stop = d->stop;
    apr_thread_mutex_unlock(d->lock);
    take_queue(d);
    take_published(d);
    deliver(d);
    return stop;
}

static void on_event(conn_t *c, uint32_t events);

/* Connections whose buffers may hold bytes epoll does not see (before the
 * pass's reap: a connection closed meanwhile is still there, dead). */
static void read_more(h2c_direct_t *d) {
    conn_t *c = d->more, *nx;

    d->more = NULL;
    for (; c; c = nx) {
        nx = c->more_next;
        c->more = 0;
        if (!c->dead) {
            on_event(c, EPOLLIN);
        }
    }
}

static void on_event(conn_t *c, uint32_t events) {
    uint64_t data_out0 = c->data_out;

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        h2c_direct_recv(c);
    }
    h2c_direct_send(c);
    h2c_direct_sample_latency(c, data_out0); /* a backlog that drained, a window opened */
    if (c->closing) {
        conn_close(c);
    }
}

/* The Date header of every answer (RFC 9110 6.6.1), made once a second. */
static void update_date(h2c_direct_t *d) {
    apr_time_t now = apr_time_now();

    if (apr_time_sec(now) != d->date_sec) {
        d->date_sec = apr_time_sec(now);
        apr_rfc822_date(d->date, now);
    }
}

/* The loop stops: every connection says goodbye (each held stream's hint,
 * END_STREAM, GOAWAY). Those whose socket took it all close now; the others
 * are served (reads, EPOLLOUT) until they have, or H2C_DIRECT_DRAIN_US. */
static void drain(h2c_direct_t *d) {
    struct epoll_event evs[256];
    int64_t until = mono_us() + H2C_DIRECT_DRAIN_US;
    conn_t *c, *nx;
    uint64_t v;
    int i, n;

    d->now_us = mono_us();
    for (c = d->conns; c; c = nx) {
        nx = c->next;
        conn_goodbye(c, 1);
        apr_pool_clear(d->scratch); /* the hints' JSON is in the streams' buffers */
        if (conn_drained(c)) {
            conn_close(c);
        }
    }
    conn_reap(d);
    while (d->conns && (d->now_us = mono_us()) < until) {
        n = epoll_wait(d->ep, evs, 256,
                       d->more ? 0 : (int)((until - d->now_us) / 1000) + 1);
        d->now_us = mono_us();
        for (i = 0; i < n; i++) {
            if (!(c = evs[i].data.ptr)) {
                ssize_t r = read(d->evfd, &v, sizeof(v)); /* the bell: nothing to do */

                (void)r;
            } else if (!c->dead) {
                on_event(c, evs[i].events);
                if (!c->dead && conn_drained(c)) {
                    conn_close(c);
                }
            }
        }
        read_more(d);
        conn_reap(d);
    }
}

void h2c_direct_run(h2c_direct_t *d) {
    struct epoll_event evs[256];
    int64_t tick_due = mono_us() + H2C_DIRECT_TICK_MS * 1000;
    int stop = 0, i, n;

    while (!stop) {
        n = epoll_wait(d->ep, evs, 256, d->more ? 0 : H2C_DIRECT_TICK_MS);
        d->now_us = mono_us();
        apr_pool_clear(d->scratch);
        update_date(d);
        for (i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;

            if (!c) {
                stop = on_bell(d);
            } else if (!c->dead) {
                on_event(c, evs[i].events);
                /* news first: a message published while the loop works
                 * through busy connections waits for one of them at
                 * most, not for all of them (the bell may be last) */
                deliver(d);
            }
        }
        read_more(d);
        if (d->now_us >= tick_due) {
            tick_due = d->now_us + H2C_DIRECT_TICK_MS * 1000;
            tick(d);
            reap_late(d, 0);
        }
        conn_reap(d);
    }
    drain(d);
    while (d->conns) {
        conn_close(d->conns); /* what did not drain in time */
    }
    take_queue(d); /* handed over while stopping: closed at once */
    while (d->conns) {
        conn_close(d->conns);
    }
    conn_reap(d);
    h2c_direct_check_stop(d);
    take_published(d); /* the checks' last answers: their connections let go */
    reap_late(d, 1);
}

/* ---- one connection driven by hand (fuzz/fuzz_direct.c) --------------- */

conn_t *h2c_direct_conn_open(h2c_direct_t *d, int fd, const h2c_direct_site_t *site) {
    conn_t *c = calloc(1, sizeof(*c));

    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->site = site;
    apr_cpystrn(c->peer, "127.0.0.1", sizeof(c->peer));
    h2c_seg_direct_count(d->env.seg, d->env.child_slot, 1, 0); /* as h2c_direct_add */
    if (!conn_start(d, c)) {
        conn_reap(d);
        return NULL;
    }
    return c;
}

int h2c_direct_conn_input(conn_t *c, const uint8_t *data, apr_size_t len) {
    ssize_t rv;

    if (!c->dead && !c->goaway) {
        c->active = c->d->now_us;
        if ((rv = nghttp2_session_mem_recv(c->ngh, data, len)) < 0) {
            h2c_direct_recv_failed(c, rv);
        } else {
            h2c_direct_fed(c, len);
        }
        h2c_direct_send(c);
        if (c->closing) {
            conn_close(c);
        }
    }
    return !c->dead;
}

void h2c_direct_settle(h2c_direct_t *d, int64_t later_us) {
    int busy = 1;

    while (busy) { /* the publisher finishes what it was given */
        apr_thread_mutex_lock(d->lock);
        busy = d->jobs_in || d->publishing;
        apr_thread_mutex_unlock(d->lock);
        if (busy) {
            apr_thread_yield();
        }
    }
    take_published(d);
    deliver(d);
    d->now_us += later_us;
    tick(d);
    apr_pool_clear(d->scratch); /* as each pass of the loop does */
}

void h2c_direct_conn_end(h2c_direct_t *d, conn_t *c) {
    if (!c->dead) {
        conn_close(c);
    }
    conn_reap(d);
}

/* ---- the publisher thread --------------------------------------------- */

static void *APR_THREAD_FUNC publisher_main(apr_thread_t *thd, void *data) {
    h2c_direct_t *d = data;
    job_t *job;

    (void)thd;
    apr_thread_mutex_lock(d->lock);
    for (;;) {
        while (!d->jobs_in && !d->stop) {
            apr_thread_cond_wait(d->cond, d->lock);
        }
        if (!d->jobs_in) {
            d->publisher_done = 1; /* later jobs run where they are made */
            break;                 /* stopping, nothing left */
        }
        job = d->jobs_in;
        d->jobs_in = job->next;
        if (!d->jobs_in) {
            d->jobs_in_tail = &d->jobs_in;
        }
        d->publishing = 1;
        apr_thread_mutex_unlock(d->lock);
        h2c_direct_job_run(d, job);
        apr_thread_mutex_lock(d->lock);
        d->publishing = 0;
        job->next = d->jobs_out;
        d->jobs_out = job;
        h2c_direct_ring(d);
    }
    apr_thread_mutex_unlock(d->lock);
    return NULL;
}

/* ---- the public calls ------------------------------------------------- */

static void free_jobs(job_t *job) {
    while (job) {
        job_t *next = job->next;

        h2c_direct_job_free(job);
        job = next;
    }
}

void h2c_direct_job_free(job_t *job) {
    free(job->fields), free(job->room), free(job->names), free(job->idx);
    free(job->member), free(job->aux);
    free(job->pass.user), free(job->pass.client), free(job->pass.headers);
    free(job->pass.body);
    free(job);
}

void h2c_direct_job_run(h2c_direct_t *d, job_t *job) {
    switch (job->kind) {
    case JOB_PUBLISH:
        job->rv = h2c_store_publish(d->env.store, job->room, job->fields, job->flen,
                                    &job->id, &job->time_ms);
        break;
    case JOB_HOLD:
        job->rv = h2c_store_hold(d->env.store, d->env.child_slot, job->names, job->n,
                                 job->member, job->idx, job->aux);
        break;
    case JOB_RELEASE:
        h2c_store_release(d->env.store, d->env.child_slot, job->idx, job->aux, job->n);
        job->rv = APR_SUCCESS;
        break;
    case JOB_COUNTS:
        job->rv = h2c_store_counts(d->env.store, job->names, job->n, job->idx, job->aux);
        break;
    case JOB_MODERATE:
        job->rv = h2c_store_moderate(d->env.store, job->room, job->mkind, job->target,
                                     job->fields, job->flen, &job->id, &job->time_ms);
        break;
    case JOB_CHECK:
    case JOB_LOG:
        break; /* the check threads' (h2c_direct_check.c) */
    }
}

static apr_status_t direct_cleanup(void *data) {
    h2c_direct_t *d = data;
    apr_status_t rv;
    conn_t *c;

    h2c_direct_stop(d);
    if (d->publisher) {
        apr_thread_join(&rv, d->publisher);
        d->publisher = NULL;
    }
    /* the process ends: whatever the loop left is released now */
    while ((c = d->queue) || (c = d->late)) {
        *(c == d->queue ? &d->queue : &d->late) = c->q_next;
        c->release_at = 0;
        c->checking = 0; /* the check threads are gone */
        h2c_direct_conn_drop(d, c);
    }
    free_jobs(d->jobs_in);
    free_jobs(d->jobs_out);
    nghttp2_session_callbacks_del(d->cbs);
    nghttp2_option_del(d->opt);
    close(d->ep);
    close(d->evfd);
    return APR_SUCCESS;
}

apr_status_t h2c_direct_create(h2c_direct_t **dp, apr_pool_t *p,
                               const h2c_direct_env_t *env) {
    h2c_direct_t *d = apr_pcalloc(p, sizeof(*d));
    struct epoll_event ev;
    apr_status_t rv;

    d->env = *env;
    d->rooms = h2c_store_history(env->store);
    d->penalty = env->penalty_us > 0 ? h2c_seg_penalty(env->seg) : NULL;
    d->jobs_in_tail = &d->jobs_in;
    d->ep = epoll_create1(EPOLL_CLOEXEC);
    d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->ep < 0 || d->evfd < 0) {
        rv = APR_FROM_OS_ERROR(errno);
        if (d->ep >= 0) {
            close(d->ep);
        }
        if (d->evfd >= 0) {
            close(d->evfd);
        }
        return rv;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epoll_ctl(d->ep, EPOLL_CTL_ADD, d->evfd, &ev) != 0 ||
        nghttp2_session_callbacks_new(&d->cbs) != 0 || nghttp2_option_new(&d->opt) != 0) {
        rv = errno ? APR_FROM_OS_ERROR(errno) : APR_ENOMEM;
        nghttp2_session_callbacks_del(d->cbs);
        close(d->ep);
        close(d->evfd);
        return rv;
    }
    h2c_direct_callbacks(d->cbs);
    h2c_direct_guard_callbacks(d->cbs);
    /* No HPACK dynamic table for our answers: a connection holds one
     * stream for hours, so indexing its few headers saves a handful of
     * bytes once, while the table stays in memory for the connection's
     * life. (The client's table, for its requests, stays as HTTP/2's
     * default: a client that ignored a smaller one would fail with
     * COMPRESSION_ERROR, not with the loop's own limits.) */
    nghttp2_option_set_max_deflate_dynamic_table_size(d->opt, 0);
    if ((rv = apr_thread_mutex_create(&d->lock, APR_THREAD_MUTEX_DEFAULT, p)) !=
            APR_SUCCESS ||
        (rv = apr_thread_cond_create(&d->cond, p)) != APR_SUCCESS ||
        (rv = apr_pool_create(&d->scratch, p)) != APR_SUCCESS) {
        nghttp2_session_callbacks_del(d->cbs);
        nghttp2_option_del(d->opt);
        close(d->ep);
        close(d->evfd);
        return rv;
    }
    apr_pool_cleanup_register(p, d, direct_cleanup, apr_pool_cleanup_null);
    if ((rv = apr_thread_create(&d->publisher, NULL, publisher_main, d, p)) !=
        APR_SUCCESS) {
        return rv; /* the cleanup frees the rest with the pool */
    }
    if ((rv = h2c_direct_check_start(d, p)) != APR_SUCCESS) {
        return rv;
    }
    d->now_us = mono_us();
    update_date(d);
    d->delivered = h2c_rooms_last_id(d->rooms);
    *dp = d;
    return APR_SUCCESS;
}

apr_status_t h2c_direct_add(h2c_direct_t *d, int fd, const char *peer,
                            const h2c_direct_site_t *site, const char *pre,
                            apr_size_t prelen, int counted, const h2c_direct_io_t *chk,
                            void *chk_ctx) {
    conn_t *c = calloc(1, sizeof(*c));
    int stopped;

    if (!c || !(c->pre = malloc(prelen ? prelen : 1))) {
        free(c);
        if (chk && chk->release) {
            chk->release(chk_ctx);
        }
        close(fd);
        if (counted) {
            h2c_seg_direct_count(d->env.seg, d->env.child_slot, -1, 0);
        }
        return APR_ENOMEM;
    }
    c->fd = fd;
    c->site = site;
    c->chk = chk; /* without check threads, its requests get 503 */
    c->chk_ctx = chk_ctx;
    apr_cpystrn(c->peer, peer ? peer : "-", sizeof(c->peer));
    if (prelen) {
        memcpy(c->pre, pre, prelen);
    }
    c->prelen = prelen;
    apr_thread_mutex_lock(d->lock);
    stopped = d->stop;
    if (!stopped) {
        c->q_next = d->queue;
        d->queue = c;
        /* counted from here, not when the loop gets to it: the children
         * choose where to hand new connections by these counts
         * (h2c_balance), and a busy loop may take a while */
        if (!counted) {
            h2c_seg_direct_count(d->env.seg, d->env.child_slot, 1, 0);
        }
    }
    apr_thread_mutex_unlock(d->lock);
    if (stopped) {
        if (counted) {
            h2c_seg_direct_count(d->env.seg, d->env.child_slot, -1, 0);
        }
        close(fd);
        chk_release(c);
        free(c->pre);
        free(c);
        return APR_EOF;
    }
    h2c_direct_ring(d);
    return APR_SUCCESS;
}

apr_status_t h2c_direct_add_io(h2c_direct_t *d, int fd, const char *peer,
                               const h2c_direct_site_t *site, const h2c_direct_io_t *io,
                               void *ctx) {
    conn_t *c = calloc(1, sizeof(*c));

    if (!c) {
        return APR_ENOMEM;
    }
    c->fd = fd;
    c->site = site;
    c->io = io;
    c->io_ctx = ctx;
    c->chk = io->check ? io : NULL;
    c->chk_ctx = ctx;
    c->release_at = mono_us() + io->min_life_us;
    apr_cpystrn(c->peer, peer ? peer : "-", sizeof(c->peer));
    /* queued even when stopping: the loop's last take_queue closes it
     * (the glue hands over none after h2c_direct_stop) */
    apr_thread_mutex_lock(d->lock);
    c->q_next = d->queue;
    d->queue = c;
    h2c_seg_direct_count(d->env.seg, d->env.child_slot, 1, 0);
    apr_thread_mutex_unlock(d->lock);
    h2c_direct_ring(d);
    return APR_SUCCESS;
}

void h2c_direct_wake(h2c_direct_t *d) {
    h2c_direct_ring(d);
}

void h2c_direct_stop(h2c_direct_t *d) {
    apr_thread_mutex_lock(d->lock);
    d->stop = 1;
    apr_thread_cond_broadcast(d->cond);
    apr_thread_mutex_unlock(d->lock);
    h2c_direct_ring(d);
}
