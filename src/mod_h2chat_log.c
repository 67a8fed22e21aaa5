/* mod_h2chat_log: the error log for pure units (h2c_log), with the main
 * server's level for this module (`LogLevel h2chat:debug`). */
#include "mod_h2chat.h"

int h2chat_log_level(h2c_log_level_t level) {
    static const int levels[] = {APLOG_ERR,  APLOG_WARNING, APLOG_NOTICE,
                                 APLOG_INFO, APLOG_DEBUG,   APLOG_TRACE1};

    return levels[level <= H2C_LOG_TRACE ? level : H2C_LOG_TRACE];
}

static int log_enabled(void *ctx, h2c_log_level_t level) {
    const server_rec *s = ctx;

    return APLOG_IS_LEVEL(s, h2chat_log_level(level));
}

static void log_write(void *ctx, h2c_log_level_t level, const char *line) {
    ap_log_error(APLOG_MARK, h2chat_log_level(level), 0, ctx, "%s", line);
}

/* Once per process, before any thread that logs starts. */
void h2chat_log_install(server_rec *s) {
    h2c_log_set(log_write, log_enabled, s);
}
