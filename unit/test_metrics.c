/* Unit tests of h2c_metrics: the snapshot as Prometheus text. */
#include <stdio.h>
#include <string.h>

#include "h2c_metrics.h"
#include "unit.h"

static int has_line(const char *text, const char *line) {
    apr_size_t n = strlen(line);
    const char *s = text;

    while ((s = strstr(s, line)) != NULL) {
        if ((s == text || s[-1] == '\n') && s[n] == '\n') {
            return 1;
        }
        s += n;
    }
    return 0;
}

static void fill(h2c_stats_t *st, apr_pool_t *p) {
    int k;

    memset(st, 0, sizeof(*st));
    st->subscribers = 7;
    st->direct_held = 2;
    st->direct_conns = 1;
    st->max_subscribers = 192;
    st->max_per_address = 96;
    st->published = 40;
    st->last_id = 41;
    st->history_count = 40;
    st->history_capacity = 1000;
    st->stalled_dropped = 3;
    st->direct_calm = 4;
    st->direct_penalized = 5;
    for (k = 0; k < H2C_REFUSED_MAX; k++) {
        st->refused[k] = (uint64_t)k * 10;
    }
    st->refused[H2C_REFUSED_TOO_LARGE] = 5000000000ull; /* past 32 bits */
    st->nchildren = 2;
    st->children = apr_pcalloc(p, 2 * sizeof(*st->children));
    st->children[0].pid = 4242;
    st->children[0].held = 4;
    st->children[1].pid = 4243;
    st->children[1].held = 3;
    st->store_name = "shm";
    st->lat = apr_pcalloc(p, 2 * sizeof(*st->lat));
    st->lat[0].bucket[0] = 2;                   /* <= 100 µs */
    st->lat[0].bucket[3] = 1;                   /* <= 1 ms */
    st->lat[0].bucket[H2C_LAT_BUCKETS - 1] = 1; /* past 2.5 s */
    st->lat[0].sum_us = 3000150;
}

static void test_values(apr_pool_t *p) {
    h2c_stats_t st;
    apr_size_t len;
    const char *t;

    fill(&st, p);
    t = h2c_metrics_render(&st, p, &len);
    CHECK(len == strlen(t) && len > 0 && t[len - 1] == '\n');
    CHECK(has_line(t, "h2chat_usable 1"));
    CHECK(has_line(t, "# TYPE h2chat_subscribers gauge"));
    CHECK(has_line(t, "h2chat_subscribers{transport=\"handler\"} 5"));
    CHECK(has_line(t, "h2chat_subscribers{transport=\"direct\"} 2"));
    CHECK(has_line(t, "h2chat_child_subscribers{pid=\"4242\"} 4"));
    CHECK(has_line(t, "h2chat_child_subscribers{pid=\"4243\"} 3"));
    CHECK(has_line(t, "h2chat_max_subscribers 192"));
    CHECK(has_line(t, "h2chat_max_subscribers_per_address 96"));
    CHECK(has_line(t, "# TYPE h2chat_messages_published_total counter"));
    CHECK(has_line(t, "h2chat_messages_published_total 40"));
    CHECK(has_line(t, "h2chat_last_id 41"));
    CHECK(has_line(t, "h2chat_history_messages 40"));
    CHECK(has_line(t, "h2chat_history_capacity_messages 1000"));
    CHECK(has_line(t, "h2chat_direct_connections 1"));
    CHECK(has_line(t, "h2chat_direct_calm_total 4"));
    CHECK(has_line(t, "h2chat_direct_penalized_total 5"));
    CHECK(has_line(t, "h2chat_stalled_dropped_total 3"));
    CHECK(has_line(t, "# TYPE h2chat_refused_total counter"));
    CHECK(has_line(t, "h2chat_refused_total{reason=\"cap\"} 0"));
    CHECK(has_line(t, "h2chat_refused_total{reason=\"too_large\"} 5000000000"));
    CHECK(has_line(t, "h2chat_refused_total{reason=\"media_type\"} 30"));
    CHECK(has_line(t, "h2chat_refused_total{reason=\"address\"} 80"));
    CHECK(has_line(t, "h2chat_store_info{store=\"shm\"} 1"));
    CHECK(!strstr(t, "redis")); /* shm has no store lines */
    /* the histogram: cumulative buckets in seconds, +Inf == count */
    CHECK(has_line(t, "# TYPE h2chat_delivery_latency_seconds histogram"));
    CHECK(has_line(
        t, "h2chat_delivery_latency_seconds_bucket{pid=\"4242\",le=\"0.0001\"} 2"));
    CHECK(has_line(
        t, "h2chat_delivery_latency_seconds_bucket{pid=\"4242\",le=\"0.00025\"} 2"));
    CHECK(has_line(
        t, "h2chat_delivery_latency_seconds_bucket{pid=\"4242\",le=\"0.001\"} 3"));
    CHECK(
        has_line(t, "h2chat_delivery_latency_seconds_bucket{pid=\"4242\",le=\"2.5\"} 3"));
    CHECK(has_line(t,
                   "h2chat_delivery_latency_seconds_bucket{pid=\"4242\",le=\"+Inf\"} 4"));
    CHECK(has_line(t, "h2chat_delivery_latency_seconds_sum{pid=\"4242\"} 3.000150"));
    CHECK(has_line(t, "h2chat_delivery_latency_seconds_count{pid=\"4242\"} 4"));
    CHECK(has_line(t,
                   "h2chat_delivery_latency_seconds_bucket{pid=\"4243\",le=\"+Inf\"} 0"));
    CHECK(has_line(t, "h2chat_delivery_latency_seconds_count{pid=\"4243\"} 0"));
}

/* A sample's name: its family's, or for a histogram the family's with
 * _bucket, _sum or _count. */
static int in_family(const char *line, apr_size_t n, const char *fam) {
    static const char *const hist[] = {"", "_bucket", "_sum", "_count"};
    apr_size_t f = strlen(fam);
    int i;

    if (n < f || strncmp(line, fam, f)) {
        return 0;
    }
    for (i = 0; i < 4; i++) {
        if (n - f == strlen(hist[i]) && !strncmp(line + f, hist[i], n - f)) {
            return 1;
        }
    }
    return 0;
}

/* Every sample belongs to the family of the TYPE line before it, and
 * every TYPE line follows the HELP of its family: what a scraper needs to
 * read it. */
static void test_shape(apr_pool_t *p) {
    h2c_stats_t st;
    apr_size_t len;
    const char *t, *line;
    char fam[128] = "", help[128] = "";
    int samples = 0, bad = 0;

    fill(&st, p);
    t = h2c_metrics_render(&st, p, &len);
    for (line = t; *line; line = strchr(line, '\n') + 1) {
        apr_size_t n = strcspn(line, "{ ");

        if (!strncmp(line, "# HELP ", 7)) {
            n = strcspn(line + 7, " ");
            CHECK(n < sizeof(help));
            memcpy(help, line + 7, n);
            help[n] = '\0';
            continue;
        }
        if (!strncmp(line, "# TYPE ", 7)) {
            n = strcspn(line + 7, " ");
            CHECK(n < sizeof(fam));
            memcpy(fam, line + 7, n);
            fam[n] = '\0';
            CHECK(!strcmp(fam, help));
            continue;
        }
        samples++;
        if (!in_family(line, n, fam)) {
            bad++;
            fprintf(stderr, "sample outside its family %s: %.*s\n", fam,
                    (int)strcspn(line, "\n"), line);
        }
    }
    CHECK(samples > 20 && bad == 0);
}

static void test_store_fields(apr_pool_t *p) {
    h2c_stats_t st;
    apr_size_t len;
    const char *t;

    fill(&st, p);
    st.store_name = "redis";
    st.store.n = 4;
    st.store.field[0].name = "Redis";
    strcpy(st.store.field[0].value, "down");
    st.store.field[1].name = "RedisLastId";
    strcpy(st.store.field[1].value, "12345678901");
    st.store.field[2].name = "RedisReader";
    strcpy(st.store.field[2].value, "4242");
    st.store.field[3].name = "RedisMode";
    strcpy(st.store.field[3].value, "cluster"); /* neither: left out */
    t = h2c_metrics_render(&st, p, &len);
    CHECK(has_line(t, "h2chat_store_info{store=\"redis\"} 1"));
    CHECK(has_line(t, "# TYPE h2chat_redis_up gauge"));
    CHECK(has_line(t, "h2chat_redis_up 0"));
    CHECK(has_line(t, "h2chat_redis_last_id 12345678901"));
    CHECK(has_line(t, "h2chat_redis_reader 4242"));
    CHECK(!strstr(t, "redis_mode") && !strstr(t, "cluster"));
    strcpy(st.store.field[0].value, "up");
    t = h2c_metrics_render(&st, p, &len);
    CHECK(has_line(t, "h2chat_redis_up 1"));
}

static void test_unusable(apr_pool_t *p) {
    apr_size_t len;
    const char *t = h2c_metrics_render(NULL, p, &len);

    CHECK(has_line(t, "h2chat_usable 0"));
    CHECK(!strstr(t, "h2chat_subscribers"));
}

/* Many children: the text grows past its first block intact. */
static void test_many_children(apr_pool_t *p) {
    h2c_stats_t st;
    apr_size_t len;
    const char *t;
    char line[64];
    uint32_t i;

    fill(&st, p);
    st.nchildren = 2000;
    st.children = apr_pcalloc(p, st.nchildren * sizeof(*st.children));
    st.lat = apr_pcalloc(p, st.nchildren * sizeof(*st.lat));
    for (i = 0; i < st.nchildren; i++) {
        st.children[i].pid = 100000 + i;
        st.children[i].held = i;
    }
    t = h2c_metrics_render(&st, p, &len);
    CHECK(len == strlen(t) && len > 2000 * 30);
    snprintf(line, sizeof(line), "h2chat_child_subscribers{pid=\"%u\"} %u", 101999u,
             1999u);
    CHECK(has_line(t, line));
    CHECK(has_line(t, "h2chat_child_subscribers{pid=\"100000\"} 0"));
    CHECK(has_line(t, "h2chat_store_info{store=\"shm\"} 1")); /* the end is there */
}

static void test_escape_and_snake(apr_pool_t *p) {
    CHECK(!strcmp(h2c_metrics_label_escape("a\"b\\c\nd", p), "a\\\"b\\\\c\\nd"));
    CHECK(!strcmp(h2c_metrics_label_escape("", p), ""));
    CHECK(!strcmp(h2c_metrics_snake("TooLarge", p), "too_large"));
    CHECK(!strcmp(h2c_metrics_snake("RedisLastId", p), "redis_last_id"));
    CHECK(!strcmp(h2c_metrics_snake("Cap", p), "cap"));
    CHECK(!strcmp(h2c_metrics_snake("a-b c", p), "a_b_c"));
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_values, pool);
    RUN(test_shape, pool);
    RUN(test_store_fields, pool);
    RUN(test_unusable, pool);
    RUN(test_many_children, pool);
    RUN(test_escape_and_snake, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_metrics");
}
