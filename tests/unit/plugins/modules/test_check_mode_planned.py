# -*- coding: utf-8 -*-
"""Check mode reports what a real run would do, errors included: a peer or service
may name a connection an earlier task of the same (check-mode) run creates
(planned_connections, which the role passes), and any other unknown connection is
the real run's error; a call that sets up nothing on a new cell changes nothing."""
import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_peer_exit, pic_service_egress
from ansible_collections.pic.connectivity.plugins.module_utils import runner
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

PLANNED = ['Exit WG', 'Home VPN']


def _doc():
    doc = empty()
    doc['connections']['home-vpn'] = {'id': 'home-vpn', 'name': 'Home VPN', 'type': 'wireguard_ext', 'index': 1,
                                      'table': 10001, 'mark': 0x10000, 'fail_open': False,
                                      'interface': 'pic-home-vpn', 'config': {}}
    doc['peers']['p3'] = {'name': 'p3', 'address': ['10.0.0.13/32'], 'connection': 'home-vpn', 'fail_open': None}
    return doc


def _peers(items, purge=False, planned=None):
    return {'peers': items, 'purge': purge, 'planned_connections': PLANNED if planned is None else planned,
            'peer': None, 'address': None, 'connection': 'default', 'fail_open': None}


ITEMS = [{'name': 'p1', 'address': ['10.0.0.11/32'], 'connection': 'Exit WG'},
         {'name': 'p2', 'address': ['10.0.0.12/32'], 'connection': 'Exit WG', 'fail_open': True}]


def test_check_mode_reports_peers_of_a_connection_the_run_creates():
    plan = pic_peer_exit.planner(_peers(ITEMS), check_mode=True)(_doc())
    assert plan.result['changed_peers'] == ['p1', 'p2']
    assert [p['connection'] for p in plan.result['peers']] == ['exit-wg', 'exit-wg']
    assert plan.diff['after']['p2']['connection'] == 'exit-wg' and plan.diff['after']['p2']['fail_open'] is True
    assert plan.diff['before'] == {'p1': None, 'p2': None}
    assert plan.deferred == ['assign peer %s to connection exit-wg, which an earlier task of this run creates' % n
                             for n in ('p1', 'p2')]
    assert 'exit-wg' not in plan.doc['connections']      # the data plane is planned without it


@pytest.mark.parametrize('check_mode', [True, False])
def test_a_mistyped_connection_is_the_real_runs_error(check_mode):
    items = ITEMS + [{'name': 'p4', 'address': ['10.0.0.14/32'], 'connection': 'Exit W'}]
    doc = _doc()
    if not check_mode:      # the real run: the earlier task created Exit WG
        doc['connections']['exit-wg'] = dict(doc['connections']['home-vpn'], id='exit-wg', name='Exit WG', index=2,
                                             table=10002, mark=0x20000, interface='pic-exit-wg')
    with pytest.raises(PicError) as err:
        pic_peer_exit.planner(_peers(items), check_mode=check_mode)(doc)
    assert err.value.field == 'peers[2].connection' and 'unknown connection' in err.value.msg


def test_outside_check_mode_a_planned_connection_must_exist():
    with pytest.raises(PicError) as err:
        pic_peer_exit.planner(_peers(ITEMS), check_mode=False)(_doc())
    assert err.value.field == 'peers[0].connection'


def test_the_rest_of_an_item_is_checked_as_in_a_real_run():
    items = [{'name': 'p1', 'address': ['10.0.0.13/32'], 'connection': 'Exit WG'}]   # p3's address
    with pytest.raises(PicError):
        pic_peer_exit.planner(_peers(items), check_mode=True)(_doc())
    with pytest.raises(PicError) as err:
        pic_peer_exit.planner(_peers([{'name': 'p9', 'connection': 'Exit WG'}]), check_mode=True)(_doc())
    assert 'address' in err.value.msg or err.value.field.endswith('address')


def test_an_existing_connection_is_planned_as_ever_and_purge_keeps_deferred_peers():
    items = [dict(ITEMS[0]), {'name': 'p3', 'connection': 'Home VPN'}]
    plan = pic_peer_exit.planner(_peers(items, purge=True), check_mode=True)(_doc())
    assert plan.result['changed_peers'] == ['p1']
    assert plan.doc['peers']['p3']['connection'] == 'home-vpn'
    assert len(plan.deferred) == 1


def test_a_peer_moved_to_a_planned_connection_shows_before_and_after():
    plan = pic_peer_exit.planner(_peers([{'name': 'p3', 'connection': 'Exit WG'}]), check_mode=True)(_doc())
    assert plan.diff['before']['p3']['connection'] == 'home-vpn'
    assert plan.diff['after']['p3']['connection'] == 'exit-wg'
    assert plan.diff['after']['p3']['effective_fail_open'] is None
    assert plan.doc['peers']['p3']['connection'] == 'home-vpn'


def _service(connection, manifest=None, planned=None):
    return {'service': 'mail', 'connection': connection, 'address': ['10.1.0.5/32'], 'interface': 'svc0',
            'manifest': manifest, 'fail_open': None, 'state': 'present',
            'planned_connections': PLANNED if planned is None else planned}


def test_check_mode_routes_a_service_through_a_connection_the_run_creates():
    plan = pic_service_egress.planner(_service('Exit WG', {'has_egress': True}), check_mode=True)(_doc())
    assert plan.result['service']['connection'] == 'exit-wg'
    assert plan.diff['after']['connection'] == 'exit-wg' and plan.diff['before'] == {}
    assert plan.deferred == ['route service mail through connection exit-wg, which an earlier task of this run '
                             'creates']
    assert plan.doc['services']['mail']['connection'] == 'default'


@pytest.mark.parametrize('params, field', [(_service('Exit W', {'has_egress': True}), 'connection'),
                                           (_service('Exit WG'), 'manifest'),
                                           (_service('Exit WG', {'has_egress': False}), 'manifest.has_egress')])
def test_a_service_is_checked_as_in_a_real_run(params, field):
    with pytest.raises(PicError) as err:
        pic_service_egress.planner(params, check_mode=True)(_doc())
    assert err.value.field == field


def test_a_call_that_sets_up_nothing():
    assert runner._sets_up_nothing(runner.Plan(empty()))
    doc = empty()
    doc['peers']['p'] = {'address': ['10.0.0.2/32']}
    assert not runner._sets_up_nothing(runner.Plan(doc))
    assert not runner._sets_up_nothing(runner.Plan(empty(), removed=[{'id': 'x'}]))
