# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tor exit: one Tor client per cell; peers' TCP goes to its TransPort and
their DNS to its DNSPort."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import os
import socket

from ..validation import parse_int
from .base import NO_ROUTES, Option, ProxyExit
from .proxy import tunnel

PORTS = (('socks_port', 9050), ('trans_port', 9040), ('dns_port', 9053))
# Under the state dir: the control socket the tor role's torrc opens (ControlSocket,
# CookieAuthentication) and the cookie tor writes in its DataDirectory.
CONTROL_SOCKET = ('tor', 'data', 'control.sock')
CONTROL_COOKIE = ('tor', 'data', 'control_auth_cookie')


def _ask(sock, line):
    """Send one control command; the reply's lines (up to the final ``250 OK`` or an error)."""
    sock.sendall(line.encode('ascii') + b'\r\n')
    data = b''
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        last = data.rstrip(b'\r\n').split(b'\r\n')[-1]
        if data.endswith(b'\r\n') and len(last) >= 4 and last[3:4] == b' ':
            break
    return data.decode('ascii', 'replace').rstrip('\r\n').split('\r\n')


def circuit_established(state_dir, timeout=2.0):
    """Tor's ``GETINFO status/circuit-established`` over its control socket: (True or False,
    None), or (None, why) when it cannot be asked (no control socket: a torrc from before it)."""
    path, cookie_path = (os.path.join(state_dir, *parts) for parts in (CONTROL_SOCKET, CONTROL_COOKIE))
    if not os.path.exists(path):
        return None, 'no control socket %s' % path
    try:
        with open(cookie_path, 'rb') as handle:
            cookie = binascii.hexlify(handle.read()).decode('ascii')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            auth = _ask(sock, 'AUTHENTICATE %s' % cookie)
            info = auth
            if auth[-1].startswith('250'):
                info = _ask(sock, 'GETINFO status/circuit-established')
                _ask(sock, 'QUIT')
        finally:
            sock.close()
    except (IOError, OSError, socket.timeout) as exc:
        return None, 'its control socket did not answer: %s' % exc
    for line in info:
        if line.startswith('250-status/circuit-established='):
            return line.split('=', 1)[1].strip() == '1', None
    return None, 'its control socket said %s' % ' '.join(info)[:120]


class Tor(ProxyExit):
    name = 'tor'
    fail_open = True
    singleton = True
    needs_config = False
    service_role = 'tor'
    instance_file = ('tor', 'torrc')
    options = (
        Option('socks_port', 'int', 'Tor\'s SOCKS port (1-65535; default 9050), probed by the health check.'),
        Option('trans_port', 'int', 'Tor\'s TransPort setting (1-65535; default 9040).'),
        Option('dns_port', 'int', 'Tor\'s DNSPort setting (1-65535; default 9053).'),
    )

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        for key, default in PORTS:
            public[key] = parse_int(config.get(key, default), '%s.%s' % (field, key), 1, 65535)
        return public, config, [], dict(NO_ROUTES)

    @classmethod
    def instance_port(cls, conn):
        """The guide's check connects to Tor's SOCKS port."""
        return (conn.get('config') or {}).get('socks_port')

    @classmethod
    def second_target(cls, conn, timeout):
        """The TransPort (local_port, where peers are redirected) must answer too."""
        port = cls.instance_port(conn)
        if conn.get('local_port') and conn['local_port'] != port:
            return ('127.0.0.1', conn['local_port']), 1.0
        return None

    @classmethod
    def deep_check(cls, conn, state_dir, timeout):
        """Tor runs, but can it reach its network? Down without a circuit."""
        if not state_dir:
            return None
        established, why = circuit_established(state_dir, timeout)
        if established is None:
            return None if why.startswith('no control socket') else (True, 'Tor\'s circuits unknown: %s' % why)
        if not established:
            return False, 'Tor runs but has no circuit (status/circuit-established=0)'
        return True, 'Tor has a circuit'

    @classmethod
    def egress_socket(cls, conn, state_dir, host, port, timeout):
        """A connection through Tor's SOCKS port (Tor resolves a host name at the exit)."""
        socks = cls.instance_port(conn)
        if not socks:
            return None
        return tunnel(socket.create_connection(('127.0.0.1', socks), timeout=timeout), 'socks5', host, port)

    @classmethod
    def second_verdict(cls, ok, port, host, sport, why):
        if not ok:
            return False, 'SOCKS port %d answers, but the TransPort %d does not: %s' % (port, sport, why)
        return True, 'SOCKS port %d and TransPort %d answer' % (port, sport)


PROVIDER = Tor
