#!/usr/bin/env python3
"""The lab's steady-flow server (test_zero_disturbance), run in the lab's internet:
``python3 steady_server.py PORT ADDR4 ADDR6``.  UDP PORT echoes every datagram back;
TCP PORT sends each connection an endless paced stream (CHUNK bytes every
INTERVAL seconds, byte i of the stream = i % 251, so that the client sees any
gap or repeat) until the client goes.  Stdlib only."""
import socket
import sys
import threading
import time

CHUNK = 8192
INTERVAL = 0.01
MODULUS = 251
PATTERN = bytes(range(MODULUS)) * (CHUNK // MODULUS + 2)


def stream(conn):
    sent = 0
    try:
        while True:
            start = sent % MODULUS
            conn.sendall(PATTERN[start:start + CHUNK])
            sent += CHUNK
            time.sleep(INTERVAL)
    except OSError:
        pass
    finally:
        conn.close()


def serve_tcp(family, addr, port):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(16)
    while True:
        conn, _addr = sock.accept()
        threading.Thread(target=stream, args=(conn,), daemon=True).start()


def serve_udp(family, addr, port):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(data, peer)


def main(port, addr4, addr6):
    for family, addr in ((socket.AF_INET, addr4), (socket.AF_INET6, addr6)):
        threading.Thread(target=serve_tcp, args=(family, addr, port), daemon=True).start()
        threading.Thread(target=serve_udp, args=(family, addr, port), daemon=True).start()
    threading.Event().wait()


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
