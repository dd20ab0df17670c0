# -*- coding: utf-8 -*-
"""The exit_types filter: what the roles read of the exit-type registry."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pic.connectivity.plugins.filter.exits import ATTRIBUTES, FilterModule, exit_types
from ansible_collections.pic.connectivity.plugins.module_utils import exits


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'exit_types': exit_types}


@pytest.mark.parametrize('attribute', ATTRIBUTES)
def test_every_attribute_covers_the_registered_types(attribute):
    got = exit_types(attribute)
    assert set(got) <= set(exits.PROVIDERS)
    for name, value in got.items():
        assert value == getattr(exits.PROVIDERS[name], attribute)


def test_kinds_and_service_roles():
    assert exit_types('kind') == {'wireguard_ext': 'interface', 'openvpn': 'interface', 'cell_relay': 'interface',
                                  'tor': 'proxy', 'sshuttle': 'proxy', 'proxy': 'proxy'}
    assert exit_types('service_role')['openvpn'] == 'openvpn_client'
    assert 'cell_relay' not in exit_types('service_role')


def test_an_unknown_attribute_is_an_error_naming_it():
    with pytest.raises(AnsibleFilterError) as err:
        exit_types('__class__')
    assert '__class__' in str(err.value)
