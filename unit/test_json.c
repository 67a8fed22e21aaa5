/* Unit tests of h2c_json and h2c_text: validation, encoding, id parsing. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "h2c_json.h"
#include "h2c_text.h"
#include "unit.h"

static apr_status_t parse(apr_pool_t *p, const char *body, const char *auth,
                          char **fields, const char **why) {
    apr_size_t flen;

    *why = NULL;
    return h2c_json_parse_post(body, strlen(body), auth, NULL, p, fields, &flen, why);
}

/* Encodes a message line and decodes it again with jansson. */
static json_t *roundtrip(apr_pool_t *p, const char *body, const char *auth) {
    char *fields, line[4096];
    const char *why;
    apr_size_t flen, n;

    if (h2c_json_parse_post(body, strlen(body), auth, NULL, p, &fields, &flen, &why)) {
        return NULL;
    }
    n = h2c_json_format_message(line, sizeof(line), 17, 1764061200123LL, fields, flen);
    return n ? json_loadb(line, n, 0, NULL) : NULL;
}

static void test_valid(apr_pool_t *p) {
    const char *text = "hi <b>\"&amp;\"</b> \\ / é 日本 😀\nline\ttab";
    json_t *in = json_pack("{s:s,s:s}", "user", "ann", "text", text);
    char *body = json_dumps(in, 0);
    json_t *m = roundtrip(p, body, NULL);

    CHECK(m != NULL);
    CHECK(!strcmp(json_string_value(json_object_get(m, "type")), "message"));
    CHECK(json_integer_value(json_object_get(m, "id")) == 17);
    CHECK(json_integer_value(json_object_get(m, "time")) == 1764061200123LL);
    CHECK(!strcmp(json_string_value(json_object_get(m, "user")), "ann"));
    CHECK(!strcmp(json_string_value(json_object_get(m, "text")), text));
    json_decref(m);
    free(body);
    json_decref(in);
}

static void test_exact_format(apr_pool_t *p) {
    char *fields, line[256];
    const char *why;
    apr_size_t flen, n;

    const char *body = "{\"text\":\"hi\",\"user\":\"ann\",\"x\":1}";

    CHECK(h2c_json_parse_post(body, strlen(body), NULL, NULL, p, &fields, &flen, &why) ==
          APR_SUCCESS);
    n = h2c_json_format_message(line, sizeof(line), 17, 1764061200123LL, fields, flen);
    CHECK(n == strlen("{\"type\":\"message\",\"id\":17,\"user\":\"ann\",\"text\":\"hi\","
                      "\"time\":1764061200123}"));
    CHECK(!memcmp(line,
                  "{\"type\":\"message\",\"id\":17,\"user\":\"ann\",\"text\":\"hi\","
                  "\"time\":1764061200123}",
                  n));
    CHECK(h2c_json_format_message(line, 10, 17, 1, fields, flen) == 0);
}

static void test_auth_user(apr_pool_t *p) {
    json_t *m = roundtrip(p, "{\"user\":\"mallory\",\"text\":\"x\"}", "alice");

    CHECK(m && !strcmp(json_string_value(json_object_get(m, "user")), "alice"));
    json_decref(m);
    m = roundtrip(p, "{\"text\":\"no user in body\"}", "alice");
    CHECK(m && !strcmp(json_string_value(json_object_get(m, "user")), "alice"));
    json_decref(m);
}

static void test_invalid(apr_pool_t *p) {
    static const char *const bad[] = {
        "",
        "nope",
        "{\"user\":\"a\",\"text\":\"b\"",
        "[1,2]",
        "\"str\"",
        "{}",
        "{\"user\":\"a\"}",
        "{\"text\":\"b\"}",
        "{\"user\":1,\"text\":\"b\"}",
        "{\"user\":\"a\",\"text\":null}",
        "{\"user\":\"\",\"text\":\"b\"}",
        "{\"user\":\"a\",\"text\":\"\"}",
        "{\"user\":\"a\",\"text\":\"bell\\u0007\"}",
        "{\"user\":\"a\",\"text\":\"nul\\u0000\"}",
        "{\"user\":\"a\",\"text\":\"c1\\u0085\"}",
        "{\"user\":\"a\",\"text\":\"del\\u007f\"}",
        "{\"user\":\"a\",\"text\":\"cr\\r\"}",
        "{\"user\":\"a\\nb\",\"text\":\"x\"}",
        "{\"user\":\"a\",\"text\":\"raw\x01\"}",
        "{\"user\":\"a\",\"text\":\"bad \xff utf8\"}",
        "{\"user\":\"a\",\"text\":\"overlong \xc0\xaf\"}",
        "{\"user\":\"a\",\"text\":\"surrogate \xed\xa0\x80\"}",
        "{\"user\":\"a\",\"text\":\"lone \\ud800\"}",
        NULL};
    char *fields;
    const char *why;
    int i;

    for (i = 0; bad[i]; i++) {
        apr_status_t rv = parse(p, bad[i], NULL, &fields, &why);

        CHECK(rv == APR_EINVAL);
        CHECK(why != NULL && *why != '\0');
        if (rv != APR_EINVAL) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        }
    }
}

static void test_user_length(apr_pool_t *p) {
    char body[1024], name[512];
    char *fields;
    const char *why;
    int i;

    /* 64 three-byte characters pass, 65 do not: characters, not bytes */
    name[0] = '\0';
    for (i = 0; i < 64; i++) {
        strcat(name, "日");
    }
    snprintf(body, sizeof(body), "{\"user\":\"%s\",\"text\":\"x\"}", name);
    CHECK(parse(p, body, NULL, &fields, &why) == APR_SUCCESS);
    strcat(name, "日");
    snprintf(body, sizeof(body), "{\"user\":\"%s\",\"text\":\"x\"}", name);
    CHECK(parse(p, body, NULL, &fields, &why) == APR_EINVAL);
    CHECK(why && strstr(why, "64"));
}

static void test_utf8(apr_pool_t *p) {
    (void)p;
    CHECK(h2c_text_check_utf8("plain", 5) == APR_SUCCESS);
    CHECK(h2c_text_check_utf8("\xf0\x9f\x98\x80", 4) == APR_SUCCESS); /* 😀 */
    CHECK(h2c_text_check_utf8("\xf4\x8f\xbf\xbf", 4) == APR_SUCCESS); /* U+10FFFF */
    CHECK(h2c_text_check_utf8("\xf4\x90\x80\x80", 4) == APR_EINVAL);  /* > U+10FFFF */
    CHECK(h2c_text_check_utf8("\xe0\x80\xaf", 3) == APR_EINVAL);      /* overlong */
    CHECK(h2c_text_check_utf8("\xed\xbf\xbf", 3) == APR_EINVAL);      /* surrogate */
    CHECK(h2c_text_check_utf8("\xe6\x97", 2) == APR_EINVAL);          /* truncated */
    CHECK(h2c_text_check_utf8("\x80", 1) == APR_EINVAL);              /* stray cont. */
    CHECK(h2c_text_check_controls("a\tb\nc", 5) == APR_SUCCESS);
    CHECK(h2c_text_check_controls("a\rb", 3) == APR_EINVAL);
    CHECK(h2c_text_check_controls("\xc2\x85", 2) == APR_EINVAL);  /* U+0085 */
    CHECK(h2c_text_check_controls("\xc2\xa0", 2) == APR_SUCCESS); /* U+00A0 */
    CHECK(h2c_text_count_chars("a\xc3\xa9\xe6\x97\xa5", 6) == 3);
}

static void test_parse_id(apr_pool_t *p) {
    uint64_t id = 0;

    (void)p;
    CHECK(h2c_text_parse_id("0", &id) == APR_SUCCESS && id == 0);
    CHECK(h2c_text_parse_id("17", &id) == APR_SUCCESS && id == 17);
    CHECK(h2c_text_parse_id("9007199254740991", &id) == APR_SUCCESS);
    CHECK(h2c_text_parse_id("9007199254740992", &id) == APR_EINVAL);
    CHECK(h2c_text_parse_id("99999999999999999999999", &id) == APR_EINVAL);
    CHECK(h2c_text_parse_id("", &id) == APR_EINVAL);
    CHECK(h2c_text_parse_id("-1", &id) == APR_EINVAL);
    CHECK(h2c_text_parse_id("+1", &id) == APR_EINVAL);
    CHECK(h2c_text_parse_id(" 1", &id) == APR_EINVAL);
    CHECK(h2c_text_parse_id("1x", &id) == APR_EINVAL);
    CHECK(h2c_text_parse_id("0x10", &id) == APR_EINVAL);
}

static void test_parse_resume(apr_pool_t *p) {
    uint64_t id = 99;

    (void)p;
    CHECK(h2c_text_parse_resume(NULL, NULL, &id) == 0);
    CHECK(h2c_text_parse_resume("a=1&b=2", NULL, &id) == 0);
    CHECK(h2c_text_parse_resume("since=5", NULL, &id) == 1 && id == 5);
    CHECK(h2c_text_parse_resume("x=1&since=7&y", "3", &id) == 1 && id == 7);
    CHECK(h2c_text_parse_resume("since=1&since=8", NULL, &id) == 1 && id == 8);
    CHECK(h2c_text_parse_resume("nosince=4", "3", &id) == 1 && id == 3);
    CHECK(h2c_text_parse_resume(NULL, "12", &id) == 1 && id == 12);
    CHECK(h2c_text_parse_resume("since=", NULL, &id) == -1);
    CHECK(h2c_text_parse_resume("since=-1", NULL, &id) == -1);
    CHECK(h2c_text_parse_resume("since=1%32", NULL, &id) == -1);
    CHECK(h2c_text_parse_resume("since=123456789012345678901234", NULL, &id) == -1);
    CHECK(h2c_text_parse_resume(NULL, "abc", &id) == -1);
    CHECK(h2c_text_parse_resume("&&&", NULL, &id) == 0);
}

static void test_small_objects(apr_pool_t *p) {
    CHECK(!strcmp(h2c_json_error(p, "bad \"x\""), "{\"error\":\"bad \\\"x\\\"\"}"));
    CHECK(!strcmp(h2c_json_published(p, 17, 5), "{\"id\":17,\"time\":5}"));
    CHECK(!strcmp(h2c_json_presence(p, "a", 3, 1),
                  "{\"type\":\"presence\",\"room\":\"a\",\"count\":3}"));
    CHECK(!strcmp(h2c_json_presence(p, "", 0, 1), "{\"type\":\"presence\",\"count\":0}"));
    CHECK(!strcmp(h2c_json_presence(p, "", 2, 0), "{\"room\":\"\",\"count\":2}"));
    {
        const char *rooms[] = {"a", "b"};
        uint32_t counts[] = {1, 2};

        apr_array_header_t *who[2];

        CHECK(!strcmp(h2c_json_presence_list(p, rooms, counts, NULL, 1),
                      "{\"room\":\"a\",\"count\":1}"));
        CHECK(!strcmp(h2c_json_presence_list(p, rooms, counts, NULL, 2),
                      "[{\"room\":\"a\",\"count\":1},{\"room\":\"b\",\"count\":2}]"));
        /* H2ChatPresence members: who, too */
        who[0] = apr_array_make(p, 2, sizeof(const char *));
        who[1] = apr_array_make(p, 2, sizeof(const char *));
        APR_ARRAY_PUSH(who[0], const char *) = "ann";
        APR_ARRAY_PUSH(who[0], const char *) = "b\xc3\xb6"
                                               "b";
        CHECK(!strcmp(h2c_json_presence_list(p, rooms, counts, who, 2),
                      "[{\"room\":\"a\",\"count\":1,\"members\":[\"ann\",\"b\xc3\xb6"
                      "b\"]},"
                      "{\"room\":\"b\",\"count\":2,\"members\":[]}]"));
        CHECK(!strcmp(
            h2c_json_members(p, "a", who[0]),
            "{\"type\":\"members\",\"room\":\"a\",\"members\":[\"ann\",\"b\xc3\xb6"
            "b\"]}"));
        CHECK(!strcmp(h2c_json_members(p, "", who[1]),
                      "{\"type\":\"members\",\"members\":[]}"));
        CHECK(!strcmp(h2c_json_member(p, "a", 1, "ann", 3),
                      "{\"type\":\"join\",\"room\":\"a\",\"user\":\"ann\"}"));
        CHECK(!strcmp(h2c_json_member(p, NULL, 0, "ann", 3),
                      "{\"type\":\"leave\",\"user\":\"ann\"}"));
        CHECK(h2c_json_member(p, "a", 1, "\xff", 1) == NULL); /* no UTF-8 */
        APR_ARRAY_PUSH(who[1], const char *) = "\xc3";
        CHECK(h2c_json_members(p, "b", who[1]) == NULL);
    }
    CHECK(!strcmp(h2c_json_gap(p, NULL, 3, 4, 6),
                  "{\"type\":\"gap\",\"missed\":3,\"from\":4,\"to\":6}"));
    CHECK(!strcmp(h2c_json_gap(p, "", 3, 4, 6),
                  "{\"type\":\"gap\",\"missed\":3,\"from\":4,\"to\":6}"));
    CHECK(
        !strcmp(h2c_json_gap(p, "a:b", 3, 4, 6),
                "{\"type\":\"gap\",\"room\":\"a:b\",\"missed\":3,\"from\":4,\"to\":6}"));
    /* a message names its room after its type and id; replay reads it back */
    {
        char *fields, line[256], room[65];
        apr_size_t flen, n;
        const char *why;

        CHECK(h2c_json_parse_post("{\"user\":\"u\",\"text\":\"t\"}", 23, NULL, "lobby", p,
                                  &fields, &flen, &why) == APR_SUCCESS);
        CHECK(!strcmp(fields, "\"room\":\"lobby\",\"user\":\"u\",\"text\":\"t\""));
        n = h2c_json_format_message(line, sizeof(line), 7, 9, fields, flen);
        CHECK(!strncmp(line, "{\"type\":\"message\",\"id\":7,\"room\":\"lobby\",", 40));
        CHECK(h2c_json_line_room(line, n, room) == APR_SUCCESS && !strcmp(room, "lobby"));
        CHECK(h2c_json_parse_post("{\"user\":\"u\",\"text\":\"t\"}", 23, NULL, "", p,
                                  &fields, &flen, &why) == APR_SUCCESS);
        n = h2c_json_format_message(line, sizeof(line), 8, 9, fields, flen);
        CHECK(h2c_json_line_room(line, n, room) == APR_SUCCESS && room[0] == '\0');
        CHECK(h2c_json_line_room("{\"room\":\"a b\"}", 14, room) == APR_EINVAL);
        CHECK(h2c_json_line_room("{\"room\":7}", 10, room) == APR_EINVAL);
        CHECK(h2c_json_line_room("not json", 8, room) == APR_EINVAL);
    }
    CHECK(!strcmp(h2c_json_reset(p, 9), "{\"type\":\"reset\",\"last_id\":9}"));
    CHECK(!strcmp(h2c_json_heartbeat(p, 7), "{\"type\":\"heartbeat\",\"time\":7}"));
    CHECK(!strcmp(h2c_json_reconnect(p, 0), "{\"type\":\"reconnect\",\"retry\":0}"));
    CHECK(!strcmp(h2c_json_reconnect(p, 299999),
                  "{\"type\":\"reconnect\",\"retry\":299999}"));
}

int main(void) {
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    RUN(test_valid, p);
    RUN(test_exact_format, p);
    RUN(test_auth_user, p);
    RUN(test_invalid, p);
    RUN(test_user_length, p);
    RUN(test_utf8, p);
    RUN(test_parse_id, p);
    RUN(test_parse_resume, p);
    RUN(test_small_objects, p);
    apr_pool_destroy(p);
    apr_terminate();
    return unit_finish("test_json");
}
