/* h2c_direct_io: a connection's bytes (see h2c_direct.h): reads into
 * nghttp2, frames out through the socket or the connection's io (TLS
 * records), what the socket did not take, the linger at the close. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2c_direct_int.h"
#include "h2c_tags.h"

#define H2C_DIRECT_READ 16384
#define H2C_DIRECT_READS 4 /* reads per event: a flooding client waits its turn */

/* FIN, then what the client sent meanwhile is read away (a little, without
 * waiting), so that the close sends no RST that would overtake our last
 * frames (a GOAWAY) in the client's receive path. */
static void linger(int fd) {
    char sink[4096];
    int i;

    shutdown(fd, SHUT_WR);
    for (i = 0; i < 16 && read(fd, sink, sizeof(sink)) > 0; i++) {
    }
}

/* An io connection's last bytes (close_notify), as far as the socket takes
 * them now, then the linger; the fd closes with the release. */
void h2c_direct_linger(conn_t *c) {
    const char *out = NULL;
    apr_size_t len = 0;
    ssize_t w;

    if (c->io) {
        c->io->bye(c->io_ctx, &out, &len);
        w = len ? write(c->fd, out, len) : 0;
        (void)w;
        linger(c->fd);
        return;
    }
    linger(c->fd);
    close(c->fd);
}

/* Off the `more` list (it is short: connections whose read budget ran out). */
void h2c_direct_more_remove(conn_t *c) {
    conn_t **p;

    for (p = &c->d->more; *p && *p != c; p = &(*p)->more_next) {
    }
    if (*p) {
        *p = c->more_next;
    }
    c->more = 0;
}

void h2c_direct_more_add(conn_t *c) {
    if (!c->more) {
        c->more = 1;
        c->more_next = c->d->more;
        c->d->more = c;
    }
}

static void arm_out(conn_t *c, int on) {
    struct epoll_event ev;

    if (c->want_out == on) {
        return;
    }
    /* a terminated connection reads nothing more (h2c_direct_terminate) */
    ev.events = (c->goaway ? 0 : EPOLLIN) | EPOLLRDHUP | (on ? EPOLLOUT : 0);
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

/* The bytes for the socket for len bytes of frames: the same ones for
 * h2c; TLS records for an io connection. 0: the connection is gone. */
static int conn_seal(conn_t *c, const char *in, apr_size_t len, const char **out,
                     apr_size_t *olen) {
    *out = in;
    *olen = len;
    return !c->io || !len || c->io->seal(c->io_ctx, in, len, out, olen) == APR_SUCCESS;
}

/* Keeps what the socket did not take (rlen bytes at rest), then `extra`
 * (frames not sealed yet). */
static void keep_rest(conn_t *c, const char *rest, apr_size_t rlen, const uint8_t *extra,
                      apr_size_t elen) {
    char *p = malloc(rlen ? rlen : 1), *q;
    const char *sx;
    apr_size_t sl;

    if (!p) {
        c->closing = 1;
        return;
    }
    memcpy(p, rest, rlen); /* before sealing: `rest` may be the io's buffer */
    if (!conn_seal(c, (const char *)extra, elen, &sx, &sl) ||
        (sl && !(q = realloc(p, rlen + sl)))) {
        free(p);
        c->closing = 1;
        return;
    }
    if (sl) {
        p = q;
        memcpy(p + rlen, sx, sl);
    }
    free(c->pend);
    c->pend = p;
    c->pend_len = rlen + sl;
    c->pend_off = 0;
    arm_out(c, 1);
}

/* Sends what nghttp2 has, gathered into few writes. What the socket does
 * not take waits in c->pend, and nothing more is made for this connection
 * until it drained: the backlog of a slow reader stays one buffer. Once it
 * drained, its streams catch up. */
void h2c_direct_send(conn_t *c) {
    h2c_direct_t *d = c->d;
    apr_size_t have = 0, done, olen;
    const char *out;
    int r;

    if (c->closing) {
        return;
    }
    if (c->pend_off < c->pend_len) {
        r = write_some(c, c->pend + c->pend_off, c->pend_len - c->pend_off, &done);
        c->pend_off += done;
        if (r <= 0) {
            c->closing = r < 0;
            arm_out(c, 1);
            return;
        }
        c->pend_off = c->pend_len = 0;
        h2c_direct_resume(c, 0);
    }
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->ngh, &data);

        if (n < 0) {
            c->closing = 1;
            return;
        }
        /* frames are at most 16 KiB + 9 here (SETTINGS_MAX_FRAME_SIZE is
         * nghttp2's default), so one always fits an empty buffer */
        if (n > 0 && have + (apr_size_t)n <= sizeof(d->buf)) {
            memcpy(d->buf + have, data, (size_t)n);
            have += (apr_size_t)n;
            continue;
        }
        if (!conn_seal(c, d->buf, have, &out, &olen) ||
            (r = write_some(c, out, olen, &done)) < 0) {
            c->closing = 1;
            return;
        }
        if (r == 0) {
            keep_rest(c, out + done, olen - done, data, n > 0 ? (apr_size_t)n : 0);
            return;
        }
        if (n == 0) {
            break;
        }
        memcpy(d->buf, data, (size_t)n); /* the chunk that did not fit */
        have = (apr_size_t)n;
    }
    arm_out(c, 0);
    if (!nghttp2_session_want_read(c->ngh) && !nghttp2_session_want_write(c->ngh)) {
        c->closing = 1;
    }
}

/* Delivery latency, once per connection and pass: when everything it made
 * went to the socket, the newest message whose frames all left (none of it
 * waits in the stream's buffer), if not sampled before. data_out0: the
 * connection's DATA bytes before the pass; a pass that sent none (a PING,
 * a WINDOW_UPDATE, a flood of them) does not walk its streams. */
void h2c_direct_sample_latency(conn_t *c, uint64_t data_out0) {
    uint64_t id = 0;
    uint32_t us = 0;
    strm_t *s;

    if (c->data_out == data_out0 || c->closing || c->pend_off < c->pend_len ||
        c->d->env.seg->lat_off) {
        return;
    }
    for (s = c->streams; s; s = s->lnext) {
        if (s->kind == STRM_SUB && s->lat_id > id && s->out_off >= s->out_len) {
            id = s->lat_id;
            us = s->lat_us;
        }
    }
    if (id > c->lat_id) {
        c->lat_id = id;
        h2c_seg_lat_sample(c->d->env.seg, c->d->env.child_slot, us);
    }
}

/* nghttp2's verdict on input it could not take: GOAWAY with the error
 * that fits (it queues none itself for these), then close. */
void h2c_direct_recv_failed(conn_t *c, ssize_t rv) {
    uint32_t code = NGHTTP2_PROTOCOL_ERROR;

    if (c->goaway) {
        return; /* ours came first, and was logged and counted */
    }
    if (rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        code = NGHTTP2_ENHANCE_YOUR_CALM;
        h2c_seg_count_calm(c->d->env.seg);
    } else if (rv == NGHTTP2_ERR_NOMEM || rv == NGHTTP2_ERR_CALLBACK_FAILURE) {
        code = NGHTTP2_INTERNAL_ERROR;
    }
    h2c_log(H2C_LOG_INFO, H2C_TAG_PROTOCOL,
            "connection from %s closed with GOAWAY(%u): %s (direct)", c->peer, code,
            nghttp2_strerror((int)rv));
    h2c_direct_terminate(c, code);
}

/* > 0 bytes read; 0 the client is gone; -1 nothing now. */
static apr_ssize_t conn_read(conn_t *c, uint8_t *buf, apr_size_t len) {
    ssize_t n;

    if (c->io) {
        return c->io->recv(c->io_ctx, (char *)buf, len);
    }
    while ((n = read(c->fd, buf, len)) < 0 && errno == EINTR) {
    }
    return n >= 0 ? n : (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : 0;
}

void h2c_direct_recv(conn_t *c) {
    uint8_t buf[H2C_DIRECT_READ];
    int i;

    for (i = 0; i < H2C_DIRECT_READS && !c->goaway; i++) {
        apr_ssize_t n = conn_read(c, buf, sizeof(buf)), rv;

        if (n < 0) {
            return; /* nothing now */
        }
        if (n == 0) {
            c->closing = 1; /* EOF or error: the client is gone */
            return;
        }
        c->active = c->d->now_us;
        if ((rv = nghttp2_session_mem_recv(c->ngh, buf, (size_t)n)) < 0) {
            h2c_direct_recv_failed(c, rv);
            return;
        }
        h2c_direct_fed(c, (apr_size_t)n);
        /* a short read emptied the socket; an io's buffers may hold more */
        if ((size_t)n < sizeof(buf) && !c->io) {
            return;
        }
    }
    if (c->io && !c->goaway) {
        h2c_direct_more_add(
            c); /* the budget ran out: the rest is read in the next pass */
    }
}
