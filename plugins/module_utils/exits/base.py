# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every exit type declares (:class:`Exit`), the settings every type takes
and the checks they share. A provider file (``exits/<type>.py``) subclasses
:class:`InterfaceExit` or :class:`ProxyExit`; the registry (``exits/__init__.py``)
derives every list, default and table of the collection from the providers."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import hashlib
import hmac
import json
import os
import socket

from ..errors import PicError
from ..validation import check_owned_ifname, parse_address, parse_http_url, parse_int, parse_network

INTERFACE, PROXY = 'interface', 'proxy'
# The port of ``health_target`` a proxy-kind exit's deep probe asks for unless ``health_port`` says otherwise.
HEALTH_PORT = 80
# socket.SO_MARK (Linux; Python has the name from 3.12 on)
SO_MARK = getattr(socket, 'SO_MARK', 36)


class Option(object):
    """One key of a type's ``config``: its name, its type as the module docs state
    it (``str``, ``int``, ``list``, ``raw``), whether it is a secret (masked in
    every output, stored in a 0600 file), whether it is a file's text that holds
    secret lines (masked whole), whether the type requires it, and a short
    description for the docs."""

    def __init__(self, name, doc_type, description, secret=False, holds_secrets=False, required=False,
                 elements=None):
        self.name = name
        self.type = doc_type
        self.description = description
        self.secret = secret
        self.holds_secrets = holds_secrets
        self.required = required
        self.elements = elements

    @property
    def no_log(self):
        return self.secret or self.holds_secrets


# The settings every type takes (validated by :func:`common`).
COMMON_OPTIONS = (
    Option('interface', 'str', 'Interface name override of an interface type\'s exit (proxy types take no '
           'interface and ignore it); the interface is the collection\'s own and is deleted '
           'with the connection, so it must start with C(pic-) (1-15 characters of C(a-z), C(0-9) and C(-)); '
           'C(eth0), C(wg0) or any other interface of the cell is refused, and so is a name that already exists '
           'on the cell and is not this connection\'s interface in the registry.'),
    Option('health_target', 'str', 'An IP address probed through the exit by the cell\'s monitor and pic_health '
           '(interface types, a ping through the exit; C(proxy), a request through the proxy server to its '
           'C(health_port); C(sshuttle), a request to its C(health_port) through the instance, which must be '
           'answered).'),
    Option('health_fail_after', 'int', 'Failed probes (1-100) after which the monitor holds the connection down.'),
    Option('health_recover_after', 'int', 'Answered probes (1-100) after which the monitor brings the connection '
           'back.'),
    Option('egress_url', 'str', 'An echo URL (C(http://HOST[:PORT][/PATH]), HOST an IP address, IPv6 in brackets, or '
           'a host name the cell resolves; no credentials, no https) whose answer is the caller\'s source address. '
           'The health check and the monitor ask it through the exit (interface types, a connection with the '
           'connection\'s mark; C(tor), through its SOCKS port; C(proxy), through the proxy server; C(sshuttle), '
           'through the instance, by the redirect its peers\' TCP takes) and report the public address the exit '
           'gives as C(egress).'),
    Option('expect_egress', 'list', 'The addresses or networks (IPv4, IPv6) the exit may leave from; needs '
           'C(egress_url). An exit whose echo answer is outside them is down (a wrong exit is a leak too; the '
           'monitor holds it down, its fail-open peers fall back to the WAN, fail-closed ones are blocked); no '
           'answer leaves the egress part unknown.', elements='str'),
)


# The guide's rule for the types whose liveness is a WireGuard handshake: down
# when the newest handshake is older than this (seconds).
HANDSHAKE_MAX_AGE = 180
HANDSHAKE_OPTIONS = (
    Option('health_handshake_max_age', 'int', 'Seconds (1-86400; default 180, the guide\'s 3 minutes) after '
           'the newest WireGuard handshake of the exit\'s interface after which the health check and the monitor '
           'call it down. WireGuard renews the handshake every 2 minutes while traffic flows (set '
           'C(persistent_keepalive) to keep it flowing), so less than 150 calls a working tunnel down now and then.'),
)


def check_keys(config, allowed, field):
    """Unknown settings are named, never shown: a misspelt key may hold a secret."""
    for key in sorted(config):
        if key not in allowed:
            raise PicError("unknown setting for this connection type (value hidden); allowed: %s"
                           % ', '.join(sorted(allowed)), '%s.%s' % (field, key))


def common(config, field):
    """The settings every type takes, validated: the public part."""
    public = {}
    if config.get('health_target') is not None:
        value = config['health_target']
        if not isinstance(value, str):
            raise PicError("must be an IP address", field + '.health_target', value)
        public['health_target'] = parse_address(value, field + '.health_target')
    for key in ('health_fail_after', 'health_recover_after'):
        if config.get(key) is not None:
            public[key] = parse_int(config[key], '%s.%s' % (field, key), 1, 100)
    if config.get('interface') is not None:
        public['interface'] = check_owned_ifname(config['interface'], field + '.interface')
    return egress_settings(config, public, field)


def egress_settings(config, public, field):
    """``egress_url`` and ``expect_egress`` (which needs the URL), validated into ``public``."""
    if config.get('egress_url') is not None:
        public['egress_url'] = parse_http_url(config['egress_url'], field + '.egress_url')[0]
    expected = config.get('expect_egress')
    if expected is None:
        return public
    if isinstance(expected, str):
        expected = [expected]
    if not isinstance(expected, list) or not expected:
        raise PicError("must be a non-empty list of addresses or networks", field + '.expect_egress', expected)
    if 'egress_url' not in public:
        raise PicError("needs egress_url (the echo URL asked through the exit)", field + '.expect_egress')
    nets = []
    for index, value in enumerate(expected):
        net = str(parse_network(value, '%s.expect_egress[%d]' % (field, index)))
        if net not in nets:
            nets.append(net)
    public['expect_egress'] = nets
    return public


def handshake_settings(config, public, field):
    """``health_handshake_max_age`` of a 'handshake' type, validated into ``public``."""
    if config.get('health_handshake_max_age') is not None:
        public['health_handshake_max_age'] = parse_int(config['health_handshake_max_age'],
                                                       field + '.health_handshake_max_age', 1, 86400)
    return public


def health_port_setting(config, public, field):
    """``health_port`` of a type whose deep probe asks for ``health_target``:``health_port``,
    validated into ``public``."""
    if config.get('health_port') is not None:
        public['health_port'] = parse_int(config['health_port'], field + '.health_port', 1, 65535)
    return public


class Refused(OSError):
    """A proxy refused a request through it; ``why`` is what it said (never a password)."""

    def __init__(self, text, why):
        super(Refused, self).__init__(text)
        self.why = why


def marked_connection(host, port, mark, timeout):
    """A TCP connection to ``host``:``port`` whose packets carry ``mark``: the policy
    routing of an interface exit's mark sends them through its interface; a proxy-kind
    exit's mark takes the redirect to its instance (``model.add_local_redirects``)."""
    family, stype, proto, _name, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        sock.settimeout(timeout)
        sock.connect(addr)
    except OSError:
        sock.close()
        raise
    return sock


def await_answer(sock, host, timeout):
    """Bytes from the far end of ``sock`` after a request (an HTTP HEAD, which any
    server answers somehow): what proves a connection that a transparent instance
    accepted at once really reached ``host``. Raises OSError when it closes first."""
    sock.settimeout(timeout)
    where = '[%s]' % host if ':' in host else host
    sock.sendall(('HEAD / HTTP/1.0\r\nHost: %s\r\nUser-Agent: pic-connectivity-health\r\n\r\n' % where)
                 .encode('ascii'))
    if not sock.recv(1):
        raise OSError('closed without an answer')


def new_fingerprint_key():
    return binascii.hexlify(os.urandom(16)).decode('ascii')


def fingerprint(config, key):
    """What shows that a configuration holding a password changed, without giving the
    password away: an HMAC under the connection's random key (kept in its registry
    record, never shown). A plain hash of a known .ovpn file and a password was a
    test of every guess of the password, offline."""
    text = json.dumps(config, sort_keys=True).encode('utf-8')
    return hmac.new(key.encode('ascii'), text, hashlib.sha256).hexdigest()[:16]


def server_of(conn):
    """(host, port) of the server in a connection's ``host`` and ``port`` settings, or None."""
    config = conn.get('config') or {}
    if config.get('host'):
        return config['host'], int(config.get('port') or 22)
    return None


NO_ROUTES = {'4': [], '6': []}
ALL_ROUTES = {'4': ['0.0.0.0/0'], '6': ['::/0']}


class Exit(object):
    """An exit type. Subclasses set the class attributes and override the hooks."""

    name = None
    kind = None
    # peers of a new connection of this type fall back to the WAN when it is down
    fail_open = False
    # at most one connection of this type per cell
    singleton = False
    # pic_connection creates it (cell_relay: pic_cell_link does)
    creatable = True
    # a new connection of this type needs ``config``
    needs_config = True
    # the role that installs its instances (roles/<service_role>), None: no role
    service_role = None
    # (directory under the state dir, file name; ``%s`` is the connection id) the
    # service role writes for an instance: present = the role installed it
    instance_file = None
    # its public config holds a :func:`fingerprint` under the connection's own key
    # (kept in the record as ``fingerprint_key``)
    keyed_fingerprint = False
    # the keys of ``config`` besides COMMON_OPTIONS
    options = ()

    @classmethod
    def all_options(cls):
        return COMMON_OPTIONS + tuple(cls.options)

    @classmethod
    def keys(cls):
        return frozenset(o.name for o in cls.all_options())

    @classmethod
    def secret_values(cls, config):
        """The values of the secret keys given in ``config`` (masked in every output)."""
        return [config[o.name] for o in cls.options if o.secret and config.get(o.name)]

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        """(public, payload, secrets, routes) of a ``config`` whose keys are known
        and whose common settings are in ``public``: ``payload`` goes to a 0600
        file, ``routes`` are what an interface exit carries per family."""
        raise NotImplementedError


class InterfaceExit(Exit):
    """An exit through a network interface: its own routing table, masqueraded,
    and fail-closed peers can leave by nothing else."""

    kind = INTERFACE
    # the cell brings the interface up itself from the connection's WireGuard
    # payload (kernel WireGuard or wireguard-go) and removes it; otherwise a
    # service role's daemon (OpenVPN) or pic_cell_link (a cell link) does
    cell_runs_wireguard = False
    # what tells the guide's check and the monitor that it is up: 'handshake'
    # (a WireGuard handshake younger than ``handshake_max_age``, 180 s by default)
    # or 'link' (the interface exists)
    liveness = 'handshake'

    @classmethod
    def handshake_max_age(cls, conn):
        """Seconds after the newest handshake when a 'handshake' type is down."""
        return (conn.get('config') or {}).get('health_handshake_max_age') or HANDSHAKE_MAX_AGE

    @classmethod
    def restart_orphaned(cls, state_dir, conn):
        """The monitor found the interface missing: restart what never recovers by
        itself. Returns what was done (text) or None."""
        return None


class ProxyExit(Exit):
    """An exit through a local instance: the cell redirects its peers' TCP (and
    DNS) to the instance's ports; everything else is rejected."""

    kind = PROXY
    # What tells the deep probe that the instance reached ``health_target``: 'grant'
    # (the proxy's answer to the request: SOCKS5, HTTP CONNECT) or 'answer' (a
    # transparent instance accepts every connection at once and closes it when its
    # far side cannot connect: only an answer of the target proves the way)
    proof = 'grant'
    # who reaches the target, in the deep probe's reason
    reacher = 'the instance'

    @classmethod
    def instance_port(cls, conn):
        """The port of the guide's check (the instance's ``local_port``)."""
        return conn.get('local_port')

    @classmethod
    def upstream(cls, conn):
        """(host, port) the instance depends on (the exit guard checks it), or None."""
        return None

    @classmethod
    def second_target(cls, conn, timeout):
        """((host, port), timeout) the exit needs besides its instance port, or None."""
        server = cls.upstream(conn)
        return (server, timeout) if server else None

    @classmethod
    def deep_check(cls, conn, state_dir, timeout):
        """What the ports cannot tell, asked once they answered: (working, reason), or
        None when there is nothing more to ask. By default a connection to
        ``health_target``:``health_port`` (80) through the instance (``egress_socket``,
        the transport of the egress proof too): down when it cannot be made, and for a
        transparent instance (``proof = 'answer'``) when the target does not answer
        a request on it. None without a target or when the type cannot make one."""
        config = conn.get('config') or {}
        target = config.get('health_target')
        if not target:
            return None
        port = config.get('health_port') or HEALTH_PORT
        try:
            sock = cls.egress_socket(conn, state_dir, target, port, timeout)
            if sock is None:
                return None
            try:
                if cls.proof == 'answer':
                    await_answer(sock, target, timeout)
            finally:
                sock.close()
        except Refused as exc:
            return False, '%s cannot reach %s:%d (%s)' % (cls.reacher, target, port, exc.why)
        except (OSError, socket.timeout) as exc:
            return False, '%s cannot reach %s:%d (no answer: %s)' % (cls.reacher, target, port, exc or 'timed out')
        return True, '%s reaches %s:%d' % (cls.reacher, target, port)

    @classmethod
    def egress_socket(cls, conn, state_dir, host, port, timeout):
        """A TCP connection to ``host``:``port`` through the instance (the egress proof asks
        its echo URL on it), or None when this type cannot make one; raises OSError when
        it could but did not connect."""
        return None

    @classmethod
    def second_verdict(cls, ok, port, host, sport, why):
        """(working, reason) once the instance port answered and the second target was probed."""
        if not ok:
            return False, 'instance port %d answers, but its upstream %s:%d does not: %s' % (port, host, sport, why)
        return True, 'instance port %d answers and so does its upstream %s:%d' % (port, host, sport)
