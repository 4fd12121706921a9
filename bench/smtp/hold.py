#!/usr/bin/env python3
"""Opens C connections to the sidecar, each in the middle of a transaction (EHLO, MAIL, RCPT,
DATA with half a 10 KiB message sent), prints "ready", waits for a line on stdin, then finishes
every message and prints how many got 250. For the RSS measurement at 100 connections."""
import socket, sys

port, c, sender, rcpt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
for i in range(c):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"EHLO b\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
    while not f.readline().startswith(b"354"):
        pass
    s.sendall(f"From: <{sender}>\r\nSubject: hold {i}\r\n\r\n".encode() + b"x" * 5000 + b"\r\n")
    socks.append((s, f))
print("ready", flush=True)
sys.stdin.readline()
ok = 0
for s, f in socks:
    s.sendall(b"y" * 5000 + b"\r\n.\r\nQUIT\r\n")
for s, f in socks:
    if f.readline().startswith(b"250"):
        ok += 1
    s.close()
print(ok, flush=True)
