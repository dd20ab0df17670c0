# -*- coding: utf-8 -*-
"""The cell_relay provider: an interface exit made by pic_cell_link, never by
pic_connection, with no service role and no settings of its own."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


def test_declares():
    prov = exits.provider('cell_relay')
    assert prov.kind == exits.INTERFACE and prov.liveness == 'handshake'
    assert not prov.creatable and prov.service_role is None and prov.options == ()
    assert 'cell_relay' in exits.TYPES and 'cell_relay' not in exits.CREATABLE_TYPES


def test_is_never_configured_by_hand():
    with pytest.raises(PicError) as err:
        connections.validate_config('cell_relay', {})
    assert err.value.field == 'type' and 'unknown connection type' in err.value.msg
    with pytest.raises(PicError) as err:
        connections.plan({'version': 1, 'settings': {}, 'connections': {}, 'peers': {}, 'services': {}},
                         {'name': 'B', 'type': 'cell_relay', 'config': {}})
    assert 'derived from cell links' in err.value.msg
