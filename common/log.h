/*
 * log.h - the access log line, in nginx's `combined` format:
 *
 *   $remote_addr - $remote_user [$time_local] "$request" $status
 *       $body_bytes_sent "$http_referer" "$http_user_agent"
 *
 * which goaccess, awstats and the other log analysers read as it is. The
 * request line is logged as received (method, target and protocol); the
 * size is the body bytes sent, not the head. As nginx does, '"', '\', the
 * control bytes and every byte >= 0x7f are written as \xHH, so a client can
 * never close a quoted field early or start a line of its own.
 * c10k_log_access() (server.h) writes one such line per response.
 */
#ifndef C10K_LOG_H
#define C10K_LOG_H

#include "http.h"

#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

/* Longest line c10k_log_format() writes, newline included. Longer fields
 * are cut, ending in "...", so a line is always one write(2). */
#define C10K_LOG_LINE 4096

/*
 * Format the line for resp, sent at time now (written in UTC) to peer (NULL
 * or not IPv4/IPv6: "-"), after bytes_sent bytes of head and body went out.
 * line must hold C10K_LOG_LINE bytes. Returns the length, newline included.
 */
size_t c10k_log_format(char *line, const struct sockaddr *peer, time_t now, const c10k_resp_t *resp,
                       size_t bytes_sent);

#endif
