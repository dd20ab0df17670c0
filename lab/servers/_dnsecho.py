# -*- coding: utf-8 -*-
"""A DNS "echo" server for the lab (UDP and TCP, IPv4 and IPv6, stdlib only).

Every A query is answered with the IPv4 address the query came from, every AAAA
query with the IPv6 one (no answer when the family differs); other types get an
empty answer.  Names are not looked at.
``python3 _dnsecho.py PORT ADDRESS...``.
Not a plugin (the leading underscore): lab/servers/sshd.py starts it in the
internet namespace.
"""
import ipaddress
import socket
import socketserver
import struct
import sys
import threading


def answer(query, source):
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    pos = 12
    while pos < len(query) and query[pos]:
        pos += query[pos] + 1
    if pos + 5 > len(query):
        return None
    question = query[12:pos + 5]
    qtype = struct.unpack("!H", query[pos + 1:pos + 3])[0]
    addr = ipaddress.ip_address(source)
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    rdata = None
    if qtype == 1 and addr.version == 4:
        rdata = addr.packed
    elif qtype == 28 and addr.version == 6:
        rdata = addr.packed
    header = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, 1 if rdata else 0, 0, 0)
    out = header + question
    if rdata:
        out += struct.pack("!HHHIH", 0xc00c, qtype, 1, 5, len(rdata)) + rdata
    return out


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        reply = answer(data, self.client_address[0])
        if reply:
            sock.sendto(reply, self.client_address)


class TCPHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        try:
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                data = self.rfile.read(struct.unpack("!H", head)[0])
                reply = answer(data, self.client_address[0])
                if not reply:
                    return
                self.wfile.write(struct.pack("!H", len(reply)) + reply)
                self.wfile.flush()
        except OSError:
            return


class UDPServer(socketserver.ThreadingUDPServer):
    allow_reuse_address = True
    daemon_threads = True


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _server(cls, address, port, handler):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server_cls = type(cls.__name__ + str(family), (cls,), {"address_family": family})
    return server_cls((address, port), handler)


def main(port, addresses):
    # one socket per address: a UDP answer must leave from the address the
    # query was sent to (or the NAT on the way back drops it)
    servers = []
    for address in addresses:
        servers.append(_server(UDPServer, address, port, UDPHandler))
        servers.append(_server(TCPServer, address, port, TCPHandler))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
