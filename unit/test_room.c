/* Unit tests of h2c_room: room names, where a path points under the
 * location, the rooms of a query and its other parameters. */
#include <string.h>

#include <apr_strings.h>

#include "h2c_room.h"
#include "unit.h"

static int name_ok(const char *s) {
    return h2c_room_name_ok(s, strlen(s));
}

static void test_name(apr_pool_t *p) {
    const char *punct = "_.:@-";
    char buf[H2C_ROOM_NAME_MAX + 2];
    int c, i;

    (void)p;
    CHECK(name_ok("a") && name_ok("Z") && name_ok("0") && name_ok("lobby"));
    CHECK(name_ok("AZaz09_.:@-") && name_ok("user@example.org") && name_ok("a..b"));
    CHECK(name_ok("...")); /* only "." and ".." are path tricks */
    for (i = 0; punct[i]; i++) {
        char one[4] = {'a', punct[i], 'b', '\0'};

        CHECK(name_ok(one));
        CHECK(h2c_room_name_ok(punct + i, 1) == (punct[i] != '.'));
    }
    /* every other byte is refused, alone and inside a name */
    for (c = 1; c < 256; c++) {
        char one[4] = {'a', (char)c, 'b', '\0'};
        int want = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9') || (c && strchr(punct, c));

        CHECK(name_ok(one) == want);
    }
    CHECK(!h2c_room_name_ok("a\0b", 3));
    CHECK(!name_ok("caf\xc3\xa9") && !name_ok("\x80") && !name_ok("a\xff"));
    CHECK(!name_ok("a b") && !name_ok("a/b") && !name_ok("a+b") && !name_ok("a%20"));
    /* length 1 .. 64 */
    CHECK(!name_ok("") && !h2c_room_name_ok(NULL, 0) && !h2c_room_name_ok("a", 0));
    memset(buf, 'x', sizeof(buf));
    CHECK(h2c_room_name_ok(buf, H2C_ROOM_NAME_MAX));
    CHECK(!h2c_room_name_ok(buf, H2C_ROOM_NAME_MAX + 1));
    buf[H2C_ROOM_NAME_MAX] = '\0';
    CHECK(name_ok(buf));
    /* "." and ".." never reach us from httpd, but are refused alone */
    CHECK(!name_ok(".") && !name_ok(".."));
    CHECK(name_ok(".a") && name_ok("a.") && name_ok(".x."));
}

/* at, and the room as a NUL-terminated copy ("" when none) */
static h2c_room_at_t route(apr_pool_t *p, const char *loc, const char *path,
                           const char **room, uint64_t *id) {
    h2c_room_target_t t;
    h2c_room_at_t at;

    memset(&t, 0xA5, sizeof(t)); /* every field must be written */
    at = h2c_room_target(loc, path, &t);
    CHECK(at == t.at);
    CHECK((t.room != NULL) == (at == H2C_ROOM_AT_ROOM || at == H2C_ROOM_AT_MESSAGE));
    CHECK((t.id != 0) == (at == H2C_ROOM_AT_MESSAGE));
    if (t.room) {
        CHECK(t.room > path && t.room + t.room_len <= path + strlen(path));
    } else {
        CHECK(t.room_len == 0);
    }
    *room = t.room ? apr_pstrmemdup(p, t.room, t.room_len) : "";
    *id = t.id;
    return at;
}

static int is(apr_pool_t *p, const char *loc, const char *path, h2c_room_at_t want,
              const char *want_room, uint64_t want_id) {
    const char *room;
    uint64_t id;

    return route(p, loc, path, &room, &id) == want && !strcmp(room, want_room) &&
           id == want_id;
}

#define DEFAULT H2C_ROOM_AT_DEFAULT
#define ROOM H2C_ROOM_AT_ROOM
#define MESSAGE H2C_ROOM_AT_MESSAGE
#define BAD H2C_ROOM_AT_BAD
#define OUTSIDE H2C_ROOM_AT_OUTSIDE

static void test_target(apr_pool_t *p) {
    static const char *locs[] = {"/msgs", "/msgs/"};
    char path[128];
    int i;

    for (i = 0; i < 2; i++) {
        const char *L = locs[i];

        CHECK(is(p, L, "/msgs", DEFAULT, "", 0));
        CHECK(is(p, L, "/msgs/", DEFAULT, "", 0));
        CHECK(is(p, L, "/msgs/lobby", ROOM, "lobby", 0));
        CHECK(is(p, L, "/msgs/lobby/", ROOM, "lobby", 0)); /* people add it */
        CHECK(is(p, L, "/msgs/a_b.c:d@e-f", ROOM, "a_b.c:d@e-f", 0));
        CHECK(is(p, L, "/msgs/42", ROOM, "42", 0)); /* digits are a name here */
        CHECK(is(p, L, "/msgs/lobby/1", MESSAGE, "lobby", 1));
        CHECK(is(p, L, "/msgs/lobby/1234567890", MESSAGE, "lobby", 1234567890));
        CHECK(
            is(p, L, "/msgs/lobby/9007199254740991", MESSAGE, "lobby", H2C_ROOM_ID_MAX));
        CHECK(is(p, L, "/msgs/lobby/9007199254740992", BAD, "", 0)); /* 2^53 */
        /* ids: no zero, leading zero, sign, overflow or trailing slash */
        CHECK(is(p, L, "/msgs/lobby/0", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/007", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/+7", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/-7", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/7x", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/ 7", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/7/", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/9223372036854775808", BAD, "", 0));  /* 2^63 */
        CHECK(is(p, L, "/msgs/lobby/18446744073709551615", BAD, "", 0)); /* 2^64-1 */
        CHECK(is(p, L, "/msgs/lobby/18446744073709551616", BAD, "", 0)); /* 2^64 */
        CHECK(is(p, L, "/msgs/lobby/99999999999999999999", BAD, "", 0));
        CHECK(is(p, L, "/msgs/lobby/00000000000000000001", BAD, "", 0));
        /* empty segments, bad names, more segments */
        CHECK(is(p, L, "/msgs//", BAD, "", 0));
        CHECK(is(p, L, "/msgs//a", BAD, "", 0));
        CHECK(is(p, L, "/msgs/a//", BAD, "", 0));
        CHECK(is(p, L, "/msgs/a//1", BAD, "", 0));
        CHECK(is(p, L, "/msgs/a/1/2", BAD, "", 0));
        CHECK(is(p, L, "/msgs/a/b", BAD, "", 0));
        CHECK(is(p, L, "/msgs/a/b/", BAD, "", 0));
        CHECK(is(p, L, "/msgs/a b", BAD, "", 0));
        CHECK(is(p, L, "/msgs/caf\xc3\xa9", BAD, "", 0));
        CHECK(is(p, L, "/msgs/.", BAD, "", 0));
        CHECK(is(p, L, "/msgs/..", BAD, "", 0));
        CHECK(is(p, L, "/msgs/../1", BAD, "", 0));
        CHECK(is(p, L, "/msgs/.a", ROOM, ".a", 0));
        /* not under the location */
        CHECK(is(p, L, "/msgsx", OUTSIDE, "", 0));
        CHECK(is(p, L, "/msgsx/a", OUTSIDE, "", 0));
        CHECK(is(p, L, "/msg", OUTSIDE, "", 0));
        CHECK(is(p, L, "/other", OUTSIDE, "", 0));
        CHECK(is(p, L, "/", OUTSIDE, "", 0));
        CHECK(is(p, L, "", OUTSIDE, "", 0));
        CHECK(is(p, L, "/MSGS", OUTSIDE, "", 0));
        CHECK(is(p, L, "/x/msgs", OUTSIDE, "", 0));
    }
    /* 64 and 65 bytes of name */
    memset(path, 0, sizeof(path));
    memcpy(path, "/msgs/", 6);
    memset(path + 6, 'n', H2C_ROOM_NAME_MAX);
    CHECK(is(p, "/msgs", path, ROOM, path + 6, 0));
    path[6 + H2C_ROOM_NAME_MAX] = '/';
    CHECK(is(p, "/msgs", path, ROOM, apr_pstrmemdup(p, path + 6, H2C_ROOM_NAME_MAX), 0));
    path[6 + H2C_ROOM_NAME_MAX] = 'n';
    CHECK(is(p, "/msgs", path, BAD, "", 0));
    /* a location at the root, a deeper one, none */
    CHECK(is(p, "/", "/", DEFAULT, "", 0));
    CHECK(is(p, "", "/", DEFAULT, "", 0));
    CHECK(is(p, "/", "/lobby", ROOM, "lobby", 0));
    CHECK(is(p, "/", "/lobby/5", MESSAGE, "lobby", 5));
    CHECK(is(p, "/", "//", BAD, "", 0));
    CHECK(is(p, "/a/b", "/a/b/c/9", MESSAGE, "c", 9));
    CHECK(is(p, "/a/b", "/a/bc", OUTSIDE, "", 0));
    CHECK(is(p, "/a/b", "/a", OUTSIDE, "", 0));
    CHECK(is(p, NULL, "/r", ROOM, "r", 0));
    CHECK(is(p, "/msgs", NULL, OUTSIDE, "", 0));
}

/* h2c_room_list: APR_SUCCESS and the rooms joined by ',', or APR_EINVAL
 * and the error */
static const char *list(apr_pool_t *p, const char *args, uint32_t max, apr_status_t *rv) {
    apr_array_header_t *rooms = NULL;
    const char *err = "unset";
    int i;

    *rv = h2c_room_list(args, max, p, &rooms, &err);
    CHECK(rooms != NULL);
    if (*rv != APR_SUCCESS) {
        CHECK(err != NULL && *err);
        return err;
    }
    CHECK(err == NULL);
    {
        const char *out = "";

        for (i = 0; i < rooms->nelts; i++) {
            const char *r = APR_ARRAY_IDX(rooms, i, const char *);

            CHECK(h2c_room_name_ok(r, strlen(r)));
            out = apr_pstrcat(p, out, i ? "," : "", r, NULL);
        }
        return out;
    }
}

static int ok(apr_pool_t *p, const char *args, uint32_t max, const char *want) {
    apr_status_t rv;
    const char *got = list(p, args, max, &rv);

    if (rv != APR_SUCCESS || strcmp(got, want)) {
        fprintf(stderr, "list(%.80s): %s\n", args ? args : "(null)", got);
    }
    return rv == APR_SUCCESS && !strcmp(got, want);
}

/* refused, with an error that contains `part` */
static int refused(apr_pool_t *p, const char *args, uint32_t max, const char *part) {
    apr_status_t rv;
    const char *got = list(p, args, max, &rv);

    if (rv != APR_EINVAL || !strstr(got, part)) {
        fprintf(stderr, "list(%.80s): %d %s\n", args, rv, got);
    }
    return rv == APR_EINVAL && strstr(got, part) != NULL;
}

static void test_list(apr_pool_t *p) {
    char *args, *err;
    int i;

    /* none: the path's room counts */
    CHECK(ok(p, NULL, 8, "") && ok(p, "", 8, "") && ok(p, "&&", 8, ""));
    CHECK(ok(p, "since=5&user=bob&presence", 8, ""));
    CHECK(ok(p, "room=a", 8, "a"));
    CHECK(ok(p, "room=a&room=b&room=c", 8, "a,b,c")); /* in order */
    CHECK(ok(p, "room=c&since=3&room=a&&presence&room=b&", 8, "c,a,b"));
    CHECK(ok(p, "room=%61%2D%3a%40z", 8, "a-:@z"));        /* decoded, either case */
    CHECK(ok(p, "room=A&room=a", 8, "A,a"));               /* case matters */
    CHECK(ok(p, "rooms=a&ROOM=b&xroom=c&room_=d", 8, "")); /* name exactly */
    CHECK(ok(p, "r%6Fom=a", 8, ""));                       /* names are not decoded */
    CHECK(ok(p, "other=room%3Dx", 8, ""));
    /* max_rooms exactly, and one over */
    CHECK(ok(p, "room=a&room=b&room=c", 3, "a,b,c"));
    CHECK(refused(p, "room=a&room=b&room=c", 2, "more than 2 rooms: \"c\""));
    CHECK(refused(p, "room=a", 0, "more than 0 rooms"));
    CHECK(ok(p, "since=1", 0, ""));
    /* empty, bad names, '+' is no space here */
    CHECK(refused(p, "room", 8, "bad room name: \"\""));
    CHECK(refused(p, "room=", 8, "bad room name: \"\""));
    CHECK(refused(p, "room=a&room=", 8, "bad room name"));
    CHECK(refused(p, "room=a+b", 8, "bad room name: \"a+b\""));
    CHECK(refused(p, "room=a%20b", 8, "bad room name: \"a b\""));
    CHECK(refused(p, "room=a%2Fb", 8, "bad room name: \"a/b\""));
    CHECK(refused(p, "room=.", 8, "bad room name") && refused(p, "room=..", 8, "bad"));
    CHECK(refused(p, "room=%2e%2E", 8, "bad room name: \"..\""));
    /* NUL and bytes >= 0x80: refused, quoted as '?' */
    CHECK(refused(p, "room=a%00b", 8, "bad room name: \"a?b\""));
    CHECK(refused(p, "room=caf%C3%A9", 8, "bad room name: \"caf??\""));
    CHECK(refused(p, "room=caf\xc3\xa9", 8, "bad room name: \"caf??\""));
    CHECK(refused(p, "room=%0d%0a", 8, "bad room name: \"??\""));
    /* bad escapes, quoted raw */
    CHECK(refused(p, "room=a%", 8, "bad %-escape in room: \"a%\""));
    CHECK(refused(p, "room=a%4", 8, "bad %-escape in room: \"a%4\""));
    CHECK(refused(p, "room=%zz", 8, "bad %-escape in room: \"%zz\""));
    CHECK(refused(p, "room=%4g&room=b", 8, "bad %-escape"));
    CHECK(ok(p, "user=%zz&room=a", 8, "a")); /* not ours to judge */
    /* duplicates, also spelled differently */
    CHECK(refused(p, "room=a&room=b&room=a", 8, "room given twice: \"a\""));
    CHECK(refused(p, "room=a&room=%61", 8, "room given twice: \"a\""));
    CHECK(refused(p, "room=a&room=a", 1, "given twice")); /* the more exact reason */
    /* the quote stops at 64 bytes */
    args = "room=";
    for (i = 0; i < 100; i++) {
        args = apr_pstrcat(p, args, "x", NULL);
    }
    args = apr_pstrcat(p, args, "!", NULL);
    {
        apr_array_header_t *rooms;
        const char *e;

        CHECK(h2c_room_list(args, 8, p, &rooms, &e) == APR_EINVAL);
        err = apr_pstrcat(p, "bad room name: \"", apr_pstrndup(p, args + 5, 64), "...\"",
                          NULL);
        CHECK(!strcmp(e, err));
    }
    /* 64 bytes is a name, 65 is not */
    args = apr_pstrcat(p, "room=", apr_pstrndup(p, args + 5, 64), NULL);
    CHECK(ok(p, args, 8, args + 5));
    CHECK(refused(p, apr_pstrcat(p, args, "x", NULL), 8, "bad room name"));
    /* many rooms: the hash keeps it linear, the limit still holds */
    args = "";
    for (i = 0; i < 2000; i++) {
        args = apr_psprintf(p, "%sroom=r%d&", args, i);
    }
    CHECK(refused(p, args, 1000, "more than 1000 rooms: \"r1000\""));
    CHECK(ok(p, "room=r0&room=r1999&room=r1", 2000, "r0,r1999,r1"));
    {
        apr_status_t rv;

        list(p, args, 2000, &rv);
        CHECK(rv == APR_SUCCESS);
    }
}

static void test_args(apr_pool_t *p) {
    const char *v;

    CHECK(h2c_room_arg_flag("presence", "presence"));
    CHECK(h2c_room_arg_flag("presence=1", "presence"));
    CHECK(h2c_room_arg_flag("presence=", "presence"));
    CHECK(h2c_room_arg_flag("since=3&presence&room=a", "presence"));
    CHECK(h2c_room_arg_flag("room=a&&presence=yes", "presence"));
    CHECK(!h2c_room_arg_flag(NULL, "presence") && !h2c_room_arg_flag("", "presence"));
    CHECK(!h2c_room_arg_flag("presences", "presence"));
    CHECK(!h2c_room_arg_flag("xpresence=1", "presence"));
    CHECK(!h2c_room_arg_flag("PRESENCE", "presence"));
    CHECK(!h2c_room_arg_flag("room=presence", "presence"));
    CHECK(!h2c_room_arg_flag("pres", "presence"));

    CHECK((v = h2c_room_arg_value("user=bob", "user", p)) && !strcmp(v, "bob"));
    CHECK((v = h2c_room_arg_value("a=1&user=bob&user=eve", "user", p)) &&
          !strcmp(v, "bob")); /* the first */
    CHECK((v = h2c_room_arg_value("user=J%C3%BCrgen+M%2B", "user", p)) &&
          !strcmp(v, "J\xc3\xbcrgen M+")); /* '+' is a space here */
    CHECK((v = h2c_room_arg_value("user=a%3db%26c", "user", p)) && !strcmp(v, "a=b&c"));
    CHECK((v = h2c_room_arg_value("user=", "user", p)) && !strcmp(v, ""));
    CHECK((v = h2c_room_arg_value("user", "user", p)) && !strcmp(v, ""));
    CHECK((v = h2c_room_arg_value("user=a=b", "user", p)) && !strcmp(v, "a=b"));
    CHECK(!h2c_room_arg_value(NULL, "user", p) && !h2c_room_arg_value("", "user", p));
    CHECK(!h2c_room_arg_value("users=bob&USER=x&xuser=y", "user", p));
    CHECK(!h2c_room_arg_value("user=b%zz", "user", p));
    CHECK(!h2c_room_arg_value("user=b%4", "user", p));
    CHECK(!h2c_room_arg_value("user=b%", "user", p));
    CHECK(!h2c_room_arg_value("user=bob%00admin", "user", p)); /* no silent cut */
    /* a bad first one is not skipped for a later good one */
    CHECK(!h2c_room_arg_value("user=%zz&user=bob", "user", p));
}

int main(void) {
    apr_pool_t *pool;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    RUN(test_name, pool);
    RUN(test_target, pool);
    RUN(test_list, pool);
    RUN(test_args, pool);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_finish("test_room");
}
