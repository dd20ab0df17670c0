#!/usr/bin/python3
"""The lab's HTTP echo server (runs inside the internet namespace, stdlib only).

Every request is answered with the source address it came from (an IPv4-mapped
IPv6 source as plain IPv4).  ``python3 echo_server.py [PORT]`` (default 80),
listening on every IPv4 and IPv6 address."""

import http.server
import socket
import sys

DEFAULT_PORT = 80


class EchoHandler(http.server.BaseHTTPRequestHandler):
    server_version = "piclab-echo"
    sys_version = ""

    def _reply(self, body=True):
        addr = self.client_address[0]
        if addr.startswith("::ffff:") and "." in addr:
            addr = addr[7:]
        data = addr.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):   # pylint: disable=invalid-name
        self._reply()

    do_POST = do_PUT = do_GET

    def do_HEAD(self):   # pylint: disable=invalid-name
        self._reply(body=False)

    def log_message(self, format, *args):   # pylint: disable=redefined-builtin
        pass


class DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    port = int(argv[0]) if argv else DEFAULT_PORT
    DualStackServer(("::", port), EchoHandler).serve_forever()


if __name__ == "__main__":
    main()
