# -*- coding: utf-8 -*-
"""Cell links (module_utils/links.py) and the local networks of the settings (model.normalize_settings).

Regressions of issue 11: each case was accepted (or echoed a secret) before the grammar was made strict.
"""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import links, model
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty


@pytest.mark.parametrize('nets,field', [(['0.0.0.0/0'], 'local_networks[0]'),
                                        (['192.168.0.0/16', '::/0'], 'local_networks[1]'),
                                        (['192.168.0.0/16', '192.168.1.0/24'], 'local_networks[1]'),
                                        (['192.168.1.0/24\n'], 'local_networks[0]')])
def test_bad_local_networks(nets, field):
    with pytest.raises(PicError) as err:
        model.normalize_settings({'local_networks': nets})
    assert err.value.field == field


@pytest.mark.parametrize('link,field', [
    ({'cell': 'cell-b\n', 'interface': 'cl-b'}, 'links[0].cell'),
    ({'cell': 'cell-b', 'interface': 'cl-b\n'}, 'links[0].interface'),
    ({'cell': 'cell-b', 'interface': 'wg0'}, 'links[0].interface'),
])
def test_bad_links(link, field):
    with pytest.raises(PicError) as err:
        links.plan(empty(), [link])
    assert err.value.field == field


def test_relays_of_look_alike_cells_do_not_share_an_id():
    with pytest.raises(PicError) as err:
        links.plan(empty(), [{'cell': 'cell.b', 'interface': 'cl-1', 'remote_offers_exit': True},
                             {'cell': 'cell-b', 'interface': 'cl-2', 'remote_offers_exit': True}])
    assert 'cell.b' in str(err.value) and 'cell-b' in str(err.value)


def test_a_relay_keeps_its_id():
    doc = empty()
    legacy = 'a-cell-with-a-very-long-name-that'
    cell = 'a-cell-with-a-very-long-name-that-was-cut'
    doc['connections'][legacy] = {'id': legacy, 'name': cell, 'cell': cell, 'type': 'cell_relay', 'index': 1,
                                  'table': 10001, 'mark': 0x10000, 'fail_open': False, 'config': {}, 'dns': []}
    doc['peers']['p'] = {'name': 'p', 'address': ['10.0.0.2/32'], 'connection': legacy, 'fail_open': None}
    new, relays, orphans = links.plan(doc, [{'cell': cell, 'interface': 'cl-x', 'remote_offers_exit': True}])
    assert relays == [legacy] and not orphans and list(new['connections']) == [legacy]
