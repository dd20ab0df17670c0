#!/usr/bin/python3
"""One DNS query from a lab node (runs in a lab peer).

``python3 dns_query.py SERVER NAME QTYPE udp|tcp`` asks SERVER:53 for NAME
(QTYPE 1 = A, 28 = AAAA) and prints the first answer's address, ``truncated``
(the TC bit), ``empty rcode N`` (no answer) or ``error ...``.  Stdlib only."""

import random
import socket
import struct
import sys


def query(name, qtype):
    head = struct.pack('!HHHHHH', random.randrange(65536), 0x0100, 1, 0, 0, 0)
    labels = b''.join(bytes([len(label)]) + label.encode() for label in name.split('.'))
    return head + labels + b'\0' + struct.pack('!HH', qtype, 1)


def ask_tcp(family, server, q):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(4)
    s.connect((server, 53))
    s.sendall(struct.pack('!H', len(q)) + q)
    n = struct.unpack('!H', s.recv(2))[0]
    reply = b''
    while len(reply) < n:
        chunk = s.recv(n - len(reply))
        if not chunk:
            break
        reply += chunk
    return reply


def ask_udp(family, server, q):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(4)
    s.sendto(q, (server, 53))
    return s.recv(4096)


def main(server, name, qtype, transport):
    family = socket.AF_INET6 if ':' in server else socket.AF_INET
    try:
        reply = (ask_tcp if transport == 'tcp' else ask_udp)(family, server, query(name, qtype))
        flags, answers = struct.unpack('!H', reply[2:4])[0], struct.unpack('!H', reply[6:8])[0]
    except (OSError, struct.error) as exc:
        return 'error %s' % exc
    if flags & 0x0200:
        return 'truncated'
    if answers == 0:
        return 'empty rcode %d' % (flags & 15)
    size = 4 if qtype == 1 else 16
    return socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, reply[-size:])


if __name__ == '__main__':
    print(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else 'udp'))
