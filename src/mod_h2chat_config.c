/* mod_h2chat_config: the H2Chat* directives, their defaults and merging. */
#include "mod_h2chat.h"

#include <apr_strings.h>

/* The ring's slot size must hold the largest message any location accepts;
 * the segment is made once for all, so the largest value configured anywhere
 * is remembered while the configuration is read (reset in pre_config). */
static int largest_max_bytes = H2CHAT_DEFAULT_MAX_BYTES;

void h2chat_conf_reset(void) {
    largest_max_bytes = H2CHAT_DEFAULT_MAX_BYTES;
}

int h2chat_conf_largest_max_bytes(void) {
    return largest_max_bytes;
}

void *h2chat_create_dir_conf(apr_pool_t *p, char *dir) {
    h2chat_dir_conf_t *dc = apr_palloc(p, sizeof(*dc));

    (void)dir;
    dc->enabled = dc->snapshot = dc->max_bytes = dc->heartbeat = -1;
    dc->rate_interval_ms = dc->rate_burst = -1;
    dc->origins = NULL;
    dc->rooms = dc->max_rooms_per_stream = dc->presence = dc->anonymous_delete = -1;
    dc->rooms_base = NULL;
    dc->location = NULL;
    dc->stream_url = NULL;
    return dc;
}

#define MERGE(f) (add->f != -1 ? add->f : base->f)

void *h2chat_merge_dir_conf(apr_pool_t *p, void *basev, void *addv) {
    h2chat_dir_conf_t *base = basev, *add = addv, *dc = apr_palloc(p, sizeof(*dc));

    dc->enabled = MERGE(enabled);
    dc->location = add->enabled != -1 ? add->location : base->location;
    dc->snapshot = MERGE(snapshot);
    dc->max_bytes = MERGE(max_bytes);
    dc->heartbeat = MERGE(heartbeat);
    if (add->rate_interval_ms != -1) {
        dc->rate_interval_ms = add->rate_interval_ms;
        dc->rate_burst = add->rate_burst;
    } else {
        dc->rate_interval_ms = base->rate_interval_ms;
        dc->rate_burst = base->rate_burst;
    }
    dc->origins = add->origins ? add->origins : base->origins;
    dc->stream_url = add->stream_url ? add->stream_url : base->stream_url;
    dc->rooms = MERGE(rooms);
    dc->rooms_base = add->rooms != -1 ? add->rooms_base : base->rooms_base;
    dc->max_rooms_per_stream = MERGE(max_rooms_per_stream);
    dc->presence = MERGE(presence);
    dc->anonymous_delete = MERGE(anonymous_delete);
    return dc;
}

void *h2chat_create_srv_conf(apr_pool_t *p, server_rec *s) {
    h2chat_srv_conf_t *sc = apr_palloc(p, sizeof(*sc));

    (void)s;
    sc->history = sc->max_subscribers = sc->max_per_address = -1;
    sc->journal_path = NULL;
    sc->journal_sync = sc->store = -1;
    sc->redis_host = sc->redis_key = NULL;
    sc->redis_port = sc->redis_db = 0;
    sc->coalesce_ms = -1;
    sc->direct_path = sc->direct_own = NULL;
    sc->direct_server = NULL;
    sc->direct_penalty_s = -1;
    sc->direct_workers = -1;
    sc->direct_requests = -1;
    sc->latency = -1;
    sc->reconnect_spread_s = -1;
    sc->max_rooms = -1;
    sc->max_members = -1;
    sc->memory = -1;
    return sc;
}

void *h2chat_merge_srv_conf(apr_pool_t *p, void *basev, void *addv) {
    h2chat_srv_conf_t *base = basev, *add = addv, *sc = apr_palloc(p, sizeof(*sc));

    sc->history = MERGE(history);
    sc->max_subscribers = MERGE(max_subscribers);
    sc->max_per_address = MERGE(max_per_address);
    sc->journal_sync = MERGE(journal_sync);
    sc->store = MERGE(store);
    sc->coalesce_ms = MERGE(coalesce_ms);
    sc->direct_penalty_s = MERGE(direct_penalty_s);
    sc->direct_workers = MERGE(direct_workers);
    sc->direct_requests = MERGE(direct_requests);
    sc->latency = MERGE(latency);
    sc->reconnect_spread_s = MERGE(reconnect_spread_s);
    sc->max_rooms = MERGE(max_rooms);
    sc->max_members = MERGE(max_members);
    sc->memory = MERGE(memory);
    sc->journal_path = add->journal_path ? add->journal_path : base->journal_path;
    sc->direct_path = add->direct_path ? add->direct_path : base->direct_path;
    sc->direct_own = add->direct_own; /* never inherited: see h2chat_conf_direct_tls */
    sc->direct_server = add->direct_server;
    if (add->redis_host) {
        sc->redis_host = add->redis_host;
        sc->redis_port = add->redis_port;
        sc->redis_db = add->redis_db;
        sc->redis_key = add->redis_key;
    } else {
        sc->redis_host = base->redis_host;
        sc->redis_port = base->redis_port;
        sc->redis_db = base->redis_db;
        sc->redis_key = base->redis_key;
    }
    return sc;
}

int h2chat_conf_snapshot(const h2chat_dir_conf_t *dc) {
    return dc->snapshot != -1 ? dc->snapshot : H2CHAT_DEFAULT_SNAPSHOT;
}

int h2chat_conf_max_bytes(const h2chat_dir_conf_t *dc) {
    return dc->max_bytes != -1 ? dc->max_bytes : H2CHAT_DEFAULT_MAX_BYTES;
}

int h2chat_conf_heartbeat(const h2chat_dir_conf_t *dc) {
    return dc->heartbeat != -1 ? dc->heartbeat : H2CHAT_DEFAULT_HEARTBEAT;
}

void h2chat_conf_policy(const h2chat_dir_conf_t *dc, h2c_policy_conf_t *pc) {
    pc->snapshot = (uint32_t)h2chat_conf_snapshot(dc);
    pc->max_bytes = (uint32_t)h2chat_conf_max_bytes(dc);
    pc->heartbeat_s = (uint32_t)h2chat_conf_heartbeat(dc);
    pc->rate_interval_ms = dc->rate_interval_ms > 0 ? (uint32_t)dc->rate_interval_ms : 0;
    pc->rate_burst = dc->rate_burst > 0 ? (uint32_t)dc->rate_burst : 1;
    pc->origins = dc->origins;
    pc->rooms_base = dc->rooms == 1 ? dc->rooms_base : NULL;
    pc->location = dc->location;
    pc->max_rooms_per_stream = dc->max_rooms_per_stream != -1
                                   ? (uint32_t)dc->max_rooms_per_stream
                                   : H2CHAT_DEFAULT_ROOMS_PER_STREAM;
    pc->presence = dc->presence != -1 ? dc->presence : H2C_PRESENCE_COUNT;
    pc->anonymous_delete = dc->anonymous_delete == 1;
}

uint32_t h2chat_conf_max_members(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->max_members != -1 ? (uint32_t)sc->max_members : H2CHAT_DEFAULT_MAX_MEMBERS;
}

uint32_t h2chat_conf_max_rooms(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->max_rooms != -1 ? (uint32_t)sc->max_rooms : H2CHAT_DEFAULT_MAX_ROOMS;
}

/* H2ChatMemory, and never less than one full history of the largest
 * messages: the location's own room keeps what it kept before rooms. */
apr_size_t h2chat_conf_memory(server_rec *s, uint32_t history, uint32_t max_len) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);
    apr_size_t want = sc->memory != -1 ? (apr_size_t)sc->memory : H2CHAT_DEFAULT_MEMORY;
    apr_size_t least = h2c_rooms_memory_for(history, max_len);

    if (sc->memory != -1) { /* as said, but room for one largest message */
        least = h2c_rooms_memory_for(1, max_len);
    }
    return want > least ? want : least;
}

int h2chat_conf_history(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->history != -1 ? sc->history : H2CHAT_DEFAULT_HISTORY;
}

h2chat_sync_t h2chat_conf_journal_sync(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->journal_sync != -1 ? (h2chat_sync_t)sc->journal_sync : H2CHAT_SYNC_SECOND;
}

h2chat_store_kind_t h2chat_conf_store(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->store != -1 ? (h2chat_store_kind_t)sc->store : H2CHAT_STORE_SHM;
}

/* Parses a whole decimal number in [min, max] or says why not. */
static const char *parse_int(cmd_parms *cmd, const char *arg, int min, int max,
                             int *out) {
    char *end;
    apr_int64_t v;

    if (!*arg) {
        return apr_psprintf(cmd->pool, "%s needs a number", cmd->cmd->name);
    }
    v = apr_strtoi64(arg, &end, 10);
    if (*end || v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a whole number from %d to %d",
                            cmd->cmd->name, arg, min, max);
    }
    *out = (int)v;
    return NULL;
}

static const char *set_enabled(cmd_parms *cmd, void *dcv, int on) {
    h2chat_dir_conf_t *dc = dcv;

    dc->enabled = on;
    /* a literal <Location>'s path: what a DELETE without rooms must name */
    dc->location =
        on && cmd->path && cmd->path[0] == '/' && !strpbrk(cmd->path, "^$*?[(|\\")
            ? apr_pstrdup(cmd->pool, cmd->path)
            : NULL;
    return NULL;
}

/* H2ChatRooms On: <location>/<room> names rooms; the location is the
 * section's own path, so only a <Location> (not a regex) may say it. */
static const char *set_rooms(cmd_parms *cmd, void *dcv, int on) {
    h2chat_dir_conf_t *dc = dcv;

    if (on && (!cmd->path || cmd->path[0] != '/' || strpbrk(cmd->path, "^$*?[(|\\"))) {
        return "H2ChatRooms On belongs in a <Location /path> section (not a regex): "
               "rooms are that path + /<name>";
    }
    dc->rooms = on;
    dc->rooms_base = on ? apr_pstrdup(cmd->pool, cmd->path) : NULL;
    return NULL;
}

static const char *set_anonymous_delete(cmd_parms *cmd, void *dcv, int on) {
    (void)cmd;
    ((h2chat_dir_conf_t *)dcv)->anonymous_delete = on;
    return NULL;
}

/* H2ChatPresence off|count|members */
static const char *set_presence(cmd_parms *cmd, void *dcv, const char *arg) {
    h2chat_dir_conf_t *dc = dcv;

    if (!strcasecmp(arg, "off")) {
        dc->presence = H2C_PRESENCE_OFF;
    } else if (!strcasecmp(arg, "count")) {
        dc->presence = H2C_PRESENCE_COUNT;
    } else if (!strcasecmp(arg, "members")) {
        dc->presence = H2C_PRESENCE_MEMBERS;
    } else {
        return apr_psprintf(cmd->pool,
                            "H2ChatPresence: '%s' is not off, count or members", arg);
    }
    return NULL;
}

static const char *set_max_rooms_per_stream(cmd_parms *cmd, void *dcv, const char *arg) {
    return parse_int(cmd, arg, 1, 1024,
                     &((h2chat_dir_conf_t *)dcv)->max_rooms_per_stream);
}

static const char *set_max_rooms(cmd_parms *cmd, void *dcv, const char *arg) {
    h2chat_srv_conf_t *sc =
        ap_get_module_config(cmd->server->module_config, &h2chat_module);

    (void)dcv;
    return parse_int(cmd, arg, 1, 10000000, &sc->max_rooms);
}

static const char *set_max_members(cmd_parms *cmd, void *dcv, const char *arg) {
    h2chat_srv_conf_t *sc =
        ap_get_module_config(cmd->server->module_config, &h2chat_module);

    (void)dcv;
    return parse_int(cmd, arg, 1, 1000000, &sc->max_members);
}

/* H2ChatMemory SIZE: bytes, or with K, M or G (1024-based). */
static const char *set_memory(cmd_parms *cmd, void *dcv, const char *arg) {
    h2chat_srv_conf_t *sc =
        ap_get_module_config(cmd->server->module_config, &h2chat_module);
    char *end;
    apr_int64_t n = apr_strtoi64(arg, &end, 10);
    int shift = 0;

    (void)dcv;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (end == arg || *end || n < 1 || n > ((apr_int64_t)256 << 30) >> shift ||
        (n << shift) < 64 * 1024) {
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not a size from 64K to 256G (bytes, or with "
                            "K, M or G)",
                            cmd->cmd->name, arg);
    }
    sc->memory = (apr_off_t)(n << shift);
    return NULL;
}

static const char *set_snapshot(cmd_parms *cmd, void *dcv, const char *arg) {
    return parse_int(cmd, arg, 0, 100000, &((h2chat_dir_conf_t *)dcv)->snapshot);
}

static const char *set_max_bytes(cmd_parms *cmd, void *dcv, const char *arg) {
    h2chat_dir_conf_t *dc = dcv;
    const char *err = parse_int(cmd, arg, 16, 1024 * 1024, &dc->max_bytes);

    if (!err && dc->max_bytes > largest_max_bytes) {
        largest_max_bytes = dc->max_bytes;
    }
    return err;
}

static const char *set_heartbeat(cmd_parms *cmd, void *dcv, const char *arg) {
    return parse_int(cmd, arg, 1, 3600, &((h2chat_dir_conf_t *)dcv)->heartbeat);
}

/* H2ChatRateLimit RATE [BURST]: RATE messages per second per client
 * address (decimals allowed, "off" or 0 disables), BURST at once (default:
 * RATE rounded up, at least 1). */
static const char *set_rate(cmd_parms *cmd, void *dcv, const char *rate,
                            const char *burst) {
    h2chat_dir_conf_t *dc = dcv;
    char *end;
    double r;

    if (!strcasecmp(rate, "off")) {
        dc->rate_interval_ms = 0;
        return NULL;
    }
    r = strtod(rate, &end);
    if (end == rate || *end || !(r >= 0.0 && r <= 1000.0)) {
        return apr_psprintf(cmd->pool,
                            "H2ChatRateLimit: '%s' is not a rate from 0 to 1000 "
                            "messages per second (or off)",
                            rate);
    }
    if (r == 0.0) {
        dc->rate_interval_ms = 0;
        return NULL;
    }
    dc->rate_interval_ms = (int)(1000.0 / r + 0.5) > 0 ? (int)(1000.0 / r + 0.5) : 1;
    dc->rate_burst = r < 1.0 ? 1 : (int)(r + 0.999);
    return burst ? parse_int(cmd, burst, 1, 100000, &dc->rate_burst) : NULL;
}

/* H2ChatStreamURL URL | off: where pages subscribe (a fast-path origin). */
static const char *set_stream_url(cmd_parms *cmd, void *dcv, const char *url) {
    h2chat_dir_conf_t *dc = dcv;

    if (!strcasecmp(url, "off")) {
        dc->stream_url = "";
        return NULL;
    }
    if (strncmp(url, "https://", 8) && strncmp(url, "http://", 7)) {
        return apr_psprintf(cmd->pool,
                            "H2ChatStreamURL: '%s' is not a URL like "
                            "https://chat.example.org:8444/msgs (or off)",
                            url);
    }
    dc->stream_url = url;
    return NULL;
}

static const char *add_origin(cmd_parms *cmd, void *dcv, const char *origin) {
    h2chat_dir_conf_t *dc = dcv;

    if (!*origin || (strcmp(origin, "*") && strncmp(origin, "http://", 7) &&
                     strncmp(origin, "https://", 8))) {
        return apr_psprintf(cmd->pool,
                            "H2ChatAllowOrigin: '%s' is not an origin like "
                            "https://chat.example.org (or *)",
                            origin);
    }
    if (!dc->origins) {
        dc->origins = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(dc->origins, const char *) = origin;
    return NULL;
}

int64_t h2chat_conf_coalesce_us(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->coalesce_ms >= 0 ? (int64_t)sc->coalesce_ms * 1000 : -1;
}

const char *h2chat_conf_direct_path(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->direct_path && *sc->direct_path ? sc->direct_path : NULL;
}

/* A TLS connection is taken whole (it then serves the chat's path only), so
 * only a virtual host that says H2ChatDirect itself gives its TLS
 * connections to the loop: one inherited from the main server would take
 * the browsers' connections to the page's own origin. (A virtual host
 * without any H2Chat directive shares the main server's record, unmerged:
 * hence the server it was said in.) */
const char *h2chat_conf_direct_tls(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->direct_server == s && sc->direct_own && *sc->direct_own ? sc->direct_own
                                                                       : NULL;
}

/* the default: long enough that a client refused this way is no load,
 * short enough that one behind a shared address is not shut out for long */
#define H2CHAT_DIRECT_PENALTY_S 10

int64_t h2chat_conf_direct_penalty_us(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return (int64_t)(sc->direct_penalty_s < 0 ? H2CHAT_DIRECT_PENALTY_S
                                              : sc->direct_penalty_s) *
           1000000;
}

/* 4 per child: a slow provider holds one request of a connection at a time,
 * and a 2-core machine gains nothing from more for fast ones */
#define H2CHAT_DIRECT_WORKERS 4

uint32_t h2chat_conf_direct_workers(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return (uint32_t)(sc->direct_workers < 0 ? H2CHAT_DIRECT_WORKERS
                                             : sc->direct_workers);
}

/* httpd by default: a `Require` on the chat's <Location> holds on every
 * transport unless the admin says otherwise (a trusted backend) */
int h2chat_conf_direct_httpd(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->direct_requests != 0;
}

int h2chat_conf_reconnect_spread(server_rec *s) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    return sc->reconnect_spread_s >= 0 ? sc->reconnect_spread_s : H2C_SPREAD_AUTO;
}

static h2chat_srv_conf_t *srv_conf(cmd_parms *cmd) {
    return ap_get_module_config(cmd->server->module_config, &h2chat_module);
}

static const char *set_history(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    return err ? err : parse_int(cmd, arg, 1, 10000000, &srv_conf(cmd)->history);
}

static const char *set_max_subscribers(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    return err ? err : parse_int(cmd, arg, 1, 10000000, &srv_conf(cmd)->max_subscribers);
}

/* H2ChatMaxSubscribersPerAddress N | off */
static const char *set_max_per_address(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "off")) {
        srv_conf(cmd)->max_per_address = 0;
        return NULL;
    }
    return parse_int(cmd, arg, 1, 10000000, &srv_conf(cmd)->max_per_address);
}

static const char *set_coalesce(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "off")) {
        srv_conf(cmd)->coalesce_ms = 0;
        return NULL;
    }
    if (!strcasecmp(arg, "auto")) {
        srv_conf(cmd)->coalesce_ms = -2;
        return NULL;
    }
    return parse_int(cmd, arg, 1, 10000, &srv_conf(cmd)->coalesce_ms);
}

/* H2ChatDirect off | <path>: per listener (virtual host). */
static const char *set_direct(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "off")) {
        srv_conf(cmd)->direct_path = srv_conf(cmd)->direct_own = "";
        srv_conf(cmd)->direct_server = cmd->server;
        return NULL;
    }
    if (arg[0] != '/' || strchr(arg, '?')) {
        return "H2ChatDirect: give the chat's path (e.g. /msgs) or off";
    }
    srv_conf(cmd)->direct_path = srv_conf(cmd)->direct_own = arg;
    srv_conf(cmd)->direct_server = cmd->server;
    return NULL;
}

/* H2ChatDirectWorkers N: threads per child (the loops are per child). */
static const char *set_direct_workers(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    return err ? err : parse_int(cmd, arg, 1, 64, &srv_conf(cmd)->direct_workers);
}

/* H2ChatDirectRequests httpd | none: per listener (virtual host). */
static const char *set_direct_requests(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "httpd") || !strcasecmp(arg, "none")) {
        srv_conf(cmd)->direct_requests = !strcasecmp(arg, "httpd");
        return NULL;
    }
    return "H2ChatDirectRequests: httpd or none";
}

/* H2ChatDirectPenalty seconds | off: one value for the whole server (the
 * loops are per child, not per listener). */
static const char *set_direct_penalty(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "off")) {
        srv_conf(cmd)->direct_penalty_s = 0;
        return NULL;
    }
    return parse_int(cmd, arg, 1, 86400, &srv_conf(cmd)->direct_penalty_s);
}

/* H2ChatReconnectSpread auto | off | seconds: one value for the whole
 * server (a child's streams span its virtual hosts and both transports). */
static const char *set_reconnect_spread(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "off")) {
        srv_conf(cmd)->reconnect_spread_s = 0;
        return NULL;
    }
    if (!strcasecmp(arg, "auto")) {
        srv_conf(cmd)->reconnect_spread_s = -2;
        return NULL;
    }
    if (parse_int(cmd, arg, 1, H2C_SPREAD_FIXED_MAX_S,
                  &srv_conf(cmd)->reconnect_spread_s)) {
        return apr_psprintf(cmd->pool,
                            "H2ChatReconnectSpread: '%s' is not auto, off or a whole "
                            "number of seconds from 1 to %d",
                            arg, H2C_SPREAD_FIXED_MAX_S);
    }
    return NULL;
}

static const char *set_latency(cmd_parms *cmd, void *dcv, int on) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    if (err) {
        return err;
    }
    srv_conf(cmd)->latency = on;
    return NULL;
}

static const char *set_journal(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!*arg) {
        return "H2ChatJournal needs a file path";
    }
    srv_conf(cmd)->journal_path = ap_server_root_relative(cmd->pool, arg);
    return NULL;
}

static const char *set_journal_sync(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    h2chat_srv_conf_t *sc = srv_conf(cmd);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "always")) {
        sc->journal_sync = H2CHAT_SYNC_ALWAYS;
    } else if (!strcasecmp(arg, "second")) {
        sc->journal_sync = H2CHAT_SYNC_SECOND;
    } else if (!strcasecmp(arg, "off")) {
        sc->journal_sync = H2CHAT_SYNC_OFF;
    } else {
        return apr_psprintf(cmd->pool,
                            "H2ChatJournalSync: '%s' is not always, second or off", arg);
    }
    return NULL;
}

static const char *set_store(cmd_parms *cmd, void *dcv, const char *arg) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dcv;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "shm")) {
        srv_conf(cmd)->store = H2CHAT_STORE_SHM;
    } else if (!strcasecmp(arg, "redis")) {
        srv_conf(cmd)->store = H2CHAT_STORE_REDIS;
    } else {
        return apr_psprintf(cmd->pool, "H2ChatStore: '%s' is not shm or redis", arg);
    }
    return NULL;
}

/* H2ChatRedis redis://host:port[/db] [stream-key] */
static const char *set_redis(cmd_parms *cmd, void *dcv, const char *url,
                             const char *key) {
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY), *rest;
    h2chat_srv_conf_t *sc = srv_conf(cmd);
    char *host, *colon, *slash, *end;
    apr_int64_t v;

    (void)dcv;
    if (err) {
        return err;
    }
    if (strncmp(url, "redis://", 8) || !url[8]) {
        goto bad;
    }
    host = apr_pstrdup(cmd->pool, url + 8);
    slash = strchr(host, '/');
    sc->redis_db = 0;
    if (slash) {
        *slash = '\0';
        rest = slash + 1;
        if (*rest) {
            v = apr_strtoi64(rest, &end, 10);
            if (*end || v < 0 || v > 1000) {
                goto bad;
            }
            sc->redis_db = (int)v;
        }
    }
    colon = strrchr(host, ':');
    sc->redis_port = 6379;
    if (colon) {
        *colon = '\0';
        v = apr_strtoi64(colon + 1, &end, 10);
        if (*end || v < 1 || v > 65535) {
            goto bad;
        }
        sc->redis_port = (int)v;
    }
    if (!*host) {
        goto bad;
    }
    sc->redis_host = host;
    sc->redis_key = key ? key : "h2chat";
    if (!*sc->redis_key) {
        return "H2ChatRedis: the stream key may not be empty";
    }
    return NULL;
bad:
    return apr_psprintf(cmd->pool, "H2ChatRedis: '%s' is not redis://host:port[/db]",
                        url);
}

const command_rec h2chat_cmds[] = {
    AP_INIT_FLAG("H2Chat", set_enabled, NULL, ACCESS_CONF,
                 "On: this location is a chat endpoint (GET subscribes, POST publishes, "
                 "DELETE moderates)"),
    AP_INIT_TAKE1(
        "H2ChatHistory", set_history, NULL, RSRC_CONF,
        "messages kept in shared memory for snapshots and resume (default 1000)"),
    AP_INIT_FLAG("H2ChatRooms", set_rooms, NULL, ACCESS_CONF,
                 "On: <location>/<room> is a room of its own, and ?room=a&room=b "
                 "follows several on one stream (default Off: one chat)"),
    AP_INIT_TAKE1("H2ChatPresence", set_presence, NULL, ACCESS_CONF,
                  "off, count or members: each held stream is told its rooms' "
                  "subscriber counts when they change, at most once a second, and "
                  "?presence answers one; members: also who (join, leave) (default "
                  "count)"),
    AP_INIT_FLAG("H2ChatAnonymousDelete", set_anonymous_delete, NULL, ACCESS_CONF,
                 "On: DELETE (moderation) is allowed without an authenticated user, "
                 "e.g. behind other access control (default Off)"),
    AP_INIT_TAKE1("H2ChatMaxRoomsPerStream", set_max_rooms_per_stream, NULL, ACCESS_CONF,
                  "rooms one stream may follow (default 32)"),
    AP_INIT_TAKE1("H2ChatMaxRooms", set_max_rooms, NULL, RSRC_CONF,
                  "rooms kept at once, across the server (default 10000)"),
    AP_INIT_TAKE1("H2ChatMaxMembers", set_max_members, NULL, RSRC_CONF,
                  "people listed at once by H2ChatPresence members, across the "
                  "server: a (room, name) pair each (default 10000)"),
    AP_INIT_TAKE1("H2ChatMemory", set_memory, NULL, RSRC_CONF,
                  "shared memory for the rooms' messages, e.g. 64M (default 64M, "
                  "at least one H2ChatHistory of the largest messages)"),
    AP_INIT_TAKE1("H2ChatSnapshot", set_snapshot, NULL, ACCESS_CONF,
                  "messages a new subscriber gets first (default 50)"),
    AP_INIT_TAKE1("H2ChatMaxMessageBytes", set_max_bytes, NULL, ACCESS_CONF,
                  "largest accepted POST body in bytes (default 4096)"),
    AP_INIT_TAKE1("H2ChatHeartbeat", set_heartbeat, NULL, ACCESS_CONF,
                  "seconds of silence before a keep-alive line (default 20)"),
    AP_INIT_TAKE1("H2ChatMaxSubscribers", set_max_subscribers, NULL, RSRC_CONF,
                  "held streams allowed across all children (default: 3/4 of the "
                  "MPM's threads)"),
    AP_INIT_TAKE1("H2ChatMaxSubscribersPerAddress", set_max_per_address, NULL, RSRC_CONF,
                  "held streams allowed per client address across all children, or "
                  "off (default: half of H2ChatMaxSubscribers)"),
    AP_INIT_TAKE12("H2ChatRateLimit", set_rate, NULL, ACCESS_CONF,
                   "messages per second per client address, and burst (default off)"),
    AP_INIT_TAKE1(
        "H2ChatStreamURL", set_stream_url, NULL, OR_OPTIONS,
        "off or the URL of this chat on an H2ChatDirect TLS origin: its answers "
        "say it (X-H2Chat-Stream) and the page holds its stream there "
        "(default off)"),
    AP_INIT_ITERATE("H2ChatAllowOrigin", add_origin, NULL, ACCESS_CONF,
                    "origins allowed to POST (default: any); requests without an "
                    "Origin header are not affected"),
    AP_INIT_TAKE1("H2ChatCoalesce", set_coalesce, NULL, RSRC_CONF,
                  "off, auto or the least milliseconds between two wake-ups of the held "
                  "streams (default: auto)"),
    AP_INIT_TAKE1("H2ChatDirect", set_direct, NULL, RSRC_CONF,
                  "off or the chat's path: h2c (prior knowledge) connections to this "
                  "server, and h2 (TLS) ones to a virtual host that says it itself, are "
                  "served by the module's own HTTP/2 loop (default off)"),
    AP_INIT_TAKE1("H2ChatDirectWorkers", set_direct_workers, NULL, RSRC_CONF,
                  "threads per child that run httpd's request processing (auth, access, "
                  "the log) for H2ChatDirect's requests (default 4)"),
    AP_INIT_TAKE1("H2ChatDirectRequests", set_direct_requests, NULL, RSRC_CONF,
                  "httpd or none: whether the requests of H2ChatDirect's h2c "
                  "connections go through httpd's request processing (Require, auth, "
                  "the access log) first (default httpd; TLS ones always do)"),
    AP_INIT_TAKE1("H2ChatDirectPenalty", set_direct_penalty, NULL, RSRC_CONF,
                  "off or seconds: a client address whose H2ChatDirect connection was "
                  "closed with ENHANCE_YOUR_CALM has its new ones refused that long "
                  "(default 10)"),
    AP_INIT_TAKE1("H2ChatReconnectSpread", set_reconnect_spread, NULL, RSRC_CONF,
                  "auto, off or seconds: a stream its stopping child ends tells its "
                  "client to reconnect after a random delay within this window "
                  "(default auto: held streams / 5,000 per second, 1 to 10 s)"),
    AP_INIT_FLAG("H2ChatLatencyHistogram", set_latency, NULL, RSRC_CONF,
                 "On or Off: sample the delivery latency for h2chat-metrics "
                 "(default On)"),
    AP_INIT_TAKE1("H2ChatJournal", set_journal, NULL, RSRC_CONF,
                  "file that keeps the history across a full restart (default: none)"),
    AP_INIT_TAKE1("H2ChatJournalSync", set_journal_sync, NULL, RSRC_CONF,
                  "always, second or off: when the journal is fdatasync'ed "
                  "(default second)"),
    AP_INIT_TAKE1("H2ChatStore", set_store, NULL, RSRC_CONF,
                  "shm or redis: who assigns ids and keeps messages (default shm)"),
    AP_INIT_TAKE12("H2ChatRedis", set_redis, NULL, RSRC_CONF,
                   "redis://host:port[/db] [stream-key] (key default h2chat)"),
    {NULL}};
