#!/usr/bin/python3
"""Send what a proxy exit cannot carry (runs in a lab peer).

``python3 uncarried_burst.py FAMILY DESTINATION COUNT``: COUNT times a UDP
datagram to 443 and 4433 (QUIC) and 123 (NTP) and an ICMP echo request; then
waits 0.3 s so the packets leave before the sockets close.  Stdlib only."""

import socket
import sys
import time

from probe_burst import icmp_echo, udp  # pylint: disable=import-error

QUIC = b'\xc0\x00\x00\x00\x01piclab-quic'


def main(family, dst, count):
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    keep = []
    for i in range(count):
        for port in (443, 4433, 123):
            udp(af, dst, port, keep, payload=QUIC)
        icmp_echo(family, dst, i, keep, ident=0x7070)
    time.sleep(0.3)


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
