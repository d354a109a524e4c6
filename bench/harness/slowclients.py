"""Slow clients held open beside the load generator (the slow-clients profile)."""

import errno
import selectors
import socket
import threading
import time


class SlowClients(threading.Thread):
    """Holds N connections open beside wrk.

    idle:    one complete keep-alive request, read the answer, then stay silent
             (a keep-alive client that has nothing more to ask).
    trickle: a request head sent one byte per second, never finished inside
             the window (a slow uploader, or slowloris).
    Both hold a thread or a process in blocking models for as long as they
    stay open; an event loop only keeps a small state record.
    """

    def __init__(self, port, kind, count, path, host="127.0.0.1"):
        super().__init__(daemon=True)
        self.port, self.kind, self.count, self.path = port, kind, count, path
        self.host = host
        self.sel = selectors.DefaultSelector()
        self.socks = {}
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.established = 0
        self.closed_by_server = 0
        self.connect_failed = 0

    def open_all(self, timeout=15.0):
        for _ in range(self.count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((self.host, self.port))
            if rc not in (0, errno.EINPROGRESS):
                self.connect_failed += 1
                s.close()
                continue
            self.socks[s] = {"state": "connecting", "sent": 0, "got": b""}
            self.sel.register(s, selectors.EVENT_WRITE)
        self.start()
        self.ready.wait(timeout)

    def _request(self):
        if self.kind == "idle":
            return ("GET /%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self.path, self.host)).encode()
        return ("GET /%s HTTP/1.1\r\nHost: %s\r\nX-Slow: %s"
                % (self.path, self.host, "a" * 4000)).encode()

    def _drop(self, s, by_server):
        if by_server:
            self.closed_by_server += 1
        self.sel.unregister(s)
        self.socks.pop(s, None)
        s.close()

    def _on_event(self, s, info):
        if info["state"] == "connecting":
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.connect_failed += 1
                self._drop(s, False)
                return
            self.established += 1
            if self.kind == "idle":
                s.send(self._request())
                info["state"] = "reading"
                self.sel.modify(s, selectors.EVENT_READ)
            else:
                info["state"] = "trickling"
                self.sel.modify(s, selectors.EVENT_READ)  # only to notice a close
            return
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(s, True)
            return
        info["got"] += data  # the small answer to the idle client's request; kept to count

    def _trickle(self):
        req = self._request()
        for s, info in list(self.socks.items()):
            if info["state"] != "trickling" or info["sent"] >= len(req):
                continue
            try:
                info["sent"] += s.send(req[info["sent"]:info["sent"] + 1])
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(s, True)

    def run(self):
        next_trickle = time.monotonic() + 1.0
        while not self.stop_event.is_set():
            for key, _ in self.sel.select(0.1):
                if key.fileobj in self.socks:
                    self._on_event(key.fileobj, self.socks[key.fileobj])
            if not self.ready.is_set() and all(
                    i["state"] != "connecting" for i in self.socks.values()):
                self.ready.set()
            if self.kind == "trickle" and time.monotonic() >= next_trickle:
                self._trickle()
                next_trickle += 1.0

    def alive(self):
        return len(self.socks)

    def answered(self):
        """Idle clients whose request has been answered (its first bytes came)."""
        return sum(1 for info in list(self.socks.values()) if info["got"])

    def close_all(self):
        self.stop_event.set()
        if self.is_alive():
            self.join(5)
        for s in list(self.socks):
            s.close()
        self.socks.clear()
        self.sel.close()
