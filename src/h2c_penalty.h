/* h2c_penalty: client addresses whose new connections the direct loops
 * refuse for a while (pure unit). The table lives in the shared segment:
 * every child's loop refuses an address one of them penalised, so that
 * with N children an attacker does not get N budgets per penalty.
 *
 * Why: a loop is one thread per child. A connection that spends its
 * budget (h2c_direct_guard.c) is closed, but its client can open the next
 * one at once and spend another budget: with a few such clients the loop
 * spends its time on them and every other connection of the child waits.
 * Refusing that address's new connections for `H2ChatDirectPenalty`
 * seconds turns each one into an accept and a close.
 *
 * Fixed size (H2C_PENALTY_SLOTS), open addressing over a short probe
 * window, keyed by a 64-bit hash of the address text; entries are never
 * removed, an ended one is reused. When the window is full of live
 * entries the one that ends first is replaced: a flood of addresses cannot
 * grow the table, it can only shorten some penalties. Lock-free: each word
 * is atomic; two children penalising two addresses into one slot at the
 * same instant may lose one of them (its next budget spent records it). */
#ifndef H2C_PENALTY_H
#define H2C_PENALTY_H

#include <stdint.h>

#define H2C_PENALTY_SLOTS 1024u
#define H2C_PENALTY_PROBE 8u

typedef struct {
    uint64_t key;     /* h2c_penalty_key of the address; 0: never used */
    int64_t until_us; /* CLOCK_MONOTONIC µs: the same in every process */
} h2c_penalty_slot_t;

/* All zero: empty (a new segment is). */
typedef struct {
    h2c_penalty_slot_t slot[H2C_PENALTY_SLOTS];
} h2c_penalty_t;

/* 64-bit FNV-1a of an address's text, never 0. */
uint64_t h2c_penalty_key(const char *addr);

/* Refuses addr until until_us (a later end if it is there already):
 * 1 if it was not refused at now_us, 0 if it already was. */
int h2c_penalty_add(h2c_penalty_t *t, const char *addr, int64_t until_us, int64_t now_us);

/* Is addr refused at now_us? */
int h2c_penalty_has(const h2c_penalty_t *t, const char *addr, int64_t now_us);

#endif /* H2C_PENALTY_H */
