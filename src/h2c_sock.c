/* h2c_sock: see h2c_sock.h. Only Linux headers here: <linux/tcp.h> has
 * tcpi_bytes_acked, glibc's <netinet/tcp.h> does not, and the two clash. */
#include <netinet/in.h>
#include <stddef.h>

#include <linux/sockios.h>
#include <linux/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "h2c_sock.h"

int h2c_sock_queue(int fd, uint32_t *queued, uint64_t *acked) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int q = 0;

    if (ioctl(fd, SIOCOUTQ, &q) != 0 || q < 0) {
        return -1;
    }
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked)) {
        return -1;
    }
    *queued = (uint32_t)q;
    *acked = ti.tcpi_bytes_acked;
    return 0;
}

int h2c_stall_update(h2c_stall_t *st, uint32_t queued, uint64_t acked, int64_t now,
                     int64_t limit) {
    if (queued == 0 || acked != st->acked) {
        st->acked = acked;
        st->since = 0;
        return 0;
    }
    if (st->since == 0) {
        st->since = now ? now : 1;
        return 0;
    }
    return now - st->since >= limit;
}
