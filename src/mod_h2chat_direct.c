/* mod_h2chat_direct: H2ChatDirect, the glue around h2c_direct.
 *
 * On a server (virtual host) with `H2ChatDirect /path`, a connection that
 * opens with the HTTP/2 prior-knowledge preface is taken from httpd before
 * mod_http2 sees it: its socket is duplicated, handed to this child's loop
 * thread, and httpd's copy is closed without a shutdown (c->aborted), so
 * the connection lives on in the loop alone. It then holds no MPM thread,
 * no h2 worker and no httpd pool. Every other connection (TLS, HTTP/1.1,
 * other virtual hosts) is httpd's as always.
 *
 * The loop answers the path with the settings of the <Location> that
 * covers it, looked up once per virtual host. Access checks, auth and other
 * modules' hooks do not run for these requests: see docs/operations.md,
 * "H2ChatDirect". */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "mod_h2chat.h"

#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <http_connection.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <http_ssl.h>
#include <util_filter.h>

#include "h2c_direct.h"
#include "h2c_wait.h"

#define H2C_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2C_PREFACE_LEN (sizeof(H2C_PREFACE) - 1)
/* The first bytes of a connection are awaited at most this long (or
 * Timeout, if shorter), as mod_reqtimeout's default first header read. */
#define H2C_PEEK_WAIT_MAX apr_time_from_sec(20)
#define H2C_PEEK_NAP apr_time_from_msec(10)
/* SETTINGS_MAX_HEADER_LIST_SIZE the loop advertises and holds to */
#define H2C_HEADER_LIST_MAX 16384

typedef struct site_t {
    server_rec *s;
    h2c_direct_site_t site;
    struct site_t *next;
} site_t;

typedef struct {
    h2c_direct_t *d;
    apr_pool_t *pchild;
    apr_thread_t *loop, *watch;
    apr_thread_mutex_t *lock; /* sites and their pool */
    apr_pool_t *sites_pool;   /* only under lock: worker threads add sites */
    site_t *sites;
    volatile int stop;
    int running;
} direct_t;

static direct_t direct;

/* The settings of the <Location> that covers `path` on server s, looked
 * up through httpd's own location walk on a request made for it. */
static h2c_direct_site_t *site_for(conn_rec *c, const char *path) {
    site_t *st;
    request_rec *r;
    const h2chat_dir_conf_t *dc;

    apr_thread_mutex_lock(direct.lock);
    for (st = direct.sites; st && st->s != c->base_server; st = st->next) {
    }
    if (!st) {
        r = ap_create_request(c);
        r->uri = apr_pstrdup(r->pool, path);
        r->method = "GET";
        r->method_number = M_GET;
        ap_location_walk(r);
        dc = ap_get_module_config(r->per_dir_config, &h2chat_module);
        st = apr_pcalloc(direct.sites_pool, sizeof(*st));
        st->s = c->base_server;
        st->site.path = apr_pstrdup(direct.sites_pool, path);
        /* origins stay in the config pool, which outlives the child */
        h2chat_conf_policy(dc, &st->site.conf);
        /* the limits httpd applies to requests (mod_http2 too) */
        st->site.limits.max_fields = (uint32_t)c->base_server->limit_req_fields;
        st->site.limits.max_field_bytes = (uint32_t)c->base_server->limit_req_fieldsize;
        st->site.limits.max_line = (uint32_t)c->base_server->limit_req_line;
        st->site.limits.max_list_bytes = H2C_HEADER_LIST_MAX;
        st->site.timeout_us = c->base_server->timeout;
        if (dc->enabled != 1) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, c->base_server,
                         H2C_TAG_CONFIG
                         ": H2ChatDirect %s: no `H2Chat on` covers this path; "
                         "the direct listener serves it anyway",
                         path);
        }
        st->next = direct.sites;
        direct.sites = st;
        apr_pool_destroy(r->pool);
    }
    apr_thread_mutex_unlock(direct.lock);
    return &st->site;
}

/* Waits (at most `wait`) until the socket's first bytes tell: 1 if they
 * are the h2c preface, else 0. Only peeks (MSG_PEEK): httpd has read
 * nothing yet and reads everything itself when it is not ours; when it
 * is, the loop reads it all under its own budget, so no byte is ever
 * buffered here, whatever the client sends. */
static int peek_preface(int fd, apr_interval_time_t wait) {
    apr_time_t until = apr_time_now() + wait;
    char buf[H2C_PREFACE_LEN];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
        apr_interval_time_t left = until - apr_time_now();
        struct pollfd pfd = {fd, POLLIN, 0};

        if (n > 0 && memcmp(buf, H2C_PREFACE, (size_t)n)) {
            return 0; /* another protocol: httpd's */
        }
        if (n == (ssize_t)sizeof(buf)) {
            return 1;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || left <= 0) {
            return 0; /* gone, or too slow: httpd deals with it */
        }
        if (n > 0) {
            apr_sleep(H2C_PEEK_NAP); /* a preface in pieces: the socket stays readable */
        } else {
            poll(&pfd, 1, (int)(left / 1000) + 1);
        }
    }
}

/* process_connection, before mod_http2: take h2c connections of an
 * H2ChatDirect server. DECLINED leaves every byte where httpd reads it. */
int h2chat_direct_process_connection(conn_rec *c) {
    const char *path = h2chat_conf_direct_path(c->base_server);
    apr_interval_time_t wait = c->base_server->timeout;
    apr_os_sock_t fd;
    int nfd;

    if (!path || !direct.running || c->master || ap_ssl_conn_is_ssl(c) ||
        apr_os_sock_get(&fd, ap_get_conn_socket(c)) != APR_SUCCESS) {
        return DECLINED;
    }
    if (!peek_preface(fd, wait < H2C_PEEK_WAIT_MAX ? wait : H2C_PEEK_WAIT_MAX)) {
        return DECLINED;
    }
    if ((nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        ap_log_cerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), c,
                      H2C_TAG_DIRECT_CONN ": cannot take the connection over");
        return DECLINED;
    }
    fcntl(nfd, F_SETFL, fcntl(nfd, F_GETFL) | O_NONBLOCK);
    h2c_direct_add(direct.d, nfd, c->client_ip, site_for(c, path), NULL, 0);
    /* httpd closes its copy without shutdown(): the loop's stays open */
    c->aborted = 1;
    c->keepalive = AP_CONN_CLOSE;
    return DONE;
}

static void *APR_THREAD_FUNC loop_main(apr_thread_t *thd, void *data) {
    (void)thd;
    h2c_direct_run(data);
    return NULL;
}

/* Wakes the loop on every commit, in any child; ungated (h2c_store_wake). */
static void *APR_THREAD_FUNC watch_main(apr_thread_t *thd, void *data) {
    volatile uint32_t *word = h2c_seg_direct_seq(&h2chat_state()->seg);
    uint32_t seen = h2c_wait_read(word), now;

    (void)thd, (void)data;
    while (!direct.stop) {
        h2c_wait_change(word, seen, apr_time_from_sec(1));
        if ((now = h2c_wait_read(word)) != seen) {
            seen = now;
            h2c_direct_wake(direct.d);
        }
    }
    return NULL;
}

static void stop_threads(void) {
    apr_status_t rv;

    if (!direct.running) {
        return;
    }
    direct.running = 0;
    direct.stop = 1;
    h2c_direct_stop(direct.d);
    apr_thread_join(&rv, direct.loop);
    apr_thread_join(&rv, direct.watch);
}

static apr_status_t direct_child_exit(void *data) {
    (void)data;
    stop_threads();
    return APR_SUCCESS;
}

static int any_direct(server_rec *s) {
    for (; s; s = s->next) {
        if (h2chat_conf_direct_path(s)) {
            return 1;
        }
    }
    return 0;
}

/* Last in child_init, once the store is open. Threads start with every
 * signal blocked, as the waker's. A loop that cannot start leaves h2c
 * connections to mod_http2 (said in the log): not fatal for the child. */
apr_status_t h2chat_direct_child_init(apr_pool_t *pchild, server_rec *s) {
    h2chat_state_t *st = h2chat_state();
    h2c_direct_env_t env;
    sigset_t all, old;
    apr_status_t rv;

    memset(&direct, 0, sizeof(direct));
    if (!any_direct(s)) {
        return APR_SUCCESS;
    }
    memset(&env, 0, sizeof(env));
    env.seg = &st->seg;
    env.store = &st->store;
    env.child_slot = st->child_slot;
    env.limits = st->limits;
    env.penalty_us = h2chat_conf_direct_penalty_us(s);
    env.spread = &st->spread; /* armed in child_stopping, before the loop stops */
    direct.pchild = pchild;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if ((rv = apr_thread_mutex_create(&direct.lock, APR_THREAD_MUTEX_DEFAULT, pchild)) !=
            APR_SUCCESS ||
        (rv = apr_pool_create(&direct.sites_pool, pchild)) != APR_SUCCESS ||
        (rv = h2c_direct_create(&direct.d, pchild, &env)) != APR_SUCCESS) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     H2C_TAG_DIRECT_LOOP ": H2ChatDirect loop could not be made; h2c "
                                         "connections go to mod_http2");
        return rv;
    }
    rv = apr_thread_create(&direct.loop, NULL, loop_main, direct.d, pchild);
    if (rv == APR_SUCCESS) {
        rv = apr_thread_create(&direct.watch, NULL, watch_main, NULL, pchild);
        if (rv != APR_SUCCESS) {
            h2c_direct_stop(direct.d);
            apr_thread_join(&rv, direct.loop);
            rv = APR_EGENERAL;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     H2C_TAG_DIRECT_LOOP ": H2ChatDirect threads could not start; h2c "
                                         "connections go to mod_http2");
        return rv;
    }
    direct.running = 1;
    apr_pool_pre_cleanup_register(pchild, NULL, direct_child_exit);
    return APR_SUCCESS;
}

/* child_stopping: held streams end (clients resume elsewhere), GOAWAY. */
void h2chat_direct_child_stopping(void) {
    stop_threads();
}
