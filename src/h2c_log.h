/* h2c_log: how pure units write to the error log (pure unit, no httpd
 * headers). As mod_md's md_log: the glue installs one callback and a level
 * check once per process; a unit asks h2c_log_enabled() before it builds
 * anything, so a line below the configured level costs one call. Every
 * line starts with its stable tag (h2c_tags.h). */
#ifndef H2C_LOG_H
#define H2C_LOG_H

typedef enum {
    H2C_LOG_ERR,
    H2C_LOG_WARN,
    H2C_LOG_NOTICE,
    H2C_LOG_INFO,
    H2C_LOG_DEBUG,
    H2C_LOG_TRACE
} h2c_log_level_t;

/* Writes one finished line (tag included). */
typedef void h2c_log_write_fn(void *ctx, h2c_log_level_t level, const char *line);
/* 1 if a line at `level` would be written. */
typedef int h2c_log_level_fn(void *ctx, h2c_log_level_t level);

/* Installs the process's log; NULL write: pure units log nothing (unit
 * tests, fuzzing). */
void h2c_log_set(h2c_log_write_fn *write, h2c_log_level_fn *enabled, void *ctx);

int h2c_log_enabled(h2c_log_level_t level);

/* "TAG: <fmt...>" as one line, if `level` is enabled. */
void h2c_log(h2c_log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* H2C_LOG_H */
