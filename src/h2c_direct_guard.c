/* h2c_direct_guard: what one connection of the direct loop may make the
 * loop do without progress. The loop is one thread per child: a peer that
 * keeps it busy delays every other connection of that child.
 *
 * nghttp2 1.52 (with Debian's backports) limits some of it itself — the
 * reset rate, SETTINGS entries, unsent PING/SETTINGS acknowledgements,
 * CONTINUATION frames — but not WINDOW_UPDATE, empty DATA, PRIORITY, PING
 * or SETTINGS floods, nor bytes it drops unseen (DATA on closed streams,
 * unknown frame types). Each such frame takes a token from the
 * connection's budget (h2c_budget), as do refused header lists; a peer
 * that spends them all gets GOAWAY(ENHANCE_YOUR_CALM), one log line
 * (H2C0053) and a server-status count, and is closed; its address's new
 * connections are then refused for H2ChatDirectPenalty seconds (H2C0055,
 * counted too), each with a GOAWAY and no more work than that. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "h2c_direct_int.h"
#include "h2c_tags.h"

#define H2C_GUARD_BURST 1000   /* tokens a connection starts with */
#define H2C_GUARD_RATE 100     /* tokens given back per second */
#define H2C_GUARD_UNSEEN 16384 /* bytes no frame accounts for, per token */
/* A header list far past the limits costs the loop up to ~0.6 ms of HPACK
 * decoding it cannot skip once reset: the third within a few seconds ends
 * the connection, and so does one that goes on into CONTINUATION frames.
 * A client that merely sends too many headers gets 431 long before this. */
#define H2C_GUARD_OVERSIZE 400

void h2c_direct_guard_start(conn_t *c) {
    h2c_budget_init(&c->budget, H2C_GUARD_BURST, c->d->now_us);
}

/* The server's preface (an empty SETTINGS) and GOAWAY(last stream 0,
 * ENHANCE_YOUR_CALM): all a refused connection gets. */
static const uint8_t calm_bytes[] = {
    0,
    0,
    0,
    NGHTTP2_SETTINGS,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    8,
    NGHTTP2_GOAWAY,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    NGHTTP2_ENHANCE_YOUR_CALM,
};

static void penalize(conn_t *c) {
    h2c_direct_t *d = c->d;

    if (d->penalty &&
        h2c_penalty_add(d->penalty, c->peer, d->now_us + d->env.penalty_us, d->now_us)) {
        h2c_log(H2C_LOG_INFO, H2C_TAG_PENALTY,
                "new connections from %s refused for %" PRId64
                " s: it was told ENHANCE_YOUR_CALM (direct)",
                c->peer, d->env.penalty_us / 1000000);
    }
}

int h2c_direct_refuse_penalized(h2c_direct_t *d, conn_t *c) {
    ssize_t n;

    if (!d->penalty || !h2c_penalty_has(d->penalty, c->peer, d->now_us)) {
        return 0;
    }
    if (!c->io) { /* TLS: closed without a word (it would need a record) */
        n = write(c->fd, calm_bytes,
                  sizeof(calm_bytes)); /* a new socket takes 26 bytes */
        (void)n;
    }
    h2c_seg_count_penalized(d->env.seg);
    h2c_seg_direct_count(d->env.seg, d->env.child_slot, -1, 0); /* h2c_direct_add's */
    h2c_direct_conn_drop(d, c);
    return 1;
}

void h2c_direct_terminate(conn_t *c, uint32_t code) {
    struct epoll_event ev;

    if (c->goaway || !c->ngh) {
        return;
    }
    if (code == NGHTTP2_ENHANCE_YOUR_CALM) {
        penalize(c);
    }
    c->goaway = 1;
    c->goaway_at = c->d->now_us;
    nghttp2_session_terminate_session(c->ngh, code);
    /* nothing more is read: drop the interest, or a peer that keeps
     * sending would wake the loop for nothing until the close */
    ev.events = EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(c->d->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

int h2c_direct_charge(conn_t *c, uint32_t cost, const char *what) {
    h2c_direct_t *d = c->d;

    if (c->goaway ||
        h2c_budget_take(&c->budget, cost, d->now_us, H2C_GUARD_RATE, H2C_GUARD_BURST)) {
        return !c->goaway;
    }
    h2c_seg_count_calm(d->env.seg);
    h2c_log(H2C_LOG_INFO, H2C_TAG_CALM,
            "connection from %s closed with GOAWAY(ENHANCE_YOUR_CALM): %s kept the loop "
            "busy without progress (direct)",
            c->peer, what);
    h2c_direct_terminate(c, NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
}

int h2c_direct_charge_oversize(conn_t *c, int more) {
    /* one that goes on in CONTINUATION frames: nghttp2 would decode them
     * all (up to its limit of 8) for nothing, with no callback to us */
    return h2c_direct_charge(c, more ? H2C_GUARD_BURST + 1 : H2C_GUARD_OVERSIZE,
                             "header lists far over the limits");
}

void h2c_direct_fed(conn_t *c, apr_size_t n) {
    c->fed += n;
    /* frames are counted whole when their header is read, so `framed`
     * runs ahead of `fed` except for bytes nghttp2 dropped unseen */
    if (c->fed > c->framed + H2C_GUARD_UNSEEN) {
        uint64_t units = (c->fed - c->framed) / H2C_GUARD_UNSEEN;

        c->framed += units * H2C_GUARD_UNSEEN;
        h2c_direct_charge(c, (uint32_t)units, "data nghttp2 dropped unseen");
    }
}

/* A WINDOW_UPDATE after no DATA of ours since the last one for the same
 * window (the connection's, or a stream's) moves nothing. A client that
 * acknowledges what it reads, however eagerly and whatever its window
 * size, always follows DATA. */
static int window_update_idle(conn_t *c, int32_t stream_id) {
    uint64_t *out = &c->data_out, *mark = &c->wu_mark;
    strm_t *s;

    if (stream_id) {
        if (!(s = nghttp2_session_get_stream_user_data(c->ngh, stream_id))) {
            return 1; /* a stream that is gone or never was */
        }
        out = &s->data_out, mark = &s->wu_mark;
    }
    if (*out == *mark) {
        return 1;
    }
    *mark = *out;
    return 0;
}

/* Every frame's header, before nghttp2 acts on it. */
static int on_begin_frame(nghttp2_session *ngh, const nghttp2_frame_hd *hd, void *user) {
    conn_t *c = user;
    const char *what = NULL;

    (void)ngh;
    c->framed += hd->length + 9;
    switch (hd->type) {
    case NGHTTP2_DATA:
        if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM)) {
            what = "empty DATA frames";
        }
        break;
    case NGHTTP2_HEADERS:
        break; /* header lists are counted by the request policy (and
                * nghttp2 shows no CONTINUATION frame here) */
    case NGHTTP2_WINDOW_UPDATE:
        if (window_update_idle(c, hd->stream_id)) {
            what = "WINDOW_UPDATE frames";
        }
        break;
    case NGHTTP2_PRIORITY:
        what = "PRIORITY frames";
        break;
    case NGHTTP2_PING:
        what = "PING frames";
        break;
    case NGHTTP2_SETTINGS:
        what = "SETTINGS frames";
        break;
    case NGHTTP2_RST_STREAM:
        what = "RST_STREAM frames";
        break;
    default:
        what = "frames of no use to the chat";
        break;
    }
    if (what && !h2c_direct_charge(c, 1, what)) {
        return 0; /* terminated: nghttp2 ignores the rest of the input */
    }
    return 0;
}

void h2c_direct_guard_callbacks(nghttp2_session_callbacks *cbs) {
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
}
