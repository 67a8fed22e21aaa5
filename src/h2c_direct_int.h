/* h2c_direct internals, shared by its two files: h2c_direct.c (the loop,
 * connections, the public calls) and h2c_direct_req.c (requests: the
 * nghttp2 callbacks, subscribers, publishes, replies). Not for other units. */
#ifndef H2C_DIRECT_INT_H
#define H2C_DIRECT_INT_H

#include <apr_thread_cond.h>
#include <apr_time.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <nghttp2/nghttp2.h>

#include "h2c_budget.h"
#include "h2c_penalty.h"
#include "h2c_direct.h"
#include "h2c_follow.h"
#include "h2c_presence.h"
#include "h2c_log.h"
#include "h2c_sock.h"

#define H2C_DIRECT_COALESCE 65536 /* frames gathered into one write */
/* A held stream's DATA frames carry at most this much. nghttp2 writes each
 * frame into a 16 KiB buffer of the connection's session, malloc'd once and
 * touched only as far as frames reach: a resume that replays a burst in
 * full-size frames would make all of it resident, for every connection
 * (+12 KiB each, for the life of the connection: seen after a graceful
 * restart at 50,000). Capped, at most the first two pages are ever
 * touched; the frame headers cost 9 bytes in 3.5 KiB. */
#define H2C_DIRECT_DATA_MAX 3584

typedef struct conn_t conn_t;
typedef struct strm_t strm_t;
typedef struct job_t job_t;

typedef enum {
    STRM_NEW,   /* the request is coming in */
    STRM_CHECK, /* complete, waiting for its connection's turn at the check */
    STRM_WAIT,  /* with the check, or (a publish, a subscriber's rooms) the publisher */
    STRM_SUB,   /* a held stream */
    STRM_REPLY, /* a complete answer is going out */
} strm_kind_t;

struct strm_t {
    conn_t *c;
    int32_t id;
    strm_kind_t kind;
    strm_t *lprev, *lnext; /* the connection's streams */
    /* the request */
    char *method, *scheme, *path, *ctype, *accept, *last_event_id, *origin;
    char *authority;
    char *fields; /* every field, "name: value\n" (only for a check) */
    apr_size_t fields_len, fields_cap;
    int64_t begun_us; /* when its headers began (wall clock, for the check) */
    int checked;      /* the check let it through ... */
    char *user;       /* ... as this user (NULL: none), from this address
                         (mod_remoteip's; NULL: the connection's) ... */
    char *client;
    h2c_direct_ask_t asked; /* ... and its request, for its log line (the */
    char *asked_buf;        /* strings in asked_buf, malloc'ed) */
    int status;             /* the answer's status, once given */
    h2c_header_count_t hdr; /* the header list against httpd's limits */
    int head;               /* HEAD: headers only */
    int64_t clen;           /* -1: not given */
    char *body;
    uint32_t body_len, body_cap;
    int body_over;
    job_t *job; /* STRM_WAIT: the job in flight */
    /* a reply's body, or a subscriber's protocol lines and split messages */
    char *out;
    apr_size_t out_len, out_off;
    /* a subscriber */
    h2c_follow_t follow;     /* its place in its rooms ... */
    uint32_t *rooms;         /* ... their indexes (malloc'ed), held in the rooms */
    uint32_t *mem;           /* ... its member records + 1 there (malloc'ed; NULL:
                                it names nobody) */
    uint32_t nrooms;         /* 0: none held */
    h2c_presence_t presence; /* the counts it told (H2ChatPresence count) */
    int presence_off;
    int resume; /* where it starts, kept while its rooms are held */
    uint64_t since;
    uint64_t lat_from; /* ids from here were committed while it held: sampled */
    uint64_t lat_id;   /* the newest of those it framed ... */
    uint32_t lat_us;   /* ... and its commit stamp */
    int sse;
    int entered;     /* counted in the segment ... */
    h2c_hold_t hold; /* ... here (h2c_policy_hold) */
    int deferred;    /* nghttp2 waits for resume_data */
    int ending;      /* send what is pending, then end the stream */
    uint64_t sent;
    int64_t heartbeat_due;
    /* stuck streams: something to send that the client's window keeps back,
     * or a request that never completes */
    int64_t progress;      /* last time bytes of it moved */
    uint64_t data_out;     /* DATA bytes sent on it ... */
    uint64_t wu_mark;      /* ... as of the client's last WINDOW_UPDATE for it */
    int64_t pending_since; /* 0: nothing waiting (as of the last tick) */
};

struct conn_t {
    h2c_direct_t *d;
    int fd;
    const h2c_direct_io_t *io; /* NULL: the socket's own bytes (h2c) */
    void *io_ctx;
    /* httpd's processing of its requests (check, log): its io's (TLS) or
     * the h2c one's own (only check, log and release used); NULL: none */
    const h2c_direct_io_t *chk;
    void *chk_ctx;
    int64_t release_at; /* io: not released before this (monotonic us) */
    conn_t *more_next;  /* io: on the loop's `more` list ... */
    int more;           /* ... bytes may wait in its buffers: read without an event */
    nghttp2_session *ngh;
    const h2c_direct_site_t *site;
    char peer[64];
    strm_t *streams;
    conn_t *prev, *next;
    char *pend; /* bytes nghttp2 made that the socket did not take yet */
    apr_size_t pend_len, pend_off;
    int want_out; /* EPOLLOUT armed */
    int closing;
    int dead;       /* closed; freed at the end of the loop pass */
    int64_t active; /* last byte in or out (idle connections) */
    int64_t check_due;
    h2c_stall_t stall;
    conn_t *q_next; /* queued by h2c_direct_add; the dead list */
    char *pre;
    apr_size_t prelen;
    /* work without progress (h2c_direct_guard.c) */
    h2c_budget_t budget;
    uint64_t fed, framed;       /* bytes given to nghttp2; bytes of frames it showed us */
    uint64_t data_out, wu_mark; /* DATA sent; as of the last connection WINDOW_UPDATE */
    int goaway;                 /* terminated: nothing more is read, GOAWAY goes out */
    int checking;               /* its check jobs out (its io is not released) */
    int check_turn;             /* one of them is a request's check */
    int linger_due;             /* closed while checks were out: its linger waits */
    uint64_t lat_id;            /* the newest message sampled for latency */
    int64_t goaway_at;
};

/* What the publisher thread does for the loop: everything that takes the
 * global lock or waits on a store. */
typedef enum {
    JOB_PUBLISH,  /* a POST: fields into room */
    JOB_HOLD,     /* a subscriber's rooms: names in, idx out */
    JOB_RELEASE,  /* a gone subscriber's rooms: idx */
    JOB_COUNTS,   /* ?presence: names in, counts out (in idx) */
    JOB_MODERATE, /* a DELETE: entry line (fields) of mkind into room */
    JOB_CHECK,    /* a check thread: httpd's request processing (ask -> pass) */
    JOB_LOG       /* a check thread: the access log line of a request let through,
                     or answered by the loop before the check */
} job_kind_t;

struct job_t {
    strm_t *s; /* NULL once the stream is gone: the answer is dropped */
    job_kind_t kind;
    char *fields; /* publish; moderate: the entry's line */
    apr_size_t flen;
    h2c_entry_kind_t mkind; /* moderate */
    uint64_t target;
    char *room;
    const char **names; /* hold: n names (one malloc with the strings) */
    uint32_t *idx;      /* hold, release: n indexes (malloc) */
    char *member;       /* hold: who the stream is (H2ChatPresence members) */
    uint32_t *aux;      /* hold (out), release: n member records + 1; counts
                           (out, members): n room indexes */
    uint32_t n;
    apr_status_t rv;
    uint64_t id;
    int64_t time_ms;
    conn_t *gc; /* check: the connection (still there while checking) */
    h2c_direct_ask_t ask;
    h2c_direct_pass_t pass;
    job_t *next;
};

struct h2c_direct_t {
    h2c_direct_env_t env;
    h2c_rooms_t *rooms;  /* the history held streams read (the store's) */
    apr_pool_t *scratch; /* cleared every loop pass */
    int ep, evfd;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    conn_t *conns;
    h2c_penalty_t *penalty;   /* the segment's; NULL: H2ChatDirectPenalty off */
    conn_t *dead;             /* closed this pass: epoll events may still name them */
    conn_t *late;             /* closed, released when their io allows (release_at) */
    conn_t *more;             /* io connections to read again without an event */
    apr_thread_mutex_t *lock; /* the queues and flags below */
    apr_thread_cond_t *cond;  /* the publisher waits for jobs */
    conn_t *queue;
    job_t *jobs_in, *jobs_out; /* FIFO in (to the publisher), LIFO out */
    job_t **jobs_in_tail;
    apr_thread_t *publisher;
    int publishing;                     /* the publisher has a job in hand */
    job_t *checks_in, **checks_in_tail; /* FIFO to the check threads */
    uint32_t checks_queued;
    uint64_t lines_dropped; /* early answers' log lines past the queue's bound */
    apr_thread_cond_t *ccond;
    apr_thread_t **checkers;
    uint32_t ncheckers;
    int cstop;          /* the check threads leave */
    int publisher_done; /* ... and left: jobs run where they are made */
    int stop;
    int64_t now_us;
    uint64_t delivered;             /* the rooms' last id at the last delivery pass */
    uint32_t presence_seen;         /* ... and their presence word */
    char date[APR_RFC822_DATE_LEN]; /* the Date of answers, once a second */
    int64_t date_sec;
    char buf[H2C_DIRECT_COALESCE];
};

/* h2c_direct_io.c: a connection's bytes */
void h2c_direct_recv(conn_t *c); /* what it sent, into nghttp2 (a budget a pass) */
void h2c_direct_send(conn_t *c); /* what nghttp2 made, to the socket */
void h2c_direct_recv_failed(conn_t *c, ssize_t rv); /* nghttp2 refused input */
void h2c_direct_linger(conn_t *c);   /* closing: last bytes, FIN, read away */
void h2c_direct_more_add(conn_t *c); /* io: read again without an event */
void h2c_direct_more_remove(conn_t *c);
/* the latency sample of a pass over c (data_out0: its DATA bytes before) */
void h2c_direct_sample_latency(conn_t *c, uint64_t data_out0);

/* h2c_direct.c */
void h2c_direct_resume(conn_t *c, int all);
/* A connection never started (not in epoll): closed and freed (an io one
 * when its io allows). */
void h2c_direct_conn_drop(h2c_direct_t *d, conn_t *c);
void h2c_direct_ring(h2c_direct_t *d);
int64_t h2c_direct_wall_ms(void);

/* For fuzz/fuzz_direct.c: one connection driven by hand, without the loop
 * thread. open: fd is a connected non-blocking socket (closed on failure);
 * input: bytes as if read from it, answers written to it (0 once the
 * connection closed); settle: the publishes given so far are answered,
 * the clock moves by later_us and the once-a-second work runs; end: closes
 * the connection if it is open and frees it. */
conn_t *h2c_direct_conn_open(h2c_direct_t *d, int fd, const h2c_direct_site_t *site);
int h2c_direct_conn_input(conn_t *c, const uint8_t *data, apr_size_t len);
void h2c_direct_settle(h2c_direct_t *d, int64_t later_us);
void h2c_direct_conn_end(h2c_direct_t *d, conn_t *c);

/* h2c_direct_guard.c: what a hostile peer may cost */
void h2c_direct_guard_callbacks(nghttp2_session_callbacks *cbs);
void h2c_direct_guard_start(conn_t *c);
/* Takes `cost` from the connection's budget; 0 if it is spent: the
 * connection is then terminated (GOAWAY ENHANCE_YOUR_CALM). */
int h2c_direct_charge(conn_t *c, uint32_t cost, const char *what);
/* A header list went far past the limits: its stream is reset, and it
 * costs a good part of the budget (nghttp2 still decodes the rest of the
 * list), all of it if `more` (the list goes on in CONTINUATION frames).
 * 0 if the budget is spent: then nghttp2 decodes nothing more. */
int h2c_direct_charge_oversize(conn_t *c, int more);
/* After nghttp2 took n bytes: bytes no frame accounted for cost too. */
void h2c_direct_fed(conn_t *c, apr_size_t n);
/* n bytes of stream s went out as DATA (a WINDOW_UPDATE after them is
 * progress, one after none is not). */
static inline void h2c_direct_sent_data(strm_t *s, apr_size_t n) {
    s->data_out += n;
    s->c->data_out += n;
}
/* Ends the connection with GOAWAY(code): nothing more is read, what is
 * queued goes out, then it closes. ENHANCE_YOUR_CALM also refuses the
 * client's address a while (H2ChatDirectPenalty). */
void h2c_direct_terminate(conn_t *c, uint32_t code);
/* A new connection (not started) from a refused address: told
 * GOAWAY(ENHANCE_YOUR_CALM), closed and freed -> 1; else 0. */
int h2c_direct_refuse_penalized(h2c_direct_t *d, conn_t *c);

/* h2c_direct_check.c: httpd's request processing on the check threads */
apr_status_t h2c_direct_check_start(h2c_direct_t *d, apr_pool_t *p);
/* On the loop, once it ended: the check threads leave (what they were not
 * given is answered as gone); every connection is then free to go. */
void h2c_direct_check_stop(h2c_direct_t *d);
/* A complete request of an io connection with a check: to the check in its
 * connection's turn (one at a time, lowest stream first). */
void h2c_direct_check(strm_t *s);
/* A check job came back: the next stream of its connection goes. */
void h2c_direct_check_done(job_t *job);
/* The loop answers a request of a connection with a check before httpd saw
 * it (its own limits, a path not the chat's, a preflight, a full queue):
 * the request as it came, kept for its access log line. */
void h2c_direct_check_asked(strm_t *s);
/* A request the check let through, or the loop answered before it, is done
 * with (answered, or its held stream ended): its access log line, on a
 * check thread. */
void h2c_direct_check_log(strm_t *s);

/* The client's address as the rules count it: httpd's (mod_remoteip) when
 * a check let the request through, else the connection's. */
static inline const char *h2c_direct_client(const strm_t *s) {
    return s->client ? s->client : s->c->peer;
}

/* h2c_direct_reply.c: complete answers */
/* status, JSON body (none for HEAD) and headers */
void h2c_direct_reply(strm_t *s, int status, const char *json, const char *retry_after,
                      const char *allow);
/* a refusal as the policy decided it, rendered as the handler does */
void h2c_direct_refuse(strm_t *s, const h2c_verdict_t *v);
void h2c_direct_reply_pass(strm_t *s, const h2c_direct_pass_t *pass); /* httpd's */
void h2c_direct_preflight(strm_t *s); /* OPTIONS with an Origin */
/* the CORS fields of an answer to a listed origin into nv (room for 4) */
size_t h2c_direct_cors(const strm_t *s, nghttp2_nv *nv);
void h2c_direct_describe(const strm_t *s, const char *path, const char *args,
                         h2c_request_t *req); /* as the policy reads it */
int h2c_direct_set_out(strm_t *s, const char *data, apr_size_t len); /* 0: no memory */

/* h2c_direct_req.c */
void h2c_direct_dispatch(strm_t *s);
void h2c_direct_callbacks(nghttp2_session_callbacks *cbs);
void h2c_direct_strm_free(strm_t *s);
void h2c_direct_published(h2c_direct_t *d,
                          job_t *job); /* on the loop: answer a finished job */
void h2c_direct_job_run(h2c_direct_t *d, job_t *job); /* the publisher's part */
void h2c_direct_job_free(job_t *job);
void h2c_direct_heartbeat(strm_t *s);
/* Presence lines for a held stream, if a look is due: 1 if it has some. */
int h2c_direct_presence(strm_t *s);
void h2c_direct_hint(strm_t *s); /* the loop stops: the reconnect hint, if armed */
int h2c_direct_has_pending(const strm_t *s);

#endif /* H2C_DIRECT_INT_H */
