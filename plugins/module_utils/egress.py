# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Egress proof: the public address an exit gives, asked of an echo URL
(``egress_url``: its answer is the caller's source address) through the exit,
and the verdict against the connection's ``expect_egress``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import socket

from . import exits, model
from .exits.base import marked_connection
from .validation import parse_http_url

# An echo answer is one address: more than this is not an echo server's.
MAX_ANSWER = 4096
TIMEOUT = 3.0


def http_get(sock, host, port, path):
    """GET ``path`` on a connected ``sock``: the body of a 200 answer (text), else raise OSError."""
    where = '[%s]' % host if ':' in host else host
    where += '' if port == 80 else ':%d' % port
    sock.sendall(('GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: pic-connectivity-egress\r\nAccept: text/plain\r\n'
                  'Connection: close\r\n\r\n' % (path, where)).encode('ascii'))
    data = b''
    while len(data) <= MAX_ANSWER:
        chunk = sock.recv(MAX_ANSWER + 1 - len(data))
        if not chunk:
            break
        data += chunk
    head, _sep, body = data.partition(b'\r\n\r\n')
    status = head.split(b'\r\n', 1)[0].decode('ascii', 'replace')
    parts = status.split(' ', 2)
    if len(parts) < 2 or not parts[0].startswith('HTTP/') or parts[1] != '200':
        raise OSError('the echo URL answered %r' % status[:80])
    return body.decode('ascii', 'replace')


def read_address(body):
    """The address an echo answer holds (canonical text; an IPv4-mapped IPv6 address
    as IPv4), or None when it holds none."""
    text = body.strip()
    if not text or len(text) > 45:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def exit_socket(conn, layout, state_dir, host, port, timeout):
    """A TCP connection to ``host``:``port`` through ``conn``'s exit, or None when this
    type cannot be asked (raises OSError when it could but did not connect)."""
    provider = exits.get(conn['type'])
    if provider is None:
        return None
    if provider.kind == exits.INTERFACE:
        if layout is None:
            return None
        return marked_connection(host, port, model.conn_mark(conn, layout, True), timeout)
    return provider.egress_socket(conn, state_dir, host, port, timeout)


def probe(conn, layout=None, state_dir=None, timeout=TIMEOUT):
    """(address, why) the echo URL of ``conn`` saw through its exit: address None when
    there was no answer (``why`` says why), (None, None) without an ``egress_url``."""
    url = (conn.get('config') or {}).get('egress_url')
    if not url:
        return None, None
    _url, host, port, path = parse_http_url(url, 'egress_url', allow_loopback=True)
    try:
        sock = exit_socket(conn, layout, state_dir, host, port, timeout)
        if sock is None:
            return None, 'a %s exit cannot be asked for its egress' % conn['type']
        with sock:
            sock.settimeout(timeout)
            body = http_get(sock, host, port, path)
    except (OSError, socket.timeout) as exc:
        return None, 'no answer from %s through the exit: %s' % (url, exc or 'timed out')
    address = read_address(body)
    if address is None:
        return None, 'the answer of %s through the exit is not an address' % url
    return address, None


def inside(address, expected):
    """Is ``address`` in one of the networks ``expected``?"""
    addr = ipaddress.ip_address(address)
    return any(addr in ipaddress.ip_network(net, strict=False) for net in expected)


def verdict(address, expected, why=None):
    """(ok, text) of an egress ``address`` (None: not answered, ``why``) against the
    networks ``expected`` (empty: only reported). ok is True, False (a wrong exit:
    down) or None (not proven: no answer, or nothing expected)."""
    if address is None:
        return None, 'egress unknown (%s)' % (why or 'not probed')
    if not expected:
        return None, 'leaves from %s' % address
    if inside(address, expected):
        return True, 'leaves from %s (expected)' % address
    return False, 'leaves from %s, not from expect_egress %s' % (address, ', '.join(expected))
