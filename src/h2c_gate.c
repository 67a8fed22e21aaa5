/* h2c_gate: see h2c_gate.h.
 *
 * Why DONE is safe: a compare-and-swap on last_wake_us fails only if some
 * process changed it after we loaded it, which was after our commit; whoever
 * changes it wakes everyone right after, so our message is covered. All
 * operations are sequentially consistent: a few per publish, none per
 * subscriber. */
#include "h2c_gate.h"

int64_t h2c_gate_interval(int64_t conf_us, uint32_t held, int64_t per_stream_us,
                          int64_t max_us) {
    int64_t t;

    if (conf_us >= 0) {
        return conf_us;
    }
    t = (int64_t)held * per_stream_us;
    return t < max_us ? t : max_us;
}

h2c_gate_action_t h2c_gate_publish(h2c_gate_t *gate, int64_t now_us, int64_t interval_us,
                                   int64_t *due) {
    int64_t last = __atomic_load_n(&gate->last_wake_us, __ATOMIC_SEQ_CST);

    if (now_us - last >= interval_us) {
        if (!__atomic_compare_exchange_n(&gate->last_wake_us, &last, now_us, 0,
                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            return H2C_GATE_DONE;
        }
        /* this wake-up covers whatever was pending */
        __atomic_store_n(&gate->pending, 0, __ATOMIC_SEQ_CST);
        return H2C_GATE_WAKE;
    }
    __atomic_store_n(&gate->pending, 1, __ATOMIC_SEQ_CST);
    *due = last + interval_us;
    return H2C_GATE_DEFER;
}

h2c_gate_action_t h2c_gate_fire(h2c_gate_t *gate, int64_t now_us, int64_t interval_us,
                                int64_t *due) {
    int64_t last;
    uint32_t one = 1;

    if (!__atomic_load_n(&gate->pending, __ATOMIC_SEQ_CST)) {
        return H2C_GATE_IDLE;
    }
    last = __atomic_load_n(&gate->last_wake_us, __ATOMIC_SEQ_CST);
    if (now_us - last < interval_us) {
        *due = last + interval_us;
        return H2C_GATE_WAIT;
    }
    if (!__atomic_compare_exchange_n(&gate->pending, &one, 0, 0, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST)) {
        return H2C_GATE_IDLE; /* another waker took it */
    }
    __atomic_store_n(&gate->last_wake_us, now_us, __ATOMIC_SEQ_CST);
    return H2C_GATE_WAKE;
}
