/* mod_h2chat_direct_tls: H2ChatDirect on a TLS virtual host.
 *
 * mod_ssl does the handshake on an MPM worker as for every connection.
 * When ALPN picks "h2" on a virtual host that says `H2ChatDirect` itself
 * (the SNI one), this module claims the switch before mod_http2 does, and
 * after the handshake takes the connection whole: the event MPM lets go of
 * it (CONN_STATE_SUSPENDED) and this child's loop serves it from then on,
 * like an h2c one, through mod_ssl's own filters:
 *
 *   - the loop's frames go down c->output_filters; mod_ssl makes records of
 *     them, and the filter below it (H2CHAT_NET_OUT) takes those bytes into
 *     the loop's buffer instead of the core's: the loop writes them with its
 *     own non-blocking write(), so a client that stops reading never blocks
 *     it (the core output filter waits on FLUSH, which mod_ssl sends itself);
 *   - its reads come up c->input_filters without blocking; H2CHAT_NET_IN
 *     below mod_ssl turns any read that would block into an error, and
 *     reads the socket itself once the core holds none of its bytes (the
 *     core's reads cost the connection's allocator a node each);
 *   - mod_ssl's coalescing filter (it would hold back small writes until
 *     more came) and mod_reqtimeout's filters are taken out.
 *
 * Only the loop thread touches the connection after the hand-over; it ends
 * by destroying c->pool (the MPM's way for a suspended connection), which
 * closes the socket and says so to the MPM. The connection serves the
 * chat's path only: see docs/operations.md, "H2ChatDirect over TLS". */
#include "mod_h2chat.h"

#include <apr_allocator.h>
#include <apr_strings.h>
#include <errno.h>
#include <sys/socket.h>
#include <http_connection.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_ssl.h>
#include <httpd.h>
#include <mpm_common.h>
#include <util_filter.h>

/* The MPM writes into what it handed over right after the suspend hooks
 * return (event.c notify_suspend): the loop never destroys a connection
 * sooner than this after it was handed. */
#define H2C_TLS_MIN_LIFE_US 250000
#define H2C_TLS_NET "H2CHAT_NET"

typedef struct {
    conn_rec *c;
    server_rec *s;          /* the virtual host ALPN was for (SNI) */
    apr_bucket_brigade *bb; /* reused for every read and write */
    const h2c_direct_site_t *site;
    int taken; /* suspended by us: the suspend hook hands it over */
    int fd;    /* the socket once net_in reads it itself (the core input
                  filter holds none of its bytes); -1 before */
} tls_conn_t;

/* The records mod_ssl made in one seal: only the loop thread seals, and the
 * loop copies or writes them before its next seal. */
static struct {
    char *p;
    apr_size_t len, cap;
    int failed;
} sealed;

static ap_filter_rec_t *net_out_rec, *net_in_rec;

static tls_conn_t *tls_of(const conn_rec *c) {
    return ap_get_module_config(c->conn_config, &h2chat_module);
}

static int wanted(conn_rec *c, server_rec *s) {
    return !c->master && h2chat_conf_direct_tls(s) && ap_ssl_conn_is_ssl(c);
}

/* protocol_propose: "h2" on a fast-path host, also without mod_http2. */
int h2chat_direct_tls_propose(conn_rec *c, request_rec *r, server_rec *s,
                              const apr_array_header_t *offers,
                              apr_array_header_t *proposals) {
    int i;

    if (r || !wanted(c, s)) {
        return DECLINED;
    }
    for (i = 0; i < offers->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(offers, i, const char *), "h2")) {
            APR_ARRAY_PUSH(proposals, const char *) = "h2";
            break;
        }
    }
    return DECLINED;
}

/* protocol_switch, before mod_http2's: ALPN chose h2 on a fast-path host
 * (s is the SNI one). mod_http2 then never makes its context for it. */
int h2chat_direct_tls_switch(conn_rec *c, request_rec *r, server_rec *s,
                             const char *protocol) {
    tls_conn_t *t;

    if (r || strcmp(protocol, "h2") || !wanted(c, s)) {
        return DECLINED;
    }
    t = apr_pcalloc(c->pool, sizeof(*t));
    t->fd = -1;
    t->c = c;
    t->s = s;
    ap_set_module_config(c->conn_config, &h2chat_module, t);
    return OK;
}

/* protocol_get: what ap_get_protocol() says for a connection we switched. */
const char *h2chat_direct_tls_protocol(const conn_rec *c) {
    return tls_of(c) ? "h2" : NULL;
}

/* ---- the filters below mod_ssl ---------------------------------------- */

static apr_status_t net_out(ap_filter_t *f, apr_bucket_brigade *bb) {
    apr_bucket *b;
    apr_status_t rv = APR_SUCCESS;

    (void)f;
    while (!APR_BRIGADE_EMPTY(bb)) {
        const char *data;
        apr_size_t len;

        b = APR_BRIGADE_FIRST(bb);
        /* FLUSH would mean "wait until written", EOC "close": the loop
         * does both its own way */
        if (!APR_BUCKET_IS_METADATA(b)) {
            if ((rv = apr_bucket_read(b, &data, &len, APR_BLOCK_READ)) != APR_SUCCESS) {
                sealed.failed = 1;
            } else if (sealed.len + len > sealed.cap) {
                apr_size_t cap = (sealed.len + len) * 2;
                char *p = realloc(sealed.p, cap);

                if (!p) {
                    sealed.failed = 1;
                } else {
                    sealed.p = p, sealed.cap = cap;
                }
            }
            if (!sealed.failed) {
                memcpy(sealed.p + sealed.len, data, len);
                sealed.len += len;
            }
        }
        apr_bucket_delete(b);
    }
    return sealed.failed ? APR_ENOMEM : APR_SUCCESS;
}

/* The handshake and the core's reads leave nodes on the free list of the
 * connection's own allocator (MaxMemFree, 2 MB by default, is per
 * allocator), ~8 KiB a connection that a held one would keep for its
 * life. Once net_in reads the socket itself nothing allocates nodes any
 * more: keep none and give those back. A node asked for comes from the free
 * list while it has one, else fresh from the system: zeros (Debian's APR
 * maps each node), which ends the walk (a used one seen as fresh only ends
 * it early). */
#define H2C_TLS_TRIM 8

static int fresh(const apr_memnode_t *n) {
    static const char zero[64];

    return n->endp - n->first_avail >= (apr_ssize_t)sizeof(zero) &&
           !memcmp(n->first_avail, zero, sizeof(zero));
}

static void trim(apr_pool_t *p) {
    apr_allocator_t *al = apr_pool_allocator_get(p);
    apr_memnode_t *got = NULL, *n;
    int i;

    if (!al) {
        return;
    }
    apr_allocator_max_free_set(al, 1);
    for (i = 0; i < H2C_TLS_TRIM && (n = apr_allocator_alloc(al, 1)); i++) {
        n->next = got;
        got = n;
        if (fresh(n)) {
            break;
        }
    }
    if (got) {
        apr_allocator_free(al, got);
    }
}

/* Never waits: a read mod_ssl wants to block on (it never should here)
 * fails instead, and the connection with it.
 *
 * The core input filter reads the socket into a buffer of APR_BUCKET_BUFF_SIZE
 * bytes from the connection's allocator, a node of its own (an mmap and a
 * munmap per read once the allocator keeps none). So once the core says it
 * holds nothing more (the bytes read with the handshake are through), this
 * filter reads the socket itself, into one buffer of the loop thread, no
 * more than mod_ssl asks for: mod_ssl's BIO copies all of it out before it
 * asks again (bio_filter_in_read reads only into an empty brigade, and
 * brigade_consume takes up to what it asked for). */
static char own_buf[17 * 1024]; /* a TLS record's body: 16 KiB + 256 */

static apr_status_t own_read(tls_conn_t *t, apr_bucket_brigade *bb, apr_read_type_e block,
                             apr_off_t readbytes) {
    apr_size_t want = readbytes > 0 && (apr_size_t)readbytes < sizeof(own_buf)
                          ? (apr_size_t)readbytes
                          : sizeof(own_buf);
    ssize_t n;

    do {
        n = recv(t->fd, own_buf, want, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        APR_BRIGADE_INSERT_TAIL(
            bb, apr_bucket_transient_create(own_buf, n, bb->bucket_alloc));
        return APR_SUCCESS;
    }
    if (!n) {
        return APR_EOF;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return block == APR_BLOCK_READ ? APR_TIMEUP : APR_EAGAIN;
    }
    return APR_FROM_OS_ERROR(errno);
}

static apr_status_t net_in(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                           apr_read_type_e block, apr_off_t readbytes) {
    tls_conn_t *t = f->ctx;
    apr_status_t rv;

    if (t->fd >= 0 && mode == AP_MODE_READBYTES) {
        return own_read(t, bb, block, readbytes);
    }
    rv = ap_get_brigade(f->next, bb, mode, APR_NONBLOCK_READ, readbytes);
    if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(bb))) {
        /* on the loop, the core holds nothing: the socket is ours to read */
        if (t->fd < 0 && t->taken == 2 &&
            apr_os_sock_get(&t->fd, ap_get_conn_socket(f->c)) == APR_SUCCESS) {
            trim(f->c->pool);
        }
        if (block == APR_BLOCK_READ) {
            return APR_TIMEUP;
        }
    }
    return rv;
}

/* ---- the loop's io (on the loop thread) ------------------------------- */

static apr_ssize_t io_recv(void *ctx, char *buf, apr_size_t len) {
    tls_conn_t *t = ctx;
    apr_status_t rv = ap_get_brigade(t->c->input_filters, t->bb, AP_MODE_READBYTES,
                                     APR_NONBLOCK_READ, (apr_off_t)len);
    apr_size_t n = len;

    if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(t->bb))) {
        apr_brigade_cleanup(t->bb);
        return -1;
    }
    if (rv != APR_SUCCESS || apr_brigade_flatten(t->bb, buf, &n) != APR_SUCCESS) {
        apr_brigade_cleanup(t->bb);
        return 0; /* close_notify, FIN, a TLS alert: gone */
    }
    apr_brigade_cleanup(t->bb);
    return n ? (apr_ssize_t)n : -1;
}

static apr_status_t pass(tls_conn_t *t, apr_bucket *b, const char **out,
                         apr_size_t *olen) {
    apr_status_t rv;

    sealed.len = 0;
    sealed.failed = 0;
    APR_BRIGADE_INSERT_TAIL(t->bb, b);
    rv = ap_pass_brigade(t->c->output_filters, t->bb);
    apr_brigade_cleanup(t->bb);
    *out = sealed.p;
    *olen = sealed.len;
    return rv != APR_SUCCESS ? rv : sealed.failed ? APR_ENOMEM : APR_SUCCESS;
}

static apr_status_t io_seal(void *ctx, const char *in, apr_size_t len, const char **out,
                            apr_size_t *olen) {
    tls_conn_t *t = ctx;

    return pass(t, apr_bucket_transient_create(in, len, t->c->bucket_alloc), out, olen);
}

/* EOC: mod_ssl says close_notify (into `sealed`) and frees its SSL. */
static void io_bye(void *ctx, const char **out, apr_size_t *olen) {
    tls_conn_t *t = ctx;

    if (t->c->aborted ||
        pass(t, ap_bucket_eoc_create(t->c->bucket_alloc), out, olen) != APR_SUCCESS) {
        *out = NULL;
        *olen = 0;
    }
}

/* The MPM's way to end a suspended connection: its pool (the socket, the
 * TLS state, the MPM's count of connections). */
static void io_release(void *ctx) {
    tls_conn_t *t = ctx;

    apr_pool_destroy(t->c->pool);
}

/* On a check thread: httpd's processing of one request (c is only read). */
static void io_check(void *ctx, const h2c_direct_ask_t *ask, h2c_direct_pass_t *pass) {
    tls_conn_t *t = ctx;

    h2chat_direct_check(t->c, ask, pass);
}

/* On a check thread: the log line of a request httpd let through. */
static void io_log(void *ctx, const h2c_direct_ask_t *ask, const char *user, int status,
                   uint64_t bytes) {
    tls_conn_t *t = ctx;

    h2chat_direct_log(t->c, ask, user, status, bytes);
}

static const h2c_direct_io_t tls_io = {
    io_recv, io_seal, io_bye, io_release, H2C_TLS_MIN_LIFE_US, io_check, io_log};

/* ---- the hand-over ---------------------------------------------------- */

/* process_connection, after mod_ssl's handshake: a connection we switched
 * to h2 is suspended (the MPM forgets it) with its filters set for the
 * loop; the suspend hook then hands it over. */
int h2chat_direct_tls_process_connection(conn_rec *c) {
    tls_conn_t *t = tls_of(c);

    if (!t || t->taken || c->aborted || !c->cs) {
        return DECLINED; /* not ours, or the handshake failed: httpd closes it */
    }
    if (!(t->site = h2chat_direct_reserve(c, t->s, h2chat_conf_direct_tls(t->s)))) {
        /* the child stops: nobody serves h2 here now (the client retries) */
        c->aborted = 1;
        c->keepalive = AP_CONN_CLOSE;
        return DONE;
    }
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    ap_remove_output_filter_byhandle(c->output_filters, "reqtimeout");
    ap_remove_output_filter_byhandle(c->output_filters, "SSL/TLS Coalescing Filter");
    ap_add_output_filter_handle(net_out_rec, t, NULL, c);
    ap_add_input_filter_handle(net_in_rec, t, NULL, c);
    t->bb = apr_brigade_create(c->pool, c->bucket_alloc);
    t->taken = 1;
    c->cs->state = CONN_STATE_SUSPENDED;
    return OK;
}

/* suspend_connection: runs for every suspension in the MPM; ours go to the
 * loop. From here on only the loop thread touches c. */
void h2chat_direct_tls_suspend(conn_rec *c, request_rec *r) {
    tls_conn_t *t = tls_of(c);

    (void)r;
    if (t && t->taken == 1 && c->cs && c->cs->state == CONN_STATE_SUSPENDED) {
        t->taken = 2;
        h2chat_direct_hand_io(c, t->site, &tls_io, t);
    }
}

void h2chat_direct_tls_register(void) {
    net_out_rec =
        ap_register_output_filter(H2C_TLS_NET, net_out, NULL, AP_FTYPE_NETWORK - 1);
    net_in_rec =
        ap_register_input_filter(H2C_TLS_NET, net_in, NULL, AP_FTYPE_NETWORK - 1);
}
