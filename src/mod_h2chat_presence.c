/* mod_h2chat_presence: the per-child ticker behind H2ChatPresence and the
 * rooms' holder counts.
 *
 * Once a second each child's ticker (1) lets go of what a gone child held
 * — a child killed with -9 never ended its streams, and its row in the
 * rooms' holder table still counts them — and (2) when any room's count
 * changed since the last ring, wakes the held streams once (the first
 * child to see the change rings, by compare-and-swap on a shared word), so
 * each looks at its rooms' counts; a stream tells a count at most once a
 * second anyway (h2c_presence). An idle server: one look at a word and at
 * the child table per second and child. */
#include "mod_h2chat.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>

#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#define H2CHAT_PRESENCE_TICK apr_time_from_sec(1)

typedef struct {
    h2c_store_t *store;
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *cond;
    apr_thread_t *thread;
    int stop; /* under lock */
} h2chat_ticker_t;

static h2chat_ticker_t ticker;

static int pid_gone(uint32_t pid) {
    return pid == 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

/* Rows whose process is gone and that still hold rooms: forgotten, after a
 * second look under the lock (a new child may have taken the row, and it
 * holds nothing before it took the lock itself). */
static void sweep(h2c_store_t *store) {
    h2c_seg_t *seg = store->seg;
    h2c_rooms_t *rooms = h2c_store_history(store);
    uint32_t i, n = h2c_seg_child_count(seg);
    h2c_child_t row;

    for (i = 0; i < n; i++) {
        h2c_seg_child_row(seg, i, &row);
        if (!h2c_rooms_slot_holds(rooms, i) || !pid_gone(row.pid) ||
            apr_global_mutex_lock(store->lock) != APR_SUCCESS) {
            continue;
        }
        h2c_seg_child_row(seg, i, &row);
        if (pid_gone(row.pid)) {
            h2c_members_forget(&seg->members, i); /* its leaves, then its holds */
            h2c_rooms_forget(rooms, i);
        }
        apr_global_mutex_unlock(store->lock);
    }
}

/* A count changed since the last ring: wake the held streams, once. */
static void ring(h2c_store_t *store) {
    uint32_t *rung = &h2c_seg_shared(store->seg)->presence_rung;
    uint32_t seq = h2c_rooms_presence_seq(h2c_store_history(store));
    uint32_t was = __atomic_load_n(rung, __ATOMIC_ACQUIRE);

    if (seq != was && __atomic_compare_exchange_n(rung, &was, seq, 0, __ATOMIC_ACQ_REL,
                                                  __ATOMIC_ACQUIRE)) {
        h2c_store_wake(store);
    }
}

static void *APR_THREAD_FUNC ticker_main(apr_thread_t *thd, void *data) {
    h2chat_ticker_t *t = data;

    (void)thd;
    apr_thread_mutex_lock(t->lock);
    while (!t->stop) {
        apr_thread_cond_timedwait(t->cond, t->lock, H2CHAT_PRESENCE_TICK);
        if (t->stop) {
            break;
        }
        apr_thread_mutex_unlock(t->lock);
        sweep(t->store);
        ring(t->store);
        apr_thread_mutex_lock(t->lock);
    }
    apr_thread_mutex_unlock(t->lock);
    return NULL;
}

static void stop_ticker(h2chat_ticker_t *t) {
    apr_status_t rv;

    if (!t->thread) {
        return;
    }
    apr_thread_mutex_lock(t->lock);
    t->stop = 1;
    apr_thread_cond_signal(t->cond);
    apr_thread_mutex_unlock(t->lock);
    apr_thread_join(&rv, t->thread);
    t->thread = NULL;
}

static apr_status_t ticker_child_exit(void *data) {
    stop_ticker(data);
    return APR_SUCCESS;
}

/* This child's row may have been a killed child's: what that one held goes
 * first, before any stream of this child holds a room. Then the ticker,
 * made with every signal blocked (as the waker). */
apr_status_t h2chat_presence_child_init(apr_pool_t *pchild, h2c_store_t *store,
                                        uint32_t slot) {
    sigset_t all, old;
    apr_status_t rv;

    memset(&ticker, 0, sizeof(ticker));
    h2c_store_forget(store, slot);
    ticker.store = store;
    if ((rv = apr_thread_mutex_create(&ticker.lock, APR_THREAD_MUTEX_DEFAULT, pchild)) !=
            APR_SUCCESS ||
        (rv = apr_thread_cond_create(&ticker.cond, pchild)) != APR_SUCCESS) {
        return rv;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = apr_thread_create(&ticker.thread, NULL, ticker_main, &ticker, pchild);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv == APR_SUCCESS) {
        apr_pool_pre_cleanup_register(pchild, &ticker, ticker_child_exit);
    }
    return rv;
}

void h2chat_presence_child_stopping(void) {
    stop_ticker(&ticker);
}
