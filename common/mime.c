/*
 * mime.c - Content-Type by extension (see mime.h for the contract).
 *
 * The table is built once at start: every (extension, type) pair of the file
 * goes into one growing array, their strings into one arena, and then into an
 * open-addressing hash table at most half full, so a lookup is one hash of
 * the extension and a probe or two. The built-in table answers when no file
 * was loaded.
 */
#include "mime.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EXT_MAX  32 /* longer "extensions" are not looked up (the longest known is 30) */
#define TYPE_MAX 127
#define OCTET    "application/octet-stream"
#define CHARSET  "; charset=utf-8"

static const struct {
    const char *ext;
    const char *type;
} builtin[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "application/xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"svg", "image/svg+xml"},
    {"ico", "image/x-icon"},
    {"webp", "image/webp"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"mp4", "video/mp4"},
};

#define NBUILTIN (sizeof(builtin) / sizeof(builtin[0]))

typedef struct entry_s {
    uint32_t ext;  /* offset of the lowercased extension in the arena */
    uint32_t type; /* offset of the Content-Type value */
    uint32_t hash;
    uint8_t ext_len;
} entry_t;

typedef struct table_s {
    char *arena;
    entry_t *entries;
    uint32_t *slots; /* entry index + 1; 0 = empty */
    uint32_t mask;
    size_t count; /* distinct extensions */
    char source[4096];
} table_t;

static table_t *table; /* NULL: the built-in table */

/* ---- lookup ------------------------------------------------------------------ */

/* FNV-1a over the lowercased bytes. */
static uint32_t ext_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] | 0x20 : p[i])) * 16777619u;
    return h;
}

static const char *table_find(const table_t *t, const char *ext, size_t n)
{
    uint32_t h = ext_hash(ext, n);

    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t slot = t->slots[i];
        if (slot == 0)
            return NULL;
        const entry_t *e = &t->entries[slot - 1];
        if (e->hash == h && e->ext_len == n && strncasecmp(t->arena + e->ext, ext, n) == 0)
            return t->arena + e->type;
    }
}

static const char *builtin_find(const char *ext, size_t n)
{
    for (size_t i = 0; i < NBUILTIN; i++)
        if (strlen(builtin[i].ext) == n && strncasecmp(ext, builtin[i].ext, n) == 0)
            return builtin[i].type;
    return NULL;
}

const char *c10k_mime_type(const char *name, size_t len)
{
    size_t base = len;

    while (base > 0 && name[base - 1] != '/')
        base--;
    /* Longest suffix first; a leading dot (".profile") starts no extension. */
    for (size_t i = base + 2; i < len; i++) {
        if (name[i - 1] != '.' || len - i > EXT_MAX)
            continue;
        const char *type =
            table ? table_find(table, name + i, len - i) : builtin_find(name + i, len - i);
        if (type)
            return type;
    }
    return OCTET;
}

const char *c10k_mime_source(void)
{
    return table ? table->source : "built-in";
}

size_t c10k_mime_count(void)
{
    return table ? table->count : NBUILTIN;
}

/* ---- building ---------------------------------------------------------------- */

typedef struct build_s {
    char *arena;
    size_t arena_len, arena_cap;
    entry_t *entries;
    size_t n, cap;
} build_t;

/* Append n bytes and a NUL; returns the offset, or -1 without memory. */
static long arena_add(build_t *b, const char *p, size_t n)
{
    size_t off = b->arena_len;

    if (off + n + 1 > UINT32_MAX)
        return -1;
    if (off + n + 1 > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap * 2 : 65536;
        while (cap < off + n + 1)
            cap *= 2;
        char *a = realloc(b->arena, cap);
        if (!a)
            return -1;
        b->arena = a;
        b->arena_cap = cap;
    }
    memcpy(b->arena + off, p, n);
    b->arena[off + n] = '\0';
    b->arena_len = off + n + 1;
    return (long)off;
}

static int entry_add(build_t *b, const char *ext, size_t n, uint32_t type)
{
    long off;

    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        entry_t *e = realloc(b->entries, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        b->entries = e;
        b->cap = cap;
    }
    off = arena_add(b, ext, n);
    if (off < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        b->arena[off + (long)i] = (char)(ext[i] >= 'A' && ext[i] <= 'Z' ? ext[i] | 0x20 : ext[i]);
    b->entries[b->n++] = (entry_t){(uint32_t)off, type, ext_hash(ext, n), (uint8_t)n};
    return 0;
}

/* RFC 6838 restricted-name characters. */
static bool name_char(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c && strchr("!#$&-^_.+", c));
}

/* type "/" subtype, each 1 to 127 restricted-name characters. */
static bool type_valid(const char *p, size_t n)
{
    const char *slash = memchr(p, '/', n);
    size_t a = slash ? (size_t)(slash - p) : 0, b = slash ? n - a - 1 : 0;

    if (!slash || a == 0 || b == 0 || a > TYPE_MAX || b > TYPE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (i != a && !name_char(p[i]))
            return false;
    return true;
}

static bool ext_valid(const char *p, size_t n)
{
    if (n == 0 || n > EXT_MAX || p[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f || p[i] == '/')
            return false;
    return true;
}

/* The Content-Type value for a type as the file writes it. */
static long type_add(build_t *b, const char *p, size_t n)
{
    char value[TYPE_MAX * 2 + 2 + sizeof(CHARSET)];
    bool text = n > 5 && strncasecmp(p, "text/", 5) == 0;

    memcpy(value, p, n);
    if (text)
        memcpy(value + n, CHARSET, sizeof(CHARSET));
    return arena_add(b, value, n + (text ? sizeof(CHARSET) - 1 : 0));
}

static const char *const SPACE = " \t\r\n";

/* One line of the file: a type, then its extensions. */
static int parse_line(build_t *b, char *line)
{
    char *hash = strchr(line, '#'), *save = NULL, *word;
    const char *name;
    long type = -1;

    if (hash)
        *hash = '\0';
    name = strtok_r(line, SPACE, &save);
    if (!name || !type_valid(name, strlen(name)))
        return 0; /* blank, a comment, or not a media type: skipped, as Apache does */
    while ((word = strtok_r(NULL, SPACE, &save))) {
        size_t n = strlen(word);
        if (!ext_valid(word, n))
            continue;
        if (type < 0 && (type = type_add(b, name, strlen(name))) < 0)
            return -ENOMEM;
        int rc = entry_add(b, word, n, (uint32_t)type);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_file(build_t *b, const char *path)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;

    if (!f)
        return -errno;
    errno = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0)
        rc = parse_line(b, line);
    if (rc == 0 && ferror(f))
        rc = errno ? -errno : -EIO; /* EISDIR for a directory */
    free(line);
    fclose(f);
    return rc;
}

/* The hash over the array, at most half full; a later entry for the same
 * extension replaces the earlier one. */
static int table_index(table_t *t, size_t n)
{
    size_t size = 16;

    while (size < 2 * n)
        size *= 2;
    t->slots = calloc(size, sizeof(*t->slots));
    if (!t->slots)
        return -ENOMEM;
    t->mask = (uint32_t)(size - 1);
    for (size_t k = 0; k < n; k++) {
        const entry_t *e = &t->entries[k];
        uint32_t i = e->hash & t->mask;
        for (; t->slots[i]; i = (i + 1) & t->mask) {
            const entry_t *o = &t->entries[t->slots[i] - 1];
            if (o->hash == e->hash && o->ext_len == e->ext_len &&
                memcmp(t->arena + o->ext, t->arena + e->ext, e->ext_len) == 0)
                break;
        }
        t->count += t->slots[i] == 0;
        t->slots[i] = (uint32_t)k + 1;
    }
    return 0;
}

static void table_free(table_t *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->entries);
    free(t->slots);
    free(t);
}

int c10k_mime_load(const char *path)
{
    build_t b = {0};
    table_t *t = NULL;
    int rc = parse_file(&b, path);

    if (rc == 0 && b.n == 0)
        rc = -EINVAL;
    if (rc == 0 && b.n >= UINT32_MAX / 2)
        rc = -E2BIG;
    if (rc == 0 && !(t = calloc(1, sizeof(*t))))
        rc = -ENOMEM;
    if (rc < 0)
        goto fail;
    t->arena = b.arena;
    t->entries = b.entries;
    b.arena = NULL;
    b.entries = NULL;
    snprintf(t->source, sizeof(t->source), "%s", path);
    rc = table_index(t, b.n);
    if (rc < 0)
        goto fail;
    table_free(table);
    table = t;
    return 0;
fail:
    table_free(t);
    free(b.arena);
    free(b.entries);
    return rc;
}

void c10k_mime_reset(void)
{
    table_free(table);
    table = NULL;
}
