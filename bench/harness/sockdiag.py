"""The accept queue and the established connections of one port, from the
kernel's socket diagnostics (NETLINK_SOCK_DIAG, what `ss` uses).

Reading /proc/net/tcp formats every TCP socket on the machine as text: with
10,000 connections that is about a megabyte per read, too much to sample the
accept queue ten or more times a second beside the load generator. A
sock_diag dump asks for listening sockets on one port only (the kernel
filters by source port and skips the established table when only LISTEN is
asked for), and answers in binary: one struct per matching socket.

For a listening socket, inet_diag_msg.idiag_rqueue is the current accept
queue length (connections the kernel completed that the server has not yet
accept()ed) and idiag_wqueue its limit (the backlog). Several listeners on
one port (SO_REUSEPORT, one per worker) are summed.

/proc/net/tcp remains the fallback when netlink is unavailable (it is in
every Linux we build on; a sandbox may forbid it).
"""

import os
import socket
import struct

from .util import read_file

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED, TCP_LISTEN = 1, 10
NLMSG_HDR = struct.Struct("=IHHII")          # len, type, flags, seq, pid
REQ_HEAD = struct.Struct("=BBBBI")           # family, protocol, ext, pad, states
PORTS = struct.Struct("!HH")                 # sport, dport (network order)
MSG_QUEUES = struct.Struct("=II")            # idiag_rqueue, idiag_wqueue
SOCKID_REST = 44                             # src, dst (16 each), if, cookie (8)
MSG_QUEUES_AT = 4 + 48 + 4                   # after family..retrans, id, expires


class SockDiag:
    """One netlink socket, reused for every sample of a window. Not shared
    between threads: the answers to two dumps would interleave."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_SOCK_DIAG)
        self.seq = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def dump(self, family, states, sport=0, dport=0):
        """[(state, sport, dport, rqueue, wqueue)] of the matching sockets."""
        self.seq += 1
        req = (REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0, states)
               + PORTS.pack(sport, dport) + bytes(SOCKID_REST))
        hdr = NLMSG_HDR.pack(NLMSG_HDR.size + len(req), SOCK_DIAG_BY_FAMILY,
                             NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        self.sock.send(hdr + req)
        out = []
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                raise OSError("netlink: empty answer")
            if self._parse(data, out):
                return out

    def _parse(self, data, out):
        """Append the messages in data to out; True at NLMSG_DONE."""
        off = 0
        while off + NLMSG_HDR.size <= len(data):
            length, kind, _, seq, _ = NLMSG_HDR.unpack_from(data, off)
            if length < NLMSG_HDR.size:
                raise OSError("netlink: bad message length %d" % length)
            body = off + NLMSG_HDR.size
            if seq != self.seq:  # a late answer to an earlier dump: not ours
                pass
            elif kind == NLMSG_DONE:
                return True
            elif kind == NLMSG_ERROR:
                err = -struct.unpack_from("=i", data, body)[0]
                raise OSError(err, "sock_diag: %s" % os.strerror(err))
            else:
                state = data[body + 1]
                sport, dport = PORTS.unpack_from(data, body + 4)
                rq, wq = MSG_QUEUES.unpack_from(data, body + MSG_QUEUES_AT)
                out.append((state, sport, dport, rq, wq))
            off += (length + 3) & ~3
        return False

    def accept_queue(self, port):
        """(connections waiting to be accepted, listeners) on port."""
        queue = listeners = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            for _, _, _, rq, _ in self.dump(family, 1 << TCP_LISTEN, sport=port):
                queue += rq
                listeners += 1
        return queue, listeners

    def established_to(self, port):
        """Established sockets whose peer is port: the clients' ends."""
        return sum(len(self.dump(f, 1 << TCP_ESTABLISHED, dport=port))
                   for f in (socket.AF_INET, socket.AF_INET6))

    def established_from(self, port):
        """Established sockets on port: the server's ends (accepted or still
        in the accept queue). Where the clients are in another network
        namespace or on another host, theirs cannot be seen from here."""
        return sum(len(self.dump(f, 1 << TCP_ESTABLISHED, sport=port))
                   for f in (socket.AF_INET, socket.AF_INET6))


def proc_tcp_counts(port, read=None, server_ends=False, pid=None):
    """The fallback: (established connections to port, accept queue of the
    listeners on port) from /proc/net/tcp{,6}, what ss reads without netlink.
    Connections are counted by the clients' ends, or with server_ends by the
    server's (when the clients are elsewhere); with pid, the tables of that
    process's network namespace are read (/proc/PID/net/tcp)."""
    read = read or read_file
    est, queue = 0, 0
    hexport = "%04X" % port
    base = "/proc/%d/net" % pid if pid else "/proc/net"
    for table in (base + "/tcp", base + "/tcp6"):
        for line in read(table).splitlines()[1:]:
            f = line.split()
            if len(f) < 5:
                continue
            local, remote, state = f[1], f[2], f[3]
            if state == "01" and (local if server_ends else remote).endswith(":" + hexport):
                est += 1  # one end of an established connection
            elif state == "0A" and local.endswith(":" + hexport):
                # for a listener, rx_queue is the current accept queue length
                queue += int(f[4].split(":")[1], 16)
    return est, queue


def open_sockdiag():
    """A SockDiag, or None and why when netlink sock_diag is unusable."""
    sd = None
    try:
        sd = SockDiag()
        sd.accept_queue(1)  # a harmless query: any failure shows here
        return sd, None
    except OSError as e:
        if sd is not None:
            sd.close()
        return None, "netlink sock_diag unavailable (%s)" % e
