# -*- coding: utf-8 -*-
"""wgiface: an exit interface brought to its configuration with the real wg (wireguard-go,
as on a cell without kernel WireGuard) in a throwaway network namespace: created, configured,
addressed and up once, nothing to do the second time, a changed peer reconfigured, removed;
config_matches against wg's dump, pure."""
import shutil

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import routing, wgconf, wgiface
from ansible_collections.pic.connectivity.tests.unit.helpers import PRIV, PSK, PUB, in_netns, keyed

IFNAME = 'pic-t-wg'


def normalized(**over):
    return wgconf.parse(keyed(address=['10.200.0.11/32', 'fd00:200::11/128'], allowed_ips=['0.0.0.0/0'], **over))


def running(wg, **over):
    """What wgiface.dump() gives for an interface configured as ``wg``."""
    peer = wg['peers'][0]
    row = {'public_key': peer['public_key'], 'preshared_key': peer['preshared_key'], 'endpoint': peer['endpoint'],
           'allowed_ips': sorted(peer['allowed_ips']), 'latest_handshake': 0, 'rx': 0, 'tx': 0,
           'persistent_keepalive': peer['persistent_keepalive']}
    row.update(over)
    return {'private_key': wgconf.clamped_private_key(wg['private_key']), 'public_key': 'x',
            'listen_port': str(wg['listen_port'] or 0), 'peers': [row]}


def test_config_matches_the_running_interface():
    wg = normalized()
    assert wgiface.config_matches(running(wg), wg) is True
    assert wgiface.config_matches(None, wg) is False


@pytest.mark.parametrize('over', [
    {'preshared_key': PSK},
    {'allowed_ips': ['0.0.0.0/0', '::/0']},
    {'persistent_keepalive': 25},
    {'public_key': PRIV},
])
def test_config_matches_tells_each_peer_setting(over):
    wg = normalized()
    assert wgiface.config_matches(running(wg, **over), wg) is False


def test_config_matches_tells_the_listen_port_and_key():
    wg = normalized(listen_port=51000)
    assert wgiface.config_matches(running(wg), wg) is True
    assert wgiface.config_matches(dict(running(wg), listen_port='51001'), wg) is False
    assert wgiface.config_matches(dict(running(wg), private_key=PUB), wg) is False


def _interface_life(tmp_path):
    net = routing.Routing()
    iface = wgiface.WgInterface(net, IFNAME, str(tmp_path / 'run'))
    wg = normalized()
    path = tmp_path / 'setconf'
    path.write_text(wgconf.render_setconf(wg))
    try:
        first = iface.ensure(wg, str(path))
        second = iface.ensure(wg, str(path))
        dumped = wgiface.dump(IFNAME)
        changed = normalized(persistent_keepalive=25)
        path.write_text(wgconf.render_setconf(changed))
        third = iface.ensure(changed, str(path))
        age = wgiface.handshake_age(IFNAME)
    finally:
        removed = iface.remove()
    return first, second, dumped, third, age, removed, iface.exists(), wgiface.dump(IFNAME)


def test_an_interface_is_brought_up_once_and_removed(tmp_path):
    if not shutil.which('wg') or not shutil.which('wireguard-go'):
        pytest.skip('wg and wireguard-go are needed')
    first, second, dumped, third, age, removed, exists, gone = in_netns(_interface_life, tmp_path)
    assert first[0].startswith('created %s (' % IFNAME)
    assert 'configured %s' % IFNAME in first
    assert 'added address 10.200.0.11 to %s' % IFNAME in first and 'set %s up' % IFNAME in first
    assert second == []
    assert dumped['peers'][0]['public_key'] == PUB and dumped['peers'][0]['allowed_ips'] == ['0.0.0.0/0']
    assert third == ['configured %s' % IFNAME]
    assert age is None                       # no handshake ever
    assert removed == ['deleted %s' % IFNAME]
    assert exists is False and gone is None
