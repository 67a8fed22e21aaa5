/* libFuzzer target: where a subscriber resumes (h2c_text_parse_resume) and
 * the id parser under it (h2c_text_parse_id).
 *
 * Input: split at the first NUL or newline into the query string (r->args)
 * and the Last-Event-ID header value (the rest, up to its own first NUL).
 * No separator: args only, no header. Separator first: no args (NULL),
 * header only.
 *
 * Oracles (any mismatch aborts):
 *  - a reference parser written here (scans the query string from the end
 *    for the last `since=` parameter, else takes the header) must give the
 *    same result and the same id;
 *  - result 1 implies the value that counted is all digits, 1..19 of them,
 *    <= 2^53-1, and *since equals strtoull of those digits;
 *  - h2c_text_parse_id on the query string, the header and every `since=`
 *    value alone agrees with the same rule. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>

#include "h2c_text.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_resume: check failed: %s (%s:%d)\n", #c, __FILE__,     \
                    __LINE__);                                                           \
            abort();                                                                     \
        }                                                                                \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* nothing here allocates from a pool, but the module runs with APR up */
    if (apr_initialize() != APR_SUCCESS) {
        abort();
    }
    return 0;
}

/* The id rule: 1..19 decimal digits, value <= 2^53-1. Returns 1 and sets
 * *v when s[0..n) is a valid id. */
static int ref_id(const char *s, size_t n, uint64_t *v) {
    char buf[32];
    size_t i;

    if (n == 0 || n > 19) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    *v = strtoull(buf, NULL, 10); /* 19 digits never overflow 64 bits */
    return *v <= H2C_TEXT_ID_MAX;
}

/* The reference: the last `since=` parameter of args, scanning from the
 * end, else the header; 0 / 1 / -1 as h2c_text_parse_resume. */
static int ref_resume(const char *args, const char *hdr, uint64_t *v, const char **val,
                      size_t *vlen) {
    *val = NULL;
    if (args) {
        size_t end = strlen(args), start;

        for (;;) {
            for (start = end; start > 0 && args[start - 1] != '&'; start--) {
            }
            if (end - start >= 6 && strncmp(args + start, "since=", 6) == 0) {
                *val = args + start + 6, *vlen = end - start - 6;
                break;
            }
            if (start == 0) {
                break;
            }
            end = start - 1;
        }
    }
    if (!*val && hdr) {
        *val = hdr, *vlen = strlen(hdr);
    }
    if (!*val) {
        return 0;
    }
    return ref_id(*val, *vlen, v) ? 1 : -1;
}

/* h2c_text_parse_id on a NUL-terminated string against ref_id. */
static void check_id(const char *s) {
    uint64_t got = 0, want = 0;
    int ok = h2c_text_parse_id(s, &got) == APR_SUCCESS;

    CHECK(ok == ref_id(s, strlen(s), &want));
    if (ok) {
        CHECK(got == want);
    }
}

/* Every `since=` value of args parsed alone. */
static void check_params(const char *args) {
    const char *p = args;

    while (p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);

        if (n >= 6 && !strncmp(p, "since=", 6)) {
            char *v = malloc(n - 6 + 1);

            CHECK(v != NULL);
            memcpy(v, p + 6, n - 6);
            v[n - 6] = '\0';
            check_id(v);
            free(v);
        }
        p = amp ? amp + 1 : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *sep = NULL, *val;
    char *args = NULL, *hdr = NULL;
    size_t i, alen, vlen = 0;
    uint64_t since = 0, want = 0;
    int got, expect;

    for (i = 0; i < size; i++) {
        if (data[i] == '\0' || data[i] == '\n') {
            sep = (const char *)data + i;
            break;
        }
    }
    alen = sep ? (size_t)(sep - (const char *)data) : size;
    /* exact-size heap copies: an over-read past the terminator is an ASan
     * report */
    if (!sep || alen > 0) {
        args = malloc(alen + 1);
        CHECK(args != NULL);
        memcpy(args, data, alen);
        args[alen] = '\0';
    }
    if (sep) {
        const char *h = sep + 1, *end = (const char *)data + size;
        const char *nul = memchr(h, '\0', (size_t)(end - h));
        size_t hlen = nul ? (size_t)(nul - h) : (size_t)(end - h);

        hdr = malloc(hlen + 1);
        CHECK(hdr != NULL);
        memcpy(hdr, h, hlen);
        hdr[hlen] = '\0';
    }

    got = h2c_text_parse_resume(args, hdr, &since);
    expect = ref_resume(args, hdr, &want, &val, &vlen);
    if (got != expect) {
        fprintf(stderr, "fuzz_resume: got %d, expected %d (args=%s, header=%s)\n", got,
                expect, args ? args : "(null)", hdr ? hdr : "(null)");
    }
    CHECK(got == expect);
    if (got == 1) {
        char digits[32];

        /* the brief's oracle, spelled out on the value that counted */
        CHECK(val != NULL && vlen >= 1 && vlen <= 19);
        for (i = 0; i < vlen; i++) {
            CHECK(val[i] >= '0' && val[i] <= '9');
        }
        memcpy(digits, val, vlen);
        digits[vlen] = '\0';
        CHECK(since == strtoull(digits, NULL, 10));
        CHECK(since <= H2C_TEXT_ID_MAX);
        CHECK(since == want);
    }

    if (args) {
        check_id(args);
        check_params(args);
    }
    if (hdr) {
        check_id(hdr);
    }
    free(args);
    free(hdr);
    return 0;
}
