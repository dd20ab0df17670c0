#!/usr/bin/env python3
"""The lab's steady-flow client (test_zero_disturbance), run in a lab peer:
``python3 steady_client.py ADDR PORT SECONDS RATE``.  Until its stdin closes (at most
SECONDS), at the same time:
one TCP connection to ADDR:PORT reading steady_server's paced stream (every byte
checked against the pattern, the longest wait between two reads kept, a reset or
an early end reported), and RATE per second a UDP datagram and an ICMP echo
request to ADDR, each with a sequence number, their echoes counted.  Prints JSON:
what was sent (from ``started``, wall clock, RATE a second), which sequence numbers
never came back, the TCP stream's bytes, error and longest stall.  Starts once the TCP stream flows (``ready`` on stderr).
Stdlib only; ICMP needs a raw socket (root in the peer's namespace)."""
import json
import os
import select
import socket
import struct
import sys
import time

from probe_burst import checksum  # pylint: disable=import-error

MODULUS = 251
LINGER = 3.0     # seconds to wait for the last echoes


class Stream(object):
    """The TCP side: bytes read, checked against the pattern."""

    def __init__(self, family, addr, port):
        self.sock = socket.create_connection((addr, port), timeout=5)
        self.sock.setblocking(False)
        self.got, self.corrupt, self.error, self.ended = 0, 0, None, False
        self.last, self.max_gap = time.monotonic(), 0.0

    def read(self):
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.error = type(exc).__name__
            return
        if not data:
            self.ended = True
            return
        now = time.monotonic()
        self.max_gap = max(self.max_gap, now - self.last)
        self.last = now
        start = self.got % MODULUS
        want = (bytes(range(MODULUS)) * (len(data) // MODULUS + 2))[start:start + len(data)]
        if data != want:
            self.corrupt += 1
        self.got += len(data)


class Echoes(object):
    """The UDP and ICMP side: sequence numbers sent and echoed."""

    def __init__(self, family, addr, port):
        self.family, self.addr, self.port = family, addr, port
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
        self.icmp = socket.socket(family, socket.SOCK_RAW, proto)
        self.ident = os.getpid() & 0xffff
        self.sent, self.udp_back, self.icmp_back = 0, set(), set()

    def send(self):
        seq = self.sent
        self.udp.sendto(struct.pack('!I', seq), (self.addr, self.port))
        kind = 8 if self.family == socket.AF_INET else 128
        body = struct.pack('!I', seq)
        header = struct.pack('!BBHHH', kind, 0, 0, self.ident, seq & 0xffff)
        csum = checksum(header + body) if self.family == socket.AF_INET else 0   # the kernel sums ICMPv6
        self.icmp.sendto(struct.pack('!BBHHH', kind, 0, csum, self.ident, seq & 0xffff) + body, (self.addr, 0))
        self.sent += 1

    def read_udp(self):
        data = self.udp.recv(2048)
        if len(data) == 4:
            self.udp_back.add(struct.unpack('!I', data)[0])

    def read_icmp(self):
        data = self.icmp.recv(2048)
        if self.family == socket.AF_INET:
            data = data[(data[0] & 0x0f) * 4:]
        reply = 0 if self.family == socket.AF_INET else 129
        if len(data) >= 12 and data[0] == reply:
            _type, _code, _sum, ident, _seq = struct.unpack('!BBHHH', data[:8])
            if ident == self.ident:
                self.icmp_back.add(struct.unpack('!I', data[8:12])[0])


def run(addr, port, seconds, rate):
    family = socket.AF_INET6 if ':' in addr else socket.AF_INET
    stream, echoes = Stream(family, addr, port), Echoes(family, addr, port)
    while stream.got == 0 and not stream.error and not stream.ended:
        select.select([stream.sock], [], [], 1.0)
        stream.read()
    sys.stderr.write('ready\n')
    sys.stderr.flush()
    start, wall = time.monotonic(), time.time()
    end, next_send = start + seconds, start
    readers = {stream.sock: stream.read, echoes.udp: echoes.read_udp, echoes.icmp: echoes.read_icmp}

    def stop():
        if not os.read(sys.stdin.fileno(), 4096):   # closed: the sender stops, the echoes linger
            readers.pop(sys.stdin, None)
            timer[0] = min(timer[0], time.monotonic())
    readers[sys.stdin] = stop
    timer = [end]
    while True:
        end = timer[0]
        now = time.monotonic()
        if now >= end + LINGER:
            break
        if now >= next_send and now < end:
            echoes.send()
            next_send += 1.0 / rate
        timeout = max(0.0, min(next_send if now < end else end + LINGER, end + LINGER) - now)
        ready, _w, _x = select.select(list(readers), [], [], timeout)
        for sock in ready:
            readers[sock]()
        if stream.error or stream.ended:
            readers.pop(stream.sock, None)
    return {'sent': echoes.sent, 'started': wall, 'rate': rate,
            'udp_lost': sorted(set(range(echoes.sent)) - echoes.udp_back),
            'icmp_lost': sorted(set(range(echoes.sent)) - echoes.icmp_back),
            'tcp_bytes': stream.got, 'tcp_corrupt': stream.corrupt, 'tcp_error': stream.error,
            'tcp_ended': stream.ended, 'tcp_max_gap': round(max(stream.max_gap, time.monotonic() - stream.last
                                                                if not (stream.error or stream.ended) else 0), 3)}


if __name__ == '__main__':
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))))
