/* mod_h2chat_status: the mod_h2chat section of mod_status's server-status,
 * as an HTML table and as `H2Chat...: value` lines for ?auto. Both render
 * one statistics snapshot (h2c_stats). */
#include "mod_h2chat.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <mod_status.h>

#include "h2c_stats.h"

/* "pid=n,pid=n" for the children that hold a row now: their held streams,
 * or (direct) their loop's connections. */
static const char *per_child(request_rec *r, const h2c_stats_t *st, int direct) {
    const char *out = "";
    uint32_t i;

    for (i = 0; i < st->nchildren; i++) {
        out = apr_psprintf(r->pool, "%s%s%u=%u", out, i ? "," : "", st->children[i].pid,
                           direct ? st->children[i].direct_conns : st->children[i].held);
    }
    return out;
}

/* H2ChatMaxSubscribersPerAddress: a number or off. */
static const char *per_address(request_rec *r, const h2c_stats_t *st) {
    return st->max_per_address ? apr_psprintf(r->pool, "%u", st->max_per_address) : "off";
}

static void status_auto(request_rec *r, const h2c_stats_t *st) {
    int i;

    ap_rprintf(r, "H2ChatSubscribers: %u\n", st->subscribers);
    ap_rprintf(r, "H2ChatMaxSubscribers: %u\n", st->max_subscribers);
    ap_rprintf(r, "H2ChatMaxSubscribersPerAddress: %s\n", per_address(r, st));
    ap_rprintf(r, "H2ChatSubscribersPerChild: %s\n", per_child(r, st, 0));
    ap_rprintf(r, "H2ChatPublished: %" APR_UINT64_T_FMT "\n",
               (apr_uint64_t)st->published);
    ap_rprintf(r, "H2ChatLastId: %" APR_UINT64_T_FMT "\n", (apr_uint64_t)st->last_id);
    ap_rprintf(r, "H2ChatHistoryFill: %u/%u\n", st->history_count, st->history_capacity);
    ap_rprintf(r, "H2ChatRooms: %u\nH2ChatMaxRooms: %u\n", st->rooms.rooms,
               st->rooms.max_rooms);
    ap_rprintf(r,
               "H2ChatMemoryUsed: %" APR_UINT64_T_FMT "\nH2ChatMemory: %" APR_UINT64_T_FMT
               "\n",
               (apr_uint64_t)st->rooms.chunks_used * H2C_ROOMS_CHUNK,
               (apr_uint64_t)st->rooms.chunks * H2C_ROOMS_CHUNK);
    ap_rprintf(r,
               "H2ChatEvicted: %" APR_UINT64_T_FMT
               "\nH2ChatRoomsReclaimed: %" APR_UINT64_T_FMT "\n",
               (apr_uint64_t)st->rooms.evicted, (apr_uint64_t)st->rooms.rooms_freed);
    ap_rprintf(r, "H2ChatRoomRecordBytes: %u\n", st->rooms.record_bytes);
    ap_rprintf(r, "H2ChatMembers: %u\nH2ChatMaxMembers: %u\n", st->members,
               st->max_members);
    for (i = 0; i < st->store.n; i++) {
        ap_rprintf(r, "H2Chat%s: %s\n", st->store.field[i].name,
                   st->store.field[i].value);
    }
    ap_rprintf(r, "H2ChatDirectConnections: %u\nH2ChatDirectSubscribers: %u\n",
               st->direct_conns, st->direct_held);
    ap_rprintf(r, "H2ChatDirectPerChild: %s\n", per_child(r, st, 1));
    ap_rprintf(r, "H2ChatDirectHanded: %u\n", st->direct_handed);
    ap_rprintf(r, "H2ChatDirectCalm: %u\nH2ChatDirectPenalized: %u\n", st->direct_calm,
               st->direct_penalized);
    ap_rprintf(r, "H2ChatDroppedStalled: %u\n", st->stalled_dropped);
    for (i = 0; i < H2C_REFUSED_MAX; i++) {
        ap_rprintf(r, "H2ChatRefused%s: %" APR_UINT64_T_FMT "\n",
                   h2c_seg_refusal_name((h2c_refusal_t)i), (apr_uint64_t)st->refused[i]);
    }
}

static void status_html(request_rec *r, const h2c_stats_t *st) {
    uint32_t i;
    int k;

    ap_rputs("<hr />\n<h2>mod_h2chat</h2>\n<table border=\"1\">\n", r);
    ap_rprintf(r, "<tr><th>held subscribers</th><td>%u of at most %u</td></tr>\n",
               st->subscribers, st->max_subscribers);
    ap_rprintf(r, "<tr><th>held subscribers per address</th><td>at most %s</td></tr>\n",
               per_address(r, st));
    ap_rprintf(r, "<tr><th>messages published</th><td>%" APR_UINT64_T_FMT "</td></tr>\n",
               (apr_uint64_t)st->published);
    ap_rprintf(r, "<tr><th>last id</th><td>%" APR_UINT64_T_FMT "</td></tr>\n",
               (apr_uint64_t)st->last_id);
    ap_rprintf(r, "<tr><th>history</th><td>%u of %u</td></tr>\n", st->history_count,
               st->history_capacity);
    ap_rprintf(r,
               "<tr><th>rooms</th><td>%u of at most %u; memory %" APR_UINT64_T_FMT
               " of %" APR_UINT64_T_FMT " KiB; %" APR_UINT64_T_FMT
               " messages evicted</td></tr>\n",
               st->rooms.rooms, st->rooms.max_rooms,
               (apr_uint64_t)st->rooms.chunks_used * H2C_ROOMS_CHUNK / 1024,
               (apr_uint64_t)st->rooms.chunks * H2C_ROOMS_CHUNK / 1024,
               (apr_uint64_t)st->rooms.evicted);
    for (k = 0; k < st->store.n; k++) {
        ap_rprintf(r, "<tr><th>%s</th><td>%s</td></tr>\n", st->store.field[k].name,
                   st->store.field[k].value);
    }
    ap_rprintf(r,
               "<tr><th>H2ChatDirect</th><td>%u connections, %u of the held "
               "subscribers</td></tr>\n",
               st->direct_conns, st->direct_held);
    ap_rprintf(r,
               "<tr><th>H2ChatDirect connections handed to a less loaded "
               "child</th><td>%u</td></tr>\n",
               st->direct_handed);
    ap_rprintf(r,
               "<tr><th>H2ChatDirect connections closed: no progress "
               "(ENHANCE_YOUR_CALM)</th><td>%u</td></tr>\n",
               st->direct_calm);
    ap_rprintf(r,
               "<tr><th>H2ChatDirect connections refused: their address was closed "
               "for no progress (H2ChatDirectPenalty)</th><td>%u</td></tr>\n",
               st->direct_penalized);
    ap_rprintf(r, "<tr><th>dropped: client stopped reading</th><td>%u</td></tr>\n",
               st->stalled_dropped);
    for (k = 0; k < H2C_REFUSED_MAX; k++) {
        ap_rprintf(r, "<tr><th>refused: %s</th><td>%" APR_UINT64_T_FMT "</td></tr>\n",
                   h2c_seg_refusal_name((h2c_refusal_t)k), (apr_uint64_t)st->refused[k]);
    }
    ap_rputs("</table>\n<table border=\"1\"><tr><th>child pid</th><th>held</th>"
             "<th>H2ChatDirect connections</th></tr>\n",
             r);
    for (i = 0; i < st->nchildren; i++) {
        ap_rprintf(r, "<tr><td>%u</td><td>%u</td><td>%u</td></tr>\n", st->children[i].pid,
                   st->children[i].held, st->children[i].direct_conns);
    }
    ap_rputs("</table>\n", r);
}

int h2chat_status_hook(request_rec *r, int flags) {
    h2chat_state_t *state = h2chat_state();
    h2c_stats_t st;

    if (!state->usable) {
        ap_rputs((flags & AP_STATUS_SHORT) ? "H2ChatUsable: 0\n"
                                           : "<hr /><h2>mod_h2chat</h2><p>unusable</p>\n",
                 r);
        return OK;
    }
    h2c_stats_read(&st, &state->store, state->limits.max_subscribers,
                   state->limits.max_per_address, r->pool);
    if (flags & AP_STATUS_SHORT) {
        status_auto(r, &st);
    } else {
        status_html(r, &st);
    }
    return OK;
}
