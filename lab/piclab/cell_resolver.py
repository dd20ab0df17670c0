#!/usr/bin/python3
"""A cell's own DNS resolver, as a PIC cell runs one (runs in a lab cell).

``python3 cell_resolver.py UPSTREAM_JSON DEFAULT_V4 DEFAULT_V6 LISTEN...``:
answers UDP queries on every LISTEN address, port 53, by relaying them to
``UPSTREAM_JSON[client address]`` or else to the default upstream of the
client's family, and relaying the answer back.  Stdlib only."""

import json
import socket
import sys
import threading


def forward(lsock, data, client, target):
    fam = socket.AF_INET6 if ':' in target else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(data, (target, 53))
        lsock.sendto(s.recv(4096), client)
    except OSError:
        pass
    finally:
        s.close()


def serve(address, upstream, default):
    family = 6 if ':' in address else 4
    lsock = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((address, 53))
    while True:
        data, client = lsock.recvfrom(4096)
        target = upstream.get(client[0], default[family])
        threading.Thread(target=forward, args=(lsock, data, client, target), daemon=True).start()


def main(upstream, default, listen):
    for address in listen[1:]:
        threading.Thread(target=serve, args=(address, upstream, default), daemon=True).start()
    serve(listen[0], upstream, default)


if __name__ == '__main__':
    main(json.loads(sys.argv[1]), {4: sys.argv[2], 6: sys.argv[3]}, sys.argv[4:])
