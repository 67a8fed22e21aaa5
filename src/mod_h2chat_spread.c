/* mod_h2chat_spread: H2ChatReconnectSpread, the glue around h2c_spread.
 *
 * When this child stops, every stream it holds (the handler's and the
 * direct loop's) ends at once with a reconnect hint as its last event: a
 * delay its client waits before it comes back, drawn per stream from
 * [0, W). W is chosen here, once, from the streams the whole server holds
 * at that moment (the segment's rows count both paths): at a graceful
 * restart all children stop at once and their clients all come back. */
#include "mod_h2chat.h"

#include <unistd.h>

#include <http_main.h>

void h2chat_spread_child_init(server_rec *s) {
    h2chat_state_t *st = h2chat_state();

    st->spread_conf = h2chat_conf_reconnect_spread(s);
    /* two children started in the same microsecond still differ by pid */
    h2c_spread_seed(&st->spread, ((uint64_t)getpid() << 40) ^ (uint64_t)apr_time_now());
}

/* Before `stopping` is set: a stream that sees it sees the window. */
void h2chat_spread_child_stopping(void) {
    h2chat_state_t *st = h2chat_state();
    h2c_child_t row;
    uint32_t window;

    h2c_seg_child_row(&st->seg, st->child_slot, &row);
    window = h2c_spread_window_ms(st->spread_conf, h2c_seg_sub_total(&st->seg));
    h2c_spread_arm(&st->spread, window);
    if (row.held == 0) {
        return; /* nothing to say: an idle child stops quietly */
    }
    if (window) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                     H2C_TAG_SPREAD ": child stopping: its %u held streams end; clients "
                                    "are told to reconnect within %u ms",
                     row.held, window);
    } else {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                     H2C_TAG_SPREAD ": child stopping: its %u held streams end; no "
                                    "reconnect hint (H2ChatReconnectSpread off)",
                     row.held);
    }
}

int h2chat_spread_draw(uint32_t *retry_ms) {
    return h2c_spread_draw(&h2chat_state()->spread, retry_ms);
}
