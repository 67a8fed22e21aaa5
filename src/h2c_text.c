/* h2c_text: see h2c_text.h. */
#include <string.h>
#include <strings.h>

#include "h2c_text.h"

/* Length of the UTF-8 sequence at s (n bytes left) or 0 if malformed. */
static apr_size_t utf8_seq(const unsigned char *s, apr_size_t n, uint32_t *cp) {
    apr_size_t len, i;
    uint32_t c = s[0], min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, c &= 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, c &= 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    *cp = c;
    return len;
}

apr_status_t h2c_text_check_utf8(const char *buf, apr_size_t len) {
    const unsigned char *s = (const unsigned char *)buf;
    apr_size_t i = 0, n;
    uint32_t cp;

    while (i < len) {
        if (s[i] < 0x80) { /* fast path for ASCII */
            i++;
            continue;
        }
        if ((n = utf8_seq(s + i, len - i, &cp)) == 0) {
            return APR_EINVAL;
        }
        i += n;
    }
    return APR_SUCCESS;
}

apr_status_t h2c_text_check_controls(const char *buf, apr_size_t len) {
    const unsigned char *s = (const unsigned char *)buf;
    apr_size_t i = 0, n;
    uint32_t cp;

    while (i < len) {
        if ((n = utf8_seq(s + i, len - i, &cp)) == 0) {
            return APR_EINVAL;
        }
        if ((cp < 0x20 && cp != '\n' && cp != '\t') || (cp >= 0x7F && cp <= 0x9F)) {
            return APR_EINVAL;
        }
        i += n;
    }
    return APR_SUCCESS;
}

apr_size_t h2c_text_count_chars(const char *buf, apr_size_t len) {
    apr_size_t i, chars = 0;

    for (i = 0; i < len; i++) {
        /* every byte that is not a continuation byte starts a code point */
        if (((unsigned char)buf[i] & 0xC0) != 0x80) {
            chars++;
        }
    }
    return chars;
}

apr_status_t h2c_text_parse_id(const char *s, uint64_t *id) {
    uint64_t v = 0;
    apr_size_t i;

    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 19) {
            return APR_EINVAL;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0 || v > H2C_TEXT_ID_MAX) {
        return APR_EINVAL;
    }
    *id = v;
    return APR_SUCCESS;
}

/* Parses an id of n bytes (not NUL-terminated). */
static apr_status_t parse_id_n(const char *s, apr_size_t n, uint64_t *id) {
    char buf[24];

    if (n >= sizeof(buf)) {
        return APR_EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return h2c_text_parse_id(buf, id);
}

int h2c_text_parse_resume(const char *args, const char *last_event_id, uint64_t *since) {
    const char *p = args, *v = NULL;
    apr_size_t vlen = 0;

    while (p && *p) {
        const char *end = strchr(p, '&');
        apr_size_t n = end ? (apr_size_t)(end - p) : strlen(p);

        if (n >= 6 && !memcmp(p, "since=", 6)) {
            v = p + 6, vlen = n - 6;
        }
        p = end ? end + 1 : NULL;
    }
    if (!v && last_event_id) {
        v = last_event_id, vlen = strlen(last_event_id);
    }
    if (!v) {
        return 0;
    }
    return parse_id_n(v, vlen, since) == APR_SUCCESS ? 1 : -1;
}

int h2c_text_is_json_type(const char *ctype) {
    apr_size_t n = sizeof("application/json") - 1;

    return ctype && !strncasecmp(ctype, "application/json", n) &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}
