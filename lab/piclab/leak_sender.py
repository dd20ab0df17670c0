#!/usr/bin/python3
"""The leak matrix's sender: every peer's flows, continuously (runs in a lab peer).

``python3 leak_sender.py PEERS_JSON INTERVAL CELL_V4 CELL_V6``: PEERS_JSON is a
list of ``{"src4", "src6", "dst4", "dst6"}``; every INTERVAL seconds each source
sends to its own destinations a UDP datagram to 443, a DNS query to 53 and one
to the cell's resolver, an ICMP echo request, and every other round a TCP SYN
to port 80 (closed after 1.5 s).  Runs until killed.  Stdlib only."""

import collections
import json
import random
import socket
import struct
import sys
import time

from probe_burst import echo_packet, icmp_socket  # pylint: disable=import-error

AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def dns():
    return struct.pack('!HHHHHH', random.randrange(65536), 0x0100, 1, 0, 0, 0) + \
        b'\x04leak\x06piclab\x04test\x00' + struct.pack('!HH', 1, 1)


def open_sockets(peers):
    udp, raw = {}, {}
    for peer in peers:
        for fam in (4, 6):
            src = peer['src%d' % fam]
            udp[src] = socket.socket(AF[fam], socket.SOCK_DGRAM)
            raw[src] = icmp_socket(fam)
            for sock in (udp[src], raw[src]):
                sock.setblocking(False)
                sock.bind((src, 0))
    return udp, raw


def syn(fam, src, dst):
    t = socket.socket(AF[fam], socket.SOCK_STREAM)
    t.setblocking(False)
    try:
        t.bind((src, 0))
        t.connect_ex((dst, 80))
    except OSError:
        pass
    return t


def send_round(peers, cell, udp, raw, seq):
    opened = []
    for peer in peers:
        for fam in (4, 6):
            src, dst = peer['src%d' % fam], peer['dst%d' % fam]
            if seq % 2 == 0:
                opened.append(syn(fam, src, dst))
            datagrams = ((b'leak-matrix-udp', (dst, 443)), (dns(), (dst, 53)), (dns(), (cell[fam], 53)))
            for payload, target in datagrams + ((echo_packet(fam, 0x6c6b, seq, b'leak-matrix!'), (dst, 0)),):
                try:
                    (raw if target[1] == 0 else udp)[src].sendto(payload, target)
                except OSError:
                    pass
    return opened


def drain(socks):
    for sock in socks:
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass


def main(peers, interval, cell):
    udp, raw = open_sockets(peers)
    tcp, seq = collections.deque(), 0
    while True:
        now = time.monotonic()
        seq += 1
        tcp.extend((now, t) for t in send_round(peers, cell, udp, raw, seq))
        drain(list(udp.values()) + list(raw.values()))
        while tcp and now - tcp[0][0] > 1.5:
            tcp.popleft()[1].close()
        time.sleep(max(0.0, interval - (time.monotonic() - now)))


if __name__ == '__main__':
    main(json.loads(sys.argv[1]), float(sys.argv[2]), {4: sys.argv[3], 6: sys.argv[4]})
