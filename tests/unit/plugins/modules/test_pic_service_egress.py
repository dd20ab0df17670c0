# -*- coding: utf-8 -*-
"""pic_service_egress's main(), run as Ansible runs it, on a cell that is a throwaway
network namespace with one tor connection: a service with egress is routed once, check
mode, bad inputs fail naming the field with nothing written, absent forgets it."""
import json

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_connection, pic_service_egress
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, kernel_state, run_module

EMAIL = {'service': 'email', 'address': ['172.31.0.10/32'], 'interface': 'svc0', 'manifest': {'has_egress': True},
         'connection': 'Tor'}


@pytest.fixture
def state_dir(tmp_path, libnftables):
    return str(tmp_path / 'state')


def on_cell(state_dir, *calls):
    """In a new namespace: the tor connection, then ``calls`` (args, options); their results,
    the registry's services and the nftables table as text."""
    def scenario():
        run_module(pic_connection, {'name': 'Tor', 'type': 'tor', 'state_dir': state_dir})
        results = [run_module(pic_service_egress, dict(args, state_dir=state_dir), **options)
                   for args, options in calls]
        return results, Registry(state_dir).load().get('services', {}), json.dumps(kernel_state()['table'])
    return in_netns(scenario)


def test_a_service_is_routed_once(state_dir):
    (first, second), services, table = on_cell(state_dir, (EMAIL, {}), (EMAIL, {}))
    assert first['changed'] is True
    assert first['service'] == {'service': 'email', 'address': ['172.31.0.10/32'], 'interface': 'svc0',
                                'connection': 'tor', 'fail_open': None}
    assert second['changed'] is False and second['changes'] == []
    assert services['email']['connection'] == 'tor'
    assert '172.31.0.10' in table


def test_check_mode_writes_nothing(state_dir):
    (result,), services, table = on_cell(state_dir, (EMAIL, {'check_mode': True}))
    assert result['changed'] is True
    assert services == {} and '172.31.0.10' not in table


@pytest.mark.parametrize('over, field', [
    ({'manifest': {'has_egress': False}}, 'manifest'),
    ({'service': 'em ail'}, 'service'),
    ({'address': ['172.31.0.10/32', '::/0']}, 'address[1]'),
    ({'interface': 'svc0;x'}, 'interface'),
    ({'connection': 'nowhere'}, 'connection'),
])
def test_a_bad_input_fails_naming_the_field_and_writes_nothing(state_dir, over, field):
    (result,), services, table = on_cell(state_dir, (dict(EMAIL, **over), {}))
    assert result['failed'] is True
    assert result['msg'].startswith(field), result['msg']
    assert services == {} and '172.31.0.10' not in table


def test_absent_forgets_the_service(state_dir):
    (_first, gone, again), services, table = on_cell(state_dir, (EMAIL, {}), ({'service': 'email', 'state': 'absent'}, {}),
                                                     ({'service': 'email', 'state': 'absent'}, {}))
    assert gone['changed'] is True and gone['service'] is None
    assert again['changed'] is False
    assert services == {} and '172.31.0.10' not in table
