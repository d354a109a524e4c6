/*
 * test_conn.c - unit tests of the connection lifecycle policy (common/conn.c).
 *
 * The policy is sans-I/O, so a whole connection can be played without a
 * socket: each test reports reads, sends, deadlines and stops at chosen
 * times, and checks what the policy answers and which deadline it sets. The
 * same rules then hold for every model, because every model asks the same
 * questions (the conformance suite checks that over real sockets).
 */
#include "conn.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_MS    10000
#define KEEPALIVE_MS 5000
#define T0           1000000 /* an arbitrary start time, ms */

static char root[256];
static c10k_server_t srv;
static c10k_io_t io;
static c10k_conn_t c;

static void fixture_up(void)
{
    char path[512];
    FILE *f;

    snprintf(root, sizeof(root), "/tmp/c10k-conn-XXXXXX");
    cr_assert(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/a.txt", root);
    f = fopen(path, "w");
    cr_assert(f);
    fputs("hello\n", f);
    fclose(f);
    memset(&srv, 0, sizeof(srv));
    srv.log_fd = -1;
    srv.cfg.header_ms = HEADER_MS;
    srv.cfg.keepalive_ms = KEEPALIVE_MS;
    srv.cfg.lingering_time_ms = C10K_LINGERING_TIME_MS;
    srv.cfg.lingering_timeout_ms = C10K_LINGERING_TIMEOUT_MS;
    cr_assert(c10k_site_open(&srv.site, root, 0) == 0);
    c10k_io_init(&io);
}

static void fixture_down(void)
{
    char cmd[300];

    c10k_conn_end(&c);
    c10k_site_close(&srv.site);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    cr_assert(system(cmd) == 0);
}

TestSuite(conn, .init = fixture_up, .fini = fixture_down);

/* The client sends text at time now: copy it where the policy says, report it. */
static c10k_next_t client_sends(const char *text, int64_t now)
{
    size_t room, n = strlen(text);
    char *at;

    if (!c.io)
        c.io = &io;
    at = c10k_conn_room(&c, &room);
    cr_assert(n <= room);
    memcpy(at, text, n);
    return c10k_conn_read(&c, (ssize_t)n, now);
}

/* The whole response goes at time now. */
static c10k_next_t all_sent(int64_t now)
{
    c.io->sent.done = c.io->resp.head_len + c.io->resp.body_len + c.io->resp.body_mem_len;
    return c10k_conn_sent(&c, C10K_OK, now);
}

#define GET       "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
#define GET_CLOSE "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

Test(conn, first_request_is_on_the_header_clock_from_accept)
{
    cr_assert_eq(c10k_conn_start(&c, &srv, NULL, T0), C10K_READ);
    cr_assert_eq(c.deadline, T0 + HEADER_MS);
    /* Bytes arriving later do not restart the first request's clock. */
    cr_assert_eq(client_sends("GET /a.txt", T0 + 3000), C10K_READ);
    cr_assert_eq(c.deadline, T0 + HEADER_MS);
}

Test(conn, keep_alive_cycle_and_idle_buffers)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(client_sends(GET, T0 + 1), C10K_SEND);
    cr_assert_eq(c.io->resp.status, 200);
    cr_assert_eq(c.deadline, T0 + 1 + C10K_SEND_TIMEOUT_MS);
    cr_assert_null(c10k_conn_idle_io(&c), "a response in flight keeps its buffers");
    cr_assert_eq(all_sent(T0 + 2), C10K_READ);
    cr_assert_eq(c.deadline, T0 + 2 + KEEPALIVE_MS, "idle: the keep-alive clock");
    cr_assert_eq(c10k_conn_idle_io(&c), &io, "idle: buffers go back to the model");
    cr_assert_null(c.io);
    /* The next request's header clock starts at its first byte. */
    cr_assert_eq(client_sends("GET /a", T0 + 4000), C10K_READ);
    cr_assert_eq(c.deadline, T0 + 4000 + HEADER_MS);
    cr_assert_null(c10k_conn_idle_io(&c), "a partial head keeps its buffers");
}

Test(conn, pipelined_requests_answered_in_order_without_reading)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(client_sends(GET GET GET "GET /a", T0), C10K_SEND);
    cr_assert_eq(all_sent(T0), C10K_SEND, "the second is answered from the buffer");
    cr_assert_eq(all_sent(T0), C10K_SEND, "the third too");
    cr_assert_eq(all_sent(T0 + 7), C10K_READ, "then the partial fourth is read");
    cr_assert_eq(c.io->len, strlen("GET /a"));
    cr_assert_eq(c.deadline, T0 + 7 + HEADER_MS, "its header clock runs");
    cr_assert_eq(c.req.requests, 3);
}

Test(conn, send_clock_restarts_only_on_progress)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(client_sends(GET, T0), C10K_SEND);
    c.io->sent.done = 0;
    cr_assert_eq(c10k_conn_sent(&c, C10K_AGAIN, T0 + 100), C10K_SEND);
    cr_assert_eq(c.deadline, T0 + C10K_SEND_TIMEOUT_MS, "no progress, no new clock");
    c.io->sent.done = 5;
    cr_assert_eq(c10k_conn_sent(&c, C10K_AGAIN, T0 + 200), C10K_SEND);
    cr_assert_eq(c.deadline, T0 + 200 + C10K_SEND_TIMEOUT_MS, "progress restarts it");
    cr_assert_eq(c10k_conn_timeout(&c, T0 + 300), C10K_SEND, "early: nothing changes");
    cr_assert_eq(c10k_conn_timeout(&c, c.deadline), C10K_CLOSE, "stalled: close");
}

Test(conn, send_error_closes)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends(GET, T0);
    cr_assert_eq(c10k_conn_sent(&c, C10K_ERROR, T0), C10K_CLOSE);
    cr_assert_eq(c.io->resp.body_fd, -1, "the abandoned response's file is closed");
}

Test(conn, header_timeout_gives_408_then_lingers)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(client_sends("GET /a.txt HTTP/1.1\r\nHo", T0), C10K_READ);
    cr_assert_eq(c10k_conn_timeout(&c, T0 + HEADER_MS - 1), C10K_READ, "early: no change");
    cr_assert_eq(c10k_conn_timeout(&c, T0 + HEADER_MS), C10K_SEND);
    cr_assert_eq(c.io->resp.status, 408);
    cr_assert_not(c.io->resp.keep_alive);
    cr_assert_eq(c.deadline, T0 + HEADER_MS + C10K_SEND_TIMEOUT_MS, "sent under the send timeout");
    cr_assert_eq(all_sent(T0 + HEADER_MS), C10K_LINGER, "the client may still be sending");
    cr_assert(c10k_conn_shutdown_due(&c), "the write side shuts down once");
    cr_assert_not(c10k_conn_shutdown_due(&c));
}

Test(conn, idle_timeout_closes_silently)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends(GET, T0);
    all_sent(T0);
    c10k_conn_idle_io(&c);
    cr_assert_eq(c10k_conn_timeout(&c, T0 + KEEPALIVE_MS), C10K_CLOSE);
}

Test(conn, silent_new_connection_closes_at_header_timeout)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(c10k_conn_timeout(&c, T0 + HEADER_MS), C10K_CLOSE, "nothing began: no 408");
}

Test(conn, refused_request_lingers_with_both_limits)
{
    int64_t t = T0;

    c10k_conn_start(&c, &srv, NULL, t);
    cr_assert_eq(
        client_sends("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 9999\r\n\r\nxx", t),
        C10K_SEND);
    cr_assert_geq(c.io->resp.status, 400);
    cr_assert_eq(all_sent(t), C10K_LINGER);
    cr_assert_eq(c.deadline, t + C10K_LINGERING_TIMEOUT_MS, "lingering-timeout between reads");
    /* A client that keeps sending is drained, but only for lingering-time. */
    for (t = T0 + 1000; t < T0 + C10K_LINGERING_TIME_MS; t += 1000) {
        cr_assert_eq(c10k_conn_read(&c, 4096, t), C10K_LINGER);
        cr_assert_leq(c.deadline, T0 + C10K_LINGERING_TIME_MS);
    }
    cr_assert_eq(c.deadline, T0 + C10K_LINGERING_TIME_MS, "capped by lingering-time");
    cr_assert_eq(c10k_conn_timeout(&c, c.deadline), C10K_CLOSE);
}

Test(conn, linger_ends_at_the_clients_eof)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends("GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", T0);
    cr_assert_eq(c.io->resp.status, 404);
    cr_assert_eq(all_sent(T0), C10K_LINGER);
    cr_assert_eq(c10k_conn_idle_io(&c), &io, "lingering needs no buffers");
    cr_assert_eq(c10k_conn_read(&c, 0, T0 + 1), C10K_CLOSE);
}

Test(conn, clean_close_does_not_linger)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(client_sends(GET_CLOSE, T0), C10K_SEND);
    cr_assert_eq(all_sent(T0), C10K_CLOSE, "a 200 with nothing left over closes at once");
}

Test(conn, closing_response_with_unanswered_bytes_lingers)
{
    srv.site.max_requests = 1;
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(client_sends(GET GET, T0), C10K_SEND);
    cr_assert_not(c.io->resp.keep_alive, "max-requests reached");
    cr_assert_eq(all_sent(T0), C10K_LINGER, "the second request is read away, not reset");
}

Test(conn, stop_closes_idle_keepalive_at_once)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends(GET, T0);
    all_sent(T0);
    cr_assert_eq(c10k_conn_stop(&c, T0 + 1), C10K_CLOSE);
}

Test(conn, stop_still_answers_a_new_client_with_close)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(c10k_conn_stop(&c, T0), C10K_READ, "accepted, silent so far: still owed");
    cr_assert_eq(client_sends(GET, T0 + 1), C10K_SEND);
    cr_assert_not(c.io->resp.keep_alive, "its response is its last");
    cr_assert_eq(all_sent(T0 + 2), C10K_CLOSE);
}

Test(conn, stop_during_a_send_finishes_it_then_closes)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends(GET, T0);
    cr_assert(c.io->resp.keep_alive);
    cr_assert_eq(c10k_conn_stop(&c, T0), C10K_SEND, "the response in flight goes on");
    cr_assert_eq(all_sent(T0), C10K_CLOSE, "then the connection closes");
}

Test(conn, stop_answers_pipelined_requests_already_received)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends(GET GET, T0);
    c10k_conn_stop(&c, T0);
    cr_assert_eq(all_sent(T0), C10K_SEND, "the second request already arrived");
    cr_assert_not(c.io->resp.keep_alive, "and is answered with close");
    cr_assert_eq(all_sent(T0), C10K_CLOSE);
}

Test(conn, stop_lets_lingering_go_on)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends("GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", T0);
    all_sent(T0);
    cr_assert_eq(c.next, C10K_LINGER);
    cr_assert_eq(c10k_conn_stop(&c, T0), C10K_LINGER, "closing now could reset the 404");
}

Test(conn, eof_mid_head_closes)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends("GET /a", T0);
    cr_assert_eq(c10k_conn_read(&c, 0, T0), C10K_CLOSE);
}

Test(conn, full_buffer_without_a_head_is_refused)
{
    static char big[C10K_REQ_BUF + 1];

    memset(big, 'a', C10K_REQ_BUF);
    memcpy(big, "GET /", 5);
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(client_sends(big, T0), C10K_SEND);
    cr_assert(c.io->resp.status == 414 || c.io->resp.status == 431);
    cr_assert_eq(all_sent(T0), C10K_LINGER);
}

Test(conn, end_gives_back_the_buffers_once)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends(GET, T0);
    cr_assert_eq(c10k_conn_end(&c), &io);
    cr_assert_null(c10k_conn_end(&c));
    cr_assert_eq(io.resp.body_fd, -1);
}

/* For models with their own buffers (uring): the same decisions, no io. */
Test(conn, own_buffers_response_done)
{
    c10k_resp_t resp = {.status = 200, .keep_alive = true, .body_fd = -1};

    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert_eq(c10k_conn_send_begins(&c, T0), C10K_SEND);
    cr_assert_eq(c10k_conn_response_done(&c, &resp, 10, false, T0 + 1), C10K_READ);
    cr_assert_eq(c.deadline, T0 + 1 + KEEPALIVE_MS);
    c10k_conn_request_begins(&c, T0 + 2);
    cr_assert_eq(c.deadline, T0 + 2 + HEADER_MS);
    c10k_conn_request_begins(&c, T0 + 3);
    cr_assert_eq(c.deadline, T0 + 2 + HEADER_MS, "only the first byte starts the clock");
    resp.keep_alive = false;
    resp.status = 413;
    c10k_conn_send_begins(&c, T0 + 4);
    cr_assert_eq(c10k_conn_response_done(&c, &resp, 10, false, T0 + 5), C10K_LINGER);
}

/* --- the send gate of c10k_conn_pump_gated() (epoll --helpers) ------------------ */

typedef struct {
    bool open; /* what the gate answers */
    int calls; /* how often it was asked */
    size_t at; /* c->io->sent.done when it was last asked */
} gate_t;

static bool test_gate(void *arg, c10k_conn_t *cc)
{
    gate_t *g = arg;

    g->calls++;
    g->at = cc->io->sent.done;
    return g->open;
}

/* Bytes waiting on fd now (non-blocking). */
static ssize_t waiting(int fd, char *buf, size_t cap)
{
    ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);

    return n < 0 ? 0 : n;
}

Test(conn, gate_holds_a_response_until_it_opens)
{
    c10k_iopool_t pool = {.n = 0};
    c10k_ready_t ready = {.readable = true, .writable = true};
    gate_t g = {.open = false};
    char buf[4096];
    int sv[2];

    cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert(write(sv[1], GET GET, strlen(GET GET)) == (ssize_t)strlen(GET GET));
    cr_assert_eq(c10k_conn_pump_gated(&c, sv[0], &ready, &pool, T0, test_gate, &g), C10K_SEND);
    cr_assert_eq(g.calls, 1, "asked once, before the first byte");
    cr_assert_eq(g.at, 0);
    cr_assert_eq(waiting(sv[1], buf, sizeof(buf)), 0, "a held response sends nothing");
    cr_assert_eq(c.io->sent.done, 0);
    /* Pumped again while still closed: still nothing. */
    cr_assert_eq(c10k_conn_pump_gated(&c, sv[0], &ready, &pool, T0, test_gate, &g), C10K_SEND);
    cr_assert_eq(waiting(sv[1], buf, sizeof(buf)), 0);
    /* Open: both pipelined responses go, the gate asked before each. */
    g.open = true;
    g.calls = 0;
    cr_assert_eq(c10k_conn_pump_gated(&c, sv[0], &ready, &pool, T0, test_gate, &g), C10K_READ);
    cr_assert_eq(g.calls, 2, "once per response");
    cr_assert_eq(g.at, 0, "always before its first byte");
    cr_assert_eq(c.req.requests, 2);
    cr_assert_gt(waiting(sv[1], buf, sizeof(buf)), 0, "the responses arrived");
    cr_assert(strstr(buf, "200 OK"));
    c10k_iopool_free(&pool);
    close(sv[0]);
    close(sv[1]);
}

Test(conn, no_gate_sends_at_once)
{
    c10k_iopool_t pool = {.n = 0};
    c10k_ready_t ready = {.readable = true, .writable = true};
    char buf[4096];
    int sv[2];

    cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    c10k_conn_start(&c, &srv, NULL, T0);
    cr_assert(write(sv[1], GET, strlen(GET)) == (ssize_t)strlen(GET));
    cr_assert_eq(c10k_conn_pump(&c, sv[0], &ready, &pool, T0), C10K_READ);
    cr_assert_gt(waiting(sv[1], buf, sizeof(buf)), 0);
    c10k_iopool_free(&pool);
    close(sv[0]);
    close(sv[1]);
}

Test(conn, stop_soon_makes_the_next_response_the_last)
{
    c10k_conn_start(&c, &srv, NULL, T0);
    client_sends(GET, T0);
    all_sent(T0);
    c10k_conn_stop_soon(&c); /* a request may be waiting unread in the socket */
    cr_assert_eq(client_sends(GET, T0 + 1), C10K_SEND);
    cr_assert_not(c.io->resp.keep_alive, "answered with Connection: close");
    cr_assert_eq(all_sent(T0 + 1), C10K_CLOSE);
}
