# -*- coding: utf-8 -*-
"""pic_connection refuses an interface override that already exists on the cell and that the
collection did not create (deleting the connection would delete it): a real module run in a
throwaway network namespace (no lab needed; root)."""
import os
import subprocess

import pytest

from test_trust_state import key, ns  # noqa: F401 (ns: the throwaway-namespace fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root (network namespaces)')


def _ip(ns, *args):
    return subprocess.run(['ip', '-n', ns.name] + list(args), capture_output=True, text=True, check=True).stdout


def _state(ns):
    files = sorted(os.path.relpath(os.path.join(d, f), ns.state_dir) for d, _s, names in os.walk(ns.state_dir)
                   for f in names)
    return ns.registry_bytes(), ns.nft(), _ip(ns, '-d', 'link', 'show'), _ip(ns, 'rule', 'show'), \
        _ip(ns, '-6', 'rule', 'show'), files


def _connection(interface):
    return dict(name='Exit', type='wireguard_ext',
                config={'private_key': key(31), 'address': ['10.64.0.2/32'], 'peer_public_key': key(32),
                        'endpoint': '192.0.2.1:51820', 'allowed_ips': ['0.0.0.0/0'], 'interface': interface})


@pytest.mark.parametrize('check', [False, True])
def test_an_existing_foreign_interface_is_refused_and_nothing_changes(ns, check):
    _ip(ns, 'link', 'add', 'pic-foreign', 'type', 'veth', 'peer', 'name', 'pic-foreign-p')
    result, _records, proc, _rc = ns.module('pic_peer_exit', dict(peer='alice', address=['10.0.0.2/32']))
    assert result is not None and not result.get('failed'), (result, proc.stderr)
    before = _state(ns)
    assert before[0] and 'pic_connectivity' in before[1]
    result, _records, proc, _rc = ns.module('pic_connection', _connection('pic-foreign'), check=check)
    assert result is not None, proc.stderr
    assert result.get('failed'), result
    assert result['msg'].startswith('config.interface: already exists on the cell'), result['msg']
    assert "'pic-foreign'" in result['msg']
    assert _state(ns) == before
    assert 'pic-foreign@pic-foreign-p' in _ip(ns, 'link', 'show', 'pic-foreign')


def test_the_connections_own_interface_stays_accepted(ns):
    result, _records, proc, _rc = ns.module('pic_connection', _connection('pic-mine'))
    assert result is not None and not result.get('failed'), (result, proc.stderr)
    assert 'pic-mine' in _ip(ns, 'link', 'show')
    result, _records, proc, _rc = ns.module('pic_connection', dict(_connection('pic-mine'), fail_open=True))
    assert not result.get('failed') and result['changed'], result
