/* mod_h2chat_direct_req: httpd's request processing for a request the loop
 * serves on a connection it took from httpd (H2ChatDirect over TLS, and h2c
 * under `H2ChatDirectRequests httpd`).
 *
 * On one of the loop's check threads (h2c_direct_check.c), never on the
 * loop: a secondary connection (c2, its master the taken c1) as mod_http2
 * makes one per stream, a request_rec built from the stream's fields as
 * mod_http2 builds it, then ap_process_request_internal(): translate, the
 * <Location> walk, access, authn/authz (Require), fixups. OK: the loop
 * answers as the chat, with r->user. Anything else: ap_die() renders
 * httpd's own answer (the 401 with its challenge, the 403, a redirect, an
 * ErrorDocument), which a filter in place of HTTP_HEADER takes for the
 * loop to send; the request's end (EOR) writes its access log line.
 *
 * c1 is only read here (its fields, through c2->master: mod_ssl's
 * variables), as mod_http2's workers read theirs; the loop does not let it
 * go while a check of it is out. An h2c connection has no c1 left (httpd's
 * was closed when the loop took its socket, which may have moved to another
 * child): each check makes one from the socket's addresses, as httpd's core
 * makes a connection's, and picks its address-based virtual host. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "mod_h2chat.h"

#include <apr_strings.h>
#include <http_connection.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <http_vhost.h>
#include <httpd.h>
#include <mod_core.h>
#include <util_filter.h>

#define H2C_CHECK_BODY_MAX 65536 /* httpd's error page the loop keeps at most */

typedef struct {
    h2c_direct_pass_t *pass;
    int headed;
} capture_t;

/* An h2c connection's side of its checks (h2chat_direct_h2c_side): its
 * addresses as they were when it was taken (a check may come after the
 * client is gone: a reset socket has no peer address any more). */
typedef struct {
    server_rec *s;                   /* the server its address chose when it was taken */
    struct sockaddr_in6 local, peer; /* TCP: an IPv4 address fits too */
} h2c_side_t;

static ap_filter_rec_t *capture_rec, *c2_in_rec, *c2_out_rec;
static apr_socket_t *dummy_socket; /* c2's "socket": modules may set options on it */
static apr_pool_t *pchild;         /* for the check threads' apr_thread_t */
/* The event MPM makes a secondary connection's state from its master's
 * (event.c setup_slave_conn reads its sc, pfd and pub, and every request's
 * post_read_request then writes the secondary's sc). A master made here has
 * none: a zeroed record, larger than the MPM's, stands in for it. */
static module *event_mpm;
#define H2C_MPM_STATE_STANDIN 1024

/* In place of HTTP_HEADER: httpd's answer for the loop (its status, fields
 * as HTTP_HEADER would merge them, body), never passed on. */
static apr_status_t capture(ap_filter_t *f, apr_bucket_brigade *bb) {
    capture_t *ck = f->ctx;
    request_rec *r = f->r;
    h2c_direct_pass_t *pass = ck->pass;
    apr_bucket *b;

    if (!ck->headed) {
        const apr_array_header_t *arr;
        const apr_table_entry_t *e;
        apr_table_t *all = apr_table_overlay(r->pool, r->err_headers_out, r->headers_out);
        char *lines = "";
        int i;

        ck->headed = 1;
        pass->status = r->status;
        if (r->content_type) {
            apr_table_setn(all, "Content-Type", r->content_type);
        }
        arr = apr_table_elts(all);
        e = (const apr_table_entry_t *)arr->elts;
        for (i = 0; i < arr->nelts; i++) {
            if (e[i].key && e[i].val && !strchr(e[i].val, '\n')) {
                lines = apr_pstrcat(r->pool, lines, e[i].key, ": ", e[i].val, "\n", NULL);
            }
        }
        pass->headers = strdup(lines);
    }
    for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
         b = APR_BUCKET_NEXT(b)) {
        const char *data;
        apr_size_t len;
        char *p;

        if (APR_BUCKET_IS_METADATA(b) ||
            apr_bucket_read(b, &data, &len, APR_BLOCK_READ) != APR_SUCCESS ||
            pass->body_len + len > H2C_CHECK_BODY_MAX ||
            !(p = realloc(pass->body, pass->body_len + len + 1))) {
            continue;
        }
        memcpy(p + pass->body_len, data, len);
        pass->body = p;
        pass->body_len += len;
    }
    r->bytes_sent = (apr_off_t)pass->body_len; /* for its log line (%b) */
    r->sent_bodyct = 1;
    apr_brigade_cleanup(bb);
    return APR_SUCCESS;
}

/* c2's network: nothing goes anywhere; deleting the EOR ends the request
 * (its log line, its pool). */
static apr_status_t c2_out(ap_filter_t *f, apr_bucket_brigade *bb) {
    (void)f;
    apr_brigade_cleanup(bb);
    return APR_SUCCESS;
}

/* The body stays with the loop: httpd reads none. */
static apr_status_t c2_in(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                          apr_read_type_e block, apr_off_t readbytes) {
    (void)mode, (void)block, (void)readbytes;
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(f->c->bucket_alloc));
    return APR_SUCCESS;
}

/* The check thread as httpd's: modules may use the connection's thread
 * (mod_lua's thread scope takes its pool). Made once per check thread; it
 * lives as long as the thread. */
static apr_thread_t *this_thread(void) {
    apr_thread_t *thd = ap_thread_current();

    if (!thd && ap_thread_current_create(&thd, NULL, pchild) != APR_SUCCESS) {
        thd = NULL;
    }
    return thd;
}

/* An apr_sockaddr_t of a TCP socket's address, as APR fills one (the
 * fields apr_socket_addr_get sets). */
static apr_sockaddr_t *addr_make(const struct sockaddr_in6 *sa, apr_pool_t *p) {
    apr_sockaddr_t *a = apr_pcalloc(p, sizeof(*a));
    int v6 = sa->sin6_family == AF_INET6;

    a->pool = p;
    a->family = sa->sin6_family;
    a->salen = v6 ? sizeof(a->sa.sin6) : sizeof(a->sa.sin);
    memcpy(&a->sa, sa, a->salen);
    a->addr_str_len = v6 ? 46 : 16; /* INET6_ADDRSTRLEN, INET_ADDRSTRLEN */
    a->ipaddr_ptr = v6 ? (void *)&a->sa.sin6.sin6_addr : (void *)&a->sa.sin.sin_addr;
    a->ipaddr_len = v6 ? sizeof(a->sa.sin6.sin6_addr) : sizeof(a->sa.sin.sin_addr);
    /* sin_port and sin6_port sit at the same place */
    a->port = ntohs(a->sa.sin.sin_port);
    return a;
}

/* An h2c connection's master for one check, in the check's pool p: the
 * fields httpd's core gives a new connection (core_create_conn), then its
 * address-based virtual host. */
static conn_rec *c1_make(const h2c_side_t *side, apr_pool_t *p) {
    conn_rec *c1 = apr_pcalloc(p, sizeof(*c1));

    c1->local_addr = addr_make(&side->local, p);
    c1->client_addr = addr_make(&side->peer, p);
    if (apr_sockaddr_ip_get(&c1->local_ip, c1->local_addr) != APR_SUCCESS) {
        c1->local_ip = "unknown";
    }
    if (apr_sockaddr_ip_get(&c1->client_ip, c1->client_addr) != APR_SUCCESS) {
        c1->client_ip = "unknown";
    }
    c1->pool = p;
    c1->conn_config = ap_create_conn_config(p);
    c1->notes = apr_table_make(p, 1);
    c1->base_server = side->s;
    c1->bucket_alloc = apr_bucket_alloc_create(p);
    c1->keepalive = AP_CONN_KEEPALIVE;
    if (event_mpm) {
        ap_set_module_config(c1->conn_config, event_mpm,
                             apr_pcalloc(p, H2C_MPM_STATE_STANDIN));
    }
    ap_update_vhost_given_ip(c1);
    return c1;
}

/* A secondary connection for one check, in its own pool (any thread). */
static conn_rec *c2_make(conn_rec *c1, apr_pool_t *p) {
    conn_rec *c2 = apr_palloc(p, sizeof(*c2));

    memcpy(c2, c1, sizeof(*c2));
    c2->master = c1;
    c2->current_thread = this_thread();
    c2->pool = p;
    c2->conn_config = ap_create_conn_config(p);
    c2->notes = apr_table_make(p, 5);
    c2->input_filters = c2->output_filters = NULL;
    c2->bucket_alloc = apr_bucket_alloc_create(p);
    c2->clogging_input_filters = 1; /* the MPM never polls it */
    c2->log = NULL;
    c2->aborted = 0;
    c2->sbh = NULL;
    /* as a request after the first, closed after it: no keep-alive logic */
    c2->keepalives = 1;
    c2->keepalive = AP_CONN_CLOSE;
    ap_set_core_module_config(c2->conn_config, dummy_socket);
    ap_add_input_filter_handle(c2_in_rec, NULL, NULL, c2);
    ap_add_output_filter_handle(c2_out_rec, NULL, NULL, c2);
    ap_run_pre_connection(c2, dummy_socket); /* the MPM's, logio's, remoteip's data */
    return c2;
}

/* The stream's fields into r; HTTP/2's split Cookie is joined as httpd's. */
static void fields_in(request_rec *r, const h2c_direct_ask_t *ask) {
    char *all = apr_pstrdup(r->pool, ask->headers), *line, *last, *colon;
    const char *had;

    for (line = apr_strtok(all, "\n", &last); line;
         line = apr_strtok(NULL, "\n", &last)) {
        if (!(colon = strchr(line, ':'))) {
            continue;
        }
        *colon = '\0';
        colon += 1 + strspn(colon + 1, " ");
        if (!strcasecmp(line, "cookie") &&
            (had = apr_table_get(r->headers_in, "Cookie"))) {
            apr_table_setn(r->headers_in, "Cookie",
                           apr_pstrcat(r->pool, had, "; ", colon, NULL));
        } else if (strcasecmp(line, "host")) {
            apr_table_addn(r->headers_in, line, colon);
        }
    }
    if (*ask->authority) {
        apr_table_setn(r->headers_in, "Host", ask->authority);
    }
}

/* The request as httpd reads it, up to its handler's choice of settings:
 * OK, or the status httpd answers it with. */
static int request_read(request_rec *r, const h2c_direct_ask_t *ask) {
    int status;

    fields_in(r, ask);
    ap_run_pre_read_request(r, r->connection);
    r->request_time = ask->time_us;
    r->the_request = apr_psprintf(r->pool, "%s %s HTTP/2.0", ask->method, ask->path);
    r->hostname = NULL; /* from Host, by ap_check_request_header */
    if (!ap_parse_request_line(r) || !ap_check_request_header(r)) {
        r->per_dir_config = r->server->lookup_defaults;
        status = r->status;
        r->status = HTTP_OK;
        return status;
    }
    r->per_dir_config = r->server->lookup_defaults;
    ap_add_input_filter_handle(ap_http_input_filter_handle, NULL, r, r->connection);
    return ap_post_read_request(r);
}

/* A request on a secondary connection of c1 (NULL: of one made for the h2c
 * side), in a pool of its own (on a check thread); NULL when out of memory.
 * The pool is a child of the check thread's: its allocator is that
 * thread's alone and keeps the nodes a request gave back for the next one
 * (a fresh allocator per request cost an mmap and a munmap per node). */
static request_rec *request_make(conn_rec *c1, const h2c_side_t *side,
                                 apr_pool_t **pool) {
    apr_thread_t *thd = this_thread();
    apr_pool_t *p;

    if (!thd || apr_pool_create(&p, apr_thread_pool_get(thd)) != APR_SUCCESS) {
        return NULL;
    }
    apr_pool_tag(p, "h2chat_check");
    if (!c1 && !(c1 = c1_make(side, p))) {
        apr_pool_destroy(p);
        return NULL;
    }
    *pool = p;
    return ap_create_request(c2_make(c1, p));
}

/* The request's end: EOR writes its access log line and frees it. */
static void request_end(request_rec *r, apr_pool_t *p) {
    conn_rec *c2 = r->connection;
    apr_bucket_brigade *bb = apr_brigade_create(p, c2->bucket_alloc);

    APR_BRIGADE_INSERT_TAIL(bb, ap_bucket_eor_create(c2->bucket_alloc, r));
    ap_pass_brigade(c2->output_filters, bb);
    apr_pool_destroy(p);
}

static void check_run(conn_rec *c1, const h2c_side_t *side, const h2c_direct_ask_t *ask,
                      h2c_direct_pass_t *pass) {
    apr_pool_t *p;
    request_rec *r;
    capture_t *ck;
    int status;

    if (!(r = request_make(c1, side, &p))) {
        pass->status = HTTP_SERVICE_UNAVAILABLE;
        return;
    }
    /* httpd's answer comes to the loop as fields, not as HTTP/1.1 bytes */
    ap_remove_output_filter_byhandle(r->output_filters, "HTTP_HEADER");
    ck = apr_pcalloc(p, sizeof(*ck));
    ck->pass = pass;
    ap_add_output_filter_handle(capture_rec, ck, r, r->connection);
    if ((status = request_read(r, ask)) == OK &&
        (status = ap_process_request_internal(r)) == OK) {
        pass->allowed = 1;
        pass->user = r->user ? strdup(r->user) : NULL;
        pass->client = r->useragent_ip ? strdup(r->useragent_ip) : NULL;
        apr_pool_destroy(p); /* its log line comes when it is done with */
        return;
    }
    ap_die(status, r);
    if (!pass->status) {
        pass->status = HTTP_INTERNAL_SERVER_ERROR;
    }
    request_end(r, p);
}

static void log_run(conn_rec *c1, const h2c_side_t *side, const h2c_direct_ask_t *ask,
                    const char *user, int status, uint64_t bytes) {
    apr_pool_t *p;
    request_rec *r;

    if (!(r = request_make(c1, side, &p))) {
        return;
    }
    request_read(r, ask); /* let through before: only what the log shows */
    r->user = user ? apr_pstrdup(r->pool, user) : NULL;
    r->status = status;
    r->status_line = NULL;
    r->bytes_sent = (apr_off_t)bytes;
    r->sent_bodyct = bytes > 0;
    request_end(r, p);
}

void h2chat_direct_check(conn_rec *c1, const h2c_direct_ask_t *ask,
                         h2c_direct_pass_t *pass) {
    check_run(c1, NULL, ask, pass);
}

void h2chat_direct_log(conn_rec *c1, const h2c_direct_ask_t *ask, const char *user,
                       int status, uint64_t bytes) {
    log_run(c1, NULL, ask, user, status, bytes);
}

/* ---- h2c connections (their bytes stay the socket's) ------------------ */

static void check_h2c(void *ctx, const h2c_direct_ask_t *ask, h2c_direct_pass_t *pass) {
    check_run(NULL, ctx, ask, pass);
}

static void log_h2c(void *ctx, const h2c_direct_ask_t *ask, const char *user, int status,
                    uint64_t bytes) {
    log_run(NULL, ctx, ask, user, status, bytes);
}

static void release_h2c(void *ctx) {
    free(ctx);
}

static const h2c_direct_io_t h2c_checks = {NULL, NULL,      NULL,   release_h2c,
                                           0,    check_h2c, log_h2c};

const h2c_direct_io_t *h2chat_direct_h2c_checks(void) {
    return &h2c_checks;
}

void *h2chat_direct_h2c_side(server_rec *s, int fd) {
    h2c_side_t *side = malloc(sizeof(*side));
    socklen_t llen = sizeof(side->local), plen = sizeof(side->peer);

    if (side && (getsockname(fd, (struct sockaddr *)&side->local, &llen) != 0 ||
                 getpeername(fd, (struct sockaddr *)&side->peer, &plen) != 0)) {
        free(side); /* the client is gone already */
        side = NULL;
    }
    if (side) {
        side->s = s;
    }
    return side;
}

apr_status_t h2chat_direct_req_child_init(apr_pool_t *p) {
    pchild = p;
    event_mpm = ap_find_linked_module("event.c");
    return apr_socket_create(&dummy_socket, APR_INET, SOCK_STREAM, APR_PROTO_TCP, p);
}

void h2chat_direct_req_register(void) {
    capture_rec = ap_register_output_filter("H2CHAT_CHECK_CAPTURE", capture, NULL,
                                            AP_FTYPE_PROTOCOL);
    c2_in_rec = ap_register_input_filter("H2CHAT_C2_IN", c2_in, NULL, AP_FTYPE_NETWORK);
    c2_out_rec =
        ap_register_output_filter("H2CHAT_C2_OUT", c2_out, NULL, AP_FTYPE_NETWORK);
}
