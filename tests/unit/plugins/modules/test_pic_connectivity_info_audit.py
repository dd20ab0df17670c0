# -*- coding: utf-8 -*-
"""The audit journal through the modules, run as Ansible runs them on a throwaway network
namespace: every change is journalled with its actor (nothing for a no-op or check mode),
pic_connectivity_info returns the recent entries, and no secret of a connection (a WireGuard
private or preshared key, an OpenVPN or proxy password) leaves a trace in the journal."""
import json
import os
import shutil

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_connection, pic_connectivity_info, pic_peer_exit
from ansible_collections.pic.connectivity.tests.unit.helpers import PRIV, PSK, in_netns, keyed, run_module

OVPN_PASSWORD = 'Ovpn-pass-7741'
PROXY_PASSWORD = 'Proxy-pass-5512'


@pytest.fixture
def state_dir(tmp_path, libnftables):
    return str(tmp_path / 'state')


def journal_text(state_dir):
    path = os.path.join(state_dir, 'audit.jsonl')
    return open(path).read() if os.path.exists(path) else ''


def test_changes_are_journalled_with_their_actor_and_info_returns_them(state_dir):
    def scenario():
        common = {'state_dir': state_dir, 'audit_actor': 'alice@laptop'}
        run_module(pic_connection, dict(common, name='Tor', type='tor'))
        run_module(pic_connection, dict(common, name='Tor', type='tor'))                 # no change
        run_module(pic_peer_exit, dict(common, peer='a', address=['10.0.0.2'], connection='Tor'))
        run_module(pic_peer_exit, dict(common, peer='a', state='absent'), check_mode=True)  # check mode
        run_module(pic_peer_exit, dict(common, peer='a', state='absent'))
        info = run_module(pic_connectivity_info, {'state_dir': state_dir, 'audit_entries': 2})
        every = run_module(pic_connectivity_info, {'state_dir': state_dir})
        bad = run_module(pic_peer_exit, dict(common, peer='b', address=['10.0.0.3'], audit_actor='x\ny'))
        return info, every, bad, journal_text(state_dir)
    info, every, bad, text = in_netns(scenario)
    entries = every['audit']
    assert [e['source'] for e in entries] == ['pic_connection', 'pic_peer_exit', 'pic_peer_exit']
    assert all(e['actor'] == 'alice@laptop' and e['cell_user']['user'] for e in entries)
    assert entries[0]['changed']['connections.tor']['after']['name'] == 'Tor'
    assert entries[1]['changed']['peers.a']['after']['connection'] == 'tor'
    assert entries[2]['changed']['peers.a']['before']['address'] == ['10.0.0.2/32']
    assert entries[2]['changed']['peers.a']['after'] is None and entries[2]['changes']
    assert info['audit'] == entries[1:] and info['changed'] is False
    assert bad['failed'] is True and bad['msg'].startswith('audit_actor:') and len(text.splitlines()) == 3


def test_no_secret_of_a_connection_reaches_the_journal(state_dir):
    if not shutil.which('wg') or not shutil.which('wireguard-go'):
        pytest.skip('wg and wireguard-go are needed')
    ovpn = {'ovpn_config': 'client\nremote vpn.example.net 1194\nauth-user-pass\n', 'username': 'u',
            'password': OVPN_PASSWORD}
    proxy = {'host': '192.0.2.10', 'port': 1080, 'proxy_type': 'socks5', 'username': 'u',
             'password': PROXY_PASSWORD}

    def scenario():
        results = [
            run_module(pic_connection, {'state_dir': state_dir, 'name': 'WG', 'type': 'wireguard_ext',
                                        'config': keyed(preshared_key=PSK)}),
            run_module(pic_connection, {'state_dir': state_dir, 'name': 'VPN', 'type': 'openvpn', 'config': ovpn}),
            run_module(pic_connection, {'state_dir': state_dir, 'name': 'Proxy', 'type': 'proxy', 'config': proxy}),
            run_module(pic_connection, {'state_dir': state_dir, 'name': 'Proxy', 'type': 'proxy',
                                        'config': dict(proxy, password=PROXY_PASSWORD + 'x')}),
            run_module(pic_connection, {'state_dir': state_dir, 'name': 'WG', 'state': 'absent'}),
        ]
        return results, journal_text(state_dir)
    results, text = in_netns(scenario)
    # the proxy's password is the exit service's (the role templates it), not the registry's: no change here
    assert [r.get('changed') for r in results] == [True, True, True, False, True], [r.get('msg') for r in results]
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e['source'] for e in entries] == ['pic_connection'] * 4
    assert entries[0]['secrets_changed'] == ['WG'] and 'secrets_changed' not in entries[1]
    for secret in (PRIV, PSK, OVPN_PASSWORD, PROXY_PASSWORD, PROXY_PASSWORD + 'x'):
        assert secret not in text
    assert 'fingerprint_key' not in text
