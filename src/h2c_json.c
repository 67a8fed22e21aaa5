/* h2c_json: see h2c_json.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>

#include "h2c_json.h"
#include "h2c_room.h"
#include "h2c_text.h"

static apr_status_t json_cleanup(void *j) {
    json_decref(j);
    return APR_SUCCESS;
}

/* A jansson value whose reference is dropped with the pool. */
static json_t *pool_json(apr_pool_t *p, json_t *j) {
    if (j) {
        apr_pool_cleanup_register(p, j, json_cleanup, apr_pool_cleanup_null);
    }
    return j;
}

/* Dumps j compactly into the pool (UTF-8 kept as is, not \u-escaped). */
static char *pool_dump(apr_pool_t *p, const json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT), *copy;

    if (!s) {
        return NULL;
    }
    copy = apr_pstrdup(p, s);
    free(s);
    return copy;
}

/* Checks one string field; *why is set on failure. */
static int field_ok(const json_t *v, const char *name, const char **why) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (!v) {
        *why = strcmp(name, "user") ? "missing \"text\"" : "missing \"user\"";
        return 0;
    }
    if (!json_is_string(v)) {
        *why = strcmp(name, "user") ? "\"text\" must be a string"
                                    : "\"user\" must be a string";
        return 0;
    }
    if (n == 0) {
        *why = strcmp(name, "user") ? "\"text\" is empty" : "\"user\" is empty";
        return 0;
    }
    if (h2c_text_check_controls(s, n) != APR_SUCCESS) {
        *why = "control characters other than newline and tab are not allowed";
        return 0;
    }
    if (!strcmp(name, "user") && strpbrk(s, "\n\t")) {
        *why = "\"user\" must be on one line, without tabs";
        return 0;
    }
    return 1;
}

apr_status_t h2c_json_parse_post(const char *body, apr_size_t len, const char *auth_user,
                                 const char *room, apr_pool_t *p, char **fields,
                                 apr_size_t *flen, const char **why) {
    json_error_t err;
    json_t *in, *out, *user, *text;
    char *enc;

    if (h2c_text_check_utf8(body, len) != APR_SUCCESS) {
        *why = "body is not valid UTF-8";
        return APR_EINVAL;
    }
    /* NUL is allowed by the parser so that it is refused below as a
     * control character, with that reason, rather than as bad JSON. */
    in = pool_json(p, json_loadb(body, len, JSON_ALLOW_NUL, &err));
    if (!in) {
        *why = apr_psprintf(p, "malformed JSON: %s", err.text);
        return APR_EINVAL;
    }
    if (!json_is_object(in)) {
        *why = "body must be a JSON object";
        return APR_EINVAL;
    }
    user = auth_user ? pool_json(p, json_string(auth_user)) : json_object_get(in, "user");
    text = json_object_get(in, "text");
    if (auth_user && !user) {
        *why = "authenticated user name is not valid UTF-8";
        return APR_EINVAL;
    }
    if (!field_ok(user, "user", why) || !field_ok(text, "text", why)) {
        return APR_EINVAL;
    }
    if (h2c_text_count_chars(json_string_value(user), json_string_length(user)) >
        H2C_JSON_USER_MAX_CHARS) {
        *why = apr_psprintf(p, "\"user\" is longer than %d characters",
                            H2C_JSON_USER_MAX_CHARS);
        return APR_EINVAL;
    }
    out = pool_json(p, json_object());
    /* jansson keeps insertion order: the room leads, then user and text */
    if (!out || (room && *room && json_object_set_new(out, "room", json_string(room))) ||
        json_object_set(out, "user", user) || json_object_set(out, "text", text) ||
        !(enc = pool_dump(p, out))) {
        *why = "out of memory";
        return APR_ENOMEM;
    }
    /* {"user":..,"text":..} -> the fragment between the braces */
    *flen = strlen(enc) - 2;
    enc[*flen + 1] = '\0';
    *fields = enc + 1;
    return APR_SUCCESS;
}

apr_size_t h2c_json_format_message(char *buf, apr_size_t cap, uint64_t id,
                                   int64_t time_ms, const char *fields, apr_size_t flen) {
    char head[48], tail[32];
    int hn = snprintf(head, sizeof(head), "{\"type\":\"message\",\"id\":%llu,",
                      (unsigned long long)id);
    int tn = snprintf(tail, sizeof(tail), ",\"time\":%lld}", (long long)time_ms);
    apr_size_t n = (apr_size_t)hn + flen + (apr_size_t)tn;

    if (n > cap) {
        return 0;
    }
    memcpy(buf, head, (apr_size_t)hn);
    memcpy(buf + hn, fields, flen);
    memcpy(buf + hn + flen, tail, (apr_size_t)tn);
    return n;
}

char *h2c_json_error(apr_pool_t *p, const char *msg) {
    json_t *j = pool_json(p, json_pack("{s:s}", "error", msg));

    return j ? pool_dump(p, j) : apr_pstrdup(p, "{\"error\":\"internal error\"}");
}

/* The number-only objects have fixed keys: formatting them needs no JSON
 * library, and the hot path (heartbeats) stays allocation-light. */
char *h2c_json_published(apr_pool_t *p, uint64_t id, int64_t time_ms) {
    return apr_psprintf(p, "{\"id\":%" APR_UINT64_T_FMT ",\"time\":%" APR_INT64_T_FMT "}",
                        (apr_uint64_t)id, (apr_int64_t)time_ms);
}

char *h2c_json_gap(apr_pool_t *p, const char *room, uint64_t missed, uint64_t from,
                   uint64_t to) {
    json_t *j = pool_json(p, json_pack("{s:s,s:I,s:I,s:I}", "type", "gap", "missed",
                                       (json_int_t)missed, "from", (json_int_t)from, "to",
                                       (json_int_t)to));

    if (j && room && *room) {
        /* after "type", as in message lines */
        json_t *named = pool_json(p, json_pack("{s:s,s:s}", "type", "gap", "room", room));

        if (named && !json_object_update(named, j)) {
            j = named;
        }
    }
    return j ? pool_dump(p, j) : "{\"type\":\"gap\"}";
}

apr_status_t h2c_json_line_room(const char *line, apr_size_t len, char *buf) {
    json_t *j = json_loadb(line, len, 0, NULL), *room;
    const char *s;
    size_t n;
    apr_status_t rv = APR_EINVAL;

    buf[0] = '\0';
    if (j && json_is_object(j)) {
        room = json_object_get(j, "room");
        if (!room) {
            rv = APR_SUCCESS;
        } else if ((s = json_string_value(room)) && (n = json_string_length(room)) >= 1 &&
                   n <= 64 && h2c_room_name_ok(s, n)) {
            memcpy(buf, s, n);
            buf[n] = '\0';
            rv = APR_SUCCESS;
        }
    }
    json_decref(j);
    return rv;
}

apr_status_t h2c_json_line_kind(const char *line, apr_size_t len, h2c_entry_kind_t *kind,
                                uint64_t *target) {
    static const char message[] = "{\"type\":\"message\",";
    json_t *j, *id;
    const char *type;
    apr_status_t rv = APR_EINVAL;

    *target = 0;
    if (len >= sizeof(message) - 1 && !memcmp(line, message, sizeof(message) - 1)) {
        *kind = H2C_ENTRY_MESSAGE; /* the hot path: every message, no parse */
        return APR_SUCCESS;
    }
    j = json_loadb(line, len, 0, NULL);
    type = json_string_value(json_object_get(j, "type"));
    id = json_object_get(j, "id");
    if (type && !strcmp(type, "delete") && json_is_integer(id) &&
        json_integer_value(id) > 0) {
        *kind = H2C_ENTRY_DELETE;
        *target = (uint64_t)json_integer_value(id);
        rv = APR_SUCCESS;
    } else if (type && !strcmp(type, "clear")) {
        *kind = H2C_ENTRY_CLEAR;
        rv = APR_SUCCESS;
    }
    json_decref(j);
    return rv;
}

/* {"type":<type>[,"room":<room>]}: the room after the type, as in
 * message lines */
static json_t *typed(apr_pool_t *p, const char *type, const char *room) {
    json_t *j = pool_json(p, json_pack("{s:s}", "type", type));

    if (j && room && *room && json_object_set_new(j, "room", json_string(room))) {
        return NULL;
    }
    return j;
}

char *h2c_json_delete(apr_pool_t *p, const char *room, uint64_t target) {
    json_t *j = typed(p, "delete", room);

    if (!j || json_object_set_new(j, "id", json_integer((json_int_t)target))) {
        return NULL;
    }
    return pool_dump(p, j);
}

char *h2c_json_clear(apr_pool_t *p, const char *room) {
    json_t *j = typed(p, "clear", room);

    return j ? pool_dump(p, j) : NULL;
}

char *h2c_json_reset(apr_pool_t *p, uint64_t last_id) {
    return apr_psprintf(p, "{\"type\":\"reset\",\"last_id\":%" APR_UINT64_T_FMT "}",
                        (apr_uint64_t)last_id);
}

char *h2c_json_heartbeat(apr_pool_t *p, int64_t time_ms) {
    return apr_psprintf(p, "{\"type\":\"heartbeat\",\"time\":%" APR_INT64_T_FMT "}",
                        (apr_int64_t)time_ms);
}

char *h2c_json_presence(apr_pool_t *p, const char *room, uint32_t count, int as_event) {
    json_t *j =
        pool_json(p, as_event ? json_pack("{s:s}", "type", "presence") : json_object());

    if (!j ||
        ((as_event ? room && *room : 1) &&
         json_object_set_new(j, "room", json_string(room ? room : ""))) ||
        json_object_set_new(j, "count", json_integer(count))) {
        return as_event ? "{\"type\":\"presence\"}" : "{}";
    }
    return pool_dump(p, j);
}

/* A JSON array of names; NULL if one is no valid UTF-8. */
static json_t *name_array(apr_pool_t *p, const apr_array_header_t *names) {
    json_t *a = pool_json(p, json_array());
    int i;

    for (i = 0; a && i < names->nelts; i++) {
        if (json_array_append_new(a,
                                  json_string(APR_ARRAY_IDX(names, i, const char *)))) {
            return NULL;
        }
    }
    return a;
}

/* One room of a ?presence answer. */
static char *presence_one(apr_pool_t *p, const char *room, uint32_t count,
                          const apr_array_header_t *names) {
    json_t *j = pool_json(p, json_object()), *a;

    if (!j || json_object_set_new(j, "room", json_string(room ? room : "")) ||
        json_object_set_new(j, "count", json_integer(count))) {
        return "{}";
    }
    if (names && (a = name_array(p, names))) {
        json_object_set(j, "members", a);
    }
    return pool_dump(p, j);
}

char *h2c_json_presence_list(apr_pool_t *p, const char *const *rooms,
                             const uint32_t *counts, apr_array_header_t *const *members,
                             uint32_t n) {
    char *body;
    uint32_t i;

    if (n == 1) {
        return presence_one(p, rooms[0], counts[0], members ? members[0] : NULL);
    }
    body = "[";
    for (i = 0; i < n; i++) {
        body = apr_pstrcat(
            p, body, i ? "," : "",
            presence_one(p, rooms[i], counts[i], members ? members[i] : NULL), NULL);
    }
    return apr_pstrcat(p, body, "]", NULL);
}

char *h2c_json_members(apr_pool_t *p, const char *room, const apr_array_header_t *names) {
    json_t *j = typed(p, "members", room), *a = name_array(p, names);

    if (!j || !a || json_object_set(j, "members", a)) {
        return NULL;
    }
    return pool_dump(p, j);
}

char *h2c_json_member(apr_pool_t *p, const char *room, int join, const char *name,
                      apr_size_t len) {
    json_t *j = typed(p, join ? "join" : "leave", room);

    if (!j || json_object_set_new(j, "user", json_stringn(name, len))) {
        return NULL;
    }
    return pool_dump(p, j);
}

char *h2c_json_reconnect(apr_pool_t *p, uint32_t retry_ms) {
    return apr_psprintf(p, "{\"type\":\"reconnect\",\"retry\":%u}", retry_ms);
}
