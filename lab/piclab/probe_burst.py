#!/usr/bin/python3
"""Fire a burst toward an address without waiting for answers (runs in a lab peer).

``python3 probe_burst.py FAMILY DESTINATION COUNT``: COUNT times a TCP SYN to
port 80, a UDP datagram to 53 and to 443, and an ICMP echo request; then waits
0.2 s so the packets leave before the sockets close.  Stdlib only."""

import socket
import struct
import sys
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def tcp_syn(af, dst, keep):
    try:
        t = socket.socket(af, socket.SOCK_STREAM)
        t.setblocking(False)
        keep.append(t)
        t.connect_ex((dst, 80))
    except OSError:
        pass


def udp(af, dst, port, keep):
    try:
        u = socket.socket(af, socket.SOCK_DGRAM)
        keep.append(u)
        u.setblocking(False)
        u.sendto(b"piclab-probe", (dst, port))
    except OSError:
        pass


def icmp_echo(fam, dst, seq, keep):
    try:
        if fam == 4:
            r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            h = struct.pack("!BBHHH", 8, 0, 0, 0x7069, seq) + b"piclab"
            h = h[:2] + struct.pack("!H", checksum(h)) + h[4:]
        else:
            r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            h = struct.pack("!BBHHH", 128, 0, 0, 0x7069, seq) + b"piclab"
        keep.append(r)
        r.setblocking(False)
        r.sendto(h, (dst, 0))
    except OSError:
        pass


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    fam, dst, n = int(argv[0]), argv[1], int(argv[2])
    af = socket.AF_INET if fam == 4 else socket.AF_INET6
    keep = []
    for i in range(n):
        tcp_syn(af, dst, keep)
        for port in (53, 443):
            udp(af, dst, port, keep)
        icmp_echo(fam, dst, i, keep)
    time.sleep(0.2)


if __name__ == "__main__":
    main()
