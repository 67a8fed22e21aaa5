/* h2c_balance: see h2c_balance.h. */
#include "h2c_balance.h"

int h2c_balance_pick(const h2c_seg_t *seg, uint32_t self, uint32_t gen1, int must,
                     uint32_t *slot, uint32_t *pid) {
    uint32_t i, n = h2c_seg_child_count(seg), best = UINT32_MAX, best_slot = 0,
                best_pid = 0;
    h2c_child_t me, row;

    if (!gen1 || self >= n) {
        return 0;
    }
    h2c_seg_child_row(seg, self, &me);
    for (i = 0; i < n; i++) {
        if (i == self) {
            continue;
        }
        h2c_seg_child_row(seg, i, &row);
        if (row.pid && row.direct_gen == gen1 && row.direct_conns < best) {
            best = row.direct_conns;
            best_slot = i;
            best_pid = row.pid;
        }
    }
    if (best == UINT32_MAX ||
        (!must && best + H2C_BALANCE_SLACK + me.direct_conns / H2C_BALANCE_SHARE >=
                      me.direct_conns)) {
        return 0;
    }
    *slot = best_slot;
    *pid = best_pid;
    return 1;
}

int h2c_balance_peer(const h2c_seg_t *seg, uint32_t pid, uint32_t gen1) {
    uint32_t i, n = h2c_seg_child_count(seg);
    h2c_child_t row;

    for (i = 0; gen1 && pid && i < n; i++) {
        h2c_seg_child_row(seg, i, &row);
        if (row.pid == pid && row.direct_gen == gen1) {
            return 1;
        }
    }
    return 0;
}
