/* Unit tests of h2c_seg (layout, child table, subscriber caps), the shm store
 * and h2c_wait, across real processes: fork shares the anonymous mapping
 * exactly as Apache's children share the segment. */
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_global_mutex.h>
#include <apr_strings.h>

#include "h2c_seg.h"
#include "h2c_store.h"
#include "h2c_wait.h"
#include "unit.h"

static void *shared_mem(apr_size_t size) {
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    return m == MAP_FAILED ? NULL : m;
}

static void test_layout(apr_pool_t *p) {
    h2c_seg_t seg, view;
    apr_size_t size = h2c_seg_size(4, 10, 64);
    void *mem = apr_pcalloc(p, size);

    CHECK(h2c_seg_init(&seg, mem, size - 1, 4, 10, 64, 0) == APR_EINVAL);
    CHECK(h2c_seg_init(&seg, mem, size, 4, 10, 64, 0) == APR_SUCCESS);
    CHECK(h2c_seg_attach(&view, mem, size) == APR_SUCCESS);
    CHECK(h2c_seg_fits(&view, 4, 10, 64));
    CHECK(!h2c_seg_fits(&view, 4, 11, 64));
    CHECK(!h2c_seg_fits(&view, 5, 10, 64));
    CHECK(h2c_rooms_history(&view.rooms) == 10);
    CHECK(h2c_seg_child_count(&view) == 4);
    CHECK(!strcmp(h2c_seg_refusal_name(H2C_REFUSED_CAP), "Cap"));
    CHECK(!strcmp(h2c_seg_refusal_name(H2C_REFUSED_ADDRESS), "Address"));
    CHECK(!strcmp(h2c_seg_refusal_name(H2C_REFUSED_MAX), "Unknown"));
    /* the address table: one row of bucket counts per child row */
    CHECK(h2c_seg_size(5, 10, 64) - h2c_seg_size(4, 10, 64) >=
          H2C_SEG_ADDR_BUCKETS * sizeof(uint16_t));
    h2c_seg_count_refusal(&view, H2C_REFUSED_METHOD);
    h2c_seg_count_refusal(&view, H2C_REFUSED_METHOD);
    CHECK(h2c_seg_refusals(&seg, H2C_REFUSED_METHOD) == 2);
    CHECK(h2c_seg_refusals(&seg, H2C_REFUSED_CAP) == 0);
    memset(mem, 0, 4);
    CHECK(h2c_seg_attach(&view, mem, size) == APR_EGENERAL);
}

static uint64_t lat_count(const h2c_lat_t *l) {
    uint64_t n = 0;
    uint32_t b;

    for (b = 0; b < H2C_LAT_BUCKETS; b++) {
        n += l->bucket[b];
    }
    return n;
}

/* The latency table: one histogram per child row, bounds inclusive, the
 * last bucket takes the rest; a row's histogram starts at 0 with its
 * owner (claim) and goes with it (release). */
static void test_latency(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(3, 4, 16);
    void *mem = apr_pcalloc(p, size);
    h2c_lat_t l;
    uint32_t a, b;

    CHECK(h2c_seg_init(&seg, mem, size, 3, 4, 16, 0) == APR_SUCCESS);
    CHECK(((char *)seg.lat - (char *)mem) % 64 == 0); /* offsets from the base */
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &a) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, 1, &b) == APR_SUCCESS);
    h2c_seg_lat_add(&seg, a, 0);
    h2c_seg_lat_add(&seg, a, 100); /* on the bound: its bucket */
    h2c_seg_lat_add(&seg, a, 101);
    h2c_seg_lat_add(&seg, a, 2500000);
    h2c_seg_lat_add(&seg, a, 2500001); /* past the last bound */
    h2c_seg_lat_add(&seg, a, UINT32_MAX);
    h2c_seg_lat_row(&seg, a, &l);
    CHECK(l.bucket[0] == 2 && l.bucket[1] == 1);
    CHECK(l.bucket[H2C_LAT_BUCKETS - 2] == 1 && l.bucket[H2C_LAT_BUCKETS - 1] == 2);
    CHECK(lat_count(&l) == 6);
    CHECK(l.sum_us == 0 + 100 + 101 + 2500000 + 2500001 + (uint64_t)UINT32_MAX);
    h2c_seg_lat_row(&seg, b, &l);
    CHECK(lat_count(&l) == 0 && l.sum_us == 0); /* rows do not mix */
    /* a sample of a committed message lands in some bucket, quickly */
    h2c_seg_lat_sample(&seg, b, h2c_rooms_clock_us());
    h2c_seg_lat_row(&seg, b, &l);
    CHECK(lat_count(&l) == 1 && l.sum_us < 1000000);
    /* released and claimed again: a new child's series starts at 0 */
    h2c_seg_child_release(&seg, a);
    CHECK(h2c_seg_child_claim(&seg, 2, &a) == APR_SUCCESS);
    h2c_seg_lat_row(&seg, a, &l);
    CHECK(lat_count(&l) == 0 && l.sum_us == 0);
}

/* One Redis reader per server; a dead one is replaced. */
static void test_reader(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(3, 4, 16);
    void *mem = apr_pcalloc(p, size);
    pid_t doomed = fork();

    if (doomed == 0) {
        pause();
        _exit(0);
    }
    h2c_seg_init(&seg, mem, size, 3, 4, 16, 0);
    CHECK(h2c_seg_shared(&seg)->reader_pid == 0);
    CHECK(h2c_seg_reader_claim(&seg, (uint32_t)doomed) == APR_SUCCESS);
    CHECK(h2c_seg_reader_claim(&seg, (uint32_t)doomed) == APR_SUCCESS); /* again */
    CHECK(h2c_seg_reader_claim(&seg, (uint32_t)getpid()) == APR_EBUSY);
    h2c_seg_reader_release(&seg, (uint32_t)getpid()); /* not ours: no effect */
    CHECK(h2c_seg_shared(&seg)->reader_pid == (uint32_t)doomed);
    kill(doomed, SIGKILL);
    waitpid(doomed, NULL, 0);
    CHECK(h2c_seg_reader_claim(&seg, (uint32_t)getpid()) == APR_SUCCESS);
    CHECK(h2c_seg_reader_claim(&seg, 1) == APR_EBUSY);
    h2c_seg_reader_release(&seg, (uint32_t)getpid());
    CHECK(h2c_seg_reader_claim(&seg, 1) == APR_SUCCESS);
}

static void test_children(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(3, 4, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t a, b, c, d;
    pid_t doomed = fork();

    if (doomed == 0) {
        pause();
        _exit(0);
    }
    h2c_seg_init(&seg, mem, size, 3, 4, 16, 0);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)doomed, &a) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &b) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, 1, &c) == APR_SUCCESS); /* init: EPERM, alive */
    CHECK(a != b && b != c && a != c);
    CHECK(h2c_seg_sub_enter(&seg, a, 100) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, a, 100) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, b, 100) == APR_SUCCESS);
    CHECK(h2c_seg_sub_total(&seg) == 3);
    CHECK(h2c_seg_child_claim(&seg, 2, &d) == APR_EAGAIN); /* full, all alive */
    /* kill -9 of a child holding subscribers: the next claim frees its row
     * and its count */
    kill(doomed, SIGKILL);
    waitpid(doomed, NULL, 0);
    CHECK(h2c_seg_child_claim(&seg, 2, &d) == APR_SUCCESS);
    CHECK(d == a);
    CHECK(h2c_seg_sub_total(&seg) == 1);
    h2c_seg_child_release(&seg, b);
    CHECK(h2c_seg_sub_total(&seg) == 0);
}

/* A child killed a moment ago is a zombie until httpd's parent reaps it:
 * its streams stop counting as soon as the cap would refuse someone. */
static void test_cap_reclaims_dead(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(2, 4, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t a, b;
    pid_t dead = fork();

    if (dead == 0) {
        pause();
        _exit(0);
    }
    h2c_seg_init(&seg, mem, size, 2, 4, 16, 0);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)dead, &a) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &b) == APR_SUCCESS);
    CHECK(a != b);
    CHECK(h2c_seg_sub_enter(&seg, a, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, a, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, b, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_total(&seg) == 3);
    kill(dead, SIGKILL);
    { /* until it is dead, without reaping it: a zombie, as httpd's child
       * is until the parent's next look (a fixed sleep was flaky under load) */
        siginfo_t info;

        CHECK(waitid(P_PID, (id_t)dead, &info, WEXITED | WNOWAIT) == 0);
    }
    CHECK(h2c_seg_sub_enter(&seg, b, 3) == APR_SUCCESS); /* the zombie's 2 freed */
    CHECK(h2c_seg_sub_total(&seg) == 2);
    CHECK(h2c_seg_sub_enter(&seg, b, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, b, 3) == APR_EBUSY); /* all alive: refused */
    CHECK(h2c_seg_sub_total(&seg) == 3);
    waitpid(dead, NULL, 0);
}

static void test_cap(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(2, 4, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t a, b;

    h2c_seg_init(&seg, mem, size, 2, 4, 16, 0);
    h2c_seg_child_claim(&seg, (uint32_t)getpid(), &a);
    h2c_seg_child_claim(&seg, 1, &b);
    CHECK(h2c_seg_sub_enter(&seg, a, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, b, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, b, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_enter(&seg, a, 3) == APR_EBUSY);
    CHECK(h2c_seg_sub_enter(&seg, b, 3) == APR_EBUSY);
    CHECK(h2c_seg_sub_total(&seg) == 3);
    h2c_seg_sub_leave(&seg, b);
    CHECK(h2c_seg_sub_enter(&seg, a, 3) == APR_SUCCESS);
    CHECK(h2c_seg_sub_total(&seg) == 3);
}

/* An address that shares a's bucket (two addresses of one bucket share a
 * count), found by trying 10.1.x.y. */
static const char *same_bucket(apr_pool_t *p, const char *a) {
    uint32_t want = h2c_seg_addr_bucket(a);
    int x, y;

    for (x = 0; x < 256; x++) {
        for (y = 0; y < 256; y++) {
            const char *b = apr_psprintf(p, "10.1.%d.%d", x, y);

            if (strcmp(a, b) && h2c_seg_addr_bucket(b) == want) {
                return b;
            }
        }
    }
    return NULL;
}

/* H2ChatMaxSubscribersPerAddress: counts per address across child rows,
 * the cap, leave, buckets. */
static void test_addr(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(3, 4, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t a, b, one, two, twin, i;
    const char *alias;

    h2c_seg_init(&seg, mem, size, 3, 4, 16, 0);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &a) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, 1, &b) == APR_SUCCESS);
    one = h2c_seg_addr_bucket("10.0.0.1");
    two = h2c_seg_addr_bucket("10.0.0.2");
    CHECK(one < H2C_SEG_ADDR_BUCKETS && two < H2C_SEG_ADDR_BUCKETS && one != two);
    CHECK(h2c_seg_addr_bucket("10.0.0.1") == one); /* stable */
    CHECK(h2c_seg_addr_bucket(NULL) == h2c_seg_addr_bucket(""));
    /* 3 per address, whichever children hold them */
    CHECK(h2c_seg_addr_enter(&seg, a, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, a, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_total(&seg, one) == 3);
    CHECK(h2c_seg_addr_enter(&seg, a, one, 3) == APR_EBUSY);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_EBUSY);
    CHECK(h2c_seg_addr_total(&seg, one) == 3); /* a refusal leaves no count */
    /* another address is not affected */
    CHECK(h2c_seg_addr_enter(&seg, b, two, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_total(&seg, two) == 1);
    /* ... unless it shares the bucket */
    alias = same_bucket(p, "10.0.0.1");
    CHECK(alias != NULL);
    twin = h2c_seg_addr_bucket(alias);
    CHECK(twin == one && h2c_seg_addr_enter(&seg, b, twin, 3) == APR_EBUSY);
    /* one leaves: room for one more */
    h2c_seg_addr_leave(&seg, b, one);
    CHECK(h2c_seg_addr_total(&seg, one) == 2);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, a, one, 3) == APR_EBUSY);
    /* a released row's counts are gone (clean child exit) */
    h2c_seg_child_release(&seg, b);
    CHECK(h2c_seg_addr_total(&seg, one) == 2 && h2c_seg_addr_total(&seg, two) == 0);
    CHECK(h2c_seg_child_claim(&seg, 1, &b) == APR_SUCCESS);
    CHECK(h2c_seg_addr_total(&seg, one) == 2);
    /* one child's count of a bucket never wraps (uint16_t) */
    for (i = 0; i < 65535 - 2; i++) {
        if (h2c_seg_addr_enter(&seg, a, two, UINT32_MAX) != APR_SUCCESS) {
            break;
        }
    }
    CHECK(i == 65535 - 2 && h2c_seg_addr_total(&seg, two) == 65533);
    CHECK(h2c_seg_addr_enter(&seg, a, two, UINT32_MAX) == APR_SUCCESS); /* 65534 */
    CHECK(h2c_seg_addr_enter(&seg, a, two, UINT32_MAX) == APR_SUCCESS); /* 65535 */
    CHECK(h2c_seg_addr_enter(&seg, a, two, UINT32_MAX) == APR_EBUSY);
    CHECK(h2c_seg_addr_enter(&seg, b, two, UINT32_MAX) == APR_SUCCESS); /* b's own */
    CHECK(h2c_seg_addr_total(&seg, two) == 65536);
}

/* kill -9 of a child that holds streams of an address: its counts stop
 * counting as soon as the address's limit would refuse someone (the child
 * is a zombie, not reaped yet), and its row comes back cleared. */
static void test_addr_dead_child(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(2, 4, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t a, b, c, one = h2c_seg_addr_bucket("192.0.2.7");
    pid_t dead = fork();

    if (dead == 0) {
        pause();
        _exit(0);
    }
    h2c_seg_init(&seg, mem, size, 2, 4, 16, 0);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)dead, &a) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &b) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, a, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, a, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_EBUSY); /* all alive */
    kill(dead, SIGKILL);
    { /* until it is dead, without reaping it: a zombie, as httpd's child
       * is until the parent's next look (a fixed sleep was flaky under load) */
        siginfo_t info;

        CHECK(waitid(P_PID, (id_t)dead, &info, WEXITED | WNOWAIT) == 0);
    }
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_SUCCESS); /* the zombie's 2 freed */
    CHECK(h2c_seg_addr_total(&seg, one) == 2);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 3) == APR_EBUSY);
    waitpid(dead, NULL, 0);
    /* the dead child's row, claimed again, starts from nothing */
    CHECK(h2c_seg_child_claim(&seg, 1, &c) == APR_SUCCESS && c == a);
    CHECK(h2c_seg_addr_total(&seg, one) == 3);
    CHECK(h2c_seg_addr_enter(&seg, c, one, 4) == APR_SUCCESS);
    CHECK(h2c_seg_addr_total(&seg, one) == 4);
}

/* The same, when a new child's claim is what finds the dead one (the MPM
 * replaced it before anyone was refused). */
static void test_addr_reclaimed_by_claim(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(2, 4, 16);
    void *mem = apr_pcalloc(p, size);
    uint32_t a, b, c, one = h2c_seg_addr_bucket("192.0.2.8");
    pid_t dead = fork();

    if (dead == 0) {
        pause();
        _exit(0);
    }
    h2c_seg_init(&seg, mem, size, 2, 4, 16, 0);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)dead, &a) == APR_SUCCESS);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &b) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, a, one, 10) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, a, one, 10) == APR_SUCCESS);
    CHECK(h2c_seg_addr_enter(&seg, b, one, 10) == APR_SUCCESS);
    CHECK(h2c_seg_addr_total(&seg, one) == 3);
    kill(dead, SIGKILL);
    waitpid(dead, NULL, 0);
    CHECK(h2c_seg_child_claim(&seg, 1, &c) == APR_SUCCESS && c == a);
    CHECK(h2c_seg_addr_total(&seg, one) == 1);
}

/* Children publish concurrently through the store; a waiter in another
 * process is woken; ids come out unique and dense. */
static void test_store_across_processes(apr_pool_t *p) {
    enum { CHILDREN = 4, EACH = 50 };
    apr_size_t size = h2c_seg_size(2, CHILDREN * EACH, 256);
    void *mem = shared_mem(size);
    apr_global_mutex_t *lock;
    h2c_seg_t seg;
    h2c_store_t store;
    pid_t pids[CHILDREN], waiter;
    int i, status, ok = 1;
    uint64_t id, k;
    char buf[256];
    h2c_rooms_cursor_t cur;
    h2c_rooms_msg_t m;

    CHECK(mem != NULL);
    h2c_seg_init(&seg, mem, size, 2, CHILDREN * EACH, 256, 0);
    CHECK(apr_global_mutex_create(&lock, NULL, APR_LOCK_DEFAULT, p) == APR_SUCCESS);
    h2c_store_init(&store, &h2c_store_shm_ops, &seg, lock, NULL);

    waiter = fork();
    if (waiter == 0) { /* sleeps until the first message, then exits 0 */
        uint32_t seen = *h2c_rooms_seq(&seg.rooms);

        while (h2c_rooms_last_id(&seg.rooms) == 0) {
            if (h2c_wait_change(h2c_rooms_seq(&seg.rooms), seen, apr_time_from_sec(5)) ==
                APR_TIMEUP) {
                _exit(1);
            }
            seen = *h2c_rooms_seq(&seg.rooms);
        }
        _exit(0);
    }
    usleep(50000);
    for (i = 0; i < CHILDREN; i++) {
        if ((pids[i] = fork()) == 0) {
            int j;
            int64_t t;

            apr_global_mutex_child_init(&lock, NULL, p);
            for (j = 0; j < EACH; j++) {
                if (h2c_store_publish(&store, H2C_ROOMS_DEFAULT,
                                      "\"user\":\"u\",\"text\":\"t\"", 21, &id, &t)) {
                    _exit(2);
                }
            }
            _exit(0);
        }
    }
    for (i = 0; i < CHILDREN; i++) {
        waitpid(pids[i], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    waitpid(waiter, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(h2c_rooms_last_id(&seg.rooms) == CHILDREN * EACH);
    CHECK(h2c_seg_published(&seg) == CHILDREN * EACH);
    h2c_rooms_cursor_at(&cur, 0);
    for (k = 1; k <= CHILDREN * EACH; k++) {
        char want[64];
        int n = snprintf(want, sizeof(want), "{\"type\":\"message\",\"id\":%llu,",
                         (unsigned long long)k);

        if (h2c_rooms_next(&seg.rooms, H2C_ROOMS_DEFAULT, &cur, &m) != APR_SUCCESS ||
            m.id != k || h2c_rooms_read(&seg.rooms, &m, buf, sizeof(buf), NULL, NULL) ||
            memcmp(buf, want, (size_t)n)) {
            ok = 0;
        }
        h2c_rooms_advance(&cur, &m);
    }
    CHECK(ok);
    /* a message too big is refused before touching the rooms */
    {
        char big[400];
        int64_t t;

        memset(big, 'x', sizeof(big));
        CHECK(h2c_store_publish(&store, "", big, sizeof(big), &id, &t) == APR_ENOSPC);
        CHECK(h2c_rooms_last_id(&seg.rooms) == CHILDREN * EACH);
    }
    apr_global_mutex_destroy(lock);
    munmap(mem, size);
}

/* A publisher killed while holding the lock must not block the others:
 * the default mechanism is a robust process-shared mutex. */
static void test_lock_survives_kill(apr_pool_t *p) {
    apr_size_t size = h2c_seg_size(2, 8, 256);
    void *mem = shared_mem(size);
    apr_global_mutex_t *lock;
    h2c_seg_t seg;
    h2c_store_t store;
    volatile uint32_t *held = mem; /* first word, before init: a flag */
    pid_t pid;
    uint64_t id;
    int64_t t;
    apr_status_t rv;

    CHECK(apr_global_mutex_create(&lock, NULL, APR_LOCK_DEFAULT, p) == APR_SUCCESS);
    *held = 0;
    if ((pid = fork()) == 0) {
        apr_global_mutex_lock(lock);
        *held = 1;
        pause(); /* killed with the lock held */
        _exit(0);
    }
    while (!*held) {
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    h2c_seg_init(&seg, mem, size, 2, 8, 256, 0);
    h2c_store_init(&store, &h2c_store_shm_ops, &seg, lock, NULL);
    alarm(10); /* a lock left held would hang here: fail loudly instead */
    rv = h2c_store_publish(&store, "", "\"user\":\"u\",\"text\":\"t\"", 21, &id, &t);
    alarm(0);
    CHECK(rv == APR_SUCCESS && id == 1);
    CHECK(h2c_store_publish(&store, "", "\"user\":\"u\",\"text\":\"t\"", 21, &id, &t) ==
          APR_SUCCESS);
    CHECK(id == 2);
    apr_global_mutex_destroy(lock);
    munmap(mem, size);
}

static void test_rate(apr_pool_t *p) {
    h2c_seg_t seg;
    apr_size_t size = h2c_seg_size(2, 4, 16);
    void *mem = apr_pcalloc(p, size);
    h2c_rate_limit_t lim = {500, 3}; /* 2 per second, 3 at once */
    int64_t t0 = 1764061200000LL, retry = 0;

    h2c_seg_init(&seg, mem, size, 2, 4, 16, t0);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0, &retry) == APR_EAGAIN);
    CHECK(retry == 500);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.2", t0, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0 + 499, &retry) == APR_EAGAIN);
    CHECK(retry == 1);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0 + 500, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0 + 500, &retry) == APR_EAGAIN);
    /* idle long enough: a full burst again */
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0 + 10000, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0 + 10000, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0 + 10000, &retry) == APR_SUCCESS);
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.1", t0 + 10000, &retry) == APR_EAGAIN);
    /* a clock before the epoch does not underflow */
    CHECK(h2c_rate_take(&seg.rate, &lim, "10.0.0.9", t0 - 5000, &retry) == APR_SUCCESS);
}

static void test_wait_timeout(apr_pool_t *p) {
    volatile uint32_t word = 5;
    apr_time_t t0 = apr_time_now();

    (void)p;
    CHECK(h2c_wait_change(&word, 5, apr_time_from_msec(50)) == APR_TIMEUP);
    CHECK(apr_time_now() - t0 >= apr_time_from_msec(40));
    CHECK(h2c_wait_change(&word, 4, apr_time_from_sec(5)) == APR_SUCCESS); /* differs */
}

int main(void) {
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    RUN(test_layout, p);
    RUN(test_latency, p);
    RUN(test_children, p);
    RUN(test_cap, p);
    RUN(test_cap_reclaims_dead, p);
    RUN(test_addr, p);
    RUN(test_addr_dead_child, p);
    RUN(test_addr_reclaimed_by_claim, p);
    RUN(test_store_across_processes, p);
    RUN(test_lock_survives_kill, p);
    RUN(test_rate, p);
    RUN(test_reader, p);
    RUN(test_wait_timeout, p);
    apr_pool_destroy(p);
    apr_terminate();
    return unit_finish("test_seg");
}
