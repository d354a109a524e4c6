/*
 * blocking.c - serve one connection to its end with blocking I/O, for the
 * models with a thread or process per connection (threaded, prefork).
 *
 * It is the one part of the socket side that calls the handler, so it lives
 * apart from net.c: net.c then links without the handler (and without
 * libhttp_parser), which lets bench/ceiling reuse its listeners, pinning and
 * stop signalling.
 */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Wait until fd is readable (1), the deadline passes (0), a stop was requested
 * and fd has nothing to read (-ECANCELED), or poll fails (negative errno).
 * Readable data wins over a stop, so a request that already arrived is
 * answered (with Connection: close) rather than dropped. Only an idle
 * keep-alive connection (idle) is closed by a stop: a client just accepted,
 * or halfway through sending a request, is still owed its response. */
static int wait_readable(const c10k_server_t *srv, int fd, int64_t deadline, bool idle)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = srv->stop_fd, .events = POLLIN}};

    for (;;) {
        int64_t left = deadline - c10k_now_ms();
        int n;
        if (left <= 0)
            return 0;
        n = poll(p, idle ? 2 : 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[0].revents)
            return 1;
        if (p[1].revents)
            return -ECANCELED;
    }
}

static void set_send_timeout(int fd)
{
    struct timeval tv = {.tv_sec = C10K_SEND_TIMEOUT_MS / 1000};

    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Answer every complete request in buf. Returns the bytes left over (an
 * incomplete head), or -1 when the connection must close. */
static ssize_t answer_buffered(c10k_server_t *srv, int fd, const struct sockaddr *peer,
                               c10k_req_t *req, char *buf, size_t len, char *head, unsigned *served)
{
    while (len > 0) {
        c10k_resp_t resp;
        size_t sent = 0;
        c10k_status_t st;
        ssize_t used;

        req->force_close = atomic_load(&srv->stopping);
        used = c10k_http_handle(&srv->site, req, buf, len, head, C10K_HEAD_BUF, &resp);
        if (used == C10K_INCOMPLETE)
            return (ssize_t)len;
        if (used < 0)
            return -1;
        st = c10k_send_plan_blocking(srv, fd, &resp, head, &sent);
        c10k_log_access(srv, peer, &resp, sent);
        c10k_resp_finish(&resp);
        (*served)++;
        if (st != C10K_OK || !resp.keep_alive)
            return -1;
        memmove(buf, buf + used, len - (size_t)used);
        len -= (size_t)used;
    }
    return 0;
}

unsigned c10k_serve_blocking(c10k_server_t *srv, int fd, const struct sockaddr *peer, char *buf,
                             char *head)
{
    c10k_req_t req;
    unsigned served = 0;
    size_t len = 0;
    /* The first request is on the header clock from accept, as in nginx. */
    int64_t deadline = c10k_now_ms() + srv->cfg.header_ms;

    c10k_req_init(&req);
    set_send_timeout(fd);
    for (;;) {
        int r = wait_readable(srv, fd, deadline, served > 0 && len == 0);
        ssize_t n, left;

        if (r == 0) {
            c10k_resp_t resp;
            size_t sent;
            if (c10k_http_timeout(&req, len, head, C10K_HEAD_BUF, &resp)) {
                c10k_send_plan_blocking(srv, fd, &resp, head, &sent);
                c10k_log_access(srv, peer, &resp, sent);
                c10k_resp_finish(&resp);
            }
            goto out;
        }
        if (r < 0)
            goto out;
        n = recv(fd, buf + len, C10K_REQ_BUF - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        if (len == 0 && served > 0) /* first byte of the next request */
            deadline = c10k_now_ms() + srv->cfg.header_ms;
        left = answer_buffered(srv, fd, peer, &req, buf, len + (size_t)n, head, &served);
        if (left < 0)
            goto out;
        if (left == 0 || (size_t)left < len + (size_t)n)
            deadline = c10k_now_ms() + (left ? srv->cfg.header_ms : srv->cfg.keepalive_ms);
        len = (size_t)left;
    }
out:
    close(fd);
    return served;
}
