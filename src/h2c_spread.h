/* h2c_spread: the reconnect hint of a stopping child (pure unit, no httpd
 * headers; H2ChatReconnectSpread).
 *
 * When a child stops (graceful restart, MaxConnectionsPerChild, the MPM
 * reaping a spare child) every stream it holds ends at once, and without a
 * hint every client reconnects at once: an SSE EventSource after its
 * default 3 s, an NDJSON client at once. So each stream's last event says
 * when to come back: a delay drawn uniformly from [0, W), per stream. W is
 * chosen once, when the child stops, from how many streams the server
 * holds (all children: at a graceful restart they all stop at once and
 * their clients all come back); the child itself ends its streams at once
 * (the hint does the spreading).
 *
 * The draw is one atomic add and a few multiplications (splitmix64 over a
 * per-child counter): no syscall and no lock, since thousands of handler
 * threads and the direct loop draw at the same moment. */
#ifndef H2C_SPREAD_H
#define H2C_SPREAD_H

#include <stdint.h>

/* H2ChatReconnectSpread auto: the reconnects per second a 2-core Apache
 * takes comfortably alongside its other work (new TLS handshakes, h2
 * sessions, resume reads). W = the server's held streams / this, so the
 * clients of a graceful restart return at about this rate. An estimate: measure and
 * tune it here. */
#define H2C_SPREAD_AUTO_RATE 5000u
/* auto's bounds: at least 1 s (a few streams still do not come back in
 * the same millisecond), at most 10 s (nobody waits long for a restart) */
#define H2C_SPREAD_AUTO_MIN_MS 1000u
#define H2C_SPREAD_AUTO_MAX_MS 10000u
/* H2ChatReconnectSpread SECONDS: 1 .. this */
#define H2C_SPREAD_FIXED_MAX_S 300

/* The directive's value as the unit takes it. */
#define H2C_SPREAD_AUTO (-1)
#define H2C_SPREAD_OFF 0

/* The window W in ms when the server holds `held` streams: conf_s > 0 is
 * fixed (seconds), H2C_SPREAD_AUTO follows `held`, H2C_SPREAD_OFF is 0
 * (no hint). */
uint32_t h2c_spread_window_ms(int conf_s, uint32_t held);

/* A value uniform in [0, window_ms) from 64 random bits; 0 if window_ms
 * is 0. */
uint32_t h2c_spread_pick(uint64_t random, uint32_t window_ms);

/* splitmix64's output function: 64 well-mixed bits from a counter. */
uint64_t h2c_spread_mix(uint64_t x);

/* A child's generator and its window: zero is valid and unarmed. */
typedef struct {
    uint64_t counter;   /* advanced atomically, once per draw */
    uint32_t window_ms; /* 0 until armed: no hint */
} h2c_spread_t;

/* Once per child, before any draw: the counter's start (e.g. pid and time
 * mixed), so that two children do not draw the same sequence. */
void h2c_spread_seed(h2c_spread_t *sp, uint64_t seed);

/* When the child stops, before its streams are told: the window (release:
 * a thread that sees the stop flag set after this sees the window). */
void h2c_spread_arm(h2c_spread_t *sp, uint32_t window_ms);

/* Per stream that ends because its child stops: 1 and *retry_ms (uniform
 * in [0, W)) if a hint is due, 0 if not (unarmed, or off). Thread-safe. */
int h2c_spread_draw(h2c_spread_t *sp, uint32_t *retry_ms);

#endif /* H2C_SPREAD_H */
