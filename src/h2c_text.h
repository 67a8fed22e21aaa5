/* h2c_text: checks on user-supplied text and ids (pure unit, no httpd
 * headers). Everything here parses input from the network: fuzzed. */
#ifndef H2C_TEXT_H
#define H2C_TEXT_H

#include <apr_errno.h>
#include <apr_general.h>
#include <stdint.h>

/* Largest id accepted from a client: ids stay exact in JavaScript numbers. */
#define H2C_TEXT_ID_MAX 9007199254740991ULL /* 2^53 - 1 */

/* APR_SUCCESS if buf[0..len) is well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF). */
apr_status_t h2c_text_check_utf8(const char *buf, apr_size_t len);

/* APR_SUCCESS if valid UTF-8 holds no control character other than
 * newline and tab: C0, DEL and C1 (U+0080..U+009F) are refused. */
apr_status_t h2c_text_check_controls(const char *buf, apr_size_t len);

/* Code points in valid UTF-8. */
apr_size_t h2c_text_count_chars(const char *buf, apr_size_t len);

/* Parses a client-supplied message id: plain decimal digits only, 1 to 19
 * characters, at most H2C_TEXT_ID_MAX. APR_EINVAL otherwise. */
apr_status_t h2c_text_parse_id(const char *s, uint64_t *id);

/* Where a subscriber resumes: `since=<id>` in the query string `args` (may
 * be NULL; the last one counts), else the Last-Event-ID header value
 * (may be NULL). Returns 0 when neither is there, 1 with *since set, -1
 * when the one that counts is not a valid id. */
int h2c_text_parse_resume(const char *args, const char *last_event_id, uint64_t *since);

/* 1 if a Content-Type is application/json (any case, parameters such as
 * charset allowed), else 0. */
int h2c_text_is_json_type(const char *ctype);

#endif /* H2C_TEXT_H */
