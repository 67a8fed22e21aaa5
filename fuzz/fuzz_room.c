/* libFuzzer target: where a chat request points (h2c_room_target), the
 * rooms of a multiplexed subscription (h2c_room_list) and the query's
 * other parameters (h2c_room_arg_flag, h2c_room_arg_value).
 *
 * Input: byte 0 picks the location (low 3 bits) and max_rooms (the next
 * 3 bits: 0..7, small so the limit is reached). The rest is split at the
 * first NUL or newline into the path and the query string (the rest, up
 * to its own first NUL). No separator: path only, no query (NULL).
 *
 * Oracles (any mismatch aborts): reference parsers written here, built
 * differently (the path split into all its segments first, the query
 * decoded with isxdigit, duplicates found by a scan), must give the same
 * route, room, id, list, error kind, flag and value; every error message
 * is short printable ASCII. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "h2c_room.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_room: check failed: %s (%s:%d)\n", #c, __FILE__,       \
                    __LINE__);                                                           \
            abort();                                                                     \
        }                                                                                \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static apr_pool_t *pool;

static const char *const locations[8] = {"/msgs", "/msgs/", "/",  "",
                                         "/a/b",  "/a/b/",  "/m", NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        abort();
    }
    return 0;
}

static int ref_name(const char *s, size_t n) {
    static const char extra[] = "_.:@-";
    size_t i;

    if (n < 1 || n > 64 || (n == 1 && s[0] == '.') || (n == 2 && !memcmp(s, "..", 2))) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!isascii(c) || !(isalnum(c) || (c && memchr(extra, c, 5)))) {
            return 0;
        }
    }
    return 1;
}

/* 1..19 digits, no leading zero, <= 2^63-1 */
static int ref_id(const char *s, size_t n, uint64_t *v) {
    char buf[24];
    size_t i;

    if (n < 1 || n > 19 || s[0] == '0') {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    *v = strtoull(buf, NULL, 10);
    return *v <= 9007199254740991ULL;
}

/* The route, with the path cut into all its segments first. */
static h2c_room_at_t ref_target(const char *loc, const char *path, const char **room,
                                size_t *rlen, uint64_t *id) {
    size_t ll, segs = 0, len[3] = {0};
    const char *r, *seg[3] = {NULL}, *s;

    *room = NULL, *rlen = 0, *id = 0;
    loc = loc ? loc : "";
    ll = strlen(loc);
    if (ll && loc[ll - 1] == '/') {
        ll--;
    }
    if (strlen(path) < ll || memcmp(path, loc, ll)) {
        return H2C_ROOM_AT_OUTSIDE;
    }
    r = path + ll;
    if (!strcmp(r, "") || !strcmp(r, "/")) {
        return H2C_ROOM_AT_DEFAULT;
    }
    if (r[0] != '/') {
        return H2C_ROOM_AT_OUTSIDE;
    }
    for (s = r + 1;; segs++) {
        const char *e = strchr(s, '/');

        if (segs < 3) {
            seg[segs] = s, len[segs] = e ? (size_t)(e - s) : strlen(s);
        }
        if (!e) {
            break;
        }
        s = e + 1;
    }
    segs++;
    if (!ref_name(seg[0], len[0]) || segs > 2) {
        return H2C_ROOM_AT_BAD;
    }
    if (segs == 2 && len[1] && !ref_id(seg[1], len[1], id)) {
        *id = 0;
        return H2C_ROOM_AT_BAD;
    }
    *room = seg[0], *rlen = len[0];
    return segs == 2 && len[1] ? H2C_ROOM_AT_MESSAGE : H2C_ROOM_AT_ROOM;
}

/* %-decodes into a malloc'd buffer: its length, or -1 on a bad escape. */
static long ref_decode(const char *s, size_t n, int plus, char **out) {
    size_t i, k = 0;

    *out = malloc(n + 1);
    CHECK(*out != NULL);
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            char hex[3] = {0};

            if (n - i < 3 || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                return -1;
            }
            memcpy(hex, s + i + 1, 2);
            (*out)[k++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            (*out)[k++] = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    (*out)[k] = '\0';
    return (long)k;
}

/* Parameter i of args (NULL past the last): name and value spans. */
static const char *ref_param(const char *args, size_t i, size_t *n) {
    const char *s = args;

    while (s && i--) {
        s = strchr(s, '&');
        s = s ? s + 1 : NULL;
    }
    if (s) {
        const char *e = strchr(s, '&');

        *n = e ? (size_t)(e - s) : strlen(s);
    }
    return s;
}

static int ref_named(const char *s, size_t n, const char *name, const char **v,
                     size_t *vn) {
    size_t k = strlen(name);

    if (n < k || memcmp(s, name, k) || (n > k && s[k] != '=')) {
        return 0;
    }
    *v = n > k ? s + k + 1 : s + n, *vn = n > k ? n - k - 1 : 0;
    return 1;
}

/* The expected error prefix, or NULL and the rooms in want[] */
static const char *ref_list(const char *args, uint32_t max, char **want, size_t *count) {
    const char *s, *v;
    size_t i, n, vn, j;

    *count = 0;
    for (i = 0; (s = ref_param(args, i, &n)) != NULL; i++) {
        char *d;
        long dn;

        if (!ref_named(s, n, "room", &v, &vn)) {
            continue;
        }
        if ((dn = ref_decode(v, vn, 0, &d)) < 0) {
            free(d);
            return "bad %-escape in room: ";
        }
        if (!ref_name(d, (size_t)dn)) {
            free(d);
            return "bad room name: ";
        }
        for (j = 0; j < *count; j++) {
            if (!strcmp(want[j], d)) {
                free(d);
                return "room given twice: ";
            }
        }
        if (*count >= max) {
            free(d);
            return "more than ";
        }
        want[(*count)++] = d;
    }
    return NULL;
}

static void check_target(const char *loc, const char *path) {
    h2c_room_target_t t;
    const char *room;
    size_t rlen;
    uint64_t id;
    h2c_room_at_t want = ref_target(loc, path, &room, &rlen, &id);

    memset(&t, 0x5A, sizeof(t));
    CHECK(h2c_room_target(loc, path, &t) == want && t.at == want);
    CHECK(t.room == room && t.room_len == rlen && t.id == id);
    if (want == H2C_ROOM_AT_MESSAGE) {
        char buf[24];

        /* one spelling per message: the id prints back as the segment */
        snprintf(buf, sizeof(buf), "/%llu", (unsigned long long)id);
        CHECK(!strcmp(room + rlen, buf));
    }
}

static void check_list(const char *args, uint32_t max) {
    char *want[8];
    size_t count, i;
    apr_array_header_t *rooms = NULL;
    const char *err = NULL, *kind = ref_list(args, max, want, &count);
    apr_status_t rv = h2c_room_list(args, max, pool, &rooms, &err);

    CHECK(rooms != NULL);
    if (!kind) {
        CHECK(rv == APR_SUCCESS && err == NULL && (size_t)rooms->nelts == count);
        for (i = 0; i < count; i++) {
            CHECK(!strcmp(APR_ARRAY_IDX(rooms, i, const char *), want[i]));
        }
    } else {
        CHECK(rv == APR_EINVAL && err != NULL && !strncmp(err, kind, strlen(kind)));
        CHECK(strlen(err) <= 100);
        for (i = 0; err[i]; i++) {
            CHECK(err[i] >= 0x20 && err[i] < 0x7f);
        }
    }
    for (i = 0; i < count; i++) {
        free(want[i]);
    }
}

static void check_args(const char *args) {
    const char *s, *v, *got = h2c_room_arg_value(args, "user", pool);
    size_t i, n, vn;
    int flag = 0, found = 0;

    for (i = 0; (s = ref_param(args, i, &n)) != NULL; i++) {
        flag |= n && ref_named(s, n, "presence", &v, &vn);
        if (!found && n && ref_named(s, n, "user", &v, &vn)) {
            char *d;
            long dn = ref_decode(v, vn, 1, &d);

            found = 1;
            if (dn < 0 || strlen(d) != (size_t)dn) {
                CHECK(got == NULL);
            } else {
                CHECK(got != NULL && !strcmp(got, d));
            }
            free(d);
        }
    }
    CHECK(found || got == NULL);
    CHECK(h2c_room_arg_flag(args, "presence") == flag);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *loc, *sep;
    char *path, *args = NULL;
    size_t plen;
    uint32_t max;

    if (size < 1) {
        return 0;
    }
    loc = locations[data[0] & 7];
    max = (data[0] >> 3) & 7;
    data++, size--;
    sep = memchr(data, '\n', size);
    {
        const char *nul = memchr(data, '\0', size);

        sep = !sep || (nul && nul < sep) ? nul : sep;
    }
    plen = sep ? (size_t)(sep - (const char *)data) : size;
    /* exact-size heap copies: an over-read past the terminator is an ASan
     * report */
    path = malloc(plen + 1);
    CHECK(path != NULL);
    memcpy(path, data, plen);
    path[plen] = '\0';
    if (sep) {
        const char *a = sep + 1, *end = (const char *)data + size;
        const char *nul = memchr(a, '\0', (size_t)(end - a));
        size_t alen = nul ? (size_t)(nul - a) : (size_t)(end - a);

        args = malloc(alen + 1);
        CHECK(args != NULL);
        memcpy(args, a, alen);
        args[alen] = '\0';
    }

    check_target(loc, path);
    CHECK(h2c_room_name_ok(path, plen) == ref_name(path, plen));
    check_list(args, max);
    check_args(args);

    free(path);
    free(args);
    apr_pool_clear(pool);
    return 0;
}
