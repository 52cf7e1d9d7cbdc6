/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A streaming JSON reader for QMP input: bytes go in as they arrive from a
 * socket (split anywhere, several messages per read, whitespace between
 * them), complete JSON values come out one at a time, built as json-c
 * objects. It accepts what QEMU's monitor accepts (single-quoted strings,
 * QEMU's modified UTF-8 for U+0000), except numbers beyond a double's range
 * (1e999), which QEMU reads as infinity and could only echo as non-JSON;
 * it reports malformed input with QEMU's texts ("JSON parse error, ..."),
 * then resynchronises and goes on:
 *  - after a lexical error (a stray byte, a control character in a string)
 *    it skips to the next '{' or '[', control character, or 0xFE/0xFF byte;
 *  - after a syntax error it skips the rest of that message, as far as its
 *    brackets balance, or up to a line that starts with '{'.
 * A message over one of its limits (bytes, tokens, nesting) is reported
 * when the limit is reached, with QEMU's texts ("JSON token size limit
 * exceeded", ...), and skipped in the same way without keeping any of it,
 * so memory stays bounded whatever a peer sends and the messages after it
 * are read as usual.
 *
 * Ownership: the reader owns its buffers; values returned are new
 * references owned by the caller.
 * Threads: a reader is used by one thread at a time.
 */
#ifndef BERTH_MONITOR_JSON_READER_H
#define BERTH_MONITOR_JSON_READER_H

#include <glib.h>
#include <stddef.h>
#include <json-c/json.h>

G_BEGIN_DECLS

typedef struct JsonReader JsonReader;

typedef enum {
    JSON_READER_NEED_MORE, /* every byte consumed, no complete value yet */
    JSON_READER_VALUE,     /* *value holds one complete value */
    JSON_READER_ERROR,     /* malformed input or a limit, reported in errp; go on feeding */
} JsonReaderStatus;

#define JSON_READER_DEFAULT_MAX_BYTES (1024 * 1024)
#define JSON_READER_DEFAULT_MAX_TOKENS (128 * 1024)
#define JSON_READER_DEFAULT_MAX_DEPTH 1024

/*
 * Limits are per message (bytes from its first token on, tokens counting
 * every bracket, colon and comma, nesting levels); 0 selects the default.
 */
JsonReader *json_reader_new(size_t max_bytes, size_t max_tokens, guint max_depth);
void json_reader_free(JsonReader *reader);

/*
 * Consume bytes from buf until one result is ready or buf is exhausted;
 * *consumed tells how many were used, so the caller feeds the rest next.
 */
JsonReaderStatus json_reader_feed(JsonReader *reader, const char *buf, size_t len,
                                  size_t *consumed, json_object **value, GError **errp);

/* Forget any partial message and recovery state. */
void json_reader_reset(JsonReader *reader);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(JsonReader, json_reader_free)

G_END_DECLS

#endif
