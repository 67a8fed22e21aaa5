/* h2c_gate: bounds the RATE of wake-ups, not of messages (pure unit).
 *
 * Waking every held stream costs ~N x 40 us of CPU however few messages it
 * delivers, so publishers share one gate in the segment: a publish that
 * comes at least `interval` after the last wake-up wakes at once (low-rate
 * latency unchanged); one that comes sooner only marks the gate pending and
 * leaves the wake-up to a waker thread, due at last wake + interval. Every
 * message then waits at most `interval` plus one wake-up, in order, and the
 * cost follows wake-ups (at most 1 / interval) instead of messages.
 * Time is a monotonic clock in microseconds, the same in every process. */
#ifndef H2C_GATE_H
#define H2C_GATE_H

#include <stdint.h>

/* In the shared segment; zero is a valid, idle gate. */
typedef struct {
    int64_t last_wake_us; /* when the last wake-up was decided */
    uint32_t pending;     /* 1: a message waits for the waker */
    uint32_t pad;
} h2c_gate_t;

typedef enum {
    H2C_GATE_WAKE,  /* the caller wakes every waiter now */
    H2C_GATE_DEFER, /* pending set: the caller's waker must fire at `due` */
    H2C_GATE_DONE,  /* another process decided a wake-up after our commit */
    H2C_GATE_WAIT,  /* waker: pending, but not due before `due` */
    H2C_GATE_IDLE   /* waker: nothing pending */
} h2c_gate_action_t;

/* The interval for `held` streams: `conf_us` > 0 is fixed; < 0 is auto,
 * held x per_stream_us capped at max_us; 0 is off (callers skip the gate). */
int64_t h2c_gate_interval(int64_t conf_us, uint32_t held, int64_t per_stream_us,
                          int64_t max_us);

/* After a commit to the ring: WAKE, DEFER (sets *due) or DONE. */
h2c_gate_action_t h2c_gate_publish(h2c_gate_t *gate, int64_t now_us, int64_t interval_us,
                                   int64_t *due);

/* The waker's step: WAKE (pending taken; wake now), WAIT (sets *due) or
 * IDLE. */
h2c_gate_action_t h2c_gate_fire(h2c_gate_t *gate, int64_t now_us, int64_t interval_us,
                                int64_t *due);

#endif /* H2C_GATE_H */
