/*
 * mime.h - Content-Type by file extension.
 *
 * c10k serve reads a mime.types file (Debian's /etc/mime.types, from the
 * media-types package: the list Apache's and nginx's tables derive from)
 * once at start, before any worker exists, into an immutable hash table.
 * Lookups on the request path take no lock and allocate nothing. Without a
 * file, a built-in table of the common web types answers.
 */
#ifndef C10K_MIME_H
#define C10K_MIME_H

#include <stddef.h>

/* Read by c10k serve when --mime-types is not given. */
#define C10K_MIME_TYPES_FILE "/etc/mime.types"

/*
 * Load path (mime.types format: a type, then the extensions that map to it;
 * '#' starts a comment) and make it the table every later lookup uses. Lines
 * whose type is not a valid media type are skipped; when an extension is
 * listed twice, the later line wins, as in Apache's mod_mime. Extensions are
 * matched case-insensitively. A text/ type is served with "; charset=utf-8".
 * Call before any thread or process that serves requests exists: the swap is
 * not synchronised. Returns 0, or a negative errno (-EINVAL: no extension
 * mapped in the whole file), in which case the table in use is unchanged.
 */
int c10k_mime_load(const char *path);

/* Go back to the built-in table, freeing a loaded one. Same rule as above. */
void c10k_mime_reset(void);

/* Where the table in use came from: the path given to c10k_mime_load(), or
 * "built-in"; and how many extensions it maps. */
const char *c10k_mime_source(void);
size_t c10k_mime_count(void);

/*
 * Content-Type for a file name: the longest dotted suffix of its last path
 * component that the table maps ("x.sarif.json" before "x.json"), or
 * "application/octet-stream". The string is static or lives as long as the
 * table, and is a valid header value.
 */
const char *c10k_mime_type(const char *name, size_t len);

#endif
