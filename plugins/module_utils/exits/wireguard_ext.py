# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The wireguard_ext exit: a WireGuard tunnel to a provider's server (a wg-quick
file or its keys), brought up by the cell itself (kernel WireGuard or wireguard-go)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .. import wgconf
from ..errors import PicError
from .base import HANDSHAKE_OPTIONS, InterfaceExit, Option, handshake_settings


class WireguardExt(InterfaceExit):
    name = 'wireguard_ext'
    service_role = 'wireguard_ext'
    liveness = 'handshake'
    cell_runs_wireguard = True
    options = (
        Option('wg_config', 'str', 'The text of a WireGuard file as a provider hands it out (C([Interface]) with '
               'C(PrivateKey) and C(Address), one or more C([Peer]) with C(PublicKey), C(Endpoint) and '
               'C(AllowedIPs)); C(PostUp)-style commands and C(Table) are refused. Required unless '
               'C(private_key) is given.', holds_secrets=True),
        Option('private_key', 'str', 'The tunnel\'s private key (base64), instead of C(wg_config).', secret=True),
        Option('address', 'raw', 'The tunnel addresses (a list, or one string of comma-separated addresses); '
               'required with C(private_key).'),
        Option('peer_public_key', 'str', 'The server\'s public key; required with C(private_key).'),
        Option('endpoint', 'str', 'The server as C(host:port); required with C(private_key).'),
        Option('allowed_ips', 'raw', 'What the tunnel carries; defaults to C(0.0.0.0/0) and C(::/0).'),
        Option('preshared_key', 'str', 'The peer\'s preshared key (base64).', secret=True),
        Option('persistent_keepalive', 'int', 'Keepalive interval in seconds (0-65535).'),
        Option('mtu', 'int', 'The interface MTU (1280-9000).'),
        Option('dns', 'raw', 'DNS servers of the exit (a list, or one string of comma-separated addresses); '
               'the peers\' DNS is pinned to them.'),
        Option('listen_port', 'int', 'The tunnel\'s local UDP port (1-65535).'),
    ) + HANDSHAKE_OPTIONS

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        if config.get('wg_config') is None and config.get('private_key') is None:
            raise PicError("a wireguard_ext connection needs wg_config (the WireGuard file) or private_key, "
                           "address, peer_public_key and endpoint", field)
        handshake_settings(config, public, field)
        wg = wgconf.parse(config, field)
        public.update(wgconf.public_view(wg))
        routes = wgconf.carried_routes(wg)
        return public, wg, wgconf.secrets(wg), {'4': routes[4], '6': routes[6]}


PROVIDER = WireguardExt
