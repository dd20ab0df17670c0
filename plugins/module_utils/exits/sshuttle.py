# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sshuttle exit: peers' TCP (and DNS) carried over SSH to a server, run by
the sshuttle role under the exit guard."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..errors import PicError
from ..validation import check_command, check_host, check_text, check_user, parse_address, parse_int
from .base import NO_ROUTES, Option, ProxyExit, health_port_setting, marked_connection, server_of


def _host(value, field):
    """The SSH server of an sshuttle exit: a host name (RFC 1123) or an IP address."""
    if not isinstance(value, str):
        raise PicError("must be a host name or IP address", field, value)
    return check_host(value, field)


def _dns_server(value, field):
    """sshuttle forwards DNS to one server (--to-ns): an address, or a list holding one."""
    if isinstance(value, list):
        if len(value) != 1:
            raise PicError("must be one DNS server address (sshuttle forwards to one server)", field, value)
        field, value = field + '[0]', value[0]
    if not isinstance(value, str):
        raise PicError("must be the IP address of a DNS server", field, value)
    return parse_address(value, field)


class Sshuttle(ProxyExit):
    name = 'sshuttle'
    proof = 'answer'
    reacher = 'sshuttle'
    service_role = 'sshuttle'
    instance_file = ('sshuttle', '%s.conf')
    options = (
        Option('host', 'str', 'The SSH server (a host name or an IP address).', required=True),
        Option('user', 'str', 'The SSH user (default C(root)).'),
        Option('port', 'int', 'The SSH port (1-65535; default 22).'),
        Option('ssh_key', 'str', 'The text of the SSH private key.', secret=True),
        Option('known_hosts', 'str', 'The text of the known_hosts file that holds the server\'s key.'),
        Option('subnets', 'raw', 'Refused: an sshuttle exit carries every TCP connection of its peers.'),
        Option('dns', 'raw', 'One DNS server (an address, or a list holding one) that sshuttle forwards the '
               'peers\' DNS to.'),
        Option('python', 'str', 'The Python command on the server (one word, for example C(python3)).'),
        Option('health_port', 'int', 'The TCP port (1-65535; default 80) of C(health_target) that the health check '
               'and the monitor connect to through the instance (from the cell, with the connection\'s mark, so '
               'that it takes the redirect of its peers\' TCP) and send a request (an HTTP C(HEAD /)); the exit '
               'is down unless the target answers, so a server that cannot reach it or an SSH session that '
               'carries nothing is down while sshuttle runs.'),
    )

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        if not config.get('host'):
            raise PicError("an sshuttle connection needs host (the SSH server)", field + '.host')
        if config.get('subnets') is not None:
            raise PicError("is not supported: an sshuttle exit carries every TCP connection of its peers "
                           "(the cell redirects them to the instance)", field + '.subnets', config['subnets'])
        public.update({'host': _host(config['host'], field + '.host'),
                       'port': parse_int(config.get('port', 22), field + '.port', 1, 65535),
                       'user': check_user(config.get('user', 'root'), field + '.user')})
        if config.get('dns') is not None:
            public['dns'] = [_dns_server(config['dns'], field + '.dns')]
        for key in ('ssh_key', 'known_hosts'):
            if config.get(key) is not None:
                if not isinstance(config[key], str):
                    raise PicError("must be a string (the text of the file)", '%s.%s' % (field, key))
                # the text of a file: lines without other control characters
                check_text(config[key], '%s.%s' % (field, key), secret=key == 'ssh_key', allow='\n\r\t')
        if config.get('python') is not None:
            public['python'] = check_command(config['python'], field + '.python')
        health_port_setting(config, public, field)
        return public, config, cls.secret_values(config), dict(NO_ROUTES)

    @classmethod
    def upstream(cls, conn):
        """The SSH server."""
        return server_of(conn)

    @classmethod
    def egress_socket(cls, conn, state_dir, host, port, timeout):
        """A connection from the cell to ``host``:``port`` with the connection's mark: the
        cell's data plane redirects it to the instance as it does its peers' TCP, and
        sshuttle carries it over its SSH session (the deep probe's and the egress proof's)."""
        if not conn.get('mark'):
            return None
        return marked_connection(host, port, conn['mark'], timeout)


PROVIDER = Sshuttle
