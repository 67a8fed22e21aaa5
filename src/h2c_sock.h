/* h2c_sock: is the peer of a TCP socket still taking our bytes? (pure
 * unit, no httpd headers)
 *
 * A client that stops reading, or whose network vanished without a FIN or
 * RST, leaves our bytes in the kernel's send queue. A write blocks only once
 * that queue is full (about 1.6 MB on loopback), which a quiet chat with a
 * heartbeat of ~50 bytes per 20 s takes days to reach. The idle check asks
 * the kernel instead: bytes queued and no new byte acknowledged for `limit`
 * means the client is not reading. A slow but live client acknowledges
 * something between two checks and is left alone. */
#ifndef H2C_SOCK_H
#define H2C_SOCK_H

#include <stdint.h>

typedef struct {
    uint64_t acked; /* bytes the peer had acknowledged at the last look */
    int64_t since;  /* when the queue was first seen not moving; 0: moving */
} h2c_stall_t;

/* Bytes in the send queue (unsent + unacknowledged) and bytes acknowledged
 * so far, from SIOCOUTQ and TCP_INFO. -1 if fd is not a TCP socket. */
int h2c_sock_queue(int fd, uint32_t *queued, uint64_t *acked);

/* One look: 1 once `queued` bytes have been waiting without any new
 * acknowledgement for at least `limit` (same unit as `now`), else 0. */
int h2c_stall_update(h2c_stall_t *st, uint32_t queued, uint64_t acked, int64_t now,
                     int64_t limit);

#endif /* H2C_SOCK_H */
