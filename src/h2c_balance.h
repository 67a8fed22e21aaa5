/* h2c_balance: which child's H2ChatDirect loop takes a new connection
 * (pure unit, no httpd headers).
 *
 * Why: connections land in the child whose listener thread the kernel
 * wakes, and that is far from even (300 over two children split 65/235,
 * then 241/59 after a graceful restart). Each loop is one thread on one
 * core, so the busiest sets everyone's latency, and a child also stops at
 * its open-files limit. The child that accepted a connection hands it to
 * the least loaded loop of its generation when that one serves clearly
 * fewer connections (mod_h2chat_direct.c passes the socket). */
#ifndef H2C_BALANCE_H
#define H2C_BALANCE_H

#include <stdint.h>

#include "h2c_seg.h"

/* A loop keeps a connection unless another serves fewer than its own
 * count minus this slack, plus 1/H2C_BALANCE_SHARE of its count: handing
 * costs a system call on each side, so near-even is left alone, and
 * racing workers of one child (they all see the same counts) overshoot a
 * little, never flap. */
#define H2C_BALANCE_SLACK 8u
#define H2C_BALANCE_SHARE 32u

/* Where a new connection goes. It counts in this child's row already (the
 * caller counted it there first: its workers choosing at once then see
 * each other's). 1 with *pid (and *slot) of the child to hand it to, its
 * count moved to that row; 0 to keep it here. self: this child's row;
 * gen1: 1 + this generation (rows whose loop takes connections of another
 * generation, or none, are skipped). must: this child cannot keep it (out
 * of open files): the least loaded other loop, however loaded. The move
 * is counted and checked in one atomic step, so that the workers of every
 * child choosing at once (a reconnect wave) never pile onto one loop. */
int h2c_balance_place(h2c_seg_t *seg, uint32_t self, uint32_t gen1, int must,
                      uint32_t *slot, uint32_t *pid);

/* 1 if pid holds a row whose loop takes connections of generation gen1:
 * a connection handed by anyone else is not taken. */
int h2c_balance_peer(const h2c_seg_t *seg, uint32_t pid, uint32_t gen1);

#endif /* H2C_BALANCE_H */
