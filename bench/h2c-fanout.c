/*
 * h2c-fanout: fan-out load client for held-open HTTP chat / pub-sub servers.
 *
 * One single-threaded epoll process opens N subscribers (GET, held open) over
 * h2 (TLS, ALPN), h2c (prior knowledge) or HTTP/1.1, waits until they are all
 * answered, publishes K messages from its own connection at a fixed rate and
 * measures, per subscriber, which messages arrived, how late, twice or out of
 * order.  Optionally samples the server's process tree from /proc.  With
 * --resume, subscribers come back after their stream ends (Last-Event-ID), to
 * measure restarts; with --bind, --wait-go and --subscribe-only, several
 * processes share one run (bench/fanout-multi.py).
 *
 * Build: cc -O2 -Wall -Wextra -Werror -o bench/h2c-fanout bench/h2c-fanout.c \
 *           -lnghttp2 -lssl -lcrypto -lm
 * See bench/README.md for options and output fields.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_HEADERS 16
#define MAX_PIDS 4           /* --pid roots: a server and its helpers (e.g. its Redis) */
#define PEND_MAX (4u << 20)  /* bound on one unfinished object / line */
#define OUT_HIGH (64u << 10) /* stop pulling from nghttp2 above this */
#define H1_LINE_MAX 16384
#define H2_WINDOW (1 << 20)

enum proto { P_H2, P_H1 };
enum cstate { CS_CONNECTING, CS_TLS, CS_ACTIVE };
/* SUB_AWAY: --resume, its stream ended, waiting to reconnect (a reconnect
 * awaiting its answer is SUB_PENDING with ever_ready set) */
enum sstate { SUB_PENDING, SUB_READY, SUB_FAILED, SUB_CLOSED, SUB_AWAY };
/* a POST: not sent yet, awaiting its answer, answered (or given up), to
 * be sent again (--resume: no answer, or 503/429) */
enum mstate { M_NEW, M_SENT, M_DONE, M_RETRY };
enum fmt { FMT_JSON, FMT_SSE };
/* PH_WAIT: --wait-go, all resolved, waiting for SIGUSR1 */
enum phase { PH_CONNECT, PH_WAIT, PH_SETTLE, PH_PUBLISH, PH_DONE };
enum reason { R_CONNECT, R_TLS, R_TIMEOUT, R_EOF, R_ERROR, R_END, R_SHUTDOWN };
enum h1st {
    H1_STATUS,
    H1_HEADERS,
    H1_BODY_CL,
    H1_CHUNK_SIZE,
    H1_CHUNK_DATA,
    H1_CHUNK_CRLF,
    H1_TRAILERS,
    H1_BODY_EOF
};

struct buf {
    char *p;
    size_t len, cap;
};

struct target {
    bool tls;
    char host[300];
    char authority[300];
    char path[2048];
    struct sockaddr_storage sa;
    socklen_t salen;
};

typedef struct conn conn_t;

typedef struct sub {
    conn_t *c; /* NULL while away */
    int32_t stream_id;
    uint8_t state, fmt, in_str, esc;
    bool ever_ready; /* got a 200 once: a new request is a resume */
    int32_t depth;
    int32_t max_seq;
    uint32_t got;
    int status;
    int32_t hint_ms;      /* reconnect delay the server hinted on this stream, -1 none */
    uint32_t retry_after; /* seconds, from a refused answer */
    int64_t last_id;      /* id of the last message received, -1 none */
    int64_t ev_id;        /* SSE: id of the event being read, -1 none */
    int64_t due;          /* away: when to reconnect (mono_us) */
    struct buf pend;      /* unfinished JSON object or SSE line */
    struct buf ev;        /* SSE: data of the event being read */
    uint8_t *seen;        /* bitmap of seqs seen, kept across reconnects */
} sub_t;

typedef struct pubmsg {
    char body[96];
    uint16_t len, off;
    uint8_t st;
    int status;
    uint32_t retry_after;
    int64_t due; /* M_RETRY: when to send again */
} pubmsg_t;

struct conn {
    int fd;
    uint8_t state, proto;
    bool tls, is_pub, ssl_want_write, counted_pending, goaway;
    int idx; /* slot in conns[] */
    uint32_t evmask;
    SSL *ssl;
    nghttp2_session *h2;
    const struct target *t;
    struct buf out;
    size_t ooff;
    sub_t **subs; /* those whose s->c is this one are still on it */
    int nsubs, npending, nready, nopen;
    int64_t t_open;
    /* HTTP/1.1 response parser */
    uint8_t h1st;
    bool h1chunked, h1close, h1cl, h1sse;
    int h1status;
    uint32_t h1retry; /* Retry-After, seconds */
    int64_t h1left;
    struct buf line;
    long pub_seq; /* h1 publisher: seq awaiting its response, -1 if none */
};

static struct opts {
    const char *url, *pub_url;
    int proto, pub_proto;
    long n, k;
    double rate, timeout, connect_rate, flt, settle, drain;
    bool sse, json_only, sub_only, wait_go, resume;
    double reconnect_ms, jitter_ms, sample_ms;
    const char *lat_out;
    struct sockaddr_storage bind_sa; /* --bind: ss_family 0 when none */
    socklen_t bind_len;
    long pid; /* the first --pid: 0 when none */
    long pids[MAX_PIDS];
    int npids;
    int spc, max_pending;
    const char *headers[MAX_HEADERS];
    int nheaders;
} O = {
    .proto = -1,
    .pub_proto = -1,
    .n = 100,
    .k = 5,
    .rate = 10,
    .timeout = 60,
    .connect_rate = 2000,
    .flt = 10,
    .settle = 0.2,
    .drain = 0,
    .spc = 1,
    .max_pending = 500,
};

static struct stats {
    long conns, ready, fail_connect, fail_tls, fail_status, status_503, fail_timeout,
        fail_reset, closed, conn_closed, goaways, live_incomplete, delivered, dups, ooo,
        ignored, overflow, published, pub_done;
    /* --resume */
    long reconnects, resubscribed, refused, refused_503, refused_429, reconnect_errors,
        hints, away, fail_resume, pub_retries, pub_timeouts, gaps, republished;
    int64_t t_first_end, t_all_back; /* mono_us: first stream end, last time all back */
    int64_t conn_err_first;
} S;

struct procstat {
    int nprocs;
    long rss_kib, pss_kib, threads;
    double cpu_s;   /* utime+stime of the processes, clock-tick resolution */
    double sched_s; /* on-CPU time of their live threads, ns resolution */
};

static struct target T, PT;
static SSL_CTX *ctx_h2, *ctx_h1;
static int epfd;
static sub_t *subs;
static conn_t **conns; /* slots: initial and reconnect connections */
static long nslots, capslots, *freeslots, nfree;
static long nconns, next_conn, pending_conns;
static uint32_t *awayq; /* min-heap of away subscribers by due time */
static long nawayq;
static long *retryq; /* seqs of POSTs to send again */
static long nretryq;
static int64_t pub_progress; /* mono_us: the last POST answer, or a first one sent */
static sub_t **scratch;      /* --streams-per-conn subscribers for conn_open */
static conn_t *pub;
static pubmsg_t *msgs;
static long next_seq;
static int phase = PH_CONNECT;
static int64_t run_start_us; /* CLOCK_REALTIME at start: older texts are stale */
static uint32_t *lat;
static size_t nlat, caplat;
static bool tty;
static int64_t t_last_rx; /* mono_us of the last counted delivery */
static int64_t *seq_id;   /* the server's id of the first message seen per seq */
static int sigfd = -1;    /* --wait-go: SIGUSR1 arrives here */
static bool go;           /* --wait-go: SIGUSR1 received */

/* ---------- small helpers ---------- */

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t real_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "h2c-fanout: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        die("%s", "out of memory");
    return p;
}

static int buf_add(struct buf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np)
            return -1;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    return 0;
}

static void buf_free(struct buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---------- URL ---------- */

static bool is_loopback(const struct sockaddr_storage *sa) {
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
    }
    return false;
}

/* Parses http(s)://host[:port]/path; host must be a loopback literal or
 * "localhost" (no DNS: all traffic stays on this machine). */
static void parse_url(const char *url, struct target *t) {
    const char *p;
    if (!strncmp(url, "http://", 7)) {
        t->tls = false;
        p = url + 7;
    } else if (!strncmp(url, "https://", 8)) {
        t->tls = true;
        p = url + 8;
    } else {
        die("URL must start with http:// or https://: %s", url);
    }
    const char *slash = strchr(p, '/');
    size_t alen = slash ? (size_t)(slash - p) : strlen(p);
    if (alen == 0 || alen >= sizeof(t->host))
        die("bad host in URL: %s", url);
    memcpy(t->authority, p, alen);
    t->authority[alen] = 0;
    snprintf(t->path, sizeof(t->path), "%s", slash ? slash : "/");

    char hostport[300];
    snprintf(hostport, sizeof(hostport), "%s", t->authority);
    char *port = NULL, *h = hostport;
    if (h[0] == '[') {
        char *rb = strchr(h, ']');
        if (!rb)
            die("bad IPv6 host in URL: %s", url);
        *rb = 0;
        h++;
        if (rb[1] == ':')
            port = rb + 2;
    } else if ((port = strchr(h, ':'))) {
        *port++ = 0;
    }
    snprintf(t->host, sizeof(t->host), "%s", h);
    long pn = port ? strtol(port, NULL, 10) : (t->tls ? 443 : 80);
    if (pn <= 0 || pn > 65535)
        die("bad port in URL: %s", url);

    memset(&t->sa, 0, sizeof(t->sa));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&t->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->sa;
    const char *lit = strcmp(t->host, "localhost") ? t->host : "127.0.0.1";
    if (inet_pton(AF_INET, lit, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)pn);
        t->salen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, lit, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)pn);
        t->salen = sizeof(*s6);
    } else {
        die("host must be a loopback address literal or localhost: %s", url);
    }
    if (!is_loopback(&t->sa))
        die("refusing non-loopback host: %s", url);
}

/* ---------- delivery accounting ---------- */

static void lat_push(int64_t us) {
    if (nlat == caplat) {
        size_t nc = caplat ? caplat * 2 : 65536;
        uint32_t *np = realloc(lat, nc * sizeof(*lat));
        if (!np)
            return;
        lat = np;
        caplat = nc;
    }
    if (us < 0)
        us = 0;
    if (us > UINT32_MAX)
        us = UINT32_MAX;
    lat[nlat++] = (uint32_t)us;
}

/* doc: the text was found in a whole-history document (seed format), where
 * repeats are expected and order is the server's history order. id: the
 * server's message id, -1 if the format has none. */
static void deliver(sub_t *s, long seq, int64_t send_us, bool doc, int64_t id,
                    int64_t now) {
    if (seq < 0 || seq >= O.k || send_us < run_start_us) {
        if (!doc) /* history documents repeat old texts on every write */
            S.ignored++;
        return;
    }
    uint8_t bit = (uint8_t)(1u << (seq & 7));
    uint8_t *b = &s->seen[seq >> 3];
    if (*b & bit) {
        /* a second message with this text (the publisher sent it again
         * after an answer got lost: the server holds it twice) is not the
         * server repeating one message */
        if (!doc && id >= 0 && seq_id[seq] >= 0 && id != seq_id[seq])
            S.republished++;
        else if (!doc)
            S.dups++;
        return;
    }
    *b |= bit;
    if (id >= 0 && seq_id[seq] < 0)
        seq_id[seq] = id;
    s->got++;
    S.delivered++;
    if (!doc) {
        if (s->max_seq > seq)
            S.ooo++;
        else
            s->max_seq = (int32_t)seq;
    }
    lat_push(now - send_us);
    t_last_rx = mono_us();
    if (s->got == (uint32_t)O.k && s->state == SUB_READY)
        S.live_incomplete--;
}

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* Returns the start of the value of "key" (after the colon) or NULL.  Not a
 * JSON parser: good enough for flat objects whose strings carry no quotes. */
static const char *find_key(const char *p, const char *e, const char *key, size_t klen) {
    const char *start = p;
    while (p < e) {
        const char *q = memmem(p, (size_t)(e - p), key, klen);
        if (!q)
            return NULL;
        p = q + klen;
        if (q > start && q[-1] == '\\')
            continue; /* an escaped quote inside a string value */
        const char *r = skip_ws(p, e);
        if (r < e && *r == ':')
            return skip_ws(r + 1, e);
    }
    return NULL;
}

/* Reads "<seq> <send_us>" from the value of the next "text" key. */
static const char *parse_text(const char *p, const char *e, long *seq, int64_t *us) {
    const char *v = find_key(p, e, "\"text\"", 6);
    *seq = -1;
    if (!v)
        return NULL;
    if (v >= e || *v != '"')
        return v;
    v++;
    long sq = 0;
    int64_t u = 0;
    int nd = 0;
    while (v < e && isdigit((unsigned char)*v) && nd < 10)
        sq = sq * 10 + (*v++ - '0'), nd++;
    if (!nd || v >= e || *v != ' ')
        goto bad;
    v++;
    nd = 0;
    while (v < e && isdigit((unsigned char)*v) && nd < 18)
        u = u * 10 + (*v++ - '0'), nd++;
    if (!nd || v >= e || *v != '"')
        goto bad;
    *seq = sq;
    *us = u;
    return v + 1;
bad:
    *seq = -1;
    return v;
}

/* The decimal number at v (a JSON value), or -1. */
static int64_t parse_num(const char *v, const char *e) {
    int64_t x = 0;
    int nd = 0;
    while (v && v < e && isdigit((unsigned char)*v) && nd < 18)
        x = x * 10 + (*v++ - '0'), nd++;
    return nd ? x : -1;
}

static bool type_is(const char *ty, const char *e, const char *name, size_t len) {
    return ty && e - ty >= (ptrdiff_t)len && !memcmp(ty, name, len);
}

/* One complete JSON value: an NDJSON line, an SSE event's data, or a seed
 * history document {"msg":[...]}. */
static void handle_object(sub_t *s, const char *p, size_t n, int64_t now) {
    const char *e = p + n, *q = skip_ws(p, e);
    long seq;
    int64_t us;
    if (q < e && *q == '{')
        q = skip_ws(q + 1, e);
    if (e - q >= 5 && !memcmp(q, "\"msg\"", 5)) {
        while ((q = parse_text(q, e, &seq, &us)))
            if (seq >= 0)
                deliver(s, seq, us, true, -1, now);
        return;
    }
    const char *ty = find_key(p, e, "\"type\"", 6);
    if (type_is(ty, e, "\"reconnect\"", 11)) {
        int64_t ms = parse_num(find_key(p, e, "\"retry\"", 7), e);
        if (ms >= 0)
            s->hint_ms = ms > INT32_MAX ? INT32_MAX : (int32_t)ms;
        return;
    }
    if (type_is(ty, e, "\"gap\"", 5))
        S.gaps++;
    if (ty && !type_is(ty, e, "\"message\"", 9))
        return; /* heartbeat, gap, reset, ... */
    /* the resume point, also of old messages (the snapshot) */
    int64_t id = parse_num(find_key(p, e, "\"id\"", 4), e);
    if (id >= 0)
        s->last_id = id;
    if (parse_text(p, e, &seq, &us) && seq >= 0)
        deliver(s, seq, us, false, id, now);
}

/* Brace-depth scanner: finds complete top-level objects in a byte stream,
 * whether separated by newlines (NDJSON) or simply concatenated (seed). */
static void json_feed(sub_t *s, const char *d, size_t n, int64_t now) {
    size_t start = 0;
    bool here = false; /* current object began in this chunk */
    for (size_t i = 0; i < n; i++) {
        char ch = d[i];
        if (s->depth == 0) {
            if (ch == '{') {
                s->depth = 1;
                s->in_str = s->esc = 0;
                start = i;
                here = true;
            }
            continue;
        }
        if (s->in_str) {
            if (s->esc)
                s->esc = 0;
            else if (ch == '\\')
                s->esc = 1;
            else if (ch == '"')
                s->in_str = 0;
            continue;
        }
        if (ch == '"') {
            s->in_str = 1;
        } else if (ch == '{' || ch == '[') {
            s->depth++;
        } else if ((ch == '}' || ch == ']') && --s->depth == 0) {
            if (here) {
                handle_object(s, d + start, i + 1 - start, now);
            } else {
                if (buf_add(&s->pend, d, i + 1) == 0)
                    handle_object(s, s->pend.p, s->pend.len, now);
                s->pend.len = 0;
            }
            here = false;
        }
    }
    if (s->depth > 0) {
        if (here)
            buf_add(&s->pend, d + start, n - start);
        else
            buf_add(&s->pend, d, n);
        if (s->pend.len > PEND_MAX) {
            S.overflow++;
            s->pend.len = 0;
            s->depth = 0;
        }
    }
}

static void sse_line(sub_t *s, const char *l, size_t n, int64_t now) {
    if (n == 0) {
        if (s->ev_id >= 0)
            s->last_id = s->ev_id;
        s->ev_id = -1;
        if (s->ev.len)
            handle_object(s, s->ev.p, s->ev.len, now);
        s->ev.len = 0;
        return;
    }
    if (l[0] == ':')
        return;
    const char *colon = memchr(l, ':', n);
    size_t flen = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    if (v < l + n && *v == ' ')
        v++;
    if ((flen == 2 && !memcmp(l, "id", 2)) || (flen == 5 && !memcmp(l, "retry", 5))) {
        const char *d = v;
        while (d < l + n && isdigit((unsigned char)*d))
            d++;
        int64_t x = d == l + n ? parse_num(v, d) : -1; /* digits only */
        if (x >= 0) {
            if (flen == 2)
                s->ev_id = x;
            else
                s->hint_ms = x > INT32_MAX ? INT32_MAX : (int32_t)x;
        }
        return;
    }
    if (flen != 4 || memcmp(l, "data", 4))
        return; /* event: */
    if (s->ev.len)
        buf_add(&s->ev, "\n", 1);
    buf_add(&s->ev, v, (size_t)(l + n - v));
    if (s->ev.len > PEND_MAX) {
        S.overflow++;
        s->ev.len = 0;
    }
}

static void sse_feed(sub_t *s, const char *d, size_t n, int64_t now) {
    while (n) {
        const char *nl = memchr(d, '\n', n);
        if (!nl) {
            buf_add(&s->pend, d, n);
            if (s->pend.len > PEND_MAX) {
                S.overflow++;
                s->pend.len = 0;
            }
            return;
        }
        size_t ll = (size_t)(nl - d);
        const char *l = d;
        size_t len = ll;
        if (s->pend.len) {
            buf_add(&s->pend, d, ll);
            l = s->pend.p;
            len = s->pend.len;
        }
        if (len && l[len - 1] == '\r')
            len--;
        sse_line(s, l, len, now);
        s->pend.len = 0;
        d = nl + 1;
        n -= ll + 1;
    }
}

static void feed_body(sub_t *s, const char *d, size_t n) {
    if (s->state != SUB_READY)
        return;
    int64_t now = real_us();
    if (s->fmt == FMT_SSE)
        sse_feed(s, d, n, now);
    else
        json_feed(s, d, n, now);
}

/* ---------- subscriber state ---------- */

static void sub_unpend(sub_t *s) {
    conn_t *c = s->c;
    if (c && --c->npending == 0 && c->counted_pending) {
        c->counted_pending = false;
        pending_conns--;
    }
}

/* --resume: the away subscribers wait in a min-heap by due time */
static void awayq_push(sub_t *s) {
    long i = nawayq++;
    uint32_t x = (uint32_t)(s - subs);
    while (i > 0) {
        long up = (i - 1) / 2;
        if (subs[awayq[up]].due <= s->due)
            break;
        awayq[i] = awayq[up];
        i = up;
    }
    awayq[i] = x;
}

static sub_t *awayq_pop(void) {
    uint32_t top = awayq[0], last = awayq[--nawayq];
    long i = 0;
    for (;;) {
        long l = 2 * i + 1, m = l + 1, k = i;
        int64_t dk = subs[last].due;
        if (l < nawayq && subs[awayq[l]].due < dk)
            k = l, dk = subs[awayq[l]].due;
        if (m < nawayq && subs[awayq[m]].due < dk)
            k = m;
        if (k == i)
            break;
        awayq[i] = awayq[k];
        i = k;
    }
    if (nawayq)
        awayq[i] = last;
    return &subs[top];
}

static int64_t jitter_us(void) {
    return O.jitter_ms > 0 ? (int64_t)(drand48() * O.jitter_ms * 1000.0) : 0;
}

/* Leaves its connection and waits delay_us (plus jitter) to reconnect. */
static void sub_away(sub_t *s, int64_t delay_us) {
    s->state = SUB_AWAY;
    s->c = NULL;
    s->stream_id = 0;
    s->due = mono_us() + delay_us + jitter_us();
    awayq_push(s);
}

/* A resume while the run goes on: the reconnects of a subscriber that was
 * ready once are retried, not failed. */
static bool resuming(const sub_t *s) {
    return O.resume && s->ever_ready && phase != PH_DONE;
}

static void sub_ready(sub_t *s) {
    s->state = SUB_READY;
    if (s->c)
        s->c->nready++;
    sub_unpend(s);
    if (s->ever_ready) {
        S.resubscribed++;
        if (--S.away == 0)
            S.t_all_back = mono_us();
        return;
    }
    s->ever_ready = true;
    S.ready++;
    if (O.k > 0)
        S.live_incomplete++;
}

/* No answer (connect, TLS, reset, header timeout): a failure, or for a
 * reconnect another try in a second. */
static void sub_fail(sub_t *s, long *counter) {
    sub_unpend(s);
    if (resuming(s)) {
        S.reconnect_errors++;
        sub_away(s, 1000000);
        return;
    }
    s->state = SUB_FAILED;
    (*counter)++;
}

/* The stream of a ready subscriber ended. With --resume it comes back
 * after the server's hint, or --reconnect-ms. */
static void sub_closed(sub_t *s) {
    if (s->state != SUB_READY)
        return;
    if (phase == PH_DONE) {
        s->state = SUB_CLOSED;
        return;
    }
    S.closed++;
    if (!O.resume) {
        s->state = SUB_CLOSED;
        if (s->got < (uint32_t)O.k)
            S.live_incomplete--;
        return;
    }
    int64_t now = mono_us(), delay = (int64_t)(O.reconnect_ms * 1000.0);
    if (s->hint_ms >= 0) {
        S.hints++;
        delay = (int64_t)s->hint_ms * 1000;
    }
    if (!S.t_first_end)
        S.t_first_end = now;
    S.away++;
    sub_away(s, delay);
}

static void sub_check_status(sub_t *s) {
    if (s->status == 200) {
        sub_ready(s);
    } else if (resuming(s)) {
        S.refused++;
        if (s->status == 503)
            S.refused_503++;
        else if (s->status == 429)
            S.refused_429++;
        sub_unpend(s);
        sub_away(s, s->retry_after ? (int64_t)s->retry_after * 1000000 : 1000000);
    } else {
        if (s->status == 503)
            S.status_503++;
        sub_fail(s, &S.fail_status);
    }
}

/* A new request for an away subscriber: a fresh stream to parse. */
static void sub_rearm(sub_t *s) {
    s->state = SUB_PENDING;
    s->status = 0;
    s->retry_after = 0;
    s->hint_ms = -1;
    s->ev_id = -1;
    s->depth = 0;
    s->in_str = s->esc = 0;
    s->pend.len = s->ev.len = 0;
    S.reconnects++;
}

/* ---------- connections ---------- */

static void conn_set_events(conn_t *c) {
    uint32_t m = EPOLLIN;
    if (c->state == CS_CONNECTING || c->ssl_want_write || c->out.len > c->ooff)
        m |= EPOLLOUT;
    if (m == c->evmask)
        return;
    struct epoll_event ev = {.events = m, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->evmask = m;
}

/* A POST is over, answered or not. With --resume one that got no answer,
 * or was refused for now (503, 429), is sent again: a message the server
 * never took would count as lost for every subscriber. */
static void pub_end(pubmsg_t *m, bool answered) {
    if (m->st != M_SENT)
        return;
    pub_progress = mono_us();
    if (O.resume && phase != PH_DONE &&
        (!answered || m->status == 503 || m->status == 429)) {
        m->st = M_RETRY;
        m->due = mono_us() + (m->retry_after ? (int64_t)m->retry_after * 1000000
                              : answered     ? 1000000
                                             : 200000);
        retryq[nretryq++] = m - msgs;
        return;
    }
    m->st = M_DONE;
    S.pub_done++;
}

static void conn_register(conn_t *c) {
    if (nfree) {
        c->idx = (int)freeslots[--nfree];
    } else {
        if (nslots == capslots) {
            capslots = capslots ? capslots * 2 : 1024;
            conns = realloc(conns, (size_t)capslots * sizeof(*conns));
            freeslots = realloc(freeslots, (size_t)capslots * sizeof(*freeslots));
            if (!conns || !freeslots)
                die("%s", "out of memory");
        }
        c->idx = (int)nslots++;
    }
    conns[c->idx] = c;
}

static void conn_close(conn_t *c, int reason) {
    for (int i = 0; i < c->nsubs; i++) {
        sub_t *s = c->subs[i];
        if (s->c != c)
            continue; /* left this connection already (--resume) */
        if (s->state == SUB_PENDING) {
            if (c->state != CS_ACTIVE)
                sub_fail(s, reason == R_TLS       ? &S.fail_tls
                            : reason == R_TIMEOUT ? &S.fail_timeout
                                                  : &S.fail_connect);
            else
                sub_fail(s, reason == R_TIMEOUT ? &S.fail_timeout : &S.fail_reset);
        } else if (s->state == SUB_READY) {
            sub_closed(s);
        }
        if (s->c == c)
            s->c = NULL;
    }
    free(c->subs);
    if (!c->is_pub && c->nready && phase != PH_DONE)
        S.conn_closed++; /* an established subscriber connection ended */
    if (c->is_pub) {
        pub = NULL;
        /* their answers will never come */
        if (c->proto == P_H1 && c->pub_seq >= 0)
            pub_end(&msgs[c->pub_seq], false);
        else if (c->proto == P_H2)
            for (long i = 0; i < next_seq; i++)
                pub_end(&msgs[i], false);
    } else if (c->idx >= 0) {
        conns[c->idx] = NULL;
        freeslots[nfree++] = c->idx;
    }
    if (c->h2)
        nghttp2_session_del(c->h2);
    if (c->ssl) {
        if (reason == R_SHUTDOWN || reason == R_END)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    buf_free(&c->out);
    buf_free(&c->line);
    free(c);
}

/* Pulls frames from nghttp2 into the output buffer, then writes. */
static int conn_flush(conn_t *c) {
    if (c->h2) {
        while (c->out.len - c->ooff < OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            if (buf_add(&c->out, data, (size_t)n))
                return -1;
        }
    }
    c->ssl_want_write = false;
    while (c->out.len > c->ooff) {
        size_t left = c->out.len - c->ooff;
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, c->out.p + c->ooff,
                              left > INT32_MAX ? INT32_MAX : (int)left);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) {
                    c->ssl_want_write = true;
                    break;
                }
                if (e == SSL_ERROR_WANT_READ)
                    break;
                return -1;
            }
            n = r;
        } else {
            n = send(c->fd, c->out.p + c->ooff, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                return -1;
            }
        }
        c->ooff += (size_t)n;
    }
    if (c->ooff == c->out.len)
        c->out.len = c->ooff = 0;
    else if (c->ooff > (256u << 10) && !c->ssl) {
        memmove(c->out.p, c->out.p + c->ooff, c->out.len - c->ooff);
        c->out.len -= c->ooff;
        c->ooff = 0;
    }
    return 0;
}

/* ---------- HTTP/1.1 ---------- */

/* --resume: where a subscriber that was ready once goes on (0 when it has
 * seen no message at all: everything the history still has). */
static bool last_event_id(const sub_t *s, char *v, size_t cap) {
    if (!O.resume || !s->ever_ready)
        return false;
    snprintf(v, cap, "%lld", (long long)(s->last_id >= 0 ? s->last_id : 0));
    return true;
}

static int h1_send_get(conn_t *c) {
    char req[4096], leid[24];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: h2c-fanout\r\n"
                     "Accept: %s\r\n",
                     c->t->path, c->t->authority, O.sse ? "text/event-stream" : "*/*");
    if (n < 0 || (size_t)n >= sizeof(req))
        return -1;
    buf_add(&c->out, req, (size_t)n);
    if (c->nsubs && last_event_id(c->subs[0], leid, sizeof(leid))) {
        buf_add(&c->out, "Last-Event-ID: ", 15);
        buf_add(&c->out, leid, strlen(leid));
        buf_add(&c->out, "\r\n", 2);
    }
    for (int i = 0; i < O.nheaders; i++) {
        buf_add(&c->out, O.headers[i], strlen(O.headers[i]));
        buf_add(&c->out, "\r\n", 2);
    }
    buf_add(&c->out, "\r\n", 2);
    return 0;
}

static int h1_send_post(conn_t *c, long seq) {
    pubmsg_t *m = &msgs[seq];
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: h2c-fanout\r\n"
                     "Content-Type: application/json\r\nContent-Length: %u\r\n",
                     c->t->path, c->t->authority, (unsigned)m->len);
    if (n < 0 || (size_t)n >= sizeof(req))
        return -1;
    buf_add(&c->out, req, (size_t)n);
    for (int i = 0; i < O.nheaders; i++) {
        buf_add(&c->out, O.headers[i], strlen(O.headers[i]));
        buf_add(&c->out, "\r\n", 2);
    }
    buf_add(&c->out, "\r\n", 2);
    buf_add(&c->out, m->body, m->len);
    c->pub_seq = seq;
    return 0;
}

/* A response ended.  Returns -1 if the connection is to be closed. */
static int h1_response_done(conn_t *c) {
    if (c->is_pub) {
        if (c->pub_seq >= 0) {
            msgs[c->pub_seq].status = c->h1status;
            msgs[c->pub_seq].retry_after = c->h1retry;
            pub_end(&msgs[c->pub_seq], true);
        }
        c->pub_seq = -1;
        c->h1st = H1_STATUS;
        return c->h1close ? -1 : 0;
    }
    return -1; /* a subscriber's stream ended */
}

static int h1_headers_done(conn_t *c) {
    if (c->h1status >= 100 && c->h1status < 200) {
        c->h1st = H1_STATUS;
        return 0;
    }
    if (!c->is_pub && c->nsubs) {
        sub_t *s = c->subs[0];
        if (s->c == c && s->state == SUB_PENDING) {
            s->status = c->h1status;
            s->retry_after = c->h1retry;
            s->fmt = c->h1sse ? FMT_SSE : FMT_JSON;
            sub_check_status(s);
            if (s->state != SUB_READY)
                return -1; /* failed, or --resume: away */
        }
    }
    if (c->h1status == 204 || c->h1status == 304)
        return h1_response_done(c);
    if (c->h1chunked) {
        c->h1st = H1_CHUNK_SIZE;
    } else if (c->h1cl) {
        if (c->h1left == 0)
            return h1_response_done(c);
        c->h1st = H1_BODY_CL;
    } else {
        c->h1st = H1_BODY_EOF;
    }
    return 0;
}

static bool hdr_is(const char *l, size_t n, const char *name, const char **v) {
    size_t k = strlen(name);
    if (n <= k || strncasecmp(l, name, k) || l[k] != ':')
        return false;
    *v = l + k + 1;
    while (**v == ' ' || **v == '\t')
        (*v)++;
    return true;
}

static int h1_line(conn_t *c, char *l, size_t n) {
    const char *v;
    l[n] = 0;
    switch (c->h1st) {
    case H1_STATUS:
        if (n == 0)
            return 0;
        if (n < 12 || strncmp(l, "HTTP/1.", 7))
            return -1;
        c->h1status = atoi(l + 9);
        c->h1chunked = c->h1cl = c->h1sse = false;
        c->h1close = l[7] == '0'; /* HTTP/1.0: closes unless it says keep-alive */
        c->h1left = 0;
        c->h1retry = 0;
        c->h1st = H1_HEADERS;
        return 0;
    case H1_HEADERS:
        if (n == 0)
            return h1_headers_done(c);
        if (hdr_is(l, n, "transfer-encoding", &v))
            c->h1chunked = strcasestr(v, "chunked") != NULL;
        else if (hdr_is(l, n, "content-length", &v))
            c->h1cl = true, c->h1left = strtoll(v, NULL, 10);
        else if (hdr_is(l, n, "connection", &v))
            c->h1close = strcasestr(v, "close") != NULL ||
                         (c->h1close && !strcasestr(v, "keep-alive"));
        else if (hdr_is(l, n, "content-type", &v))
            c->h1sse = !strncasecmp(v, "text/event-stream", 17);
        else if (hdr_is(l, n, "retry-after", &v))
            c->h1retry = (uint32_t)strtoul(v, NULL, 10);
        return 0;
    case H1_CHUNK_SIZE: {
        char *end;
        long long sz = strtoll(l, &end, 16);
        if (end == l || sz < 0)
            return -1;
        c->h1left = sz;
        c->h1st = sz ? H1_CHUNK_DATA : H1_TRAILERS;
        return 0;
    }
    case H1_CHUNK_CRLF:
        c->h1st = H1_CHUNK_SIZE;
        return n == 0 ? 0 : -1;
    case H1_TRAILERS:
        return n == 0 ? h1_response_done(c) : 0;
    }
    return -1;
}

static void h1_body(conn_t *c, const char *d, size_t n) {
    if (!c->is_pub && c->nsubs && c->subs[0]->c == c)
        feed_body(c->subs[0], d, n);
}

static int h1_feed(conn_t *c, const char *d, size_t n) {
    while (n) {
        size_t take;
        switch (c->h1st) {
        case H1_BODY_CL:
        case H1_CHUNK_DATA:
            take = (size_t)c->h1left < n ? (size_t)c->h1left : n;
            h1_body(c, d, take);
            c->h1left -= (int64_t)take;
            d += take;
            n -= take;
            if (c->h1left == 0) {
                if (c->h1st == H1_CHUNK_DATA)
                    c->h1st = H1_CHUNK_CRLF;
                else if (h1_response_done(c))
                    return -1;
            }
            break;
        case H1_BODY_EOF:
            h1_body(c, d, n);
            return 0;
        default: {
            const char *nl = memchr(d, '\n', n);
            take = nl ? (size_t)(nl - d) + 1 : n;
            if (c->line.len + take + 1 > H1_LINE_MAX)
                return -1;
            buf_add(&c->line, d, take);
            d += take;
            n -= take;
            if (!nl)
                return 0;
            size_t len = c->line.len - 1;
            if (len && c->line.p[len - 1] == '\r')
                len--;
            buf_add(&c->line, "", 1); /* room for the NUL */
            int rv = h1_line(c, c->line.p, len);
            c->line.len = 0;
            if (rv)
                return -1;
        }
        }
    }
    return 0;
}

/* ---------- HTTP/2 ---------- */

#define NV(NAME, VALUE, VLEN)                                                            \
    {                                                                                    \
        (uint8_t *)(NAME), (uint8_t *)(VALUE), sizeof(NAME) - 1, (VLEN),                 \
            NGHTTP2_NV_FLAG_NONE                                                         \
    }

/* The subscriber of stream sid if it is still on it: one that left (a
 * refused or failed reconnect, --resume) may be on another connection. */
static sub_t *stream_sub(nghttp2_session *h2, conn_t *c, int32_t sid) {
    sub_t *s = c->is_pub ? NULL : nghttp2_session_get_stream_user_data(h2, sid);
    return s && s->c == c && s->stream_id == sid ? s : NULL;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *val, size_t vlen, uint8_t flags,
                     void *ud) {
    conn_t *c = ud;
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    bool status = nlen == 7 && !memcmp(name, ":status", 7);
    bool retry = nlen == 11 && !memcmp(name, "retry-after", 11);
    int code = status && vlen == 3 ? atoi((const char *)val) : 0;
    if (c->is_pub) {
        pubmsg_t *m = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
        if (m && status)
            m->status = code;
        else if (m && retry)
            m->retry_after = (uint32_t)strtoul((const char *)val, NULL, 10);
        return 0;
    }
    sub_t *s = stream_sub(h2, c, f->hd.stream_id);
    if (!s)
        return 0;
    if (status)
        s->status = code;
    else if (retry)
        s->retry_after = (uint32_t)strtoul((const char *)val, NULL, 10);
    else if (nlen == 12 && !memcmp(name, "content-type", 12))
        s->fmt = vlen >= 17 && !strncasecmp((const char *)val, "text/event-stream", 17)
                     ? FMT_SSE
                     : FMT_JSON;
    return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *ud) {
    conn_t *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true; /* conn_event acts on it once this read is done */
        if (phase != PH_DONE)
            S.goaways++;
        return 0;
    }
    if (c->is_pub || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    sub_t *s = stream_sub(h2, c, f->hd.stream_id);
    if (!s || s->state != SUB_PENDING)
        return 0;
    if (s->status >= 100 && s->status < 200) {
        s->status = 0;
        return 0;
    }
    sub_check_status(s);
    return 0;
}

static int on_data(nghttp2_session *h2, uint8_t flags, int32_t sid, const uint8_t *d,
                   size_t n, void *ud) {
    conn_t *c = ud;
    (void)flags;
    sub_t *s = stream_sub(h2, c, sid);
    if (s)
        feed_body(s, (const char *)d, n);
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t err, void *ud) {
    conn_t *c = ud;
    (void)err;
    c->nopen--;
    if (c->is_pub) {
        pubmsg_t *m = nghttp2_session_get_stream_user_data(h2, sid);
        if (m)
            pub_end(m, m->status != 0);
        return 0;
    }
    sub_t *s = stream_sub(h2, c, sid);
    if (!s)
        return 0;
    if (s->state == SUB_PENDING)
        sub_fail(s, &S.fail_reset);
    else
        sub_closed(s);
    s->stream_id = 0;
    return 0;
}

static ssize_t body_read(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud) {
    pubmsg_t *m = src->ptr;
    (void)h2, (void)sid, (void)ud;
    size_t n = (size_t)(m->len - m->off);
    if (n > len)
        n = len;
    memcpy(buf, m->body + m->off, n);
    m->off = (uint16_t)(m->off + n);
    if (m->off == m->len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *h2cbs;

static int h2_submit(conn_t *c, const char *method, const char *ctype, const char *clen,
                     nghttp2_data_provider *dp, void *sd) {
    const struct target *t = c->t;
    const char *scheme = t->tls ? "https" : "http";
    const char *accept = O.sse ? "text/event-stream" : "*/*";
    char leid[24];
    nghttp2_nv nv[9 + MAX_HEADERS] = {
        NV(":method", method, strlen(method)),
        NV(":scheme", scheme, strlen(scheme)),
        NV(":authority", t->authority, strlen(t->authority)),
        NV(":path", t->path, strlen(t->path)),
        NV("user-agent", "h2c-fanout", 10),
    };
    size_t nnv = 5;
    if (ctype) {
        nghttp2_nv a = NV("content-type", ctype, strlen(ctype));
        nghttp2_nv b = NV("content-length", clen, strlen(clen));
        nv[nnv++] = a;
        nv[nnv++] = b;
    } else {
        nghttp2_nv a = NV("accept", accept, strlen(accept));
        nv[nnv++] = a;
        if (last_event_id(sd, leid, sizeof(leid))) {
            nghttp2_nv b = NV("last-event-id", leid, strlen(leid));
            nv[nnv++] = b;
        }
    }
    /* extra headers: names lower-cased once at option parsing */
    for (int i = 0; i < O.nheaders; i++) {
        const char *h = O.headers[i], *colon = strchr(h, ':');
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        nghttp2_nv x = {(uint8_t *)h, (uint8_t *)v, (size_t)(colon - h), strlen(v),
                        NGHTTP2_NV_FLAG_NONE};
        nv[nnv++] = x;
    }
    int32_t id = nghttp2_submit_request(c->h2, NULL, nv, nnv, dp, sd);
    if (id < 0)
        return -1;
    c->nopen++;
    return id;
}

static int h2_start(conn_t *c) {
    if (nghttp2_session_client_new(&c->h2, h2cbs, c))
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2))
        return -1;
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 16 * H2_WINDOW);
    for (int i = 0; i < c->nsubs; i++) {
        int id = h2_submit(c, "GET", NULL, NULL, NULL, c->subs[i]);
        if (id < 0)
            return -1;
        c->subs[i]->stream_id = id;
    }
    return 0;
}

/* ---------- connection life cycle ---------- */

static int proto_start(conn_t *c) {
    c->state = CS_ACTIVE;
    if (c->proto == P_H2)
        return h2_start(c);
    c->h1st = H1_STATUS;
    c->pub_seq = -1;
    if (!c->is_pub)
        return h1_send_get(c);
    return 0;
}

static int tls_handshake(conn_t *c) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    c->ssl_want_write = false;
    if (r == 1) {
        if (c->proto == P_H2) {
            const unsigned char *alpn = NULL;
            unsigned alen = 0;
            SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
            if (alen != 2 || memcmp(alpn, "h2", 2))
                return -1;
        }
        return proto_start(c);
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->ssl_want_write = true;
        return 0;
    }
    return -1;
}

static int tls_start(conn_t *c) {
    c->ssl = SSL_new(c->proto == P_H2 ? ctx_h2 : ctx_h1);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
        return -1;
    SSL_set_connect_state(c->ssl);
    struct in6_addr dummy;
    if (inet_pton(AF_INET, c->t->host, &dummy) != 1 &&
        inet_pton(AF_INET6, c->t->host, &dummy) != 1)
        SSL_set_tlsext_host_name(c->ssl, c->t->host);
    c->state = CS_TLS;
    return tls_handshake(c);
}

static conn_t *conn_open(const struct target *t, int proto, sub_t **ss, int ns,
                         bool is_pub) {
    conn_t *c = xcalloc(1, sizeof(*c));
    c->fd = -1;
    c->idx = -1;
    c->t = t;
    c->tls = t->tls;
    c->proto = (uint8_t)proto;
    c->is_pub = is_pub;
    c->subs = ns ? xcalloc((size_t)ns, sizeof(*c->subs)) : NULL;
    if (ns)
        memcpy(c->subs, ss, (size_t)ns * sizeof(*ss));
    c->nsubs = ns;
    c->npending = ns;
    c->pub_seq = -1;
    c->t_open = mono_us();
    if (!is_pub)
        conn_register(c);
    for (int i = 0; i < ns; i++)
        ss[i]->c = c;
    if (ns) {
        c->counted_pending = true;
        pending_conns++;
    }
    c->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto fail;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* --bind: the source port is picked at connect() per 4-tuple, not at
     * bind() per address, so one source address is good for ~28k
     * connections to each destination */
    if (O.bind_sa.ss_family &&
        ((O.bind_sa.ss_family == AF_INET &&
          setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) <
              0) ||
         bind(c->fd, (const struct sockaddr *)&O.bind_sa, O.bind_len) < 0))
        goto fail;
    if (connect(c->fd, (const struct sockaddr *)&t->sa, t->salen) < 0 &&
        errno != EINPROGRESS)
        goto fail;
    c->state = CS_CONNECTING;
    c->evmask = EPOLLIN | EPOLLOUT;
    struct epoll_event ev = {.events = c->evmask, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        goto fail;
    return c;
fail:
    if (!S.conn_err_first)
        S.conn_err_first = errno ? errno : -1;
    conn_close(c, R_CONNECT);
    return NULL;
}

static int conn_read(conn_t *c) {
    static char rbuf[65536];
    for (int i = 0; c->ssl || i < 16; i++) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, rbuf, sizeof(rbuf));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    return 0;
                if (e == SSL_ERROR_WANT_WRITE) {
                    c->ssl_want_write = true;
                    return 0;
                }
                if (e == SSL_ERROR_ZERO_RETURN)
                    n = 0;
                else
                    return -1;
            } else {
                n = r;
            }
        } else {
            n = recv(c->fd, rbuf, sizeof(rbuf), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return 0;
                if (errno == EINTR)
                    continue;
                return -1;
            }
        }
        if (n == 0) {
            if (c->proto == P_H1 && c->h1st == H1_BODY_EOF)
                h1_response_done(c);
            return -1;
        }
        if (c->proto == P_H2) {
            if (nghttp2_session_mem_recv(c->h2, (uint8_t *)rbuf, (size_t)n) < 0)
                return -1;
        } else if (h1_feed(c, rbuf, (size_t)n)) {
            return -1;
        }
    }
    return 0;
}

static void conn_event(conn_t *c, uint32_t ev) {
    int rv = 0, reason = R_ERROR;
    switch (c->state) {
    case CS_CONNECTING: {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err) {
            if (!S.conn_err_first)
                S.conn_err_first = err;
            conn_close(c, R_CONNECT);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        if (c->tls) {
            rv = tls_start(c);
            reason = R_TLS;
        } else {
            rv = proto_start(c);
        }
        if (rv == 0 && c->state == CS_ACTIVE)
            rv = conn_flush(c);
        break;
    }
    case CS_TLS:
        reason = R_TLS;
        rv = tls_handshake(c);
        if (rv == 0 && c->state == CS_ACTIVE)
            rv = conn_flush(c);
        break;
    case CS_ACTIVE:
        if (c->ssl || (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
            rv = conn_read(c);
            if (rv && c->nsubs && c->nopen == 0 && c->proto == P_H2)
                reason = R_END;
        }
        if (rv == 0)
            rv = conn_flush(c);
        if (rv == 0 && c->proto == P_H2 && !c->is_pub) {
            /* --resume: a GOAWAY sends its subscribers elsewhere now (they
             * resume from their last id, so nothing in flight is lost) */
            if (c->nopen == 0 || (O.resume && c->goaway && phase != PH_DONE) ||
                (!nghttp2_session_want_read(c->h2) &&
                 !nghttp2_session_want_write(c->h2))) {
                rv = -1;
                reason = R_END;
            }
        }
        if (rv == 0 && c->is_pub && c->goaway && c->nopen == 0 && c->proto == P_H2) {
            rv = -1; /* takes no new POST: the next one opens a new connection */
            reason = R_END;
        }
        break;
    }
    if (rv)
        conn_close(c, reason);
    else
        conn_set_events(c);
}

/* ---------- publishing ---------- */

static bool pub_waiting(const conn_t *c) {
    return c->proto == P_H1 ? c->pub_seq >= 0 : c->nopen > 0;
}

static bool pub_can_send(void) {
    if (!pub || pub->state != CS_ACTIVE)
        return false;
    if (pub->proto == P_H1)
        return pub->pub_seq < 0 && pub->out.len == pub->ooff;
    return !nghttp2_session_check_request_allowed(pub->h2) ? false : true;
}

/* Sends msgs[seq]: the first time, or again (--resume) with the same body,
 * so that its latency counts from the first try. */
static void publish(long seq, bool again) {
    pubmsg_t *m = &msgs[seq];
    if (again) {
        S.pub_retries++;
    } else {
        m->len = (uint16_t)snprintf(m->body, sizeof(m->body),
                                    "{\"user\":\"bench\",\"text\":\"%ld %lld\"}", seq,
                                    (long long)real_us());
        S.published++;
    }
    if (!pub_waiting(pub))
        pub_progress = mono_us();
    m->off = 0;
    m->status = 0;
    m->retry_after = 0;
    m->st = M_SENT;
    int rv;
    if (pub->proto == P_H2) {
        char clen[16];
        snprintf(clen, sizeof(clen), "%u", (unsigned)m->len);
        nghttp2_data_provider dp = {.source.ptr = m, .read_callback = body_read};
        rv = h2_submit(pub, "POST", "application/json", clen, &dp, m) < 0;
    } else {
        rv = h1_send_post(pub, seq);
    }
    if (rv)
        pub_end(m, false); /* never left */
    else
        rv = conn_flush(pub); /* closing ends it unanswered */
    if (rv)
        conn_close(pub, R_ERROR);
    else
        conn_set_events(pub);
}

/* --resume: POSTs that got no answer, or a 503/429, go out again when due. */
static long publish_again(int64_t now) {
    long sent = 0;
    for (long i = 0; i < nretryq && pub_can_send();) {
        long seq = retryq[i];
        if (msgs[seq].due > now) {
            i++;
            continue;
        }
        retryq[i] = retryq[--nretryq];
        publish(seq, true);
        sent++;
    }
    return sent;
}

/* ---------- /proc sampling of the server's process tree ---------- */

static long status_field(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, kl)) {
            v = strtol(line + kl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Reads ppid and utime+stime (ticks) from /proc/PID/stat. */
static int read_stat(long pid, long *ppid, unsigned long long *ticks) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    char st;
    unsigned long long ut = 0, stt = 0;
    if (sscanf(p + 2, "%c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &st, ppid,
               &ut, &stt) != 4)
        return -1;
    *ticks = ut + stt;
    return 0;
}

/* Sum of the first field of /proc/PID/task/TID/schedstat (ns on CPU). */
static double sched_time(long pid) {
    char path[96];
    snprintf(path, sizeof(path), "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    double s = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/task/%.20s/schedstat", pid, de->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long ns = 0;
        if (f) {
            if (fscanf(f, "%llu", &ns) == 1)
                s += (double)ns / 1e9;
            fclose(f);
        }
    }
    closedir(d);
    return s;
}

static bool is_root(long pid) {
    for (int i = 0; i < O.npids; i++)
        if (O.pids[i] == pid)
            return true;
    return false;
}

/* The --pid processes and all their descendants: pids and their CPU
 * ticks (utime+stime). Returns how many, or -1. */
static long tree_members(long **pids, unsigned long long **ticks) {
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    size_t n = 0, cap = 1024;
    long *pid = malloc(cap * sizeof(long)), *ppid = malloc(cap * sizeof(long));
    unsigned long long *tk = malloc(cap * sizeof(*tk));
    struct dirent *de;
    while (pid && ppid && tk && (de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        if (n == cap) {
            cap *= 2;
            long *a = realloc(pid, cap * sizeof(long));
            if (a)
                pid = a;
            long *b = realloc(ppid, cap * sizeof(long));
            if (b)
                ppid = b;
            unsigned long long *t = realloc(tk, cap * sizeof(*t));
            if (t)
                tk = t;
            if (!a || !b || !t) {
                cap /= 2;
                break;
            }
        }
        pid[n] = strtol(de->d_name, NULL, 10);
        if (read_stat(pid[n], &ppid[n], &tk[n]) == 0)
            n++;
    }
    closedir(d);
    if (!pid || !ppid || !tk) {
        free(pid), free(ppid), free(tk);
        return -1;
    }
    bool *in = xcalloc(n, sizeof(bool));
    bool changed = true;
    while (changed) { /* transitive closure of "child of a member" */
        changed = false;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            bool m = is_root(pid[i]);
            for (size_t j = 0; !m && j < n; j++)
                m = in[j] && pid[j] == ppid[i];
            if (m)
                in[i] = changed = true;
        }
    }
    long k = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i]) {
            pid[k] = pid[i];
            tk[k++] = tk[i];
        }
    free(in);
    free(ppid);
    *pids = pid;
    *ticks = tk;
    return k;
}

static double clk_tck(void) {
    long t = sysconf(_SC_CLK_TCK);
    return (double)(t > 0 ? t : 100);
}

/* Sums /proc figures over every --pid and all their descendants. */
static int proc_tree(struct procstat *ps) {
    memset(ps, 0, sizeof(*ps));
    long *pid;
    unsigned long long *ticks;
    long n = tree_members(&pid, &ticks);
    if (n < 0)
        return -1;
    for (long i = 0; i < n; i++) {
        char path[64];
        ps->nprocs++;
        ps->cpu_s += (double)ticks[i] / clk_tck();
        snprintf(path, sizeof(path), "/proc/%ld/status", pid[i]);
        long v = status_field(path, "VmRSS:");
        if (v > 0)
            ps->rss_kib += v;
        v = status_field(path, "Threads:");
        if (v > 0)
            ps->threads += v;
        ps->sched_s += sched_time(pid[i]);
        snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", pid[i]);
        v = status_field(path, "Pss:");
        if (v > 0 && ps->pss_kib >= 0)
            ps->pss_kib += v;
        else
            ps->pss_kib = -1;
    }
    free(pid);
    free(ticks);
    return ps->nprocs ? 0 : -1;
}

/* --server-sample-ms: the tree's CPU over each interval, per process, so
 * that children ending and starting (a restart) do not skew the sum: a
 * new process counts all its ticks, one that ended only until the last
 * sample that saw it. */
static struct cpusampler {
    long *pid, n;
    unsigned long long *ticks;
    int64_t t;
    double peak_pct, total_s;
    long samples;
} CS = {.peak_pct = -1};

static void cpu_sample(int64_t now) {
    long *pid;
    unsigned long long *ticks;
    long n = tree_members(&pid, &ticks);
    if (n < 0)
        return;
    if (CS.t) {
        unsigned long long d = 0;
        for (long i = 0, j = 0; i < n; i++) {
            unsigned long long before = 0;
            for (j = 0; j < CS.n; j++) /* readdir order: pids mostly ascending */
                if (CS.pid[j] == pid[i]) {
                    before = CS.ticks[j];
                    break;
                }
            if (ticks[i] > before)
                d += ticks[i] - before;
        }
        double secs = (double)d / clk_tck(), dt = (double)(now - CS.t) / 1e6;
        CS.total_s += secs;
        CS.samples++;
        if (dt > 0 && secs * 100.0 / dt > CS.peak_pct)
            CS.peak_pct = secs * 100.0 / dt;
    }
    free(CS.pid);
    free(CS.ticks);
    CS.pid = pid;
    CS.ticks = ticks;
    CS.n = n;
    CS.t = now;
}

/* ---------- reporting ---------- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(double q) {
    if (!nlat)
        return -1;
    size_t i = (size_t)ceil(q * (double)nlat);
    if (i < 1)
        i = 1;
    if (i > nlat)
        i = nlat;
    return lat[i - 1] / 1000.0;
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static const char *proto_name(int p, bool tls) {
    return p == P_H1 ? (tls ? "h1s" : "h1") : (tls ? "h2" : "h2c");
}

/* ---------- options ---------- */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: h2c-fanout --url http://127.0.0.1:PORT/msgs [options]\n"
        "  --url URL              subscribe URL (http:// or https://, loopback only)\n"
        "  --proto h2|h2c|h1      subscriber transport (default: h2 for https, h2c for "
        "http)\n"
        "  -n N                   subscribers (default 100)\n"
        "  -k K                   messages to publish (default 5)\n"
        "  --rate R               messages per second (default 10)\n"
        "  --sse                  send Accept: text/event-stream\n"
        "  --pid PID              server master pid: sample RSS/threads/CPU of its "
        "tree;\n"
        "                         repeatable: the sum over several trees\n"
        "  --timeout S            overall bound in seconds (default 60)\n"
        "  --json-only            no human output on stderr\n"
        "  --publish-url URL      where to POST (default: --url)\n"
        "  --publish-proto P      h2|h2c|h1 for the publisher (default: h2 for https,\n"
        "                         else the subscriber protocol)\n"
        "  --connect-rate R       new connections per second (default 2000)\n"
        "  --max-pending M        connections awaiting headers at once (default 500)\n"
        "  --first-line-timeout S seconds to wait for response headers (default 10)\n"
        "  --streams-per-conn K   subscriber streams per h2 connection (default 1)\n"
        "  --settle S             pause between all-ready and publishing (default 0.2)\n"
        "  --drain S              stop S seconds after the last publish (default: off)\n"
        "  -H, --header 'N: v'    extra request header (repeatable)\n"
        "  --bind ADDR            source address of every connection (loopback)\n"
        "  --subscribe-only       publish nothing: expect the K messages another\n"
        "                         process publishes\n"
        "  --wait-go              once all are resolved, print READY <ready> <failed>\n"
        "                         on stderr and wait for SIGUSR1 before publishing\n"
        "  --lat-out FILE         write every delivery latency (us, uint32 LE) to FILE\n"
        "  --resume               a subscriber whose stream ends reconnects with\n"
        "                         Last-Event-ID: <its last id> (and POSTs without an\n"
        "                         answer are sent again)\n"
        "  --reconnect-ms MS      reconnect delay without a server hint (default 0)\n"
        "  --reconnect-jitter-ms MS  uniform random extra delay (default 0)\n"
        "  --server-sample-ms MS  with --pid: sample the server's CPU every MS in the\n"
        "                         publish phase (server_cpu_peak_pct)\n");
}

static int parse_proto(const char *s) {
    if (!strcmp(s, "h2") || !strcmp(s, "h2c"))
        return P_H2;
    if (!strcmp(s, "h1") || !strcmp(s, "http/1.1"))
        return P_H1;
    die("unknown protocol: %s", s);
}

static double num(const char *s, double lo) {
    char *e;
    double v = strtod(s, &e);
    if (*s == 0 || *e || !(v >= lo) || v > 1e12)
        die("bad number: %s", s);
    return v;
}

/* --bind: a loopback literal, like the targets */
static void parse_bind(const char *a) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&O.bind_sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&O.bind_sa;
    memset(&O.bind_sa, 0, sizeof(O.bind_sa));
    if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        O.bind_len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        O.bind_len = sizeof(*s6);
    } else {
        die("--bind needs an address literal: %s", a);
    }
    if (!is_loopback(&O.bind_sa))
        die("refusing non-loopback --bind address: %s", a);
}

static void parse_opts(int argc, char **argv) {
    static const struct option lo[] = {{"url", 1, 0, 'u'},
                                       {"proto", 1, 0, 'p'},
                                       {"rate", 1, 0, 'r'},
                                       {"sse", 0, 0, 's'},
                                       {"pid", 1, 0, 'P'},
                                       {"timeout", 1, 0, 't'},
                                       {"json-only", 0, 0, 'j'},
                                       {"publish-url", 1, 0, 'U'},
                                       {"publish-proto", 1, 0, 'Q'},
                                       {"connect-rate", 1, 0, 'c'},
                                       {"first-line-timeout", 1, 0, 'f'},
                                       {"streams-per-conn", 1, 0, 'S'},
                                       {"max-pending", 1, 0, 'm'},
                                       {"settle", 1, 0, 'w'},
                                       {"drain", 1, 0, 'd'},
                                       {"header", 1, 0, 'H'},
                                       {"bind", 1, 0, 'B'},
                                       {"subscribe-only", 0, 0, 'O'},
                                       {"wait-go", 0, 0, 'G'},
                                       {"lat-out", 1, 0, 'L'},
                                       {"resume", 0, 0, 'R'},
                                       {"reconnect-ms", 1, 0, 'D'},
                                       {"reconnect-jitter-ms", 1, 0, 'J'},
                                       {"server-sample-ms", 1, 0, 'M'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "n:k:H:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'u':
            O.url = optarg;
            break;
        case 'U':
            O.pub_url = optarg;
            break;
        case 'p':
            O.proto = parse_proto(optarg);
            break;
        case 'Q':
            O.pub_proto = parse_proto(optarg);
            break;
        case 'n':
            O.n = (long)num(optarg, 1);
            break;
        case 'k':
            O.k = (long)num(optarg, 0);
            break;
        case 'r':
            O.rate = num(optarg, 0.001);
            break;
        case 's':
            O.sse = true;
            break;
        case 'P':
            if (O.npids == MAX_PIDS)
                die("too many --pid (at most %d)", MAX_PIDS);
            O.pids[O.npids++] = (long)num(optarg, 1);
            O.pid = O.pids[0];
            break;
        case 't':
            O.timeout = num(optarg, 0.1);
            break;
        case 'j':
            O.json_only = true;
            break;
        case 'c':
            O.connect_rate = num(optarg, 0.001);
            break;
        case 'f':
            O.flt = num(optarg, 0.01);
            break;
        case 'S':
            O.spc = (int)num(optarg, 1);
            break;
        case 'm':
            O.max_pending = (int)num(optarg, 1);
            break;
        case 'w':
            O.settle = num(optarg, 0);
            break;
        case 'd':
            O.drain = num(optarg, 0);
            break;
        case 'H': {
            char *colon = strchr(optarg, ':');
            if (!colon || colon == optarg || O.nheaders == MAX_HEADERS)
                die("bad or too many headers: %s", optarg);
            for (char *q = optarg; q < colon; q++)
                *q = (char)tolower((unsigned char)*q);
            O.headers[O.nheaders++] = optarg;
            break;
        }
        case 'B':
            parse_bind(optarg);
            break;
        case 'O':
            O.sub_only = true;
            break;
        case 'G':
            O.wait_go = true;
            break;
        case 'L':
            O.lat_out = optarg;
            break;
        case 'R':
            O.resume = true;
            break;
        case 'D':
            O.reconnect_ms = num(optarg, 0);
            break;
        case 'J':
            O.jitter_ms = num(optarg, 0);
            break;
        case 'M':
            O.sample_ms = num(optarg, 10);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (!O.url || optind != argc) {
        usage(stderr);
        exit(2);
    }
    if (O.k > 100000000)
        die("%s", "-k too large");
    if (O.n > UINT32_MAX)
        die("%s", "-n too large");
    if (O.sample_ms > 0 && !O.pid)
        die("%s", "--server-sample-ms needs --pid");
    parse_url(O.url, &T);
    parse_url(O.pub_url ? O.pub_url : O.url, &PT);
    if (O.proto < 0)
        O.proto = P_H2;
    if (O.pub_proto < 0)
        O.pub_proto = PT.tls ? P_H2 : O.proto;
    if (O.proto == P_H1)
        O.spc = 1;
    if (O.bind_sa.ss_family &&
        (O.bind_sa.ss_family != T.sa.ss_family || O.bind_sa.ss_family != PT.sa.ss_family))
        die("%s", "--bind and the URL hosts must be of the same address family");
}

static SSL_CTX *make_ctx(const unsigned char *alpn, unsigned alen) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        die("%s", "SSL_CTX_new failed");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* loopback test certs */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_protos(ctx, alpn, alen);
    return ctx;
}

/* Descriptors besides the subscribers' sockets: stdio, epoll, signalfd,
 * the publisher, /proc reads, --lat-out, and some slack. */
#define FD_RESERVE 16

/* One socket per subscriber connection: a run that cannot have them all at
 * once would measure EMFILE, so it does not start (split it over processes
 * with fanout-multi.py instead). */
static void raise_nofile(long conns) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)(conns + FD_RESERVE) > rl.rlim_cur)
        die("%ld connections need %ld descriptors, the limit is %llu: use fewer "
            "subscribers per process (bench/fanout-multi.py) or --streams-per-conn",
            conns, conns + FD_RESERVE, (unsigned long long)rl.rlim_cur);
}

/* --wait-go: SIGUSR1 is blocked from the start (an early one must not kill
 * us) and read from a signalfd in the epoll loop, which keeps serving the
 * sockets while it waits. */
static void sig_setup(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &m, NULL) < 0)
        die("%s", "sigprocmask failed");
    sigfd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0)
        die("%s", "signalfd failed");
}

static void sig_read(void) {
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo == SIGUSR1)
            go = true;
}

/* --lat-out: the raw latencies, so that a driver can merge exact
 * percentiles over processes. */
static int write_lat(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned char b[4096];
    size_t n = 0;
    for (size_t i = 0; i < nlat; i++) {
        uint32_t v = lat[i];
        b[n++] = (unsigned char)v;
        b[n++] = (unsigned char)(v >> 8);
        b[n++] = (unsigned char)(v >> 16);
        b[n++] = (unsigned char)(v >> 24);
        if (n == sizeof(b) || i + 1 == nlat) {
            if (fwrite(b, 1, n, f) != n) {
                fclose(f);
                return -1;
            }
            n = 0;
        }
    }
    return fclose(f) ? -1 : 0;
}

/* ---------- main loop ---------- */

static void sweep_timeouts(int64_t now) {
    int64_t lim = (int64_t)(O.flt * 1e6);
    /* --resume: a publisher that waits --first-line-timeout for an answer
     * is given up; its POSTs go out again on a new connection */
    if (O.resume && pub && pub->state == CS_ACTIVE && pub_waiting(pub) &&
        now - pub_progress > lim) {
        S.pub_timeouts++;
        conn_close(pub, R_TIMEOUT);
    }
    for (long i = 0; i < nslots; i++) {
        conn_t *c = conns[i];
        if (!c || c->npending == 0 || now - c->t_open < lim)
            continue;
        if (c->nready == 0) {
            conn_close(c, R_TIMEOUT);
            continue;
        }
        for (int j = 0; j < c->nsubs; j++) {
            sub_t *s = c->subs[j];
            if (s->c != c || s->state != SUB_PENDING)
                continue;
            if (c->h2 && s->stream_id > 0)
                nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->stream_id,
                                          NGHTTP2_CANCEL);
            sub_fail(s, &S.fail_timeout);
        }
        if (conn_flush(c))
            conn_close(c, R_ERROR);
        else
            conn_set_events(c);
    }
}

/* --resume: connections for the away subscribers that are due, up to
 * --streams-per-conn each. Neither --connect-rate nor --max-pending holds
 * them back: a restart's reconnect storm is what is measured, and the
 * server's hint and --reconnect-jitter-ms are what spread it, as with real
 * clients. Opened here in the main loop, never from a callback: a freed
 * descriptor is not reused while the events of the batch that freed it are
 * still being handled. */
static void reconnect_due(int64_t now) {
    while (nawayq && subs[awayq[0]].due <= now) {
        int ns = 0;
        while (ns < O.spc && nawayq && subs[awayq[0]].due <= now) {
            sub_t *s = awayq_pop();
            sub_rearm(s);
            scratch[ns++] = s;
        }
        conn_open(&T, O.proto, scratch, ns, false);
    }
}

static long failed(void) {
    return S.fail_connect + S.fail_tls + S.fail_status + S.fail_timeout + S.fail_reset +
           S.fail_resume;
}

static void progress(int64_t now, int64_t t0, bool final) {
    if (O.json_only)
        return;
    double el = (double)(now - t0) / 1e6;
    if (phase <= PH_SETTLE)
        fprintf(stderr,
                "%s[%6.1fs] %s: %ld/%ld conns opened, %ld/%ld ready, %ld failed%s",
                tty ? "\r" : "", el,
                phase == PH_WAIT && !go ? "waiting for go" : "connecting", next_conn,
                nconns, S.ready, O.n, failed(), tty && !final ? "   " : "\n");
    else
        fprintf(stderr,
                "%s[%6.1fs] publishing: %ld/%ld sent, %ld/%ld delivered, %ld away%s",
                tty ? "\r" : "", el, next_seq, O.k, S.delivered, S.ready * O.k, S.away,
                tty && !final ? "   " : "\n");
}

int main(int argc, char **argv) {
    parse_opts(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    tty = isatty(2);
    nconns = (O.n + O.spc - 1) / O.spc;
    raise_nofile(nconns);
    if (O.wait_go)
        sig_setup();

    run_start_us = real_us();
    int64_t t0 = mono_us(), deadline = t0 + (int64_t)(O.timeout * 1e6);
    struct procstat ps_idle = {0}, ps_conn = {0}, ps_pub0 = {0}, ps_end = {0};
    bool have_ps = O.pid && proc_tree(&ps_idle) == 0;
    if (O.pid && !have_ps)
        fprintf(stderr, "h2c-fanout: warning: cannot read /proc for pid %ld\n", O.pid);

    if (T.tls || PT.tls) {
        ctx_h2 = make_ctx((const unsigned char *)"\x02h2", 3);
        ctx_h1 = make_ctx((const unsigned char *)"\x08http/1.1", 9);
    }
    nghttp2_session_callbacks_new(&h2cbs);
    nghttp2_session_callbacks_set_on_header_callback(h2cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(h2cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(h2cbs, on_stream_close);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("%s", "epoll_create1 failed");
    if (sigfd >= 0) {
        struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sigfd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &sev) < 0)
            die("%s", "epoll_ctl(signalfd) failed");
    }

    size_t bm = (size_t)(O.k + 7) / 8;
    uint8_t *bits = xcalloc((size_t)O.n, bm ? bm : 1);
    subs = xcalloc((size_t)O.n, sizeof(*subs));
    for (long i = 0; i < O.n; i++) {
        subs[i].seen = bits + (size_t)i * (bm ? bm : 1);
        subs[i].max_seq = -1;
        subs[i].last_id = subs[i].ev_id = -1;
        subs[i].hint_ms = -1;
    }
    msgs = xcalloc((size_t)(O.k ? O.k : 1), sizeof(*msgs));
    seq_id = xcalloc((size_t)(O.k ? O.k : 1), sizeof(*seq_id));
    for (long i = 0; i < O.k; i++)
        seq_id[i] = -1;
    awayq = xcalloc((size_t)O.n, sizeof(*awayq));
    retryq = xcalloc((size_t)(O.k ? O.k : 1), sizeof(*retryq));
    scratch = xcalloc((size_t)O.spc, sizeof(*scratch));
    srand48((long)(real_us() ^ getpid()));

    int64_t t_conn_done = 0, t_go = 0, t_pub0 = 0, t_last_pub = 0, t_end = 0;
    int64_t next_progress = t0, next_sweep = t0, pub_retry = 0, next_sample = 0;
    bool timed_out = false;
    struct epoll_event evs[1024];

    for (;;) {
        int64_t now = mono_us();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        if (phase == PH_CONNECT) {
            double allowed = (double)(now - t0) / 1e6 * O.connect_rate + 1;
            while (next_conn < nconns && next_conn < allowed &&
                   pending_conns < O.max_pending) {
                long i = next_conn++;
                int ns = (int)((O.n - i * O.spc) < O.spc ? O.n - i * O.spc : O.spc);
                for (int j = 0; j < ns; j++)
                    scratch[j] = &subs[i * O.spc + j];
                if (conn_open(&T, O.proto, scratch, ns, false))
                    S.conns++;
            }
            if (next_conn == nconns && S.ready + failed() == O.n) {
                progress(now, t0, true);
                t_conn_done = now;
                phase = PH_WAIT;
                if (O.wait_go) {
                    fprintf(stderr, "READY %ld %ld\n", S.ready, failed());
                    fflush(stderr);
                }
                /* a publisher of a group publishes even with no subscriber
                 * of its own: the other processes expect its messages */
                if (O.k == 0 || (S.ready == 0 && (O.sub_only || !O.wait_go))) {
                    if (O.pid)
                        proc_tree(&ps_conn);
                    phase = PH_DONE;
                    break;
                }
            }
        }
        if (phase == PH_WAIT && (go || !O.wait_go)) {
            /* after the go: every process of a group has its subscribers */
            if (O.pid)
                proc_tree(&ps_conn);
            t_go = now = mono_us();
            phase = PH_SETTLE;
        }
        if (nawayq)
            reconnect_due(now);
        if (phase >= PH_SETTLE && !O.sub_only && !pub && (next_seq < O.k || nretryq) &&
            now >= pub_retry) {
            pub_retry = now + 100000; /* do not spin on a refused publisher */
            pub = conn_open(&PT, O.pub_proto, NULL, 0, true);
        }
        if (phase == PH_SETTLE && (O.sub_only || (pub && pub->state == CS_ACTIVE)) &&
            now - t_go >= (int64_t)(O.settle * 1e6)) {
            if (O.pid)
                proc_tree(&ps_pub0);
            phase = PH_PUBLISH;
            t_pub0 = now = mono_us();
        }
        if (phase == PH_PUBLISH && O.sample_ms > 0 && now >= next_sample) {
            cpu_sample(now);
            next_sample = now + (int64_t)(O.sample_ms * 1000);
        }
        if (phase == PH_PUBLISH && O.sub_only) {
            /* done: every ready subscriber has all K (and, --resume, is
             * subscribed again); or --drain after the last message was due
             * and after the last delivery */
            if (S.live_incomplete <= 0 && S.away == 0)
                break;
            int64_t due = t_pub0 + (int64_t)((double)(O.k - 1) * 1e6 / O.rate);
            int64_t dr = (int64_t)(O.drain * 1e6);
            if (O.drain > 0 && now - due > dr && now - t_last_rx > dr)
                break;
        } else if (phase == PH_PUBLISH) {
            if (nretryq && publish_again(now))
                t_last_pub = now;
            while (next_seq < O.k &&
                   now >= t_pub0 + (int64_t)((double)next_seq * 1e6 / O.rate) &&
                   pub_can_send()) {
                publish(next_seq++, false);
                t_last_pub = now;
            }
            /* done: everything delivered, every POST answered and (--resume)
             * every subscriber back; or (alone, not in a group) no
             * subscriber left that could still receive anything */
            bool answered = next_seq == O.k && S.pub_done >= S.published;
            if (S.live_incomplete <= 0 && S.away == 0 &&
                (answered || (next_seq < O.k && !O.wait_go)))
                break;
            if (next_seq == O.k && O.drain > 0 &&
                now - t_last_pub > (int64_t)(O.drain * 1e6))
                break;
        }
        if (now >= next_sweep) {
            sweep_timeouts(now);
            next_sweep = now + 100000;
        }
        if (now >= next_progress) {
            progress(now, t0, false);
            next_progress = now + (tty ? 250000 : 1000000);
        }

        /* sleep until the next thing we must do */
        int64_t wake = next_sweep < deadline ? next_sweep : deadline;
        if (phase == PH_CONNECT && next_conn < nconns && pending_conns < O.max_pending) {
            int64_t t = t0 + (int64_t)((double)next_conn * 1e6 / O.connect_rate);
            if (t < wake)
                wake = t;
        }
        /* behind schedule with no publisher ready: its events wake us */
        if (phase == PH_PUBLISH && !O.sub_only && next_seq < O.k && pub_can_send()) {
            int64_t t = t_pub0 + (int64_t)((double)next_seq * 1e6 / O.rate);
            if (t < wake)
                wake = t;
        }
        if (phase == PH_SETTLE) {
            int64_t t = t_go + (int64_t)(O.settle * 1e6);
            if (t < wake)
                wake = t;
        }
        if (nawayq && subs[awayq[0]].due < wake)
            wake = subs[awayq[0]].due;
        if (phase == PH_PUBLISH && O.sample_ms > 0 && next_sample < wake)
            wake = next_sample;
        int64_t d = wake - mono_us();
        int ms = d <= 0 ? 0 : (int)((d + 999) / 1000);
        int n = epoll_wait(epfd, evs, 1024, ms);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &sigfd)
                sig_read();
            else
                conn_event(evs[i].data.ptr, evs[i].events);
        }
    }
    t_end = mono_us();
    if (phase <= PH_SETTLE && !t_conn_done)
        t_conn_done = t_end;
    bool published_phase = phase == PH_PUBLISH;
    if (phase != PH_DONE)
        progress(t_end, t0, true);
    phase = PH_DONE;
    if (O.pid)
        proc_tree(&ps_end);

    /* publish outcome */
    long pub_ok = 0, pub_err = 0, pub_pending = 0;
    for (long i = 0; i < next_seq; i++) {
        if (msgs[i].st == M_SENT || msgs[i].st == M_RETRY)
            pub_pending++; /* no final answer when the run ended */
        else if (msgs[i].status >= 200 && msgs[i].status < 300)
            pub_ok++;
        else if (msgs[i].status)
            pub_err++;
    }
    /* --resume: still away at the end, they never got back in time */
    S.fail_resume = S.away;
    double back_s = !S.t_first_end ? -1
                    : S.away       ? (double)(t_end - S.t_first_end) / 1e6
                                   : (double)(S.t_all_back - S.t_first_end) / 1e6;
    long unanswered = 0; /* first request still waiting at the end */
    for (long i = 0; i < O.n; i++)
        if (subs[i].state == SUB_PENDING && !subs[i].ever_ready)
            unanswered++;
    long expected = S.ready * O.k;
    long lost = expected - S.delivered;
    double mean = 0;
    for (size_t i = 0; i < nlat; i++)
        mean += lat[i];
    mean = nlat ? mean / (double)nlat / 1000.0 : -1;
    if (nlat)
        qsort(lat, nlat, sizeof(*lat), cmp_u32);
    double p50 = pct_ms(0.50), p90 = pct_ms(0.90), p99 = pct_ms(0.99),
           pmax = nlat ? lat[nlat - 1] / 1000.0 : -1;
    double elapsed = (double)(t_end - t0) / 1e6;
    double connect_s = (double)(t_conn_done - t0) / 1e6;
    double publish_s = published_phase ? (double)(t_end - t_pub0) / 1e6 : 0;
    /* -1 also when processes of the tree ended during the phase (a restart)
     * took more CPU with them than the others used: see server_cpu_s_sampled */
    double cpu_s = published_phase && O.pid ? ps_end.cpu_s - ps_pub0.cpu_s : -1;
    double sched_s = published_phase && O.pid ? ps_end.sched_s - ps_pub0.sched_s : -1;
    if (cpu_s < 0)
        cpu_s = -1;
    if (sched_s < 0)
        sched_s = -1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double client_cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;

    if (!O.json_only) {
        fprintf(stderr,
                "%s %s%s: N=%ld K=%ld conns=%ld streams/conn=%d rate=%g/s\n"
                "  subscribers ready %ld, failed %ld (connect %ld, tls %ld, "
                "status %ld [503: %ld], header timeout %ld, reset %ld), "
                "unanswered %ld\n"
                "  published %ld (ok %ld, error %ld, no answer %ld)\n"
                "  delivered %ld/%ld, lost %ld, dups %ld, out-of-order %ld, "
                "closed %ld, goaways %ld, ignored %ld\n",
                O.url, proto_name(O.proto, T.tls), O.sse ? " sse" : "", O.n, O.k, nconns,
                O.spc, O.rate, S.ready, failed(), S.fail_connect, S.fail_tls,
                S.fail_status, S.status_503, S.fail_timeout, S.fail_reset, unanswered,
                S.published, pub_ok, pub_err, pub_pending, S.delivered, expected, lost,
                S.dups, S.ooo, S.closed, S.goaways, S.ignored);
        if (S.conn_err_first)
            fprintf(stderr, "  first connect error: %s\n",
                    strerror((int)S.conn_err_first));
        if (O.resume)
            fprintf(
                stderr,
                "  resume: %ld reconnects, %ld subscribed again, %ld refused (503: %ld, "
                "429: %ld), %ld errors, %ld hints; back in %.2fs; never back %ld; "
                "POSTs sent again %ld (%ld publisher timeouts), %ld copies of "
                "messages posted twice\n",
                S.reconnects, S.resubscribed, S.refused, S.refused_503, S.refused_429,
                S.reconnect_errors, S.hints, back_s, S.fail_resume, S.pub_retries,
                S.pub_timeouts, S.republished);
        fprintf(stderr,
                "  latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  mean %.2f\n"
                "  elapsed %.2fs (connect %.2fs, publish+deliver %.2fs)%s, "
                "client cpu %.2fs\n",
                p50, p90, p99, pmax, mean, elapsed, connect_s, publish_s,
                timed_out ? " TIMED OUT" : "", client_cpu);
        if (O.sample_ms > 0)
            fprintf(stderr, "  server cpu peak %.0f%% of a core (%ld samples of %g ms)\n",
                    CS.peak_pct, CS.samples, O.sample_ms);
        if (O.pid)
            fprintf(stderr,
                    "  server pid %ld: %d procs, RSS %ld KiB idle, %ld KiB "
                    "connected, %ld KiB end; threads %ld\n"
                    "  server cpu in publish phase: %.3fs (stat ticks) = %.1f "
                    "us/delivery; %.4fs (schedstat) = %.1f us/delivery\n",
                    O.pid, ps_end.nprocs, ps_idle.rss_kib, ps_conn.rss_kib,
                    ps_end.rss_kib, ps_end.threads, cpu_s,
                    S.delivered ? cpu_s * 1e6 / (double)S.delivered : -1, sched_s,
                    S.delivered ? sched_s * 1e6 / (double)S.delivered : -1);
    }

    printf("{\"tool\":\"h2c-fanout\",\"url\":");
    json_str(O.url);
    printf(",\"proto\":\"%s\",\"publish_proto\":\"%s\",\"sse\":%s,\"n\":%ld,"
           "\"k\":%ld,\"streams_per_conn\":%d,\"conns\":%ld,\"rate\":%g,"
           "\"ready\":%ld,\"failed\":%ld,\"fail_connect\":%ld,\"fail_tls\":%ld,"
           "\"fail_status\":%ld,\"status_503\":%ld,\"fail_timeout\":%ld,"
           "\"fail_reset\":%ld,\"unanswered\":%ld,\"published\":%ld,"
           "\"publish_ok\":%ld,"
           "\"publish_err\":%ld,\"expected\":%ld,\"delivered\":%ld,\"lost\":%ld,"
           "\"dups\":%ld,\"out_of_order\":%ld,\"closed\":%ld,"
           "\"conn_closed\":%ld,\"goaways\":%ld,\"ignored\":%ld,"
           "\"lat_p50_ms\":%.3f,\"lat_p90_ms\":%.3f,\"lat_p99_ms\":%.3f,"
           "\"lat_max_ms\":%.3f,\"lat_mean_ms\":%.3f,\"elapsed_s\":%.3f,"
           "\"connect_s\":%.3f,\"publish_s\":%.3f,\"timed_out\":%s,"
           "\"client_cpu_s\":%.3f",
           proto_name(O.proto, T.tls), proto_name(O.pub_proto, PT.tls),
           O.sse ? "true" : "false", O.n, O.k, O.spc, nconns, O.rate, S.ready, failed(),
           S.fail_connect, S.fail_tls, S.fail_status, S.status_503, S.fail_timeout,
           S.fail_reset, unanswered, S.published, pub_ok, pub_err, expected, S.delivered,
           lost, S.dups, S.ooo, S.closed, S.conn_closed, S.goaways, S.ignored, p50, p90,
           p99, pmax, mean, elapsed, connect_s, publish_s, timed_out ? "true" : "false",
           client_cpu);
    if (O.pid)
        printf(",\"server_pid\":%ld,\"server_procs\":%d,"
               "\"server_rss_kib_idle\":%ld,\"server_rss_kib_connected\":%ld,"
               "\"server_rss_kib_end\":%ld,\"server_pss_kib_connected\":%ld,"
               "\"server_pss_kib_end\":%ld,\"server_threads_connected\":%ld,"
               "\"server_threads_end\":%ld,\"server_cpu_s_publish\":%.3f,"
               "\"server_cpu_us_per_msg\":%.2f,"
               "\"server_sched_s_publish\":%.6f,"
               "\"server_sched_us_per_msg\":%.2f",
               O.pid, ps_end.nprocs, ps_idle.rss_kib, ps_conn.rss_kib, ps_end.rss_kib,
               ps_conn.pss_kib, ps_end.pss_kib, ps_conn.threads, ps_end.threads, cpu_s,
               S.delivered && cpu_s >= 0 ? cpu_s * 1e6 / (double)S.delivered : -1.0,
               sched_s,
               S.delivered && sched_s >= 0 ? sched_s * 1e6 / (double)S.delivered : -1.0);
    printf(",\"resume\":%s,\"reconnects\":%ld,\"resubscribed\":%ld,"
           "\"refused_reconnects\":%ld,\"refused_503\":%ld,\"refused_429\":%ld,"
           "\"refused_other\":%ld,\"reconnect_errors\":%ld,\"reconnect_hints\":%ld,"
           "\"back_s\":%.3f,\"fail_resume\":%ld,\"publish_retries\":%ld,"
           "\"publish_pending\":%ld,\"publish_timeouts\":%ld,\"republished\":%ld,"
           "\"gaps\":%ld",
           O.resume ? "true" : "false", S.reconnects, S.resubscribed, S.refused,
           S.refused_503, S.refused_429, S.refused - S.refused_503 - S.refused_429,
           S.reconnect_errors, S.hints, back_s, S.fail_resume, S.pub_retries, pub_pending,
           S.pub_timeouts, S.republished, S.gaps);
    if (O.pid && O.sample_ms > 0)
        printf(",\"server_cpu_peak_pct\":%.1f,\"server_cpu_samples\":%ld,"
               "\"server_cpu_s_sampled\":%.3f",
               CS.peak_pct, CS.samples, CS.total_s);
    printf(",\"subscribe_only\":%s,\"bind\":", O.sub_only ? "true" : "false");
    if (O.bind_sa.ss_family) {
        char a[INET6_ADDRSTRLEN] = "";
        const void *ad =
            O.bind_sa.ss_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)&O.bind_sa)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)&O.bind_sa)->sin6_addr;
        inet_ntop(O.bind_sa.ss_family, ad, a, sizeof(a));
        json_str(a);
    } else {
        printf("null");
    }
    printf("}\n");
    fflush(stdout);

    for (long i = 0; i < nslots; i++)
        if (conns[i])
            conn_close(conns[i], R_SHUTDOWN);
    if (pub)
        conn_close(pub, R_SHUTDOWN);
    for (long i = 0; i < O.n; i++) {
        buf_free(&subs[i].pend);
        buf_free(&subs[i].ev);
    }
    nghttp2_session_callbacks_del(h2cbs);
    if (ctx_h2)
        SSL_CTX_free(ctx_h2);
    if (ctx_h1)
        SSL_CTX_free(ctx_h1);
    free(subs);
    free(bits);
    free(conns);
    free(freeslots);
    free(awayq);
    free(retryq);
    free(scratch);
    free(CS.pid);
    free(CS.ticks);
    bool lat_ok = true;
    if (O.lat_out && write_lat(O.lat_out)) {
        fprintf(stderr, "h2c-fanout: cannot write %s: %s\n", O.lat_out, strerror(errno));
        lat_ok = false;
    }
    free(msgs);
    free(seq_id);
    free(lat);
    close(epfd);
    if (sigfd >= 0)
        close(sigfd);
    return (lost == 0 && failed() == 0 && !timed_out && lat_ok &&
            (O.sub_only || O.k == S.published) && (!O.resume || S.dups == 0))
               ? 0
               : 1;
}
