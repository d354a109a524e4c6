/*
 * test_mime.c - unit tests of the MIME table (common/mime.c): the built-in
 * table, a mime.types file of our own with every rule in it, and Debian's
 * /etc/mime.types as c10k serve reads it.
 */
#include "mime.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void write_types(const char *text)
{
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/c10k-mime-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    f = fdopen(fd, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

static void cleanup(void)
{
    c10k_mime_reset();
    if (path[0])
        unlink(path);
}

TestSuite(mime, .fini = cleanup);

static const char *type_of(const char *name)
{
    return c10k_mime_type(name, strlen(name));
}

Test(mime, builtin)
{
    cr_expect_str_eq(c10k_mime_source(), "built-in");
    cr_expect_str_eq(type_of("a.HTML"), "text/html; charset=utf-8");
    cr_expect_str_eq(type_of("x/y.woff2"), "font/woff2");
    cr_expect_str_eq(type_of("a.wasm"), "application/wasm");
    cr_expect_str_eq(type_of("a.tar.gz"), "application/octet-stream");
    cr_expect_str_eq(type_of("dir.d/file"), "application/octet-stream");
    cr_expect_str_eq(type_of("noext"), "application/octet-stream");
    cr_expect_str_eq(type_of("a.swf"), "application/octet-stream");
}

static const char sample[] = "# a comment line\n"
                             "\n"
                             "text/html\t\t\t\thtml htm\n"
                             "application/x-shockwave-flash swf # trailing comment\n"
                             "image/x-one\tdup\n"
                             "image/x-two\tdup\n"
                             "application/sarif+json sarif.json\n"
                             "application/json json\n"
                             "application/vnd.Upper ELN\n"
                             "not a type line\n"
                             "bad\"type/x evil\n"
                             "text/bad\r\nX-Injected: 1 inj\n"
                             "application/no-extensions\n"
                             "text/plain txt .dotted " /* a leading-dot "extension" is skipped */
                             "thisextensionislongerthanthirtytwobytes\n";

Test(mime, file_rules)
{
    write_types(sample);
    cr_assert_eq(c10k_mime_load(path), 0);
    cr_expect_str_eq(c10k_mime_source(), path);
    /* html htm swf dup sarif.json json eln txt */
    cr_expect_eq(c10k_mime_count(), 8, "count %zu", c10k_mime_count());
    cr_expect_str_eq(type_of("a.html"), "text/html; charset=utf-8", "text/ gets a charset");
    cr_expect_str_eq(type_of("sub/a.HTM"), "text/html; charset=utf-8", "case-insensitive");
    cr_expect_str_eq(type_of("a.swf"), "application/x-shockwave-flash", "comment after it");
    cr_expect_str_eq(type_of("a.dup"), "image/x-two", "the later line wins, as in Apache");
    cr_expect_str_eq(type_of("r.sarif.json"), "application/sarif+json", "longest suffix first");
    cr_expect_str_eq(type_of("r.json"), "application/json");
    cr_expect_str_eq(type_of("x.y.json"), "application/json");
    cr_expect_str_eq(type_of("a.eln"), "application/vnd.Upper", "uppercase extension in file");
    cr_expect_str_eq(type_of("a.evil"), "application/octet-stream", "invalid type skipped");
    cr_expect_str_eq(type_of("a.type"), "application/octet-stream", "'not a type' skipped");
    cr_expect_str_eq(type_of("a.dotted"), "application/octet-stream");
    cr_expect_str_eq(type_of("dir.json/file"), "application/octet-stream", "only the last name");
    cr_expect_str_eq(type_of(".json"), "application/octet-stream", "a dotfile has no extension");
    cr_expect_str_eq(type_of("a."), "application/octet-stream");
    cr_expect_str_eq(type_of("a.css"), "application/octet-stream", "no built-in merged in");
    /* A CR cannot smuggle a header into a type: the line is split there. */
    cr_expect_str_eq(type_of("a.inj"), "application/octet-stream");
}

Test(mime, bad_files_leave_the_table)
{
    write_types("text/html html\n");
    cr_assert_eq(c10k_mime_load(path), 0);
    cr_expect_eq(c10k_mime_load("/nonexistent/mime.types"), -ENOENT);
    cr_expect_eq(c10k_mime_load("/"), -EISDIR);
    cr_expect_str_eq(c10k_mime_source(), path, "a failed load keeps the table in use");
    unlink(path);
    write_types("root:x:0:0:root:/root:/bin/bash\napplication/no-extension\n");
    cr_expect_eq(c10k_mime_load(path), -EINVAL, "no extension mapped at all");
    cr_expect_str_eq(type_of("a.html"), "text/html; charset=utf-8");
}

Test(mime, reset_goes_back_to_builtin)
{
    write_types("image/x-other css\n");
    cr_assert_eq(c10k_mime_load(path), 0);
    cr_expect_str_eq(type_of("a.css"), "image/x-other");
    c10k_mime_reset();
    cr_expect_str_eq(type_of("a.css"), "text/css; charset=utf-8");
}

/* Debian's list (package media-types), as c10k serve loads it by default. */
Test(mime, debian_mime_types)
{
    if (access(C10K_MIME_TYPES_FILE, R_OK) != 0)
        cr_skip_test("%s is missing (make deps installs media-types)", C10K_MIME_TYPES_FILE);
    cr_assert_eq(c10k_mime_load(C10K_MIME_TYPES_FILE), 0);
    cr_expect_gt(c10k_mime_count(), 1000, "only %zu extensions", c10k_mime_count());
    cr_expect_str_eq(type_of("movie.swf"), "application/vnd.adobe.flash.movie");
    cr_expect_str_eq(type_of("index.html"), "text/html; charset=utf-8");
    cr_expect_str_eq(type_of("app.js"), "text/javascript; charset=utf-8");
    cr_expect_str_eq(type_of("a.json"), "application/json");
    cr_expect_str_eq(type_of("a.svg"), "image/svg+xml");
    cr_expect_str_eq(type_of("a.woff2"), "font/woff2");
    cr_expect_str_eq(type_of("a.wasm"), "application/wasm");
    cr_expect_str_eq(type_of("a.tar.gz"), "application/gzip");
    cr_expect_str_eq(type_of("a.unknown-ext"), "application/octet-stream");
}
