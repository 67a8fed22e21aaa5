/* Every error-log tag mod_h2chat writes (glue and pure units), in one place. A tag is
 * stable: once released, its number keeps its meaning. */
#ifndef H2C_TAGS_H
#define H2C_TAGS_H

/* startup and processes */
#define H2C_TAG_SHM_CREATE "H2C0001"   /* shared segment could not be made */
#define H2C_TAG_MUTEX_CREATE "H2C0002" /* global mutex could not be made */
#define H2C_TAG_SHM_REUSED "H2C0003"   /* restart: history and ids go on */
#define H2C_TAG_SHM_RESHAPED "H2C0004" /* restart with new sizes: new segment */
#define H2C_TAG_CHILD_INIT "H2C0005"   /* child could not attach */
#define H2C_TAG_CHILD_TABLE "H2C0006"  /* no free child slot */
#define H2C_TAG_CONFIG "H2C0007"       /* configuration notice */

/* H2ChatJournal */
#define H2C_TAG_JOURNAL_TAIL "H2C0030"    /* truncated / corrupt tail dropped */
#define H2C_TAG_JOURNAL_REPLAY "H2C0031"  /* history replayed at startup */
#define H2C_TAG_JOURNAL_IO "H2C0032"      /* journal file could not be used */
#define H2C_TAG_JOURNAL_COMPACT "H2C0033" /* compaction done / failed */

/* H2ChatStore redis */
#define H2C_TAG_REDIS_LINK "H2C0040"   /* the reader's link went down / up */
#define H2C_TAG_REDIS_READER "H2C0041" /* this child became the reader */
#define H2C_TAG_REDIS_ERROR "H2C0042"  /* a Redis command failed */

/* requests */
#define H2C_TAG_BAD_MESSAGE "H2C0010" /* 400: invalid POST body */
#define H2C_TAG_TOO_LARGE "H2C0011"   /* 413 */
#define H2C_TAG_MEDIA_TYPE "H2C0012"  /* 415 */
#define H2C_TAG_METHOD "H2C0013"      /* 405 */
#define H2C_TAG_UNAVAILABLE "H2C0014" /* 503: store unusable */
#define H2C_TAG_CAP "H2C0015"         /* 503: subscriber cap */
#define H2C_TAG_BAD_RESUME "H2C0016"  /* 400: bad since / Last-Event-ID */
#define H2C_TAG_PUBLISH "H2C0017"     /* publish failed */
#define H2C_TAG_READ_BODY "H2C0018"   /* 400: body could not be read */
#define H2C_TAG_RATE "H2C0019"        /* 429: over H2ChatRateLimit */
#define H2C_TAG_ORIGIN "H2C0023"      /* 403: Origin not in H2ChatAllowOrigin */
#define H2C_TAG_ADDRESS "H2C0028"     /* 503: H2ChatMaxSubscribersPerAddress */

/* subscriber lifecycle (debug and trace) */
#define H2C_TAG_SUB_START "H2C0020"
#define H2C_TAG_SUB_END "H2C0021"
#define H2C_TAG_DELIVER "H2C0022"
#define H2C_TAG_STALLED "H2C0024" /* held stream dropped: client stopped reading */
#define H2C_TAG_SPREAD                                                                   \
    "H2C0029" /* child stopping: its streams end with a reconnect hint */

/* H2ChatDirect: the module's own HTTP/2 loop */
#define H2C_TAG_DIRECT_PATH "H2C0025" /* 404: not the direct listener's path */
#define H2C_TAG_DIRECT_CONN "H2C0026" /* a connection could not be taken over */
#define H2C_TAG_DIRECT_LOOP "H2C0027" /* the loop started / could not start */

/* request framing (the direct loop's own HTTP/2; the handler's is httpd's) */
#define H2C_TAG_HEADERS_LARGE "H2C0050" /* 431: header fields too many or too large */
#define H2C_TAG_URI_LONG "H2C0051"      /* 414: :path over LimitRequestLine */
#define H2C_TAG_BAD_REQUEST "H2C0052"   /* 400: bad :scheme, bad %-escape in the path */
#define H2C_TAG_CALM "H2C0053"          /* connection closed: work without progress */
#define H2C_TAG_PROTOCOL "H2C0054"      /* connection closed: an HTTP/2 error */
#define H2C_TAG_PENALTY "H2C0055"       /* an address's new connections refused a while */

/* rooms (H2ChatRooms) */
#define H2C_TAG_BAD_ROOM "H2C0056"   /* 400: not a room name, or a bad ?room= list */
#define H2C_TAG_ROOMS_FULL "H2C0057" /* 503: H2ChatMaxRooms rooms, all with streams */
#define H2C_TAG_MEMORY "H2C0058"     /* 503: H2ChatMemory full of rooms with streams */
/* 403: a ?room= its own URL's config refuses */
#define H2C_TAG_ROOM_FORBIDDEN "H2C0059"

/* moderation (DELETE) */
#define H2C_TAG_DELETE_USER "H2C0060" /* 403: DELETE without an authenticated user */
#define H2C_TAG_NO_ENTRY "H2C0061"    /* 404: no such message in the room, no such room */
#define H2C_TAG_MODERATED "H2C0062"   /* notice: a message deleted, a room cleared */

/* presence */
#define H2C_TAG_BAD_USER "H2C0063" /* 400: ?user= is no name (H2ChatPresence members) */

/* the loop's access log lines: those of answers before httpd's check dropped */
#define H2C_TAG_LINES_DROPPED "H2C0064"

#endif /* H2C_TAGS_H */
