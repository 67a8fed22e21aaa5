/* Unit tests of h2c_policy: routes, the POST checks and their order, the
 * refusal table, negotiation and resume, as both transports get them. */
#include <string.h>
#include <unistd.h>

#include <apr_strings.h>

#include "h2c_policy.h"
#include "h2c_tags.h"
#include "unit.h"

static h2c_policy_conf_t conf_of(apr_array_header_t *origins) {
    h2c_policy_conf_t c;

    memset(&c, 0, sizeof(c));
    c.snapshot = 50;
    c.max_bytes = 64;
    c.heartbeat_s = 20;
    c.origins = origins;
    return c;
}

static h2c_request_t post_req(void) {
    h2c_request_t r;

    memset(&r, 0, sizeof(r));
    r.method = "POST";
    r.content_type = "application/json";
    r.content_length = -1;
    r.client = "10.0.0.1";
    return r;
}

static h2c_rate_t rate_table(apr_pool_t *p) {
    h2c_rate_t rate;

    rate.words = apr_pcalloc(p, H2C_RATE_BUCKETS * sizeof(uint64_t));
    rate.epoch_ms = 0;
    return rate;
}

/* Every refusal has a status, a tag, a message (or a rule that gives one)
 * and a sane log level; 503s and 429 say when to come back. */
static void test_table(apr_pool_t *p) {
    int i;

    (void)p;
    for (i = 1; i < H2C_DENY_MAX; i++) {
        const h2c_deny_info_t *info = h2c_policy_info((h2c_deny_t)i);

        CHECK(info->status >= 400 && info->status < 600);
        CHECK(info->tag && !strncmp(info->tag, "H2C00", 5));
        CHECK(info->level <= H2C_LOG_INFO);
        CHECK((info->status == 503 || info->status == 429) == (info->retry_after != 0));
        CHECK((info->status == 405) == (info->allow != NULL));
    }
    CHECK(h2c_policy_info(H2C_DENY_METHOD)->drop_body);
    CHECK(!strcmp(h2c_policy_info(H2C_DENY_METHOD)->allow, "GET, HEAD, POST, DELETE"));
    CHECK(h2c_policy_info(H2C_DENY_CAP)->counter == H2C_REFUSED_CAP);
    /* H2ChatMaxSubscribersPerAddress: a capacity refusal like the cap's */
    {
        const h2c_deny_info_t *a = h2c_policy_info(H2C_DENY_ADDRESS);

        CHECK(a->status == 503 && !strcmp(a->tag, H2C_TAG_ADDRESS) &&
              !strcmp(a->tag, "H2C0028"));
        CHECK(!strcmp(a->message, "too many subscribers from this address, retry later"));
        CHECK(a->level == H2C_LOG_WARN && a->counter == H2C_REFUSED_ADDRESS);
        CHECK(a->retry_after == 5 && !a->allow && !a->drop_body);
        CHECK(strcmp(a->tag, h2c_policy_info(H2C_DENY_CAP)->tag));
    }
    CHECK(h2c_policy_info(H2C_DENY_NOT_FOUND)->counter == H2C_REFUSED_MAX);
    CHECK(h2c_policy_info(H2C_DENY_MAX) == h2c_policy_info(H2C_DENY_NONE));
}

static void test_route(apr_pool_t *p) {
    h2c_verdict_t v;
    int head;

    (void)p;
    CHECK(h2c_policy_route("GET", &head, &v) == H2C_ROUTE_SUBSCRIBE && !head);
    CHECK(h2c_policy_route("HEAD", &head, &v) == H2C_ROUTE_SUBSCRIBE && head);
    CHECK(h2c_policy_route("POST", &head, &v) == H2C_ROUTE_PUBLISH && !head);
    CHECK(h2c_policy_route("PUT", &head, &v) == H2C_ROUTE_REFUSED);
    CHECK(v.deny == H2C_DENY_METHOD &&
          !strcmp(v.message, "method not allowed: use GET, POST or DELETE"));
    CHECK(h2c_policy_route("get", &head, &v) ==
          H2C_ROUTE_REFUSED); /* methods are case-sensitive */
    CHECK(h2c_policy_route(NULL, &head, &v) == H2C_ROUTE_REFUSED);
}

/* RFC 9110: media types compare case-insensitively. */
static void test_negotiation(apr_pool_t *p) {
    (void)p;
    CHECK(h2c_policy_wants_sse("text/event-stream"));
    CHECK(h2c_policy_wants_sse("TEXT/Event-Stream"));
    CHECK(h2c_policy_wants_sse("application/json, text/event-stream;q=0.9"));
    CHECK(!h2c_policy_wants_sse("application/x-ndjson"));
    CHECK(!h2c_policy_wants_sse("text/event"));
    CHECK(!h2c_policy_wants_sse(NULL));
    CHECK(!strcmp(h2c_policy_stream_type(1), "text/event-stream"));
    CHECK(!strcmp(h2c_policy_stream_type(0), "application/x-ndjson; charset=utf-8"));
}

static void test_subscribe(apr_pool_t *p) {
    h2c_request_t r;
    h2c_subscription_t sub;
    h2c_verdict_t v;

    (void)p;
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    CHECK(h2c_policy_subscribe(&r, 1, &sub, &v) && !sub.resume && !sub.sse);
    r.accept = "Text/Event-Stream";
    r.last_event_id = "17";
    CHECK(h2c_policy_subscribe(&r, 1, &sub, &v) && sub.resume && sub.since == 17 &&
          sub.sse);
    r.args = "since=20";
    CHECK(h2c_policy_subscribe(&r, 1, &sub, &v) && sub.since == 20); /* since= wins */
    r.args = "since=x";
    CHECK(!h2c_policy_subscribe(&r, 1, &sub, &v) && v.deny == H2C_DENY_BAD_RESUME);
    CHECK(h2c_policy_info(v.deny)->status == 400 && v.retry_after == 0);
    r.args = NULL;
    CHECK(!h2c_policy_subscribe(&r, 0, &sub, &v) && v.deny == H2C_DENY_UNAVAILABLE);
    CHECK(v.retry_after == 5 && h2c_policy_info(v.deny)->status == 503);
}

/* The POST checks come in one order: usable, Origin, media type, rate,
 * declared length; the first that fails decides. */
static void test_publish_head(apr_pool_t *p) {
    apr_array_header_t *origins = apr_array_make(p, 1, sizeof(const char *));
    h2c_policy_conf_t c;
    h2c_rate_t rate = rate_table(p);
    h2c_request_t r = post_req();
    h2c_verdict_t v;

    APR_ARRAY_PUSH(origins, const char *) = "https://chat.example";
    c = conf_of(origins);
    CHECK(h2c_policy_publish_head(&c, &r, 1, &rate, 1000, p, &v) &&
          v.deny == H2C_DENY_NONE);
    r.origin = "https://CHAT.example"; /* origins compare case-insensitively */
    CHECK(h2c_policy_publish_head(&c, &r, 1, &rate, 1000, p, &v));
    r.origin = "https://evil.example";
    r.content_type = "text/plain";
    CHECK(!h2c_policy_publish_head(&c, &r, 1, &rate, 1000, p, &v) &&
          v.deny == H2C_DENY_ORIGIN);
    CHECK(!h2c_policy_publish_head(&c, &r, 0, &rate, 1000, p, &v) &&
          v.deny == H2C_DENY_UNAVAILABLE);
    r.origin = NULL; /* not a browser's cross-site request */
    CHECK(!h2c_policy_publish_head(&c, &r, 1, &rate, 1000, p, &v) &&
          v.deny == H2C_DENY_MEDIA_TYPE);
    CHECK(h2c_policy_info(v.deny)->status == 415 && h2c_policy_info(v.deny)->drop_body);
    r.content_type = "Application/JSON; charset=utf-8";
    r.content_length = 65;
    CHECK(!h2c_policy_publish_head(&c, &r, 1, &rate, 1000, p, &v) &&
          v.deny == H2C_DENY_TOO_LARGE);
    CHECK(!strcmp(v.message, "body over 64 bytes") &&
          h2c_policy_info(v.deny)->status == 413);
    r.content_length = 64;
    CHECK(h2c_policy_publish_head(&c, &r, 1, &rate, 1000, p, &v));
}

static void test_rate(apr_pool_t *p) {
    h2c_policy_conf_t c = conf_of(NULL);
    h2c_rate_t rate = rate_table(p);
    h2c_request_t r = post_req();
    h2c_verdict_t v;

    c.rate_interval_ms = 2500, c.rate_burst = 2;
    CHECK(h2c_policy_publish_head(&c, &r, 1, &rate, 100000, p, &v));
    CHECK(h2c_policy_publish_head(&c, &r, 1, &rate, 100000, p, &v));
    CHECK(!h2c_policy_publish_head(&c, &r, 1, &rate, 100000, p, &v) &&
          v.deny == H2C_DENY_RATE);
    CHECK(v.retry_after == 3); /* 2.5 s, rounded up to whole seconds */
    CHECK(h2c_policy_info(v.deny)->status == 429);
    r.client = "10.0.0.2"; /* per address */
    CHECK(h2c_policy_publish_head(&c, &r, 1, &rate, 100000, p, &v));
    r.client = "10.0.0.1";
    CHECK(!h2c_policy_publish_head(&c, &r, 1, &rate, 100001, p, &v) &&
          v.retry_after == 3);
    CHECK(!h2c_policy_publish_head(&c, &r, 1, &rate, 102400, p, &v) &&
          v.retry_after == 1);
}

static void test_publish_body(apr_pool_t *p) {
    h2c_policy_conf_t c = conf_of(NULL);
    h2c_verdict_t v;
    char *fields;
    apr_size_t flen;
    const char *ok = "{\"user\":\"a\",\"text\":\"hi\"}";

    CHECK(h2c_policy_publish_body(&c, ok, strlen(ok), 0, NULL, NULL, p, &fields, &flen,
                                  &v));
    CHECK(flen == strlen("\"user\":\"a\",\"text\":\"hi\"") &&
          !memcmp(fields, "\"user\":", 7));
    CHECK(h2c_policy_publish_body(&c, ok, strlen(ok), 0, "bob", NULL, p, &fields, &flen,
                                  &v));
    CHECK(strstr(fields, "\"bob\"") != NULL); /* the authenticated user wins */
    CHECK(!h2c_policy_publish_body(&c, ok, strlen(ok), 1, NULL, NULL, p, &fields, &flen,
                                   &v));
    CHECK(v.deny == H2C_DENY_TOO_LARGE && !strcmp(v.message, "body over 64 bytes"));
    CHECK(!h2c_policy_publish_body(&c, "{\"user\":\"a\"}", 12, 0, NULL, NULL, p, &fields,
                                   &flen, &v));
    CHECK(v.deny == H2C_DENY_BAD_MESSAGE && !strcmp(v.message, "missing \"text\""));
    CHECK(h2c_policy_info(v.deny)->status == 400 &&
          !strcmp(h2c_policy_info(v.deny)->tag, H2C_TAG_BAD_MESSAGE));
    CHECK(!h2c_policy_publish_body(&c, NULL, 0, 0, NULL, NULL, p, &fields, &flen, &v));
    CHECK(v.deny == H2C_DENY_BAD_MESSAGE);
}

/* The rooms of a request: off, a path's room, ?room= lists, refusals. */
static const char *rooms_of(apr_pool_t *p, h2c_policy_conf_t *c, const char *path,
                            const char *args, int subscribe, h2c_verdict_t *v) {
    h2c_request_t r;
    apr_array_header_t *rooms;
    const char *all = "";
    int i;

    memset(&r, 0, sizeof(r));
    r.path = path;
    r.args = args;
    if (!h2c_policy_rooms(c, &r, subscribe, p, &rooms, v)) {
        return NULL;
    }
    for (i = 0; i < rooms->nelts; i++) {
        all = apr_pstrcat(p, all, i ? "," : "", "[",
                          APR_ARRAY_IDX(rooms, i, const char *), "]", NULL);
    }
    return all;
}

static void test_rooms(apr_pool_t *p) {
    h2c_policy_conf_t c = conf_of(NULL);
    h2c_verdict_t v;
    const char *got;

    /* off: one chat, whatever the path or query (as before rooms) */
    CHECK(!strcmp(rooms_of(p, &c, "/msgs/a", "room=b", 1, &v), "[]"));
    c.rooms_base = "/msgs";
    c.max_rooms_per_stream = 3;
    CHECK(!strcmp(rooms_of(p, &c, "/msgs", NULL, 1, &v), "[]"));
    CHECK(!strcmp(rooms_of(p, &c, "/msgs/lobby", NULL, 1, &v), "[lobby]"));
    CHECK(!strcmp(rooms_of(p, &c, "/msgs/lobby/", "since=3", 0, &v), "[lobby]"));
    /* a list: instead of the location's own, or after the path's room */
    CHECK(!strcmp(rooms_of(p, &c, "/msgs", "room=a&room=b", 1, &v), "[a],[b]"));
    CHECK(!strcmp(rooms_of(p, &c, "/msgs/x", "room=a&room=b", 1, &v), "[x],[a],[b]"));
    /* a POST goes to its path's room only */
    CHECK(!strcmp(rooms_of(p, &c, "/msgs/x", "room=a", 0, &v), "[x]"));
    /* refusals */
    got = rooms_of(p, &c, "/msgs/a b", NULL, 1, &v);
    CHECK(!got && v.deny == H2C_DENY_BAD_ROOM && h2c_policy_info(v.deny)->status == 400);
    CHECK(!strcmp(h2c_policy_info(v.deny)->tag, H2C_TAG_BAD_ROOM));
    CHECK(!rooms_of(p, &c, "/msgs/x", "room=x", 1, &v) && v.deny == H2C_DENY_BAD_ROOM &&
          strstr(v.message, "twice"));
    CHECK(!rooms_of(p, &c, "/msgs/x", "room=a&room=b&room=c", 1, &v) &&
          v.deny == H2C_DENY_BAD_ROOM && strstr(v.message, "more than 3"));
    CHECK(rooms_of(p, &c, "/msgs", "room=a&room=b&room=c", 1, &v) != NULL);
    CHECK(!rooms_of(p, &c, "/msgs", "room=a%2", 1, &v) && v.deny == H2C_DENY_BAD_ROOM);
    CHECK(!rooms_of(p, &c, "/msgs/a/17", NULL, 1, &v) && v.deny == H2C_DENY_NOT_FOUND);
    CHECK(!rooms_of(p, &c, "/msgsx", NULL, 0, &v) && v.deny == H2C_DENY_NOT_FOUND);
    /* the store's refusals */
    h2c_policy_store_refusal(&v, APR_EBUSY);
    CHECK(v.deny == H2C_DENY_ROOMS_FULL && h2c_policy_info(v.deny)->status == 503 &&
          h2c_policy_info(v.deny)->counter == H2C_REFUSED_ROOMS);
    h2c_policy_store_refusal(&v, APR_ENOMEM);
    CHECK(v.deny == H2C_DENY_MEMORY && h2c_policy_info(v.deny)->retry_after > 0);
    h2c_policy_store_refusal(&v, APR_EGENERAL);
    CHECK(v.deny == H2C_DENY_PUBLISH);
}

/* DELETE: the order of its checks, its targets, the store's answers. */
static void test_delete(apr_pool_t *p) {
    apr_array_header_t *origins = apr_array_make(p, 1, sizeof(const char *));
    h2c_policy_conf_t c = conf_of(NULL);
    h2c_request_t r;
    h2c_moderation_t mod;
    h2c_verdict_t v;

    memset(&r, 0, sizeof(r));
    r.method = "DELETE";
    r.path = "/msgs";
    CHECK(!h2c_policy_delete(&c, &r, 0, "boss", p, &mod, &v) &&
          v.deny == H2C_DENY_UNAVAILABLE);
    /* no user: refused, unless the location allows it (the direct loop
     * never has one) */
    CHECK(!h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) &&
          v.deny == H2C_DENY_DELETE_USER && h2c_policy_info(v.deny)->status == 403 &&
          !strcmp(h2c_policy_info(v.deny)->tag, H2C_TAG_DELETE_USER));
    CHECK(!h2c_policy_delete(&c, &r, 1, "", p, &mod, &v) &&
          v.deny == H2C_DENY_DELETE_USER);
    /* rooms off: the location's own room, cleared, or a message by ?id= */
    CHECK(h2c_policy_delete(&c, &r, 1, "boss", p, &mod, &v) && !*mod.room &&
          mod.kind == H2C_ENTRY_CLEAR && !strcmp(mod.line, "{\"type\":\"clear\"}"));
    r.args = "id=17";
    CHECK(h2c_policy_delete(&c, &r, 1, "boss", p, &mod, &v) && !*mod.room &&
          mod.kind == H2C_ENTRY_DELETE && mod.target == 17 &&
          !strcmp(mod.line, "{\"type\":\"delete\",\"id\":17}"));
    r.args = "id=1x";
    CHECK(!h2c_policy_delete(&c, &r, 1, "boss", p, &mod, &v) &&
          v.deny == H2C_DENY_BAD_ROOM && h2c_policy_info(v.deny)->status == 400);
    r.args = "id=0";
    CHECK(!h2c_policy_delete(&c, &r, 1, "boss", p, &mod, &v));
    c.anonymous_delete = 1;
    r.args = NULL;
    CHECK(h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v));
    /* without rooms, a path under the location is no target (a typo must
     * not clear the chat) */
    c.location = "/msgs";
    CHECK(h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) && mod.kind == H2C_ENTRY_CLEAR);
    r.path = "/msgs/";
    CHECK(h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v));
    r.path = "/msgs/typo";
    CHECK(!h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) &&
          v.deny == H2C_DENY_NOT_FOUND && strstr(v.message, "/msgs?id=<id>"));
    r.path = "/msgs";
    c.location = NULL;
    /* rooms on: <room>/<id>, <room>, <room>?id= */
    c.rooms_base = "/msgs";
    r.path = "/msgs/lobby/42";
    CHECK(h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) && !strcmp(mod.room, "lobby") &&
          mod.kind == H2C_ENTRY_DELETE && mod.target == 42 &&
          !strcmp(mod.line, "{\"type\":\"delete\",\"room\":\"lobby\",\"id\":42}"));
    r.path = "/msgs/lobby";
    CHECK(h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) && !strcmp(mod.room, "lobby") &&
          mod.kind == H2C_ENTRY_CLEAR &&
          !strcmp(mod.line, "{\"type\":\"clear\",\"room\":\"lobby\"}"));
    r.args = "id=5";
    CHECK(h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) && mod.target == 5);
    r.args = NULL;
    r.path = "/msgs/a b";
    CHECK(!h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) &&
          v.deny == H2C_DENY_BAD_ROOM);
    r.path = "/elsewhere";
    CHECK(!h2c_policy_delete(&c, &r, 1, NULL, p, &mod, &v) &&
          v.deny == H2C_DENY_NOT_FOUND);
    /* a cross-site DELETE: the Origin rule of POST */
    APR_ARRAY_PUSH(origins, const char *) = "https://chat.example";
    c.origins = origins;
    r.path = "/msgs/lobby";
    r.origin = "https://evil.example";
    CHECK(!h2c_policy_delete(&c, &r, 1, "boss", p, &mod, &v) &&
          v.deny == H2C_DENY_ORIGIN);
    /* the store's answers */
    mod.room = "lobby";
    mod.kind = H2C_ENTRY_DELETE;
    mod.target = 9;
    h2c_policy_moderate_refusal(&v, &mod, APR_NOTFOUND, p);
    CHECK(v.deny == H2C_DENY_NO_ENTRY && h2c_policy_info(v.deny)->status == 404 &&
          strstr(v.message, "no message 9 in room lobby"));
    mod.kind = H2C_ENTRY_CLEAR;
    h2c_policy_moderate_refusal(&v, &mod, APR_NOTFOUND, p);
    CHECK(v.deny == H2C_DENY_NO_ENTRY && !strcmp(v.message, "no room lobby"));
    h2c_policy_moderate_refusal(&v, &mod, APR_ENOMEM, p);
    CHECK(v.deny == H2C_DENY_MEMORY);
    /* the route */
    {
        int head;

        CHECK(h2c_policy_route("DELETE", &head, &v) == H2C_ROUTE_DELETE);
    }
}

/* H2ChatPresence members: who a subscriber is. */
static void test_member(apr_pool_t *p) {
    h2c_policy_conf_t c = conf_of(NULL);
    h2c_request_t r;
    h2c_verdict_t v;
    const char *who = "x";

    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.args = "user=ann";
    CHECK(h2c_policy_member(&c, &r, NULL, p, &who, &v) && who == NULL); /* not members */
    c.presence = H2C_PRESENCE_MEMBERS;
    CHECK(h2c_policy_member(&c, &r, NULL, p, &who, &v) && !strcmp(who, "ann"));
    /* the authenticated user wins; a bad one is just not listed */
    CHECK(h2c_policy_member(&c, &r, "alice", p, &who, &v) && !strcmp(who, "alice"));
    CHECK(h2c_policy_member(&c, &r, "al\nice", p, &who, &v) && who == NULL);
    r.args = "room=a&user=J%C3%BCrgen+K";
    CHECK(h2c_policy_member(&c, &r, NULL, p, &who, &v) &&
          !strcmp(who, "J\xc3\xbcrgen K"));
    r.args = "since=3";
    CHECK(h2c_policy_member(&c, &r, NULL, p, &who, &v) && who == NULL); /* a watcher */
    r.args = "user=";
    CHECK(!h2c_policy_member(&c, &r, NULL, p, &who, &v) && v.deny == H2C_DENY_BAD_USER &&
          h2c_policy_info(v.deny)->status == 400 &&
          !strcmp(h2c_policy_info(v.deny)->tag, H2C_TAG_BAD_USER));
    r.args = "user=a%09b";
    CHECK(!h2c_policy_member(&c, &r, NULL, p, &who, &v));
    r.args = "user=%FF";
    CHECK(!h2c_policy_member(&c, &r, NULL, p, &who, &v));
    r.args = "user=a%2";
    CHECK(!h2c_policy_member(&c, &r, NULL, p, &who, &v)); /* badly escaped */
    r.args = apr_pstrcat(p, "user=", apr_psprintf(p, "%065d", 0), NULL);
    CHECK(!h2c_policy_member(&c, &r, NULL, p, &who, &v)); /* 65 characters */
    r.args = apr_pstrcat(p, "user=", apr_psprintf(p, "%064d", 0), NULL);
    CHECK(h2c_policy_member(&c, &r, NULL, p, &who, &v) && strlen(who) == 64);
}

static void test_refuse_and_not_found(apr_pool_t *p) {
    h2c_verdict_t v;

    h2c_policy_refuse(&v, H2C_DENY_CAP, NULL);
    CHECK(!strcmp(v.message, "too many subscribers, retry later") && v.retry_after == 5);
    h2c_policy_refuse(&v, H2C_DENY_PUBLISH, "custom");
    CHECK(!strcmp(v.message, "custom") && v.retry_after == 5);
    h2c_policy_not_found(&v, "/msgs", p);
    CHECK(v.deny == H2C_DENY_NOT_FOUND && h2c_policy_info(v.deny)->status == 404);
    CHECK(
        !strcmp(v.message, "not found: this listener (H2ChatDirect) serves only /msgs"));
}

/* A held stream takes its places in the counts: the server-wide cap
 * first, then its address's; a refusal counts nothing; release gives back
 * what was taken, once. */
static void test_hold(apr_pool_t *p) {
    apr_size_t size = h2c_seg_size(2, 4, 16);
    void *mem = apr_pcalloc(p, size);
    h2c_seg_t seg;
    h2c_hold_limits_t lim = {4, 2};
    h2c_hold_t a1, a2, a3, b1, b2, c1;
    h2c_verdict_t v;
    uint32_t slot, ba = h2c_seg_addr_bucket("10.0.0.1");

    h2c_seg_init(&seg, mem, size, 2, 4, 16, 0);
    CHECK(h2c_seg_child_claim(&seg, (uint32_t)getpid(), &slot) == APR_SUCCESS);
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a1, &v) && v.deny == 0);
    CHECK(a1.seg == &seg && a1.bucket == (int32_t)ba);
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a2, &v));
    /* the address's third: refused, nothing counted */
    CHECK(!h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a3, &v));
    CHECK(v.deny == H2C_DENY_ADDRESS && v.retry_after == 5 && a3.seg == NULL);
    CHECK(!strcmp(v.message, "too many subscribers from this address, retry later"));
    CHECK(h2c_seg_sub_total(&seg) == 2 && h2c_seg_addr_total(&seg, ba) == 2);
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.2", &b1, &v));
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.2", &b2, &v));
    /* the server is full: the cap's answer, whatever the address */
    CHECK(!h2c_policy_hold(&seg, slot, &lim, "10.0.0.3", &c1, &v) &&
          v.deny == H2C_DENY_CAP);
    CHECK(!h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a3, &v) &&
          v.deny == H2C_DENY_CAP);
    CHECK(h2c_seg_sub_total(&seg) == 4);
    /* one of 10.0.0.2 leaves: room on the server, not for 10.0.0.1 */
    h2c_policy_release(&b2);
    h2c_policy_release(&b2); /* a second release gives nothing back */
    CHECK(h2c_seg_sub_total(&seg) == 3);
    CHECK(!h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a3, &v) &&
          v.deny == H2C_DENY_ADDRESS);
    CHECK(h2c_seg_sub_total(&seg) == 3); /* the cap's count was given back */
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.3", &c1, &v));
    h2c_policy_release(&a1);
    CHECK(h2c_seg_addr_total(&seg, ba) == 1);
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a1, &v));
    CHECK(h2c_seg_addr_total(&seg, ba) == 2 && h2c_seg_sub_total(&seg) == 4);
    h2c_policy_release(&c1), h2c_policy_release(&a1);
    h2c_policy_release(&a2), h2c_policy_release(&b1);
    CHECK(h2c_seg_sub_total(&seg) == 0 && h2c_seg_addr_total(&seg, ba) == 0);
    /* off: only the cap counts; nothing per address */
    lim.max_per_address = 0;
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a1, &v));
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a2, &v));
    CHECK(h2c_policy_hold(&seg, slot, &lim, "10.0.0.1", &a3, &v));
    CHECK(a1.bucket == -1 && h2c_seg_addr_total(&seg, ba) == 0);
    h2c_policy_release(&a1), h2c_policy_release(&a2), h2c_policy_release(&a3);
    CHECK(h2c_seg_sub_total(&seg) == 0);
    /* a stream counted while off leaves nothing behind when it is on again
     * (a graceful restart that turns it on keeps the segment) */
    CHECK(h2c_seg_addr_total(&seg, ba) == 0);
}

/* Pure units log through one callback, after a level check: a line below
 * the level is never formatted. */
static int lines;
static char last[128];

static int only_info(void *ctx, h2c_log_level_t level) {
    (void)ctx;
    return level <= H2C_LOG_INFO;
}

static void keep(void *ctx, h2c_log_level_t level, const char *line) {
    (void)ctx, (void)level;
    lines++;
    apr_cpystrn(last, line, sizeof(last));
}

static void test_log(apr_pool_t *p) {
    (void)p;
    h2c_log(H2C_LOG_ERR, H2C_TAG_CAP, "nobody listens %d", 1); /* none installed */
    h2c_log_set(keep, only_info, NULL);
    CHECK(h2c_log_enabled(H2C_LOG_INFO) && !h2c_log_enabled(H2C_LOG_DEBUG));
    h2c_log(H2C_LOG_DEBUG, H2C_TAG_SUB_START, "%s", "dropped");
    CHECK(lines == 0);
    h2c_log(H2C_LOG_WARN, H2C_TAG_CAP, "%d %s", 503, "full");
    CHECK(lines == 1 && !strcmp(last, "H2C0015: 503 full"));
    h2c_log_set(NULL, NULL, NULL);
    CHECK(!h2c_log_enabled(H2C_LOG_ERR));
}

/* httpd's limits on a header list: 431 past them, 414 for the path, a
 * reset when a list goes on far past them. */
static void test_header_limits(apr_pool_t *p) {
    h2c_header_limits_t lim = {5, 100, 50, 600};
    h2c_header_count_t cnt;
    h2c_verdict_t v;
    int i;

    (void)p;
    memset(&cnt, 0, sizeof(cnt));
    CHECK(h2c_policy_header(&lim, &cnt, 1, 5, 5) ==
          H2C_HEADER_KEEP); /* pseudo: not a field */
    for (i = 0; i < 5; i++) {
        CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 10) == H2C_HEADER_KEEP);
    }
    CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 10) == H2C_HEADER_SKIP); /* 6 fields */
    CHECK(cnt.deny == H2C_DENY_HEADERS);
    h2c_policy_header_refusal(&cnt, &v);
    CHECK(h2c_policy_info(v.deny)->status == 431 && v.message != NULL);
    for (i = 0; i < H2C_POLICY_HEADER_GRACE; i++) {
        CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 10) == H2C_HEADER_SKIP);
    }
    CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 10) == H2C_HEADER_RESET);
    memset(&cnt, 0, sizeof(cnt)); /* "name: value" is 4 + 2 + 94 = 100: fine */
    CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 94) == H2C_HEADER_KEEP);
    CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 95) == H2C_HEADER_SKIP);
    CHECK(cnt.deny == H2C_DENY_HEADERS);
    memset(&cnt, 0, sizeof(cnt)); /* the path: LimitRequestLine only */
    CHECK(h2c_policy_header(&lim, &cnt, 1, 5, 50) == H2C_HEADER_KEEP);
    CHECK(h2c_policy_header(&lim, &cnt, 1, 5, 51) == H2C_HEADER_SKIP);
    CHECK(cnt.deny == H2C_DENY_URI_TOO_LONG && h2c_policy_info(cnt.deny)->status == 414);
    memset(&cnt, 0, sizeof(cnt));
    for (i = 0; i < 5; i++) { /* 5 × (4 + 80 + 32) = 580 */
        CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 80) == H2C_HEADER_KEEP);
    }
    lim.max_fields = 10;
    CHECK(h2c_policy_header(&lim, &cnt, 0, 4, 80) == H2C_HEADER_SKIP); /* the list size */
    CHECK(cnt.deny == H2C_DENY_HEADERS);
    memset(&cnt, 0, sizeof(cnt));
    CHECK(h2c_policy_header(&lim, &cnt, 0, 4, (apr_size_t)1 << 40) == H2C_HEADER_SKIP);
    CHECK(cnt.bytes == 601); /* saturates */
}

static void test_target(apr_pool_t *p) {
    static const struct {
        const char *in, *path, *args;
        int status; /* 0: fine */
    } cases[] = {
        {"/msgs", "/msgs", NULL, 0},
        {"/msgs?since=3", "/msgs", "since=3", 0},
        {"/ms%67s", "/msgs", NULL, 0},
        {"/MS%67s", "/MSgs", NULL, 0},
        {"//msgs", "/msgs", NULL, 0},
        {"/a/../msgs", "/msgs", NULL, 0},
        {"/./msgs/.", "/msgs/", NULL, 0},
        {"/../../msgs", "/msgs", NULL, 0},
        {"/msgs/..", "/", NULL, 0},
        {"/msgs?a=%zz", "/msgs", "a=%zz", 0}, /* the query is not decoded */
        {"/ms%2Fgs", NULL, NULL, 404},
        {"/ms%00gs", NULL, NULL, 404},
        {"/ms%zzgs", NULL, NULL, 400},
        {"/msgs%", NULL, NULL, 400},
        {"/msgs%4", NULL, NULL, 400},
        {"msgs", NULL, NULL, 400},
        {"*", NULL, NULL, 400},
        {NULL, NULL, NULL, 400},
    };
    unsigned i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = NULL;
        const char *args = NULL;
        h2c_verdict_t v;
        int ok = h2c_policy_target(cases[i].in, p, &path, &args, &v);

        if (cases[i].status) {
            CHECK(!ok && h2c_policy_info(v.deny)->status == cases[i].status && v.message);
        } else {
            CHECK(ok && !strcmp(path, cases[i].path));
            CHECK(cases[i].args ? args && !strcmp(args, cases[i].args) : args == NULL);
        }
    }
    CHECK(h2c_policy_scheme_ok("http") && h2c_policy_scheme_ok("HTTPS"));
    CHECK(!h2c_policy_scheme_ok("ftp") && !h2c_policy_scheme_ok(NULL));
}

int main(void) {
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    RUN(test_table, p);
    RUN(test_route, p);
    RUN(test_negotiation, p);
    RUN(test_subscribe, p);
    RUN(test_publish_head, p);
    RUN(test_rate, p);
    RUN(test_publish_body, p);
    RUN(test_rooms, p);
    RUN(test_delete, p);
    RUN(test_member, p);
    RUN(test_refuse_and_not_found, p);
    RUN(test_hold, p);
    RUN(test_log, p);
    RUN(test_header_limits, p);
    RUN(test_target, p);
    apr_pool_destroy(p);
    apr_terminate();
    return unit_finish("test_policy");
}
