/* h2c_wait: see h2c_wait.h. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "h2c_wait.h"

/* Shared (not FUTEX_PRIVATE) futexes: the word lives in a segment mapped by
 * several processes, and the kernel keys the wait on the physical page. */
static long futex(volatile uint32_t *word, int op, uint32_t val,
                  const struct timespec *ts) {
    return syscall(SYS_futex, word, op, val, ts, NULL, 0);
}

apr_status_t h2c_wait_change(volatile uint32_t *word, uint32_t seen,
                             apr_interval_time_t timeout) {
    struct timespec ts;

    ts.tv_sec = (time_t)apr_time_sec(timeout);
    ts.tv_nsec = (long)apr_time_usec(timeout) * 1000L;
    if (futex(word, FUTEX_WAIT, seen, &ts) == 0) {
        return APR_SUCCESS;
    }
    switch (errno) {
    case EAGAIN: /* the word had changed already */
        return APR_SUCCESS;
    case ETIMEDOUT:
        return APR_TIMEUP;
    case EINTR:
        return APR_EINTR;
    default:
        return APR_FROM_OS_ERROR(errno);
    }
}

void h2c_wait_wake_all(volatile uint32_t *word) {
    futex(word, FUTEX_WAKE, INT_MAX, NULL);
}

uint32_t h2c_wait_read(volatile uint32_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

void h2c_wait_bump(volatile uint32_t *word) {
    __atomic_add_fetch(word, 1, __ATOMIC_RELEASE);
    h2c_wait_wake_all(word);
}
