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
    """Each sender returns whether the kernel took the packet."""
    try:
        t = socket.socket(af, socket.SOCK_STREAM)
        t.setblocking(False)
        keep.append(t)
        t.connect_ex((dst, 80))
        return True
    except OSError:
        return False


def udp(af, dst, port, keep, payload=b"piclab-probe"):
    try:
        u = socket.socket(af, socket.SOCK_DGRAM)
        keep.append(u)
        u.setblocking(False)
        u.sendto(payload, (dst, port))
        return True
    except OSError:
        return False


def echo_packet(fam, ident, seq, payload):
    """An ICMP (fam 4) or ICMPv6 (fam 6, the kernel sums it) echo request."""
    head = struct.pack("!BBHHH", 8 if fam == 4 else 128, 0, 0, ident, seq & 0xffff) + payload
    if fam == 6:
        return head
    return head[:2] + struct.pack("!H", checksum(head)) + head[4:]


def icmp_socket(fam):
    if fam == 4:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)


def icmp_echo(fam, dst, seq, keep, ident=0x7069, payload=b"piclab"):
    try:
        r = icmp_socket(fam)
        keep.append(r)
        r.setblocking(False)
        r.sendto(echo_packet(fam, ident, seq, payload), (dst, 0))
        return True
    except OSError:
        return False


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
