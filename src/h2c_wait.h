/* h2c_wait: sleep until a shared 32-bit word changes, across processes
 * (pure unit). On Linux this is a futex on the word in the shared segment,
 * so a waiter costs no CPU and one wake call reaches every process; no
 * busy polling. */
#ifndef H2C_WAIT_H
#define H2C_WAIT_H

#include <apr_errno.h>
#include <apr_time.h>
#include <stdint.h>

/* Sleeps while *word == seen, at most `timeout`. APR_SUCCESS when woken or
 * the word already differs, APR_TIMEUP on timeout, APR_EINTR on a signal. */
apr_status_t h2c_wait_change(volatile uint32_t *word, uint32_t seen,
                             apr_interval_time_t timeout);

/* Wakes every waiter on `word`, in every process. */
void h2c_wait_wake_all(volatile uint32_t *word);

/* The word's value now (acquire: what was written before it changed is
 * seen), to pass to h2c_wait_change. */
uint32_t h2c_wait_read(volatile uint32_t *word);

/* Changes the word, then wakes every waiter: none can sleep through it on
 * an old value. */
void h2c_wait_bump(volatile uint32_t *word);

#endif /* H2C_WAIT_H */
