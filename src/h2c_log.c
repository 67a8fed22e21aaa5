/* h2c_log: see h2c_log.h. */
#include <stdarg.h>

#include <apr_strings.h>

#include "h2c_log.h"

#define H2C_LOG_LINE_MAX 512

/* Set once per process (post_config / child_init) before any thread that
 * logs starts; read-only afterwards. */
static h2c_log_write_fn *log_write;
static h2c_log_level_fn *log_level;
static void *log_ctx;

void h2c_log_set(h2c_log_write_fn *write, h2c_log_level_fn *enabled, void *ctx) {
    log_write = write;
    log_level = enabled;
    log_ctx = ctx;
}

int h2c_log_enabled(h2c_log_level_t level) {
    return log_write && (!log_level || log_level(log_ctx, level));
}

void h2c_log(h2c_log_level_t level, const char *tag, const char *fmt, ...) {
    char line[H2C_LOG_LINE_MAX];
    apr_size_t n;
    va_list ap;

    if (!h2c_log_enabled(level)) {
        return;
    }
    n = (apr_size_t)apr_snprintf(line, sizeof(line), "%s: ", tag);
    va_start(ap, fmt);
    apr_vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    log_write(log_ctx, level, line);
}
