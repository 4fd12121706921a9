#!/usr/bin/env python3
"""IMAP load client for bench/imap/run.sh: raw sockets, no imaplib overhead in the loop.

  client.py compare ROUNDS COUNT MAILBOX TARGETS_JSON             -> JSON timings per target
      TARGETS_JSON: [{"name": .., "port": .., "user": .., "pass": .., "ca": null|path}, ...]
      Rounds interleave the targets (a burst of load from elsewhere hits all of them alike);
      each target's best round is kept.
  client.py hold  HOST PORT USER PASS MAILBOX SESSIONS PIDFILE   -> RSS of PIDFILE's process
"""
import json
import os
import socket
import ssl
import sys
import time


class Conn:
    def __init__(self, host, port, ca=None):
        s = socket.create_connection((host, port), timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.s = s
        self.buf = bytearray()
        # One reusable receive buffer: `recv(1 << 20)` allocates a fresh megabyte per call,
        # and over TLS each call returns one record (16 KiB), which made the direct-TLS
        # client pay an allocation per record that the plaintext (proxy) client did not.
        self.rview = memoryview(bytearray(1 << 18))
        self.n = 0
        self.line()  # greeting

    def fill(self):
        n = self.s.recv_into(self.rview)
        if not n:
            raise EOFError("server closed the connection")
        self.buf += self.rview[:n]

    def line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            self.fill()

    def skip(self, n):
        while len(self.buf) < n:
            self.fill()
        del self.buf[:n]

    def cmd(self, text):
        """Sends a command, reads to its tagged response; returns (tagged line, bytes read)."""
        self.n += 1
        tag = b"b%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        total = 0
        while True:
            line = self.line()
            total += len(line)
            if line.endswith(b"}\r\n"):
                n = int(line[line.rindex(b"{") + 1 : -3].rstrip(b"+"))
                self.skip(n)
                total += n
                continue
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return line, total


def login(c, user, password, mailbox):
    c.cmd('LOGIN "%s" "%s"' % (user, password))
    c.cmd("EXAMINE %s" % mailbox)


def fetch(host, port, user, password, mailbox, count, ca=None):
    c = Conn(host, port, ca)
    login(c, user, password, mailbox)
    t = time.perf_counter()
    _, nbytes = c.cmd("FETCH 1:%d BODY.PEEK[]" % count)
    bodies = time.perf_counter() - t
    lat = []
    t = time.perf_counter()
    for i in range(10000):
        t1 = time.perf_counter()
        c.cmd("FETCH %d FLAGS" % (i % count + 1))
        lat.append(time.perf_counter() - t1)
    flags = time.perf_counter() - t
    c.cmd("LOGOUT")
    lat.sort()
    # The median round trip resists bursts of load from other processes better than a total.
    return {"bodies_s": bodies, "bodies_bytes": nbytes, "flags_s": flags,
            "flags_median_us": lat[len(lat) // 2] * 1e6, "flags_p99_us": lat[int(len(lat) * 0.99)] * 1e6}


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        fields = dict(l.split(":", 1) for l in f if ":" in l)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def hold(host, port, user, password, mailbox, sessions, pidfile):
    pid = int(open(pidfile).read().strip())
    before = rss_kib(pid)
    conns = []
    for _ in range(sessions):
        c = Conn(host, port)
        login(c, user, password, mailbox)
        c.cmd("FETCH 1 BODY.PEEK[]")
        conns.append(c)
    during = rss_kib(pid)
    for c in conns:
        c.cmd("LOGOUT")
    return {"sessions": sessions, "rss_before_kib": before[0], "rss_with_sessions_kib": during[0], "hwm_kib": during[1]}


def cpu_seconds(pid):
    """utime + stime of a process (and its waited-for children), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def compare(rounds, count, mailbox, targets):
    best = {}
    cpu = {}
    for _ in range(rounds):
        for t in targets:
            pid = t.get("pid")
            before = cpu_seconds(pid) if pid else 0.0
            r = fetch("127.0.0.1", t["port"], t["user"], t["pass"], mailbox, count, t.get("ca"))
            if pid:
                cpu[t["name"]] = cpu.get(t["name"], 0.0) + cpu_seconds(pid) - before
            b = best.setdefault(t["name"], r)
            b["bodies_s"] = min(b["bodies_s"], r["bodies_s"])
            b["flags_s"] = min(b["flags_s"], r["flags_s"])
            b["flags_median_us"] = min(b["flags_median_us"], r["flags_median_us"])
            b["flags_p99_us"] = min(b["flags_p99_us"], r["flags_p99_us"])
    out = []
    for t in targets:
        row = dict(best[t["name"]], name=t["name"])
        if t["name"] in cpu:
            row["middle_cpu_s_per_run"] = cpu[t["name"]] / rounds
        out.append(row)
    return out


def main():
    mode = sys.argv[1]
    if mode == "compare":
        print(json.dumps(compare(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5]))))
        return
    host, port, user, password, mailbox = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
    if mode == "fetch":
        count = int(sys.argv[7])
        ca = sys.argv[9] if len(sys.argv) > 9 and sys.argv[8] == "--tls" else None
        best = None
        for _ in range(3):
            r = fetch(host, port, user, password, mailbox, count, ca)
            best = r if best is None else {
                "bodies_s": min(best["bodies_s"], r["bodies_s"]),
                "bodies_bytes": r["bodies_bytes"],
                "flags_s": min(best["flags_s"], r["flags_s"]),
            }
        print(json.dumps(best))
    elif mode == "hold":
        print(json.dumps(hold(host, port, user, password, mailbox, int(sys.argv[7]), sys.argv[8])))


if __name__ == "__main__":
    main()
