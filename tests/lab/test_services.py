# -*- coding: utf-8 -*-
"""pic_service_egress: a service namespace behind cell1's service network (svc0)."""
import os
import sys
import tempfile

import pytest

from conftest import ROOT, piclab, wait_for
from test_dataplane import EXIT, converge

sys.path.insert(0, os.path.join(ROOT, 'lab', 'servers'))
import services as labsvc  # noqa: E402

SVC = 'cell1-svc'


def seen():
    return piclab.fetch_node(SVC, 4), piclab.fetch_node(SVC, 6)


def email(connection, manifest=None, **extra):
    args = {'service': 'email', 'address': [labsvc.SERVICE_V4 + '/32', labsvc.SERVICE_V6 + '/128'],
            'interface': labsvc.INTERFACE, 'connection': connection,
            'manifest': manifest if manifest is not None else {'name': 'email', 'has_egress': True}}
    args.update(extra)
    return args


@pytest.fixture(scope='module', autouse=True)
def exit_connection(cell):
    converge(cell)
    cell.module('pic_service_egress', {'service': 'email', 'state': 'absent'})
    yield
    cell.module('pic_service_egress', {'service': 'email', 'state': 'absent'})


def test_service_through_a_wireguard_exit_and_back(cell):
    assert seen() == (piclab.wan_address('cell1', 4), piclab.wan_address('cell1', 6))
    result = cell.module('pic_service_egress', email(EXIT))
    assert result['changed'] and result['service']['connection'] == 'exit-wg'
    assert wait_for(lambda: seen() == (piclab.exit_address(4), piclab.exit_address(6)), 15), seen()
    assert not cell.module('pic_service_egress', email(EXIT))['changed']
    cell.module('pic_service_egress', email('default'))
    assert seen() == (piclab.wan_address('cell1', 4), piclab.wan_address('cell1', 6))


def test_manifest_from_a_file_on_the_cell(cell):
    with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as handle:
        handle.write('name: email\nhas_egress: true\n')
    try:
        cell.module('pic_service_egress', email(EXIT, manifest=handle.name))
        assert wait_for(lambda: seen()[0] == piclab.exit_address(4), 15)
    finally:
        os.unlink(handle.name)
        cell.module('pic_service_egress', email('default'))


def test_service_without_egress_is_refused(cell):
    before = cell.registry_bytes(), cell.nft_table()
    result = cell.module('pic_service_egress', dict(email(EXIT, manifest={'name': 'web'}), service='web'),
                         expect_fail=True)
    assert result['msg'].startswith('manifest.has_egress:') and 'web' in result['msg']
    assert (cell.registry_bytes(), cell.nft_table()) == before


def test_deleting_a_connection_a_service_uses_names_the_service(cell):
    cell.module('pic_peer_exit', {'peers': [], 'purge': True})
    cell.module('pic_service_egress', email(EXIT))
    result = cell.module('pic_connection', {'name': EXIT, 'state': 'absent'}, expect_fail=True)
    assert result['users']['services'] == ['email'] and 'service email' in result['msg']
    cell.module('pic_service_egress', email('default'))
