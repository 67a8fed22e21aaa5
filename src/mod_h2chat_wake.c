/* mod_h2chat_wake: H2ChatCoalesce, the glue around h2c_gate.
 *
 * A publish either wakes every held stream at once or marks the shared gate
 * pending and asks this child's waker thread to wake them when the interval
 * since the last wake-up has passed. The waker sleeps on a process-local
 * condition, so an idle server costs nothing. The `stopping` wake-up in
 * child_stopping never goes through here: it stays immediate. */
#include "mod_h2chat.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "h2c_gate.h"
#include "h2c_wait.h"

/* auto: ~ the CPU one wake-up of a held stream costs, capped */
#define H2CHAT_COALESCE_PER_STREAM_US 40
#define H2CHAT_COALESCE_MAX_US 250000

typedef struct {
    h2c_store_t *store;
    h2c_seg_t *seg;
    int64_t conf_us; /* < 0 auto, > 0 fixed */
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *cond;
    apr_thread_t *thread;
    int asked; /* under lock: a publish left the gate pending */
    int stop;  /* under lock */
} h2chat_waker_t;

static h2chat_waker_t waker;

/* CLOCK_MONOTONIC: one clock for every process, immune to clock steps. */
static int64_t mono_us(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Streams a wake-up round costs: H2ChatDirect's are not woken one by one
 * (their loop takes the news in one pass), so they do not count. */
static uint32_t woken_streams(h2chat_waker_t *w) {
    uint32_t total = h2c_seg_sub_total(w->seg), conns, direct;

    h2c_seg_direct_totals(w->seg, &conns, &direct);
    return total > direct ? total - direct : 0;
}

static int64_t interval_us(h2chat_waker_t *w) {
    return h2c_gate_interval(w->conf_us, woken_streams(w), H2CHAT_COALESCE_PER_STREAM_US,
                             H2CHAT_COALESCE_MAX_US);
}

static h2c_gate_t *gate(h2chat_waker_t *w) {
    return &h2c_seg_shared(w->seg)->wake_gate;
}

static void wake_all(h2chat_waker_t *w) {
    h2c_wait_wake_all(h2c_rooms_seq(h2c_store_history(w->store)));
}

/* The store's wake callback: after every commit (POST, Redis batch). */
static void coalesced_wake(void *ctx) {
    h2chat_waker_t *w = ctx;
    int64_t due;
    int now_after_all = 0;

    switch (h2c_gate_publish(gate(w), mono_us(), interval_us(w), &due)) {
    case H2C_GATE_WAKE:
        wake_all(w);
        return;
    case H2C_GATE_DEFER:
        break;
    default:
        return;
    }
    apr_thread_mutex_lock(w->lock);
    if (w->stop) {
        now_after_all = 1; /* no waker any more: never leave it pending */
    } else if (!w->asked) {
        w->asked = 1;
        apr_thread_cond_signal(w->cond);
    }
    apr_thread_mutex_unlock(w->lock);
    if (now_after_all) {
        wake_all(w);
    }
}

static void *APR_THREAD_FUNC waker_main(apr_thread_t *thd, void *data) {
    h2chat_waker_t *w = data;
    int64_t due, now;

    apr_thread_mutex_lock(w->lock);
    while (!w->stop) {
        if (!w->asked) {
            apr_thread_cond_wait(w->cond, w->lock);
            continue;
        }
        now = mono_us();
        switch (h2c_gate_fire(gate(w), now, interval_us(w), &due)) {
        case H2C_GATE_WAKE:
            apr_thread_mutex_unlock(w->lock);
            wake_all(w);
            apr_thread_mutex_lock(w->lock);
            break; /* look again: more may have come meanwhile */
        case H2C_GATE_WAIT:
            apr_thread_cond_timedwait(w->cond, w->lock, (apr_interval_time_t)(due - now));
            break;
        default:
            w->asked = 0;
            break;
        }
    }
    /* stopping: whatever this child left pending goes out now */
    if (w->asked) {
        wake_all(w);
    }
    apr_thread_mutex_unlock(w->lock);
    (void)thd;
    return NULL;
}

static void stop_waker(h2chat_waker_t *w) {
    apr_status_t rv;

    apr_thread_mutex_lock(w->lock);
    w->stop = 1;
    apr_thread_cond_signal(w->cond);
    apr_thread_mutex_unlock(w->lock);
    if (w->thread) {
        apr_thread_join(&rv, w->thread);
        w->thread = NULL;
    }
}

static apr_status_t waker_child_exit(void *data) {
    h2chat_waker_t *w = data;

    stop_waker(w);
    return APR_SUCCESS;
}

/* As the Redis reader: made before the MPM blocks signals for its threads,
 * so it starts with every signal blocked. */
apr_status_t h2chat_wake_child_init(apr_pool_t *pchild, server_rec *s,
                                    h2c_store_t *store) {
    int64_t conf_us = h2chat_conf_coalesce_us(s);
    sigset_t all, old;
    apr_status_t rv;

    memset(&waker, 0, sizeof(waker));
    if (conf_us == 0) {
        return APR_SUCCESS; /* off: wake at once on every commit */
    }
    waker.store = store;
    waker.seg = store->seg;
    waker.conf_us = conf_us;
    if ((rv = apr_thread_mutex_create(&waker.lock, APR_THREAD_MUTEX_DEFAULT, pchild)) !=
            APR_SUCCESS ||
        (rv = apr_thread_cond_create(&waker.cond, pchild)) != APR_SUCCESS) {
        return rv;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = apr_thread_create(&waker.thread, NULL, waker_main, &waker, pchild);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_pool_pre_cleanup_register(pchild, &waker, waker_child_exit);
    store->wake = coalesced_wake;
    store->wake_ctx = &waker;
    return APR_SUCCESS;
}

/* child_stopping: the waker ends (waking what this child left pending);
 * later publishes in this child wake at once. */
void h2chat_wake_child_stopping(void) {
    if (waker.thread) {
        stop_waker(&waker);
    }
}
