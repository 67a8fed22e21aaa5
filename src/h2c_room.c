/* h2c_room: see h2c_room.h. */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "h2c_room.h"

/* How much of an offending value an error message quotes. */
#define QUOTE_MAX 64

static int name_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
}

int h2c_room_name_ok(const char *name, apr_size_t len) {
    apr_size_t i;

    if (!name || len < 1 || len > H2C_ROOM_NAME_MAX) {
        return 0;
    }
    /* httpd resolves dot-segments before we see a path, but the unit must
     * not depend on that: a room "." or ".." would be a path trick later */
    if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'))) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!name_char((unsigned char)name[i])) {
            return 0;
        }
    }
    return 1;
}

/* A message id in a path: digits to the end of s, no leading zero (one
 * spelling per message), 1 .. H2C_ROOM_ID_MAX. 19 digits never overflow
 * 64 bits, so the range check after the loop is exact. */
static int parse_id(const char *s, uint64_t *id) {
    uint64_t v = 0;
    apr_size_t i;

    if (s[0] < '1' || s[0] > '9') {
        return 0;
    }
    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 19) {
            return 0;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > H2C_ROOM_ID_MAX) {
        return 0;
    }
    *id = v;
    return 1;
}

h2c_room_at_t h2c_room_target(const char *location, const char *path,
                              h2c_room_target_t *t) {
    apr_size_t llen, n;
    const char *rest, *seg, *slash;
    uint64_t id = 0;

    memset(t, 0, sizeof(*t));
    t->at = H2C_ROOM_AT_OUTSIDE;
    location = location ? location : "";
    llen = strlen(location);
    if (llen && location[llen - 1] == '/') {
        llen--;
    }
    /* a prefix only at a segment boundary: "/msgsx" is not under "/msgs" */
    if (!path || strncmp(path, location, llen) || (path[llen] && path[llen] != '/')) {
        return t->at;
    }
    rest = path + llen;
    if (!rest[0] || !rest[1]) {
        return t->at = H2C_ROOM_AT_DEFAULT;
    }
    seg = rest + 1;
    slash = strchr(seg, '/');
    n = slash ? (apr_size_t)(slash - seg) : strlen(seg);
    /* the empty segment of "//" fails the name check too */
    if (!h2c_room_name_ok(seg, n) || (slash && slash[1] && !parse_id(slash + 1, &id))) {
        return t->at = H2C_ROOM_AT_BAD;
    }
    t->room = seg, t->room_len = n, t->id = id;
    return t->at = id ? H2C_ROOM_AT_MESSAGE : H2C_ROOM_AT_ROOM;
}

/* One parameter of a query string. */
typedef struct {
    const char *name, *val; /* val: NULL for a bare name (no '=') */
    apr_size_t name_len, val_len;
} param_t;

/* The next non-empty parameter at *cur (advanced past it): 1, or 0 at the
 * end. Only '&' separates (as the rest of the module reads queries). */
static int next_param(const char **cur, param_t *pm) {
    while (*cur && **cur) {
        const char *s = *cur, *amp = strchr(s, '&'), *eq;
        apr_size_t n = amp ? (apr_size_t)(amp - s) : strlen(s);

        *cur = amp ? amp + 1 : NULL;
        if (!n) {
            continue;
        }
        eq = memchr(s, '=', n);
        pm->name = s;
        pm->name_len = eq ? (apr_size_t)(eq - s) : n;
        pm->val = eq ? eq + 1 : NULL;
        pm->val_len = eq ? n - pm->name_len - 1 : 0;
        return 1;
    }
    return 0;
}

static int param_is(const param_t *pm, const char *name) {
    apr_size_t n = strlen(name);

    return pm->name_len == n && !memcmp(pm->name, name, n);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* %-decodes src[0..n) into a new string in p (NUL-terminated; *len bytes,
 * which may include a decoded NUL); plus: '+' is a space. APR_EINVAL on a
 * '%' not followed by two hex digits. */
static apr_status_t unescape(const char *src, apr_size_t n, int plus, apr_pool_t *p,
                             char **out, apr_size_t *len) {
    char *d = *out = apr_palloc(p, n + 1);
    apr_size_t i;

    for (i = 0; i < n; i++) {
        int hi, lo;

        if (src[i] != '%') {
            *d++ = plus && src[i] == '+' ? ' ' : src[i];
            continue;
        }
        if (i + 2 >= n || (hi = hexval(src[i + 1])) < 0 ||
            (lo = hexval(src[i + 2])) < 0) {
            return APR_EINVAL;
        }
        *d++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *d = '\0';
    *len = (apr_size_t)(d - *out);
    return APR_SUCCESS;
}

/* "what: \"value\"" for the JSON error: at most QUOTE_MAX bytes of the
 * value, printable ASCII only, so a hostile value can neither bloat the
 * answer nor put control bytes or broken UTF-8 in it. */
static const char *quote(apr_pool_t *p, const char *what, const char *v, apr_size_t n) {
    char buf[QUOTE_MAX + 1];
    apr_size_t i, k = n > QUOTE_MAX ? QUOTE_MAX : n;

    for (i = 0; i < k; i++) {
        unsigned char c = (unsigned char)v[i];

        buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[k] = '\0';
    return apr_psprintf(p, "%s: \"%s%s\"", what, buf, k < n ? "..." : "");
}

apr_status_t h2c_room_list(const char *args, uint32_t max_rooms, apr_pool_t *p,
                           apr_array_header_t **rooms, const char **err) {
    const char *cur = args;
    apr_hash_t *seen = NULL;
    param_t pm;

    *rooms = apr_array_make(p, 4, sizeof(const char *));
    *err = NULL;
    while (next_param(&cur, &pm)) {
        char *name;
        apr_size_t len;

        if (!param_is(&pm, "room")) {
            continue;
        }
        if (unescape(pm.val ? pm.val : "", pm.val_len, 0, p, &name, &len)) {
            *err = quote(p, "bad %-escape in room", pm.val, pm.val_len);
            return APR_EINVAL;
        }
        if (!h2c_room_name_ok(name, len)) {
            *err = quote(p, "bad room name", name, len);
            return APR_EINVAL;
        }
        /* a hash, not a scan of the list: max_rooms is the admin's, and a
         * long query must not cost quadratic time */
        seen = seen ? seen : apr_hash_make(p);
        if (apr_hash_get(seen, name, (apr_ssize_t)len)) {
            *err = quote(p, "room given twice", name, len);
            return APR_EINVAL;
        }
        if ((uint32_t)(*rooms)->nelts >= max_rooms) {
            *err = quote(p, apr_psprintf(p, "more than %u rooms", (unsigned)max_rooms),
                         name, len);
            return APR_EINVAL;
        }
        apr_hash_set(seen, name, (apr_ssize_t)len, name);
        APR_ARRAY_PUSH(*rooms, const char *) = name;
    }
    return APR_SUCCESS;
}

int h2c_room_arg_flag(const char *args, const char *name) {
    const char *cur = args;
    param_t pm;

    while (next_param(&cur, &pm)) {
        if (param_is(&pm, name)) {
            return 1;
        }
    }
    return 0;
}

const char *h2c_room_arg_value(const char *args, const char *name, apr_pool_t *p) {
    const char *cur = args;
    param_t pm;

    while (next_param(&cur, &pm)) {
        char *v;
        apr_size_t len;

        if (!param_is(&pm, name)) {
            continue;
        }
        if (unescape(pm.val ? pm.val : "", pm.val_len, 1, p, &v, &len) ||
            strlen(v) != len) {
            return NULL;
        }
        return v;
    }
    return NULL;
}
