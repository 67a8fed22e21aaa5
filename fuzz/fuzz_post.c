/* libFuzzer target: the POST body parser (h2c_json_parse_post), the message
 * line it feeds (h2c_json_format_message), the UTF-8 checks of h2c_text,
 * and h2c_json_line_kind on the same bytes (as a stored line).
 *
 * Input: byte 0 picks the authenticated user (r->user), the rest is the
 * body. Byte 0 % 16: 0..7 no auth user (the body's "user" counts),
 * 8..14 a fixed auth user (plain, escapes, non-ASCII, 64 emoji, 65 chars,
 * invalid UTF-8, a tab), 15 a fuzzed auth user: the bytes up to the first
 * NUL, the body after it. Seeds are readable: '0' = no auth user, '8'..'>'
 * the fixed users, '?' the fuzzed one.
 *
 * Oracles (any mismatch aborts):
 *  - acceptance: an independent decision (reference UTF-8 decoder written
 *    here + jansson's own decode of the body + the documented rules) must
 *    agree with h2c_json_parse_post; on failure `why` is a non-empty string.
 *  - on success: the fields fragment has no NUL; the message line fits in
 *    2*len+256 bytes (always without an auth user; with a long one the
 *    ring's real slot, 2*max(len,4096)+256, must still take it); flen +
 *    H2C_JSON_LINE_OVERHEAD holds the widest line (20-digit id and time);
 *    formatting is exact at cap == n and refused at n-1; the line has no raw CR/LF
 *    (NDJSON / SSE framing), is valid UTF-8, and jansson parses it back to
 *    exactly {type,id,user,text,time} with "user"/"text" byte-equal to what
 *    jansson decodes from the body (or the auth user).
 *  - h2c_text_check_utf8 / check_controls / count_chars against the
 *    reference decoder, on the body and on the auth user. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <jansson.h>

#include "h2c_json.h"
#include "h2c_text.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_post: check failed: %s (%s:%d)\n", #c, __FILE__,       \
                    __LINE__);                                                           \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* H2CHAT_DEFAULT_MAX_BYTES (src/mod_h2chat.h includes httpd headers) */
#define SLOT_FLOOR_BYTES 4096

static apr_pool_t *pool;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* h2c_json_line_kind (a journal's or a Redis entry's line): a message only
 * by its exact first bytes; a delete only with a positive integer id, a
 * clear only by its type, as jansson reads the same bytes. */
static void check_line_kind(const char *body, size_t len) {
    static const char message[] = "{\"type\":\"message\",";
    h2c_entry_kind_t kind;
    uint64_t target = 7;
    json_t *j;
    const char *type;

    if (h2c_json_line_kind(body, len, &kind, &target) != APR_SUCCESS) {
        CHECK(target == 0);
        return;
    }
    if (kind == H2C_ENTRY_MESSAGE) {
        CHECK(len >= sizeof(message) - 1 && !memcmp(body, message, sizeof(message) - 1));
        return;
    }
    j = json_loadb(body, len, 0, NULL);
    type = json_string_value(json_object_get(j, "type"));
    CHECK(type != NULL);
    if (kind == H2C_ENTRY_DELETE) {
        CHECK(!strcmp(type, "delete") && target > 0 &&
              (uint64_t)json_integer_value(json_object_get(j, "id")) == target);
    } else {
        CHECK(kind == H2C_ENTRY_CLEAR && !strcmp(type, "clear"));
    }
    json_decref(j);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        abort();
    }
    return 0;
}

/* ---- reference UTF-8 decoder (Unicode 15, table 3-7), independent of
 * src/h2c_text.c: the lead byte fixes the length and the allowed range of
 * the second byte; later bytes are 80..BF. */
static size_t ref_seq(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0], lo = 0x80, hi = 0xBF;
    size_t len, i;
    uint32_t c;

    if (b <= 0x7F) {
        *cp = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
    } else if (b == 0xE0) {
        len = 3, lo = 0xA0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
        len = 3;
    } else if (b == 0xED) {
        len = 3, hi = 0x9F; /* no surrogates */
    } else if (b == 0xF0) {
        len = 4, lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
        len = 4;
    } else if (b == 0xF4) {
        len = 4, hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    c = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (i = 1; i < len; i++) {
        if (i > 1 && (s[i] < 0x80 || s[i] > 0xBF)) {
            return 0;
        }
        c = c << 6 | (s[i] & 0x3F);
    }
    *cp = c;
    return len;
}

typedef struct {
    int valid;    /* well-formed UTF-8 */
    int controls; /* holds C0 (but \n, \t), DEL or C1 */
    int nl_tab;   /* holds \n or \t */
    size_t chars; /* code points */
} ref_info_t;

static ref_info_t ref_scan(const uint8_t *s, size_t n) {
    ref_info_t r = {1, 0, 0, 0};
    size_t i = 0, k;
    uint32_t cp;

    while (i < n) {
        if ((k = ref_seq(s + i, n - i, &cp)) == 0) {
            r.valid = 0;
            return r;
        }
        if (cp == '\n' || cp == '\t') {
            r.nl_tab = 1;
        } else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
            r.controls = 1;
        }
        r.chars++;
        i += k;
    }
    return r;
}

/* h2c_text against the reference on one buffer. */
static ref_info_t check_text(const uint8_t *s, size_t n) {
    ref_info_t r = ref_scan(s, n);

    CHECK((h2c_text_check_utf8((const char *)s, n) == APR_SUCCESS) == r.valid);
    CHECK((h2c_text_check_controls((const char *)s, n) == APR_SUCCESS) ==
          (r.valid && !r.controls));
    if (r.valid) {
        CHECK(h2c_text_count_chars((const char *)s, n) == r.chars);
    }
    return r;
}

/* The auth users byte 0 selects (index = byte 0 % 16 - 8). */
static const char *const fixed_users[] = {
    "alice",
    "o\"brien\\x/y",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xc3\xa9",
    /* 64 x U+1F600: the longest accepted user, 256 bytes */
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
    /* 65 characters: one too many */
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "bad\xff",
    "tab\tuser",
};

/* A string value as jansson decoded it (bytes + length, NULs kept). */
typedef struct {
    const char *s;
    size_t n;
} bytes_t;

static int bytes_eq(bytes_t a, const json_t *v) {
    return json_is_string(v) && json_string_length(v) == a.n &&
           memcmp(json_string_value(v), a.s, a.n) == 0;
}

/* The independent decision: is this body (with this auth user) a valid
 * message? Fills *user / *text when it is. */
static int oracle_accepts(const json_t *in, const char *auth, bytes_t *user,
                          bytes_t *text) {
    const json_t *u, *t;
    ref_info_t ru, rt;

    if (!json_is_object(in)) {
        return 0;
    }
    t = json_object_get(in, "text");
    if (auth) {
        user->s = auth, user->n = strlen(auth);
    } else {
        u = json_object_get(in, "user");
        if (!json_is_string(u)) {
            return 0;
        }
        user->s = json_string_value(u), user->n = json_string_length(u);
    }
    if (!json_is_string(t)) {
        return 0;
    }
    text->s = json_string_value(t), text->n = json_string_length(t);
    ru = ref_scan((const uint8_t *)user->s, user->n);
    rt = ref_scan((const uint8_t *)text->s, text->n);
    return ru.valid && rt.valid && user->n > 0 && text->n > 0 && !ru.controls &&
           !rt.controls && !ru.nl_tab && ru.chars <= H2C_JSON_USER_MAX_CHARS;
}

/* Formats into an exact-size heap buffer (ASan sees any overrun). */
static size_t format_exact(size_t cap, uint64_t id, int64_t t, const char *fields,
                           size_t flen, char **out) {
    char *buf = malloc(cap ? cap : 1);
    size_t n;

    CHECK(buf != NULL);
    n = h2c_json_format_message(buf, cap, id, t, fields, flen);
    if (out) {
        *out = buf;
    } else {
        free(buf);
    }
    return n;
}

/* The line must parse back to exactly the expected message. */
static void check_line(const char *line, size_t n, uint64_t id, int64_t t, bytes_t user,
                       bytes_t text) {
    json_error_t err;
    json_t *m;
    ref_info_t r = ref_scan((const uint8_t *)line, n);

    CHECK(r.valid);
    CHECK(memchr(line, '\n', n) == NULL && memchr(line, '\r', n) == NULL);
    m = json_loadb(line, n, 0, &err);
    if (!m) {
        fprintf(stderr, "fuzz_post: line does not parse: %s: %.*s\n", err.text, (int)n,
                line);
    }
    CHECK(m != NULL);
    CHECK(json_is_object(m) && json_object_size(m) == 5);
    CHECK(json_is_string(json_object_get(m, "type")) &&
          !strcmp(json_string_value(json_object_get(m, "type")), "message"));
    CHECK(json_is_integer(json_object_get(m, "id")) &&
          (uint64_t)json_integer_value(json_object_get(m, "id")) == id);
    CHECK(json_is_integer(json_object_get(m, "time")) &&
          json_integer_value(json_object_get(m, "time")) == t);
    CHECK(bytes_eq(user, json_object_get(m, "user")));
    CHECK(bytes_eq(text, json_object_get(m, "text")));
    json_decref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *auth = NULL, *why = NULL, *body;
    char *auth_copy = NULL, *fields = NULL, *line;
    size_t len, flen = 0, n, cap;
    unsigned mode;
    apr_status_t rv;
    json_error_t err;
    json_t *in;
    bytes_t user = {NULL, 0}, text = {NULL, 0};
    int expect;
    uint64_t id;
    int64_t t;

    if (size == 0) {
        return 0;
    }
    mode = data[0] % 16;
    body = (const char *)data + 1, len = size - 1;
    if (mode >= 8 && mode < 15) {
        auth = fixed_users[mode - 8];
    } else if (mode == 15) {
        const char *nul = memchr(body, '\0', len);
        size_t ulen = nul ? (size_t)(nul - body) : len;

        auth = auth_copy = malloc(ulen + 1);
        CHECK(auth_copy != NULL);
        memcpy(auth_copy, body, ulen);
        auth_copy[ulen] = '\0';
        body += nul ? ulen + 1 : ulen, len -= nul ? ulen + 1 : ulen;
    }

    check_text((const uint8_t *)body, len);
    check_line_kind(body, len);
    if (auth) {
        check_text((const uint8_t *)auth, strlen(auth));
    }

    /* the independent decision first (jansson's own decode of the body) */
    in = json_loadb(body, len, JSON_ALLOW_NUL, &err);
    expect = in && oracle_accepts(in, auth, &user, &text);

    rv = h2c_json_parse_post(body, len, auth, NULL, pool, &fields, &flen, &why);
    if (rv != APR_SUCCESS) {
        CHECK(rv == APR_EINVAL);
        CHECK(why != NULL && why[0] != '\0');
        if (expect) {
            fprintf(stderr, "fuzz_post: refused a valid message: %s\n", why);
        }
        CHECK(!expect);
        goto done;
    }
    if (!expect) {
        fprintf(stderr, "fuzz_post: accepted an invalid message: %.*s\n", (int)flen,
                fields);
    }
    CHECK(expect);
    CHECK(fields != NULL && strlen(fields) == flen);

    /* the brief's buffer: 2*len+256, as the ring's slot sizing assumes */
    id = 1 + (uint64_t)size * 2654435761u % H2C_TEXT_ID_MAX;
    t = 1764061200123LL + (int64_t)size;
    cap = 2 * len + 256;
    if (!auth) {
        /* without an auth user the fields never outgrow the body: the
         * store's check (flen + OVERHEAD <= slot) can never refuse */
        CHECK(flen + H2C_JSON_LINE_OVERHEAD <= 2 * len + 2 * H2C_JSON_LINE_OVERHEAD);
    }
    n = format_exact(cap, id, t, fields, flen, &line);
    if (n) {
        CHECK(n <= cap);
        check_line(line, n, id, t, user, text);
        free(line);
        /* exact fit at cap == n, refused at n - 1 */
        CHECK(format_exact(n, id, t, fields, flen, &line) == n);
        check_line(line, n, id, t, user, text);
        free(line);
        CHECK(format_exact(n - 1, id, t, fields, flen, NULL) == 0);
    } else {
        /* only a long multi-byte auth user on a short body outgrows
         * 2*len+256 (e.g. 64 x U+1F600 and {"text":"x"}: flen 276) */
        free(line);
        CHECK(auth != NULL);
    }
    /* ... which the store still takes: the slot follows the largest
     * H2ChatMaxMessageBytes, never below the default 4096
     * (H2CHAT_DEFAULT_MAX_BYTES, a glue header), 2*largest+256 bytes */
    CHECK(flen + H2C_JSON_LINE_OVERHEAD <=
          2 * (len > SLOT_FLOOR_BYTES ? len : SLOT_FLOOR_BYTES) +
              2 * H2C_JSON_LINE_OVERHEAD);
    /* the store's guarantee: flen + OVERHEAD bytes always hold the widest
     * line (20-digit id, 20-character time) */
    n = format_exact(flen + H2C_JSON_LINE_OVERHEAD, UINT64_MAX, INT64_MIN, fields, flen,
                     NULL);
    CHECK(n != 0);

done:
    if (in) {
        json_decref(in);
    }
    free(auth_copy);
    apr_pool_clear(pool);
    return 0;
}
