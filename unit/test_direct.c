/* Unit tests of h2c_direct: the loop on its own thread, a connection handed
 * over as one end of a socketpair, an nghttp2 client on the other end.
 * Subscribe, publish from the store and by POST, refusals, stop. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_global_mutex.h>
#include <apr_thread_proc.h>
#include <nghttp2/nghttp2.h>

#include "h2c_direct.h"
#include "h2c_seg.h"
#include "h2c_spread.h"
#include "h2c_store.h"
#include "unit.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

typedef struct {
    int status[16];     /* by stream id / 2 */
    char data[16][512]; /* response bodies, truncated */
    size_t len[16];
    int closed[16];
    int goaway;
} client_t;

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *u) {
    client_t *c = u;

    (void)s, (void)flags, (void)vl;
    if (nl == 7 && !memcmp(name, ":status", 7) && f->hd.stream_id < 32) {
        c->status[f->hd.stream_id / 2] = atoi((const char *)value);
    }
    return 0;
}

static int on_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d,
                    size_t n, void *u) {
    client_t *c = u;
    size_t room;

    (void)s, (void)flags;
    if (id >= 32) {
        return 0;
    }
    room = sizeof(c->data[0]) - 1 - c->len[id / 2];
    n = n < room ? n : room;
    memcpy(c->data[id / 2] + c->len[id / 2], d, n);
    c->len[id / 2] += n;
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *u) {
    client_t *c = u;

    (void)s, (void)code;
    if (id < 32) {
        c->closed[id / 2] = 1;
    }
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u) {
    client_t *c = u;

    (void)s;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
    }
    return 0;
}

/* Moves bytes both ways for up to `ms`, or until cond(c) holds. */
static void pump(nghttp2_session *s, int fd, client_t *c, int ms,
                 int (*cond)(client_t *)) {
    uint8_t buf[16384];
    int waited = 0;

    while (waited < ms && !(cond && cond(c))) {
        const uint8_t *out;
        ssize_t n;
        struct pollfd pfd = {fd, POLLIN, 0};

        while ((n = nghttp2_session_mem_send(s, &out)) > 0) {
            if (write(fd, out, (size_t)n) != n) {
                return;
            }
        }
        if (poll(&pfd, 1, 10) > 0) {
            n = read(fd, buf, sizeof(buf));
            if (n <= 0) {
                return;
            }
            nghttp2_session_mem_recv(s, buf, (size_t)n);
        }
        waited += 10;
    }
}

static int subscribed(client_t *c) {
    return c->status[0] == 200 && strstr(c->data[0], "\"text\":\"first\"") != NULL;
}

static int sub_has_two(client_t *c) {
    return strstr(c->data[0], "\"text\":\"second\"") != NULL;
}

static int posted(client_t *c) {
    return c->closed[1] && c->closed[2] && c->closed[3];
}

static int ended(client_t *c) {
    return c->goaway && c->closed[0];
}

static const char body[] = "{\"user\":\"u\",\"text\":\"second\"}";

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *u) {
    (void)s, (void)id, (void)len, (void)src, (void)u;
    memcpy(buf, body, sizeof(body) - 1);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return sizeof(body) - 1;
}

static void *APR_THREAD_FUNC loop_main(apr_thread_t *t, void *d) {
    (void)t;
    h2c_direct_run(d);
    return NULL;
}

static int32_t request(nghttp2_session *s, const char *method, const char *path,
                       const char *ctype, nghttp2_data_provider *dp) {
    nghttp2_nv nv[5] = {
        {(uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
        {(uint8_t *)"content-type", (uint8_t *)ctype, 12, strlen(ctype), 0},
    };

    return nghttp2_submit_request(s, NULL, nv, 5, dp, NULL);
}

static void test_loop(apr_pool_t *p) {
    apr_size_t size = h2c_seg_size(2, 16, 512);
    void *mem = apr_pcalloc(p, size);
    h2c_seg_t seg;
    h2c_store_t store;
    apr_global_mutex_t *lock;
    h2c_direct_t *d;
    h2c_direct_env_t env = {0};
    h2c_spread_t spread;
    const char *hint;
    unsigned retry = 99999;
    h2c_direct_site_t site = {0};
    apr_thread_t *thd;
    apr_status_t rv;
    nghttp2_session_callbacks *cbs;
    nghttp2_session *cs;
    nghttp2_data_provider dp = {{0}, body_read};
    client_t c;
    uint32_t slot, conns, streams;
    uint64_t id;
    int64_t t;
    int sv[2];

    memset(&c, 0, sizeof(c));
    h2c_seg_init(&seg, mem, size, 2, 16, 512, 0);
    h2c_seg_child_claim(&seg, (uint32_t)getpid(), &slot);
    CHECK(apr_global_mutex_create(&lock, NULL, APR_LOCK_DEFAULT, p) == APR_SUCCESS);
    h2c_store_init(&store, &h2c_store_shm_ops, &seg, lock, NULL);
    env.seg = &seg, env.store = &store, env.child_slot = slot,
    env.limits.max_subscribers = 1;
    h2c_spread_seed(&spread, 7);
    env.spread = &spread;
    site.path = "/msgs", site.conf.snapshot = 5, site.conf.max_bytes = 100;
    site.conf.heartbeat_s = 60, site.timeout_us = 30000000;
    site.limits = (h2c_header_limits_t){100, 8190, 8190, 16384};
    CHECK(h2c_direct_create(&d, p, &env) == APR_SUCCESS);
    CHECK(apr_thread_create(&thd, NULL, loop_main, d, p) == APR_SUCCESS);
    CHECK(h2c_store_publish(&store, H2C_ROOMS_DEFAULT,
                            "\"user\":\"u\",\"text\":\"first\"", 25, &id, &t) == 0);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    CHECK(h2c_direct_add(d, sv[0], "peer", &site, PREFACE, sizeof(PREFACE) - 1, 0, NULL,
                         NULL) == 0);
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    nghttp2_session_client_new(&cs, cbs, &c);
    nghttp2_submit_settings(cs, NGHTTP2_FLAG_NONE, NULL, 0);
    /* the preface went with h2c_direct_add: nghttp2's own must not go out */
    {
        const uint8_t *out;
        ssize_t n = nghttp2_session_mem_send(cs, &out);

        CHECK(n >= 24 && !memcmp(out, PREFACE, 24));
        if (n > 24) {
            CHECK(write(sv[1], out + 24, (size_t)n - 24) == n - 24);
        }
    }
    CHECK(request(cs, "GET", "/msgs", "x", NULL) == 1);
    pump(cs, sv[1], &c, 3000, subscribed);
    CHECK(c.status[0] == 200);
    CHECK(strstr(c.data[0], "\"text\":\"first\"") != NULL); /* the snapshot */

    /* a POST publishes; the cap (1) refuses a second subscriber; JSON only */
    CHECK(request(cs, "POST", "/msgs", "application/json", &dp) == 3);
    CHECK(request(cs, "GET", "/msgs", "x", NULL) == 5);
    CHECK(request(cs, "POST", "/msgs", "text/plain", &dp) == 7);
    pump(cs, sv[1], &c, 3000, posted);
    CHECK(c.status[1] == 201 && strstr(c.data[1], "\"id\":2") != NULL);
    CHECK(c.status[2] == 503 && strstr(c.data[2], "\"error\"") != NULL);
    CHECK(c.status[3] == 415);
    pump(cs, sv[1], &c, 3000, sub_has_two);
    CHECK(sub_has_two(&c));
    h2c_seg_direct_totals(&seg, &conns, &streams);
    CHECK(conns == 1 && streams == 1);
    CHECK(h2c_seg_sub_total(&seg) == 1);

    /* stop: the held stream ends with its reconnect hint as its last line
     * (H2ChatReconnectSpread, armed before the stop), GOAWAY, the count
     * goes back to 0 */
    h2c_spread_arm(&spread, 2000);
    h2c_direct_stop(d);
    pump(cs, sv[1], &c, 3000, ended);
    CHECK(ended(&c));
    hint = strstr(c.data[0], "{\"type\":\"reconnect\",\"retry\":");
    CHECK(hint && sscanf(hint, "{\"type\":\"reconnect\",\"retry\":%u}\n", &retry) == 1);
    CHECK(retry < 2000);
    CHECK(hint && hint[strlen(hint) - 1] == '\n' &&
          strchr(hint, '\n') == hint + strlen(hint) - 1);
    apr_thread_join(&rv, thd);
    CHECK(h2c_seg_sub_total(&seg) == 0);
    h2c_seg_direct_totals(&seg, &conns, &streams);
    CHECK(conns == 0 && streams == 0);
    CHECK(h2c_seg_refusals(&seg, H2C_REFUSED_CAP) == 1);
    nghttp2_session_del(cs);
    nghttp2_session_callbacks_del(cbs);
    close(sv[1]);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_loop, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_direct");
}
