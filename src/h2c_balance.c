/* h2c_balance: see h2c_balance.h. */
#include "h2c_balance.h"

/* May this child (with `own` connections) give one to a loop that would
 * then serve `after`? */
static int worth(uint32_t own, uint32_t after) {
    return after + H2C_BALANCE_SLACK + own / H2C_BALANCE_SHARE <= own;
}

int h2c_balance_place(h2c_seg_t *seg, uint32_t self, uint32_t gen1, int must,
                      uint32_t *slot, uint32_t *pid) {
    uint32_t i, n = h2c_seg_child_count(seg), best = UINT32_MAX, best_slot = 0,
                best_pid = 0, own;
    h2c_child_t me, row;

    if (!gen1 || self >= n) {
        return 0;
    }
    h2c_seg_child_row(seg, self, &me);
    own = me.direct_conns ? me.direct_conns - 1 : 0; /* without this one */
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
    if (best == UINT32_MAX || (!must && !worth(own, best + 1))) {
        return 0;
    }
    /* others may have moved theirs there since: check again with what
     * this one's move makes it, and move it back if no longer worth it */
    if (!must && !worth(own, h2c_seg_direct_conns_add(seg, best_slot, 1))) {
        h2c_seg_direct_conns_add(seg, best_slot, -1);
        return 0;
    }
    if (must) {
        h2c_seg_direct_conns_add(seg, best_slot, 1);
    }
    h2c_seg_direct_conns_add(seg, self, -1);
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
