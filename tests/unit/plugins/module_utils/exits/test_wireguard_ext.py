# -*- coding: utf-8 -*-
"""The wireguard_ext provider: an interface exit whose liveness is its handshake,
from a wg-quick file or its keys, the keys masked, the routes its AllowedIPs."""
import base64

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError

KEYS = [base64.b64encode(bytes([i]) * 32).decode() for i in (1, 2)]


def test_declares():
    prov = exits.provider('wireguard_ext')
    assert prov.kind == exits.INTERFACE and prov.liveness == 'handshake' and not prov.fail_open
    assert prov.service_role == 'wireguard_ext' and not prov.keyed_fingerprint
    assert sorted(o.name for o in prov.options if o.no_log) == ['preshared_key', 'private_key', 'wg_config']


def test_keys_give_the_routes_and_the_secrets():
    public, payload, secrets, routes = connections.validate_config('wireguard_ext', {
        'private_key': KEYS[0], 'address': ['10.64.0.2/32'], 'peer_public_key': KEYS[1],
        'endpoint': '198.51.100.7:51820', 'allowed_ips': ['0.0.0.0/0']})
    assert public['address'] == ['10.64.0.2'] and 'private_key' not in public
    assert KEYS[0] in secrets and payload['private_key'] == KEYS[0]
    assert routes['4'] == ['0.0.0.0/0']


def test_needs_a_file_or_keys():
    with pytest.raises(PicError) as err:
        connections.validate_config('wireguard_ext', {'mtu': 1420})
    assert err.value.field == 'config' and 'wg_config' in err.value.msg
