# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy exit: redsocks to an upstream SOCKS5 or HTTP CONNECT proxy, run by
the proxy role under the exit guard."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..errors import PicError
from ..validation import check_secret, check_word, parse_address, parse_int
from .base import NO_ROUTES, Option, ProxyExit, server_of

# redsocks' parser takes a quoted string equal to one of its punctuation or comment tokens for it.
REDSOCKS_TOKENS = ('{', '}', '=', ';', '//', '/*')
PROXY_TYPES = ('socks5', 'http-connect')


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


class Proxy(ProxyExit):
    name = 'proxy'
    service_role = 'proxy'
    instance_file = ('proxy', '%s.conf')
    options = (
        Option('host', 'str', 'The proxy server\'s IPv4 address.', required=True),
        Option('port', 'int', 'The proxy server\'s port (1-65535).', required=True),
        Option('proxy_type', 'str', 'C(socks5) (default) or C(http-connect).'),
        Option('username', 'str', 'The proxy user name; required with C(password).'),
        Option('password', 'str', 'The proxy password.', secret=True),
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
        return public, config, cls.secret_values(config), dict(NO_ROUTES)

    @classmethod
    def upstream(cls, conn):
        """The proxy server."""
        return server_of(conn)


PROVIDER = Proxy
