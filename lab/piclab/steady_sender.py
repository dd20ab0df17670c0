#!/usr/bin/python3
"""A steady sender that runs through a fault (runs in a lab peer).

``python3 steady_sender.py V4 V6``: every 20 ms, to each address, a TCP SYN to
port 80, a UDP datagram to 53 and to 443 and an ICMP echo request, until
SIGINT; then prints how many packets the kernel took.  Stdlib only."""

import socket
import sys
import time

from probe_burst import icmp_echo, tcp_syn, udp  # pylint: disable=import-error


def one_round(targets, seq):
    sent = 0
    for fam, dst in targets:
        af = socket.AF_INET if fam == 4 else socket.AF_INET6
        keep = []
        sent += tcp_syn(af, dst, keep)
        sent += sum(udp(af, dst, port, keep, payload=b'picg') for port in (53, 443))
        sent += icmp_echo(fam, dst, seq, keep, ident=0x7067, payload=b'picg')
        for sock in keep:
            sock.close()
    return sent


def main(v4, v6):
    sent, seq = 0, 0
    try:
        while True:
            seq += 1
            sent += one_round(((4, v4), (6, v6)), seq)
            time.sleep(0.02)
    except KeyboardInterrupt:
        print(sent)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
