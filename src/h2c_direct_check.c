/* h2c_direct_check: httpd's request processing for the loop's requests.
 *
 * A request of a connection with a check (TLS taken from httpd; h2c under
 * `H2ChatDirectRequests httpd`) is
 * first shown to httpd (auth, access, translate: the glue's check) on one of
 * a few threads of the loop's own: providers may block (LDAP, a database, a
 * piped log), the loop never waits. A connection has one request at the
 * check at a time, the lowest stream first: one client's POSTs are published
 * in the order it sent them, and one connection cannot take every thread.
 * The answer comes back through the publisher's queue (jobs_out). */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "h2c_direct_int.h"
#include "h2c_tags.h"

/* requests at the check (queued or in hand) in one loop; more: 503 */
#define H2C_CHECK_QUEUE_MAX 1024
/* jobs queued past which the log line of an answer the loop gave before
 * the check is dropped (counted, and said at each power of two): a client
 * can make those as fast as it sends headers, while the threads wait on a
 * slow provider. Lines of requests httpd let through are never dropped
 * (they are as many as the checks and held streams). */
#define H2C_EARLY_LINES_MAX (4 * H2C_CHECK_QUEUE_MAX)

/* What a check thread does with a job: httpd's processing, or a log line. */
static void job_do(job_t *job) {
    if (job->kind == JOB_LOG) {
        job->gc->chk->log(job->gc->chk_ctx, &job->ask, job->member, (int)job->id,
                          job->target);
    } else {
        job->gc->chk->check(job->gc->chk_ctx, &job->ask, &job->pass);
    }
}

/* Queues a job for the check threads unless `max` jobs wait already:
 * 1, else 0 when they are gone (stopping), -1 when full; the job then
 * stays the caller's. */
static int job_push(h2c_direct_t *d, job_t *job, uint32_t max) {
    int rv;

    apr_thread_mutex_lock(d->lock);
    rv = d->cstop || !d->ncheckers ? 0 : d->checks_queued < max ? 1 : -1;
    if (rv == 1) {
        d->checks_queued++;
        *d->checks_in_tail = job;
        d->checks_in_tail = &job->next;
        apr_thread_cond_signal(d->ccond);
    }
    apr_thread_mutex_unlock(d->lock);
    if (rv == 1) {
        job->gc->checking++;
    }
    return rv;
}

static void *APR_THREAD_FUNC checker_main(apr_thread_t *thd, void *data) {
    h2c_direct_t *d = data;
    job_t *job;

    (void)thd;
    apr_thread_mutex_lock(d->lock);
    for (;;) {
        while (!d->checks_in && !d->cstop) {
            apr_thread_cond_wait(d->ccond, d->lock);
        }
        if (d->cstop) {
            break; /* what is left is the loop's to answer (h2c_direct_check_stop) */
        }
        job = d->checks_in;
        if (!(d->checks_in = job->next)) {
            d->checks_in_tail = &d->checks_in;
        }
        apr_thread_mutex_unlock(d->lock);
        job_do(job);
        apr_thread_mutex_lock(d->lock);
        d->checks_queued--;
        job->next = d->jobs_out;
        d->jobs_out = job;
        h2c_direct_ring(d);
    }
    apr_thread_mutex_unlock(d->lock);
    return NULL;
}

apr_status_t h2c_direct_check_start(h2c_direct_t *d, apr_pool_t *p) {
    apr_status_t rv;
    uint32_t i;

    d->checks_in_tail = &d->checks_in;
    if (!d->env.check_threads) {
        return APR_SUCCESS;
    }
    if ((rv = apr_thread_cond_create(&d->ccond, p)) != APR_SUCCESS) {
        return rv;
    }
    d->checkers = apr_pcalloc(p, d->env.check_threads * sizeof(*d->checkers));
    for (i = 0; i < d->env.check_threads; i++) {
        if ((rv = apr_thread_create(&d->checkers[i], NULL, checker_main, d, p)) !=
            APR_SUCCESS) {
            return rv; /* the ones started leave at h2c_direct_check_stop */
        }
        d->ncheckers++;
    }
    return APR_SUCCESS;
}

void h2c_direct_check_stop(h2c_direct_t *d) {
    apr_status_t rv;
    job_t *left;
    uint32_t i;

    if (!d->ccond) {
        return;
    }
    apr_thread_mutex_lock(d->lock);
    d->cstop = 1;
    apr_thread_cond_broadcast(d->ccond);
    apr_thread_mutex_unlock(d->lock);
    for (i = 0; i < d->ncheckers; i++) {
        apr_thread_join(&rv, d->checkers[i]);
    }
    d->ncheckers = 0;
    apr_thread_mutex_lock(d->lock);
    left = d->checks_in;
    d->checks_in = NULL;
    d->checks_in_tail = &d->checks_in;
    apr_thread_mutex_unlock(d->lock);
    while (left) { /* never shown to httpd: their connections are gone */
        job_t *next = left->next;

        if (left->kind == JOB_LOG) { /* the line is written all the same */
            job_do(left);
        }
        left->gc->checking--;
        h2c_direct_job_free(left);
        left = next;
    }
}

/* The ask's strings, in one allocation (job->fields). A request the loop
 * refused before it had them all (a :path past the limits) shows "-". */
static int ask_make(job_t *job, const strm_t *s) {
    const char *parts[5] = {s->method ? s->method : "-", s->path ? s->path : "-",
                            s->scheme ? s->scheme : "https",
                            s->authority ? s->authority : "", s->fields ? s->fields : ""};
    apr_size_t len = 0, n;
    char *p;
    int i;

    for (i = 0; i < 5; i++) {
        len += strlen(parts[i]) + 1;
    }
    if (!(job->fields = p = malloc(len))) {
        return 0;
    }
    for (i = 0; i < 5; i++) {
        n = strlen(parts[i]) + 1;
        memcpy(p, parts[i], n);
        parts[i] = p;
        p += n;
    }
    job->ask.method = parts[0], job->ask.path = parts[1], job->ask.scheme = parts[2];
    job->ask.authority = parts[3], job->ask.headers = parts[4];
    job->ask.time_us = s->begun_us;
    return 1;
}

/* The connection's next stream waiting for the check, if it has its turn. */
static void check_next(conn_t *c) {
    h2c_direct_t *d = c->d;
    strm_t *s, *first = NULL;
    h2c_verdict_t v;
    job_t *job;

    if (c->check_turn || c->dead) {
        return;
    }
    for (s = c->streams; s; s = s->lnext) {
        if (s->kind == STRM_CHECK && (!first || s->id < first->id)) {
            first = s;
        }
    }
    if (!first) {
        return;
    }
    s = first;
    if (!(job = calloc(1, sizeof(*job))) || !ask_make(job, s)) {
        free(job);
        h2c_policy_refuse(&v, H2C_DENY_UNAVAILABLE, NULL);
        h2c_direct_refuse(s, &v);
        return;
    }
    job->kind = JOB_CHECK;
    job->gc = c;
    job->s = s; /* read on the loop only: set before the threads may have it */
    if (job_push(d, job, H2C_CHECK_QUEUE_MAX) != 1) {
        h2c_direct_job_free(job);
        h2c_policy_refuse(&v, H2C_DENY_UNAVAILABLE, "the server is busy: try again");
        h2c_direct_refuse(s, &v);
        return;
    }
    s->job = job;
    s->kind = STRM_WAIT;
    c->check_turn = 1;
}

void h2c_direct_check(strm_t *s) {
    s->kind = STRM_CHECK;
    check_next(s->c);
}

void h2c_direct_check_done(job_t *job) {
    conn_t *c = job->gc;

    c->checking--;
    if (job->kind == JOB_CHECK) {
        c->check_turn = 0;
        if (!c->dead) {
            check_next(c);
        }
    }
}

void h2c_direct_check_asked(strm_t *s) {
    job_t made;

    if (s->asked_buf || !s->c->chk || !s->c->chk->log || !ask_make(&made, s)) {
        return; /* checked already, no check, or no memory: no line */
    }
    s->asked = made.ask;
    s->asked_buf = made.fields;
}

void h2c_direct_check_log(strm_t *s) {
    conn_t *c = s->c;
    job_t *job;
    int rv;

    if (!s->asked_buf || !c->chk->log || !(job = calloc(1, sizeof(*job)))) {
        return; /* not checked, or no memory: no line */
    }
    job->kind = JOB_LOG;
    job->gc = c;
    job->ask = s->asked;
    job->fields = s->asked_buf; /* the job's now */
    s->asked_buf = NULL;
    job->member = s->user ? strdup(s->user) : NULL;
    job->id = (uint64_t)(s->status ? s->status : 499); /* none given: the client left */
    job->target = s->data_out;
    /* let through: never dropped; the loop's own answer: up to the bound */
    rv = job_push(c->d, job, s->checked ? UINT32_MAX : H2C_EARLY_LINES_MAX);
    c->d->lines_dropped += rv == -1;
    if (rv == -1 && !(c->d->lines_dropped & (c->d->lines_dropped - 1))) {
        h2c_log(H2C_LOG_WARN, H2C_TAG_LINES_DROPPED, /* at 1, 2, 4, 8, ... */
                "%" APR_UINT64_T_FMT " access log lines of answers given before "
                "httpd's check dropped: the check threads are behind",
                c->d->lines_dropped);
    }
    if (rv != 1) {
        h2c_direct_job_free(job);
    }
}
