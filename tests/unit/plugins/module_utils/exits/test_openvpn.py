# -*- coding: utf-8 -*-
"""The openvpn provider: an interface exit whose liveness is its tun device, a
keyed fingerprint, the .ovpn text and password masked; the monitor restarts an
OpenVPN whose device was deleted."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits
from ansible_collections.pic.connectivity.plugins.module_utils import openvpn as ovpn
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits import openvpn

OVPN = 'client\ndev tun\nremote vpn.example 1194 udp\n'


def test_declares():
    prov = exits.provider('openvpn')
    assert prov is openvpn.OpenVPN and prov.kind == exits.INTERFACE and prov.liveness == 'link'
    assert prov.keyed_fingerprint and prov.service_role == 'openvpn_client' and prov.instance_file is None
    assert [o.name for o in prov.options if o.no_log] == ['ovpn_config', 'password']


def test_validates_with_a_keyed_fingerprint():
    config = {'ovpn_config': OVPN, 'username': 'u', 'password': 'hunter22'}
    public, _payload, secrets, routes = connections.validate_config('openvpn', config, fingerprint_key='00' * 16)
    assert public['remote'] == ['vpn.example'] and secrets == ['hunter22']
    assert public['fingerprint'] == connections.fingerprint(config, '00' * 16)
    assert routes == {'4': ['0.0.0.0/0'], '6': ['::/0']}
    with pytest.raises(PicError) as err:
        connections.validate_config('openvpn', {'ovpn_config': OVPN, 'username': ''})
    assert err.value.field == 'config.username'


def test_restarts_an_orphaned_instance(monkeypatch):
    monkeypatch.setattr(ovpn, 'restart_orphaned', lambda state_dir, conn: 'restarted %s' % conn['id'])
    assert openvpn.OpenVPN.restart_orphaned('/x', {'id': 'vpn'}) == 'restarted vpn'
    assert exits.provider('wireguard_ext').restart_orphaned('/x', {'id': 'vpn'}) is None
