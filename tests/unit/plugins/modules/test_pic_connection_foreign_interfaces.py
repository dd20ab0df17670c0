# -*- coding: utf-8 -*-
"""An interface override must be the collection's own: an interface that already exists on the
cell and is not this connection's in the registry is refused before anything is saved."""
import os
import types

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, dataplane, runner
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.plugins.modules.pic_connection import planner


def wg_config(keys, interface=None):
    config = {'private_key': keys[0], 'address': ['10.200.0.11/32'], 'peer_public_key': keys[1],
              'endpoint': '203.0.113.20:51820', 'allowed_ips': ['0.0.0.0/0']}
    if interface:
        config['interface'] = interface
    return config


class FakeCell(object):
    """The cell as transact sees it: its interfaces, and what was done to it."""
    links_of = {}
    done = []

    def __init__(self, registry, hold_facts=False):
        self.registry = registry
        self.routing = types.SimpleNamespace(links=self.links)

    def links(self):
        FakeCell.done.append('links')
        return dict(FakeCell.links_of)

    def check(self, doc, pending=None):
        FakeCell.done.append('check')

    def converge(self, doc, check_mode=False, pending=None):
        FakeCell.done.append('converge')
        return []

    def store_wg(self, conn_id, wg):
        self.registry.write_secret(conn_id, 'x')

    def facts(self, doc):
        return {'peer_networks': []}

    def close(self):
        pass


@pytest.fixture
def cell(monkeypatch, tmp_path):
    monkeypatch.setattr(dataplane, 'Cell', FakeCell)
    FakeCell.links_of = {'lo': 1, 'eth0': 2, 'wg0': 3, 'pic-foreign': 4}
    FakeCell.done = []
    return str(tmp_path / 'state')


def call(state_dir, check_mode=False, **params):
    params.setdefault('type', 'wireguard_ext')
    params.setdefault('state', 'present')
    module = types.SimpleNamespace(params=dict(params, state_dir=state_dir), check_mode=check_mode, _diff=False,
                                   no_log_values=set())
    for key in runner.SETTING_KEYS:
        module.params.setdefault(key, None)
    return runner.transact(module, planner(module.params))


@pytest.mark.parametrize('check_mode', [False, True])
def test_an_existing_foreign_interface_is_refused_and_nothing_is_saved(cell, keys, check_mode):
    with pytest.raises(PicError) as err:
        call(cell, check_mode, name='Exit', config=wg_config(keys, 'pic-foreign'))
    assert err.value.field == 'config.interface'
    assert err.value.value == 'pic-foreign'
    assert 'config.interface' in str(err.value) and "'pic-foreign'" in str(err.value)
    assert 'check' not in FakeCell.done and 'converge' not in FakeCell.done
    assert not os.path.exists(os.path.join(cell, 'registry.json'))
    assert not os.path.exists(os.path.join(cell, 'secrets', 'exit.conf'))


def test_an_override_that_does_not_exist_yet_is_accepted_and_stays_accepted(cell, keys):
    result = call(cell, name='Exit', config=wg_config(keys, 'pic-mine'))
    assert result['connection']['interface'] == 'pic-mine'
    FakeCell.links_of['pic-mine'] = 5   # the collection created it
    FakeCell.done = []
    result = call(cell, name='Exit', fail_open=True, config=wg_config(keys, 'pic-mine'))
    assert result['changed'] and result['connection']['fail_open']
    assert 'links' not in FakeCell.done   # the interface did not change: not looked up


def test_moving_a_connection_onto_a_foreign_interface_is_refused(cell, keys):
    call(cell, name='Exit', config=wg_config(keys, 'pic-mine'))
    with open(os.path.join(cell, 'registry.json'), 'rb') as handle:
        before = handle.read()
    with pytest.raises(PicError, match='already exists on the cell'):
        call(cell, name='Exit', config=wg_config(keys, 'pic-foreign'))
    with open(os.path.join(cell, 'registry.json'), 'rb') as handle:
        assert handle.read() == before


def test_generated_names_and_relays_are_not_overrides(keys):
    before = empty()
    doc, record, _p, _s, _r = connections.plan(before, {'name': 'Exit', 'type': 'wireguard_ext',
                                                        'config': wg_config(keys)})
    assert connections.interface_overrides_changed(before, doc) == {}
    doc2, _rec, _p, _s, _r = connections.plan(doc, {'name': 'Exit', 'config': wg_config(keys, 'pic-new')})
    assert connections.interface_overrides_changed(doc, doc2) == {'pic-new': 'Exit'}
    relay = {'id': 'relay', 'name': 'relay', 'type': 'cell_relay', 'interface': 'pic-foreign',
             'config': {'interface': 'pic-foreign'}}
    doc['connections']['relay'] = relay
    connections.check_overrides_not_foreign(before, doc, lambda: pytest.fail('interfaces looked up'))
