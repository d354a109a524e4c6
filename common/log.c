/*
 * log.c - the access log (see log.h for the format and server.h for
 * c10k_log_access()).
 */
#include "log.h"
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Output budget of each quoted field, escapes and "..." included: together
 * with the fixed parts they stay below C10K_LOG_LINE. */
#define REQUEST_MAX 2048
#define HEADER_MAX  768

typedef struct out_s {
    char *p;
    size_t len;
} out_t;

static void out_str(out_t *o, const char *s)
{
    size_t n = strlen(s);

    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* Bytes nginx writes as \xHH in a log variable. */
static int needs_escape(unsigned char c)
{
    return c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
}

/* A quoted field: "-" when absent, else the bytes escaped, cut at max
 * output bytes with "..." when they do not fit. */
static void out_field(out_t *o, const char *p, size_t n, size_t max)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = 0;

    o->p[o->len++] = '"';
    if (!p) {
        out_str(o, "-\"");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        size_t w = needs_escape(c) ? 4 : 1;
        if (used + w > max - 3 && (i + 1 < n || used + w > max)) {
            out_str(o, "...");
            break;
        }
        if (w == 4) {
            o->p[o->len] = '\\';
            o->p[o->len + 1] = 'x';
            o->p[o->len + 2] = hex[c >> 4];
            o->p[o->len + 3] = hex[c & 15];
        } else {
            o->p[o->len] = (char)c;
        }
        o->len += w;
        used += w;
    }
    o->p[o->len++] = '"';
}

static void format_peer(const struct sockaddr *peer, char *buf, size_t cap)
{
    snprintf(buf, cap, "-");
    if (peer && peer->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, buf, cap);
    else if (peer && peer->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, buf, cap);
}

size_t c10k_log_format(char *line, const struct sockaddr *peer, time_t now, const c10k_resp_t *resp,
                       size_t bytes_sent)
{
    char addr[INET6_ADDRSTRLEN + 1], when[40], num[48];
    out_t o = {line, 0};
    struct tm tm;

    format_peer(peer, addr, sizeof(addr));
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "[%d/%b/%Y:%H:%M:%S +0000] ", &tm);
    out_str(&o, addr);
    out_str(&o, " - - ");
    out_str(&o, when);
    out_field(&o, resp->request, resp->request_len, REQUEST_MAX);
    /* $body_bytes_sent: what went out after the head. */
    snprintf(num, sizeof(num), " %d %zu ", resp->status,
             bytes_sent > resp->head_len ? bytes_sent - resp->head_len : 0);
    out_str(&o, num);
    out_field(&o, resp->referer, resp->referer_len, HEADER_MAX);
    o.p[o.len++] = ' ';
    out_field(&o, resp->user_agent, resp->user_agent_len, HEADER_MAX);
    o.p[o.len++] = '\n';
    return o.len;
}

void c10k_log_access(const c10k_server_t *srv, const struct sockaddr *peer, const c10k_resp_t *resp,
                     size_t bytes_sent)
{
    char line[C10K_LOG_LINE];
    size_t n;

    if (srv->log_fd < 0)
        return;
    n = c10k_log_format(line, peer, time(NULL), resp, bytes_sent);
    if (write(srv->log_fd, line, n) < 0)
        c10k_warn(srv, "access log: %s", strerror(errno));
}
