# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tor exit: one Tor client per cell; peers' TCP goes to its TransPort and
their DNS to its DNSPort."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..validation import parse_int
from .base import NO_ROUTES, Option, ProxyExit

PORTS = (('socks_port', 9050), ('trans_port', 9040), ('dns_port', 9053))


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
    def second_verdict(cls, ok, port, host, sport, why):
        if not ok:
            return False, 'SOCKS port %d answers, but the TransPort %d does not: %s' % (port, sport, why)
        return True, 'SOCKS port %d and TransPort %d answer' % (port, sport)


PROVIDER = Tor
