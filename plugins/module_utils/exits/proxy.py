# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy exit: redsocks to an upstream SOCKS5 or HTTP CONNECT proxy, run by
the proxy role under the exit guard."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import re
import socket
import struct

from ..errors import PicError
from ..validation import check_secret, check_word, parse_address, parse_int
from .base import NO_ROUTES, Option, ProxyExit, Refused, health_port_setting, server_of

# redsocks' parser takes a quoted string equal to one of its punctuation or comment tokens for it.
REDSOCKS_TOKENS = ('{', '}', '=', ';', '//', '/*')
PROXY_TYPES = ('socks5', 'http-connect')
# The head of a proxy's answer to CONNECT (status line and headers) is read up to this.
MAX_CONNECT_HEAD = 8192
SOCKS5_REPLIES = {1: 'general failure', 2: 'not allowed by its rules', 3: 'network unreachable',
                  4: 'host unreachable', 5: 'connection refused', 6: 'TTL expired', 7: 'command not supported',
                  8: 'address type not supported'}


def _recv_exactly(sock, size):
    data = b''
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError('the proxy closed the connection')
        data += chunk
    return data


def _is_ipv4(target):
    try:
        socket.inet_pton(socket.AF_INET, target)
    except (OSError, ValueError):
        return False
    return True


def _socks5_address(target):
    """DST.ADDR of a SOCKS5 request: an IPv4 or IPv6 address, or a (validated) host name."""
    if _is_ipv4(target):
        return socket.inet_pton(socket.AF_INET, target)
    if ':' in target:
        return socket.inet_pton(socket.AF_INET6, target)
    name = target.encode('ascii')
    return struct.pack('!B', len(name)) + name


def socks5_connect(sock, target, port, login=None):
    """A SOCKS5 CONNECT to ``target``:``port`` on ``sock`` (``login``: (user, password),
    RFC 1929): None when granted, else what the proxy said (never the password)."""
    sock.sendall(b'\x05\x02\x00\x02' if login else b'\x05\x01\x00')
    method = _recv_exactly(sock, 2)
    if method == b'\x05\x02' and login:
        user, password = (part.encode('utf-8') for part in login)
        sock.sendall(struct.pack('!BB', 1, len(user)) + user + struct.pack('!B', len(password)) + password)
        if _recv_exactly(sock, 2)[1] != 0:
            return 'it refused the login'
    elif method != b'\x05\x00':
        return 'it wants an authentication'
    sock.sendall(struct.pack('!BBBB', 5, 1, 0, 1 if _is_ipv4(target) else 4 if ':' in target else 3)
                 + _socks5_address(target) + struct.pack('!H', port))
    reply = _recv_exactly(sock, 4)
    if reply[1] != 0:
        return 'it answered %s' % SOCKS5_REPLIES.get(reply[1], 'error %d' % reply[1])
    # BND.ADDR and BND.PORT: read, so that what follows on ``sock`` is the target's
    size = {1: 4, 4: 16}.get(reply[3]) or _recv_exactly(sock, 1)[0]
    _recv_exactly(sock, size + 2)
    return None


def http_connect(sock, target, port, login=None):
    """An HTTP CONNECT to ``target``:``port`` on ``sock`` (``login``: Basic authentication):
    None when granted (2xx), else the status line. The answer's head is read to its end,
    so that what follows on ``sock`` is the target's (the egress proof reads it)."""
    where = '[%s]:%d' % (target, port) if ':' in target else '%s:%d' % (target, port)
    auth = ''
    if login:
        auth = 'Proxy-Authorization: Basic %s\r\n' % base64.b64encode(':'.join(login).encode('utf-8')).decode('ascii')
    sock.sendall(('CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n' % (where, where, auth)).encode('utf-8'))
    # the whole head (a byte at a time: what follows it on ``sock`` is the target's)
    head = b''
    while not head.endswith(b'\r\n\r\n') and len(head) < MAX_CONNECT_HEAD:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    status = head.split(b'\r\n', 1)[0][:512].decode('ascii', 'replace').strip()
    parts = status.split(' ', 2)
    if len(parts) >= 2 and parts[0].startswith('HTTP/') and parts[1].startswith('2'):
        return None
    return 'it answered %r' % status[:80]


def tunnel(sock, proxy_type, host, port, login=None):
    """``sock`` (connected to a proxy) once the proxy connected it to ``host``:``port``;
    closed and OSError when it failed (``Refused`` when the proxy said no)."""
    ask = http_connect if proxy_type == 'http-connect' else socks5_connect
    try:
        refused = ask(sock, host, port, login)
    except OSError:
        sock.close()
        raise
    if refused:
        sock.close()
        raise Refused('the proxy refused %s:%d: %s' % (host, port, refused), refused)
    return sock


def _ipv4(value, field):
    if not isinstance(value, str):
        raise PicError("must be an IPv4 address (redsocks connects to the proxy by address)", field, value)
    return parse_address(value, field, version=4, allow_loopback=True)


def _password(config, field):
    """It goes into redsocks' configuration, inside double quotes."""
    check_secret(config['password'], field + '.password')
    if config['password'] in REDSOCKS_TOKENS:
        raise PicError("must not be a punctuation or comment token of redsocks' configuration (%s): redsocks "
                       "reads it as one even inside quotes (value hidden)" % ' '.join(REDSOCKS_TOKENS),
                       field + '.password')


_PASSWORD_LINE = re.compile(r'^\s*password = "((?:[^"\\]|\\.)*)";\s*$', re.M)


def instance_password(state_dir, conn):
    """The proxy password in the instance's redsocks file (0600, written by the proxy
    role; ``redsocks_string`` escapes), or None."""
    if not state_dir:
        return None
    try:
        with open(os.path.join(state_dir, 'proxy', '%s.conf' % conn['id'])) as handle:
            match = _PASSWORD_LINE.search(handle.read())
    except (IOError, OSError, UnicodeDecodeError):
        return None
    return re.sub(r'\\(.)', r'\1', match.group(1)) if match else None


class Proxy(ProxyExit):
    name = 'proxy'
    reacher = 'the proxy'
    service_role = 'proxy'
    instance_file = ('proxy', '%s.conf')
    options = (
        Option('host', 'str', 'The proxy server\'s IPv4 address.', required=True),
        Option('port', 'int', 'The proxy server\'s port (1-65535).', required=True),
        Option('proxy_type', 'str', 'C(socks5) (default) or C(http-connect).'),
        Option('username', 'str', 'The proxy user name; required with C(password).'),
        Option('password', 'str', 'The proxy password.', secret=True),
        Option('health_port', 'int', 'The TCP port (1-65535; default 80) of C(health_target) that the health check '
               'and the monitor ask the proxy to connect to (a SOCKS5 or HTTP CONNECT request from the cell to the '
               'proxy server, with its login); the exit is down when the proxy cannot reach it.'),
    )

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        if not config.get('host'):
            raise PicError("a proxy connection needs host (the proxy server's IPv4 address)", field + '.host')
        if config.get('port') is None:
            raise PicError("a proxy connection needs port (the proxy server's port)", field + '.port')
        public.update({'host': _ipv4(config['host'], field + '.host'),
                       'port': parse_int(config['port'], field + '.port', 1, 65535)})
        ptype = config.get('proxy_type', 'socks5')
        if ptype not in PROXY_TYPES:
            raise PicError("must be socks5 or http-connect", field + '.proxy_type', ptype)
        public['proxy_type'] = ptype
        if config.get('password') and not config.get('username'):
            raise PicError("a proxy password needs a username", field + '.username')
        if config.get('username') is not None:
            public['username'] = check_word(config['username'], field + '.username')
        if config.get('password') is not None:
            _password(config, field)
        health_port_setting(config, public, field)
        return public, config, cls.secret_values(config), dict(NO_ROUTES)

    @classmethod
    def upstream(cls, conn):
        """The proxy server."""
        return server_of(conn)

    @classmethod
    def egress_socket(cls, conn, state_dir, host, port, timeout):
        """A connection to ``host``:``port`` through the proxy server, as redsocks makes
        for a peer (its login, the password from the instance's file): the egress proof's
        and the deep probe's (down when the proxy cannot reach ``health_target``). None
        when the password of a login cannot be read (the ports decide)."""
        config, server = conn.get('config') or {}, server_of(conn)
        if not server:
            return None
        login = None
        if config.get('username'):
            password = instance_password(state_dir, conn)
            if password is None:
                return None
            login = (config['username'], password)
        return tunnel(socket.create_connection(server, timeout=timeout), config.get('proxy_type'), host, port,
                      login)


PROVIDER = Proxy
