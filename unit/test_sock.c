/* h2c_sock: the stall rule, and the kernel's figures on a real loopback
 * TCP connection whose reader stops and then drains. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2c_sock.h"
#include "unit.h"

static void test_rule(apr_pool_t *p) {
    h2c_stall_t st = {0, 0};

    (void)p;
    CHECK(h2c_stall_update(&st, 0, 100, 10, 5) == 0);  /* nothing queued */
    CHECK(h2c_stall_update(&st, 50, 100, 12, 5) == 0); /* first look without progress */
    CHECK(st.since == 12);
    CHECK(h2c_stall_update(&st, 60, 100, 16, 5) == 0); /* 4 < 5 */
    CHECK(h2c_stall_update(&st, 60, 100, 17, 5) == 1); /* 5 without an ack */
    CHECK(h2c_stall_update(&st, 60, 101, 18, 5) == 0); /* one byte acked: alive */
    CHECK(st.since == 0);
    CHECK(h2c_stall_update(&st, 60, 101, 19, 5) == 0);
    CHECK(h2c_stall_update(&st, 0, 101, 30, 5) == 0); /* drained: not stuck */
    CHECK(st.since == 0);
    CHECK(h2c_stall_update(&st, 10, 101, 31, 5) == 0);
    CHECK(h2c_stall_update(&st, 10, 101, 36, 5) == 1);
}

static void test_kernel(apr_pool_t *p) {
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s;
    int small = 1024, one = 1;
    char buf[65536];
    uint32_t q0 = 0, q1 = 0, q2 = 0;
    uint64_t a0 = 0, a1 = 0, a2 = 0;
    ssize_t n;

    (void)p;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0);
    s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    CHECK(h2c_sock_queue(s, &q0, &a0) == 0);
    CHECK(q0 == 0);
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    memset(buf, 'x', sizeof(buf));
    while ((n = write(s, buf, sizeof(buf))) > 0) {
    }
    usleep(50000);
    CHECK(h2c_sock_queue(s, &q1, &a1) == 0);
    usleep(50000);
    CHECK(h2c_sock_queue(s, &q2, &a2) == 0);
    CHECK(q1 > 0 && q1 == q2);
    CHECK(a1 == a2); /* the reader is not reading: nothing new acknowledged */
    while (read(c, buf, sizeof(buf)) > 0 && h2c_sock_queue(s, &q2, &a2) == 0 && q2 > 0) {
    }
    CHECK(h2c_sock_queue(s, &q2, &a2) == 0);
    CHECK(a2 > a1);
    {
        int u[2];

        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, u) == 0);
        CHECK(h2c_sock_queue(u[0], &q0, &a0) == -1); /* not TCP */
        close(u[0]);
        close(u[1]);
    }
    close(s);
    close(c);
    close(l);
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_rule, pool);
    RUN(test_kernel, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_sock");
}
