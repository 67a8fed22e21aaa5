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
 * A child whose loop serves clearly more connections than the least loaded
 * loop of its generation hands the socket to that one instead (h2c_balance;
 * SCM_RIGHTS over an abstract unix datagram socket per loop), before a byte
 * is read: where the kernel's accept puts connections is far from even.
 *
 * The loop answers the path with the settings of the <Location> that
 * covers it, looked up once per virtual host. Under `H2ChatDirectRequests
 * httpd` (the default) each request goes through httpd's request processing
 * first, on the loop's check threads (mod_h2chat_direct_req.c); under
 * `none` access checks, auth and other modules' hooks do not run for them:
 * see docs/operations.md, "H2ChatDirect". */
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
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

#include <ap_mpm.h>

#include "h2c_balance.h"
#include "h2c_direct.h"
#include "h2c_wait.h"

#define H2C_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2C_PREFACE_LEN (sizeof(H2C_PREFACE) - 1)
/* The first bytes of a connection are awaited at most this long (or
 * Timeout, if shorter), as mod_reqtimeout's default first header read. */
#define H2C_PEEK_WAIT_MAX apr_time_from_sec(20)
#define H2C_PEEK_NAP apr_time_from_msec(10)
/* How long a worker waits for a loaded receiver's hand-over queue */
#define H2C_HAND_WAIT_US 100000
/* SETTINGS_MAX_HEADER_LIST_SIZE the loop advertises and holds to */
#define H2C_HEADER_LIST_MAX 16384

typedef struct site_t {
    const server_rec *s;
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
    apr_thread_t *hand;     /* takes connections other children hand over */
    int hand_fd, hand_wake; /* its socket; an eventfd that ends it */
    int send_fd;            /* hands connections to other children */
    uint32_t gen1;          /* 1 + this child's generation */
    volatile int stop;
    int running;
    uint32_t inflight; /* TLS connections between their take and the loop's queue */
} direct_t;

/* One handed connection (with the socket as SCM_RIGHTS). The server_rec
 * and the origins list the site points to are in the configuration, which
 * sits at the same address in every child of a generation, and only loops
 * of the sender's generation are named (hand_name). */
typedef struct {
    const server_rec *s;
    h2c_direct_site_t site; /* path: in `path` */
    char path[256];
    char peer[64];
} hand_msg_t;

static direct_t direct;

/* The site of server s, under lock; NULL if this child has none yet (a
 * TLS connection's is its SNI virtual host's; an h2c one's its address's). */
static site_t *site_find(const server_rec *s) {
    site_t *st;

    for (st = direct.sites; st && st->s != s; st = st->next) {
    }
    return st;
}

/* The settings of the <Location> that covers `path` on server s, looked
 * up through httpd's own location walk on a request made for it. */
static h2c_direct_site_t *site_for(conn_rec *c, server_rec *s, const char *path) {
    site_t *st;
    request_rec *r;
    const h2chat_dir_conf_t *dc;

    apr_thread_mutex_lock(direct.lock);
    if (!(st = site_find(s))) {
        r = ap_create_request(c);
        r->server = s;
        r->per_dir_config = s->lookup_defaults;
        r->uri = apr_pstrdup(r->pool, path);
        r->method = "GET";
        r->method_number = M_GET;
        ap_location_walk(r);
        dc = ap_get_module_config(r->per_dir_config, &h2chat_module);
        st = apr_pcalloc(direct.sites_pool, sizeof(*st));
        st->s = s;
        st->site.path = apr_pstrdup(direct.sites_pool, path);
        /* origins stay in the config pool, which outlives the child */
        h2chat_conf_policy(dc, &st->site.conf);
        /* the limits httpd applies to requests (mod_http2 too) */
        st->site.limits.max_fields = (uint32_t)s->limit_req_fields;
        st->site.limits.max_field_bytes = (uint32_t)s->limit_req_fieldsize;
        st->site.limits.max_line = (uint32_t)s->limit_req_line;
        st->site.limits.max_list_bytes = H2C_HEADER_LIST_MAX;
        st->site.timeout_us = s->timeout;
        if (dc->enabled != 1) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
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

/* A handed connection's site: this child's, or a copy of the sender's
 * when this child has not served that server yet. */
static h2c_direct_site_t *site_handed(const hand_msg_t *m) {
    site_t *st;

    apr_thread_mutex_lock(direct.lock);
    if (!(st = site_find(m->s))) {
        st = apr_pcalloc(direct.sites_pool, sizeof(*st));
        st->s = m->s;
        st->site = m->site;
        st->site.path = apr_pstrdup(direct.sites_pool, m->path);
        st->next = direct.sites;
        direct.sites = st;
    }
    apr_thread_mutex_unlock(direct.lock);
    return &st->site;
}

/* The abstract socket name of child pid's loop in generation gen1. */
static socklen_t hand_name(struct sockaddr_un *sa, uint32_t pid, uint32_t gen1) {
    int n;

    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "h2chat-direct/%u/%u", pid,
                 gen1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Hands fd to a less loaded loop if one is due (h2c_balance; must: to the
 * least loaded in any case): 1 if it went (the receiver owns its own copy
 * now, and its count), 0 to keep it here (counted here). */
static int hand_over(conn_rec *c, int fd, const char *path, int must) {
    h2chat_state_t *st = h2chat_state();
    uint32_t slot, pid;
    struct sockaddr_un sa;
    hand_msg_t m;
    struct iovec iov = {&m, sizeof(m)};
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh;
    struct cmsghdr *cm;

    if (direct.send_fd < 0 || strlen(path) >= sizeof(m.path) ||
        strlen(c->client_ip) >= sizeof(m.peer) ||
        !h2c_balance_place(&st->seg, st->child_slot, direct.gen1, must, &slot, &pid)) {
        return 0;
    }
    memset(&m, 0, sizeof(m));
    m.s = c->base_server;
    m.site = *site_for(c, c->base_server, path);
    m.site.path = NULL;
    strcpy(m.path, path);
    strcpy(m.peer, c->client_ip);
    memset(&mh, 0, sizeof(mh));
    memset(&ctl, 0, sizeof(ctl));
    mh.msg_name = &sa;
    mh.msg_namelen = hand_name(&sa, pid, direct.gen1);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.b;
    mh.msg_controllen = sizeof(ctl.b);
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    /* it counts in the receiver's row already (h2c_balance_place), which
     * counts it no more, or takes it back if it cannot keep it. A queue
     * still full after the wait, or a loop that just stopped: this child
     * keeps it, and its count. */
    if (sendmsg(direct.send_fd, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(m)) {
        h2c_seg_direct_conns_add(&st->seg, slot, -1);
        h2c_seg_direct_conns_add(&st->seg, st->child_slot, 1);
        return 0;
    }
    h2c_seg_count_handed(&st->seg);
    return 1;
}

/* Gives the loop an h2c connection (counted here already), with httpd's
 * checks when its server wants them; one that cannot have them (no memory,
 * or its client is gone already) is closed rather than served without. */
static void add_h2c(int fd, const char *peer, server_rec *s,
                    const h2c_direct_site_t *site) {
    h2chat_state_t *st = h2chat_state();
    void *side = NULL;

    if (h2chat_conf_direct_httpd(s) && !(side = h2chat_direct_h2c_side(s, fd))) {
        close(fd);
        h2c_seg_direct_count(&st->seg, st->child_slot, -1, 0);
        return;
    }
    h2c_direct_add(direct.d, fd, peer, site, NULL, 0, 1,
                   side ? h2chat_direct_h2c_checks() : NULL, side);
}

/* Takes one handed connection off the socket: 1 if there was one. */
static int hand_take(void) {
    h2chat_state_t *st = h2chat_state();
    hand_msg_t m;
    struct iovec iov = {&m, sizeof(m)};
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct msghdr mh;
    struct cmsghdr *cm;
    struct ucred cred = {0, (uid_t)-1, (gid_t)-1};
    ssize_t n;
    int fd = -1;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.b;
    mh.msg_controllen = sizeof(ctl.b);
    n = recvmsg(direct.hand_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
        return 0;
    }
    for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int))) {
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS &&
                   cm->cmsg_len == CMSG_LEN(sizeof(cred))) {
            memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
        }
    }
    if (cred.uid != getuid() ||
        !h2c_balance_peer(&st->seg, (uint32_t)cred.pid, direct.gen1)) {
        if (fd >= 0) {
            close(fd); /* not from a child of ours: nothing was counted here */
        }
        return 1;
    }
    if (fd < 0 || n != (ssize_t)sizeof(m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        memchr(m.path, 0, sizeof(m.path)) == NULL ||
        memchr(m.peer, 0, sizeof(m.peer)) == NULL) {
        /* a sibling counted it here (hand_over), but it cannot be kept
         * (e.g. no descriptor was left for it: MSG_CTRUNC) */
        if (fd >= 0) {
            close(fd);
        }
        h2c_seg_direct_count(&st->seg, st->child_slot, -1, 0);
        return 1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    add_h2c(fd, m.peer, (server_rec *)m.s, site_handed(&m));
    return 1;
}

static void *APR_THREAD_FUNC hand_main(apr_thread_t *thd, void *data) {
    struct pollfd pfd[2] = {{direct.hand_fd, POLLIN, 0}, {direct.hand_wake, POLLIN, 0}};

    (void)thd, (void)data;
    while (!direct.stop) {
        if (poll(pfd, 2, -1) > 0 && (pfd[0].revents & POLLIN)) {
            while (!direct.stop && hand_take()) {
            }
        }
    }
    return NULL;
}

/* The loop's hand-over socket (hand_fd), bound to its name, and the socket
 * this child sends with. The name is abstract, so any local user could
 * send to it: hand_take only takes what one of this server's children of
 * this generation sent (the kernel's SCM_CREDENTIALS, SO_PASSCRED). */
static apr_status_t hand_open(void) {
    struct sockaddr_un sa;
    socklen_t len = hand_name(&sa, (uint32_t)getpid(), direct.gen1);
    struct timeval wait = {0, H2C_HAND_WAIT_US};
    int one = 1;

    direct.hand_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* blocking, at most H2C_HAND_WAIT: a receiver's queue holds only
     * net.unix.max_dgram_qlen (10) messages, and a loaded receiver drains
     * it late; waiting a little beats keeping the connection unbalanced */
    direct.send_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    direct.hand_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (direct.hand_fd < 0 || direct.send_fd < 0 || direct.hand_wake < 0 ||
        setsockopt(direct.send_fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait)) != 0 ||
        setsockopt(direct.hand_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0 ||
        bind(direct.hand_fd, (struct sockaddr *)&sa, len) != 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    return APR_SUCCESS;
}

static void hand_close(void) {
    if (direct.hand_fd >= 0) {
        close(direct.hand_fd); /* connections still queued close with it */
    }
    if (direct.send_fd >= 0) {
        close(direct.send_fd);
    }
    if (direct.hand_wake >= 0) {
        close(direct.hand_wake);
    }
    direct.hand_fd = direct.send_fd = direct.hand_wake = -1;
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
    h2chat_state_t *st = h2chat_state();
    const char *path = h2chat_conf_direct_path(c->base_server);
    apr_interval_time_t wait = c->base_server->timeout;
    apr_os_sock_t fd;
    int nfd = -1;

    if (!path || !direct.running || c->master || ap_ssl_conn_is_ssl(c) ||
        apr_os_sock_get(&fd, ap_get_conn_socket(c)) != APR_SUCCESS) {
        return DECLINED;
    }
    if (!peek_preface(fd, wait < H2C_PEEK_WAIT_MAX ? wait : H2C_PEEK_WAIT_MAX)) {
        return DECLINED;
    }
    /* counted here from now on, before the choice (h2c_balance_place): the
     * workers of this child choosing at the same moment see each other's */
    h2c_seg_direct_conns_add(&st->seg, st->child_slot, 1);
    /* out of open files here: another loop may still take it */
    if (hand_over(c, fd, path, 0) || ((nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0 &&
                                      errno == EMFILE && hand_over(c, fd, path, 1))) {
        c->aborted = 1; /* as below: the receiver's copy stays open */
        c->keepalive = AP_CONN_CLOSE;
        return DONE;
    }
    if (nfd < 0) {
        h2c_seg_direct_conns_add(&st->seg, st->child_slot, -1);
        ap_log_cerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), c,
                      H2C_TAG_DIRECT_CONN ": cannot take the connection over");
        return DECLINED;
    }
    fcntl(nfd, F_SETFL, fcntl(nfd, F_GETFL) | O_NONBLOCK);
    add_h2c(nfd, c->client_ip, c->base_server, site_for(c, c->base_server, path));
    /* httpd closes its copy without shutdown(): the loop's stays open */
    c->aborted = 1;
    c->keepalive = AP_CONN_CLOSE;
    return DONE;
}

h2c_direct_site_t *h2chat_direct_reserve(conn_rec *c, server_rec *s, const char *path) {
    __atomic_add_fetch(&direct.inflight, 1, __ATOMIC_SEQ_CST);
    if (!direct.running || __atomic_load_n(&direct.stop, __ATOMIC_SEQ_CST)) {
        __atomic_sub_fetch(&direct.inflight, 1, __ATOMIC_SEQ_CST);
        return NULL;
    }
    return site_for(c, s, path);
}

void h2chat_direct_hand_io(conn_rec *c, const h2c_direct_site_t *site,
                           const h2c_direct_io_t *io, void *ctx) {
    apr_os_sock_t fd = -1;

    apr_os_sock_get(&fd, ap_get_conn_socket(c));
    if (h2c_direct_add_io(direct.d, fd, c->client_ip, site, io, ctx) != APR_SUCCESS) {
        /* no memory for its record: it leaks (the MPM forgot it), closed */
        ap_log_cerror(APLOG_MARK, APLOG_ERR, APR_ENOMEM, c,
                      H2C_TAG_DIRECT_CONN ": cannot take the TLS connection over");
    }
    __atomic_sub_fetch(&direct.inflight, 1, __ATOMIC_SEQ_CST);
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
    /* first no more connections from the others, then none taken */
    h2c_seg_direct_taking(&h2chat_state()->seg, h2chat_state()->child_slot, 0);
    __atomic_store_n(&direct.stop, 1, __ATOMIC_SEQ_CST);
    /* a TLS connection on its way (suspended by the MPM, not queued yet)
     * must reach the loop before it stops: nobody else would close it, and
     * the child would wait for it for ever */
    while (__atomic_load_n(&direct.inflight, __ATOMIC_SEQ_CST)) {
        apr_sleep(1000);
    }
    if (direct.hand) {
        uint64_t one = 1;
        ssize_t n = write(direct.hand_wake, &one, sizeof(one));

        (void)n;
        apr_thread_join(&rv, direct.hand);
    }
    hand_close();
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

/* Whether any request of the loop goes through httpd's processing. */
static int any_direct_checks(server_rec *s) {
    for (; s; s = s->next) {
        if (h2chat_conf_direct_tls(s) ||
            (h2chat_conf_direct_path(s) && h2chat_conf_direct_httpd(s))) {
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
    int gen = 0;

    memset(&direct, 0, sizeof(direct));
    direct.hand_fd = direct.send_fd = direct.hand_wake = -1;
    if (!any_direct(s)) {
        return APR_SUCCESS;
    }
    memset(&env, 0, sizeof(env));
    if (ap_mpm_query(AP_MPMQ_GENERATION, &gen) == APR_SUCCESS) {
        direct.gen1 = (uint32_t)gen + 1;
    }
    env.seg = &st->seg;
    env.store = &st->store;
    env.child_slot = st->child_slot;
    env.limits = st->limits;
    env.penalty_us = h2chat_conf_direct_penalty_us(s);
    env.check_threads = any_direct_checks(s) ? h2chat_conf_direct_workers(s) : 0;
    env.spread = &st->spread; /* armed in child_stopping, before the loop stops */
    direct.pchild = pchild;
    if (env.check_threads && (rv = h2chat_direct_req_child_init(pchild)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     H2C_TAG_DIRECT_LOOP ": H2ChatDirect: no socket for httpd's checks");
        return rv;
    }
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
    /* Without its hand-over socket the loop still serves what this child
     * accepts; it only takes none from the others (said once). */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if ((rv = hand_open()) == APR_SUCCESS &&
        (rv = apr_thread_create(&direct.hand, NULL, hand_main, NULL, pchild)) ==
            APR_SUCCESS) {
        h2c_seg_direct_taking(&st->seg, st->child_slot, direct.gen1);
    } else {
        direct.hand = NULL;
        hand_close();
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                     H2C_TAG_DIRECT_LOOP
                     ": H2ChatDirect: this child takes no connections "
                     "handed by the others");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return APR_SUCCESS;
}

/* child_stopping: held streams end (clients resume elsewhere), GOAWAY. */
void h2chat_direct_child_stopping(void) {
    stop_threads();
}
