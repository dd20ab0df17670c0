# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The openvpn exit: an OpenVPN client from the user's .ovpn file (checked
against the client allow-list), run by the openvpn_client role."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .. import openvpn as ovpn
from ..errors import PicError
from ..validation import check_secret, check_text
from .base import ALL_ROUTES, InterfaceExit, Option, fingerprint


def _credentials(config, field):
    """The auth-user-pass lines: one line each, never shown."""
    if config.get('username') is not None:
        check_text(config['username'], field + '.username')
        if not config['username'] or len(config['username']) > 256:
            raise PicError("must be 1-256 characters", field + '.username', config['username'])
    if config.get('password') is not None:
        check_secret(config['password'], field + '.password', forbid=())


class OpenVPN(InterfaceExit):
    name = 'openvpn'
    service_role = 'openvpn_client'
    liveness = 'link'
    keyed_fingerprint = True
    options = (
        Option('ovpn_config', 'str', 'The text of the .ovpn file (checked against the client allow-list; inline '
               'keys are masked).', holds_secrets=True, required=True),
        Option('username', 'str', 'The C(auth-user-pass) user name (1-256 characters); goes with C(password).'),
        Option('password', 'str', 'The C(auth-user-pass) password; goes with C(username).', secret=True),
    )

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        _credentials(config, field)
        public['remote'] = ovpn.validate(config, field)
        public['fingerprint'] = fingerprint(config, fingerprint_key)
        # Everything goes into the tunnel; what it cannot carry is dropped there, never leaked.
        return public, config, cls.secret_values(config), dict(ALL_ROUTES)

    @classmethod
    def restart_orphaned(cls, state_dir, conn):
        """An OpenVPN whose tun device was deleted never recovers by itself."""
        return ovpn.restart_orphaned(state_dir, conn)


PROVIDER = OpenVPN
