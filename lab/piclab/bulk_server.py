#!/usr/bin/env python3
"""The lab's bulk TCP server (test_mss), run in the lab's internet:
``python3 bulk_server.py SIZE PORT_DOWN PORT_UP ADDR4 ADDR6``.  PORT_DOWN sends
SIZE bytes and closes; PORT_UP reads SIZE bytes (or to EOF) and answers with the
number it got (no half-close: redsocks has none).  Stdlib only."""
import socket
import sys
import threading


def serve(family, addr, port, handler):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(16)
    while True:
        conn, _addr = sock.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def main(size, down, up, addr4, addr6):
    def send(conn):
        try:
            conn.sendall(b'x' * size)
        finally:
            conn.close()

    def recv(conn):
        got = 0
        try:
            while got < size:
                data = conn.recv(65536)
                if not data:
                    break
                got += len(data)
            conn.sendall(str(got).encode())
        finally:
            conn.close()

    for family, addr in ((socket.AF_INET, addr4), (socket.AF_INET6, addr6)):
        for port, handler in ((down, send), (up, recv)):
            threading.Thread(target=serve, args=(family, addr, port, handler), daemon=True).start()
    threading.Event().wait()


if __name__ == '__main__':
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
