"""cases.py - the attack inputs tests/robustness/run.py sends to every model.

Kept apart from the runner so the lists read as a catalogue. Each traversal
target is sent as `GET TARGET HTTP/1.1` against the fixture that run.py
builds (see make_root() there):

    TMP/outside/secret.txt, TMP/outside/outside-only-name-7f3a.txt
    TMP/root/{index.html, a.txt, sub/b.txt, .hidden, .git/config, ...}
    TMP/root/link-out -> ../outside          TMP/root/link-abs -> /etc
    TMP/root/link-secret -> ../outside/secret.txt
    TMP/root/link-root -> /                  TMP/root/loop -> loop
    TMP/root/sub/link-up -> ../../outside/secret.txt
    TMP/root/sub/link-parent -> ..           TMP/root/link-in -> sub/b.txt

An escape is any response whose bytes contain a marker that only exists
outside the root (LEAK_MARKERS) or, for the dotfile cases, the dotfile
marker. tests/fuzz/corpus_path/ holds the same targets as fuzzing seeds.
"""

# Bytes that only exist outside the root: the secret file, the name of a file
# in the outside directory (a directory listing would show it) and
# /etc/passwd.
LEAK_MARKERS = (b"C10K-SECRET-MARKER", b"outside-only-name-7f3a", b"root:x:0:0")
DOTFILE_MARKER = b"C10K-DOTFILE-MARKER"

S = "outside/secret.txt"

# (kind, target). kind says which family the case belongs to; it is only
# used for the per-family counts printed by run.py.
TRAVERSAL = [
    # plain dot-dot
    ("dotdot", "/../" + S),
    ("dotdot", "/../../../../../../etc/passwd"),
    ("dotdot", "/sub/../../" + S),
    ("dotdot", "/sub/./../../" + S),
    ("dotdot", "/./../" + S),
    ("dotdot", "///../" + S),
    ("dotdot", "/a.txt/../../" + S),
    ("dotdot", "/..//..//outside//secret.txt"),
    ("dotdot", "../" + S),
    ("dotdot", "/...//" + S),
    ("dotdot", "/....//" + S),
    ("dotdot", "/..../" + S),
    ("dotdot", "//etc/passwd"),
    # percent-encoded
    ("encoded", "/..%2f" + S.replace("/", "%2f")),
    ("encoded", "/%2e%2e/" + S),
    ("encoded", "/%2e%2e%2f" + S.replace("/", "%2f")),
    ("encoded", "/%2E%2E/" + S),
    ("encoded", "/.%2e/" + S),
    ("encoded", "/%2e./" + S),
    ("encoded", "/sub/%2e%2e/%2e%2e/" + S),
    ("encoded", "/..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
    ("encoded", "/%2f..%2f..%2f..%2fetc%2fpasswd"),
    ("encoded", "/sub/..%2f..%2f" + S),
    ("encoded", "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
    ("encoded", "/..%09/" + S),
    ("encoded", "/..%0d%0a/" + S),
    ("encoded", "/%2e%2e"),
    # double-encoded
    ("double-encoded", "/%252e%252e/" + S),
    ("double-encoded", "/%252e%252e%252f" + S.replace("/", "%252f")),
    ("double-encoded", "/..%252f" + S.replace("/", "%252f")),
    ("double-encoded", "/..%255c" + S.replace("/", "%255c")),
    ("double-encoded", "/%25%32%65%25%32%65/" + S),
    # overlong and look-alike UTF-8
    ("overlong-utf8", "/%c0%ae%c0%ae/" + S),
    ("overlong-utf8", "/%c0%ae%c0%ae%c0%af" + S.replace("/", "%c0%af")),
    ("overlong-utf8", "/..%c0%af" + S.replace("/", "%c0%af")),
    ("overlong-utf8", "/..%e0%80%af" + S),
    ("overlong-utf8", "/%e0%80%ae%e0%80%ae/" + S),
    ("overlong-utf8", "/..%c1%9c" + S.replace("/", "%c1%9c")),
    ("overlong-utf8", "/%C0%AE%C0%AE%2F" + S.replace("/", "%2F")),
    ("overlong-utf8", "/%ef%bc%8e%ef%bc%8e/" + S),
    ("overlong-utf8", "/..%ef%bc%8f" + S),
    ("overlong-utf8", "/..%u2216" + S.replace("/", "%u2216")),
    ("overlong-utf8", "/%uff0e%uff0e/" + S),
    # backslashes
    ("backslash", "/..\\outside\\secret.txt"),
    ("backslash", "/..%5c" + S.replace("/", "%5c")),
    ("backslash", "/%2e%2e%5c" + S.replace("/", "%5c")),
    ("backslash", "/sub\\..\\..\\outside\\secret.txt"),
    ("backslash", "/\\..\\..\\etc\\passwd"),
    # NUL
    ("nul", "/a.txt%00/../../" + S),
    ("nul", "/../" + S + "%00.html"),
    ("nul", "/%00../" + S),
    ("nul", "/%2e%2e%00/" + S),
    ("nul", "/.%00./" + S),
    ("nul", "/sub/..%00/../" + S),
    # path parameters (..;) as Tomcat-style servers split them
    ("dotdot-semicolon", "/..;/" + S),
    ("dotdot-semicolon", "/sub/..;/..;/" + S),
    ("dotdot-semicolon", "/;/../" + S),
    ("dotdot-semicolon", "/..;a=b/" + S),
    ("dotdot-semicolon", "/%2e%2e;/" + S),
    # symlinks out of the root
    ("symlink", "/link-out/secret.txt"),
    ("symlink", "/link-out/"),
    ("symlink", "/link-secret"),
    ("symlink", "/link-abs/passwd"),
    ("symlink", "/link-root/etc/passwd"),
    ("symlink", "/sub/link-up"),
    ("symlink", "/sub/link-parent/../" + S),
    ("symlink", "/sub/link-parent/link-secret"),
    ("symlink", "/loop"),
    ("symlink", "/link-out/%2e%2e/" + S),
    # dotfiles
    ("dotfile", "/.hidden"),
    ("dotfile", "/.git/config"),
    ("dotfile", "/%2ehidden"),
    ("dotfile", "/sub/../.hidden"),
    ("dotfile", "/./.git/config"),
    ("dotfile", "/.git/"),
    ("dotfile", "/%2egit/config"),
    # request-target forms that are not origin-form
    ("absolute-form", "http://127.0.0.1/../" + S),
    ("absolute-form", "http://127.0.0.1/%2e%2e/" + S),
    ("absolute-form", "*"),
    ("absolute-form", "/etc/passwd"),
]


def _req(head, body=b""):
    return head.replace(b"\n", b"\r\n") + body


_SMUGGLED = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"

# (name, raw request bytes). Every one must get exactly one 400, then the
# connection closes: a second response would mean the smuggled GET that
# follows each body was taken as a request of its own.
SMUGGLING = [
    ("CL and TE", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5\n"
                       b"Transfer-Encoding: chunked\n\n", b"0\r\n\r\n" + _SMUGGLED)),
    ("TE and CL", _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
                       b"Content-Length: 5\n\n", b"0\r\n\r\n" + _SMUGGLED)),
    ("GET with CL and TE", _req(b"GET / HTTP/1.1\nHost: x\nContent-Length: 5\n"
                                b"Transfer-Encoding: chunked\n\n", b"0\r\n\r\n" + _SMUGGLED)),
    ("duplicate CL, different", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5\n"
                                     b"Content-Length: 6\n\n", b"12345" + _SMUGGLED)),
    ("duplicate CL, same", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5\n"
                                b"Content-Length: 5\n\n", b"12345" + _SMUGGLED)),
    ("CL list", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5, 6\n\n", b"12345" + _SMUGGLED)),
    ("CL negative", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: -5\n\n", _SMUGGLED)),
    ("CL plus sign", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: +5\n\n", b"12345" + _SMUGGLED)),
    ("CL not a number", _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5a\n\n", b"12345" + _SMUGGLED)),
    ("CL overflow", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                    + _SMUGGLED),
    ("bare LF request", b"GET /a.txt HTTP/1.1\nHost: x\n\n" + _SMUGGLED),
    ("bare LF in one header", b"GET /a.txt HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n" + _SMUGGLED),
    ("space before colon", b"GET /a.txt HTTP/1.1\r\nHost : x\r\n\r\n" + _SMUGGLED),
    ("space before colon in CL", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n12345"
                                 + _SMUGGLED),
    ("space before colon, Host fine", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"
                                      + _SMUGGLED),
    ("tab before colon", b"GET /a.txt HTTP/1.1\r\nHost\t: x\r\n\r\n" + _SMUGGLED),
    ("space before colon in TE", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n"
                                 b"Content-Length: 5\r\n\r\n0\r\n\r\n" + _SMUGGLED),
    ("obs-fold", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + _SMUGGLED),
    ("obs-fold with tab", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n" + _SMUGGLED),
    ("obs-fold in TE", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                       b"0\r\n\r\n" + _SMUGGLED),
    ("chunk size not hex", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"zz\r\nabc\r\n0\r\n\r\n" + _SMUGGLED),
    ("chunk size negative", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"-1\r\nabc\r\n0\r\n\r\n" + _SMUGGLED),
    ("chunk size 0x prefix", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"0x3\r\nabc\r\n0\r\n\r\n" + _SMUGGLED),
    ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"1ffffffffffffffff3\r\nabc\r\n0\r\n\r\n" + _SMUGGLED),
    ("chunk size empty", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"\r\nabc\r\n0\r\n\r\n" + _SMUGGLED),
    ("chunk size with space inside", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                     b"\r\n\r\n1 2\r\nabc\r\n0\r\n\r\n" + _SMUGGLED),
    ("GET chunk size not hex", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"zz\r\n" + _SMUGGLED),
]


def _long_target(n):
    return b"GET /" + b"a" * n + b" HTTP/1.1\r\nHost: x\r\n\r\n"


def _headers(count, size):
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * size) for i in range(count))
    return b"GET /a.txt HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"


# (name, raw request, the status it must get).
OVERSIZE = [
    ("request target of 9,000 bytes", _long_target(9000), 414),
    ("request target of 40,000 bytes (beyond the read buffer)", _long_target(40000), 414),
    ("request line without end, 40,000 bytes", b"GET /" + b"a" * 40000, 414),
    ("one header of 17,000 bytes", _headers(1, 17000), 431),
    ("20 headers of 1,000 bytes", _headers(20, 1000), 431),
    ("101 header lines", _headers(100, 1), 431),
    ("1,000 header lines", _headers(1000, 1), 431),
    ("headers without end, 40,000 bytes", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-A: " + b"v" * 40000,
     431),
]


# (name, Range value) sent with GET /a.txt (17 bytes). Whatever the status
# (200, 206 or 416), Content-Length must equal the body that follows and a
# 206's Content-Range must lie within the file.
RANGES = [
    ("suffix longer than 2^63", "bytes=-9999999999999999999"),
    ("suffix of 2^64 - 1", "bytes=-18446744073709551615"),
    ("suffix beyond 2^64", "bytes=-99999999999999999999999"),
    ("first beyond 2^63", "bytes=9999999999999999999-"),
    ("last beyond 2^64", "bytes=0-99999999999999999999999"),
    ("first and last beyond 2^63", "bytes=9223372036854775808-9223372036854775809"),
    ("negative first", "bytes=-5-10"),
    ("suffix zero", "bytes=-0"),
    ("reversed", "bytes=10-2"),
    ("1,000 ranges", "bytes=" + ",".join("%d-%d" % (i, i) for i in range(1000))),
    ("overlapping ranges", "bytes=0-16,0-16,0-16"),
    ("whitespace inside", "bytes = 0 - 4"),
]
