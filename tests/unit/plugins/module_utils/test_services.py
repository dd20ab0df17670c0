# -*- coding: utf-8 -*-
"""Services (module_utils/services.py): a manifest given by path is a regular,
bounded file (a FIFO held pic_service_egress and the registry lock forever,
/dev/zero filled the memory of the cell); plan() of one pic_service_egress call."""
import json
import os

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import services
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


def fifo(tmp_path):
    path = str(tmp_path / 'fifo')
    os.mkfifo(path)
    return path


def big(tmp_path):
    path = tmp_path / 'big.yml'
    path.write_text('has_egress: true\n' + '#' * services.MANIFEST_MAX)
    return str(path)


# (path maker, message)
REFUSED = [
    (lambda tmp_path: '/dev/zero', 'is not a regular file'),
    (lambda tmp_path: '/dev/null', 'is not a regular file'),
    (fifo, 'is not a regular file'),
    (str, 'is not a regular file'),
    (big, 'is larger than'),
    (lambda tmp_path: str(tmp_path / 'missing.yml'), 'cannot be read'),
]


@pytest.mark.parametrize('make,message', REFUSED)
def test_a_manifest_path_that_is_no_bounded_regular_file_is_refused(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(PicError) as err:
        services.load_manifest(path)
    assert message in err.value.msg and err.value.field == 'manifest'


def test_a_manifest_file_is_read(tmp_path):
    path = tmp_path / 'manifest.yml'
    path.write_text('has_egress: true\nname: email\n')
    assert services.load_manifest(str(path)) == {'has_egress': True, 'name': 'email'}
    path.write_text('{"has_egress": false}')
    assert services.load_manifest(str(path)) == {'has_egress': False}


# -- services.plan: one pic_service_egress call ------------------------------------------------------

def _cell():
    from ansible_collections.pic.connectivity.plugins.module_utils import connections, peers
    from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
    doc = connections.plan(empty(), {'name': 'Tor', 'type': 'tor', 'config': {}})[0]
    return peers.plan(doc, [{'peer': 'alice', 'address': ['10.0.0.2'], 'connection': 'tor', 'fail_open': None}])[0]


EMAIL = {'service': 'email', 'address': ['172.31.0.10', 'fd00:31::10'], 'interface': 'svc0',
         'manifest': {'has_egress': True}, 'connection': 'Tor'}


def test_a_service_is_planned_on_a_copy():
    doc = _cell()
    before = json.dumps(doc, sort_keys=True)
    new, name = services.plan(doc, EMAIL)
    assert name == 'email' and json.dumps(doc, sort_keys=True) == before
    assert services.public(new, 'email') == {'service': 'email', 'address': ['172.31.0.10/32', 'fd00:31::10/128'],
                                             'interface': 'svc0', 'connection': 'tor', 'fail_open': None}


def test_a_known_service_keeps_what_a_later_call_leaves_out():
    doc = services.plan(_cell(), EMAIL)[0]
    new = services.plan(doc, {'service': 'email', 'connection': 'default', 'fail_open': False})[0]
    assert services.public(new, 'email') == {'service': 'email', 'address': ['172.31.0.10/32', 'fd00:31::10/128'],
                                             'interface': 'svc0', 'connection': 'default', 'fail_open': False}


def test_absent_forgets_a_service_and_an_unknown_one_is_no_error():
    doc = services.plan(_cell(), EMAIL)[0]
    gone = services.plan(doc, {'service': 'email', 'state': 'absent'})[0]
    assert gone['services'] == {} and services.public(gone, 'email') is None
    assert services.plan(gone, {'service': 'email', 'state': 'absent'})[0] == gone


PLAN_REFUSED = [
    ({'manifest': None}, 'manifest'),
    ({'manifest': {'has_egress': 'yes'}}, 'manifest.has_egress'),
    ({'manifest': {}}, 'manifest.has_egress'),
    ({'manifest': 42}, 'manifest'),
    ({'service': 'e mail'}, 'service'),
    ({'address': None}, 'address'),
    ({'address': ['172.31.0.10', '0.0.0.0/0']}, 'address[1]'),
    ({'address': ['10.0.0.2']}, None),                 # alice's address: overlaps are refused
    ({'interface': None}, 'interface'),
    ({'interface': 'svc0\n'}, 'interface'),
    ({'connection': 'nowhere'}, 'connection'),
]


@pytest.mark.parametrize('over, field', PLAN_REFUSED)
def test_a_bad_call_is_refused_naming_the_field(over, field):
    doc = _cell()
    before = json.dumps(doc, sort_keys=True)
    with pytest.raises(PicError) as err:
        services.plan(doc, dict(EMAIL, **over))
    if field is not None:
        assert err.value.field == field, err.value.msg
    else:
        assert 'alice' in err.value.msg or '10.0.0.2' in err.value.msg
    assert json.dumps(doc, sort_keys=True) == before


def test_the_default_gateway_needs_no_manifest():
    new = services.plan(_cell(), dict(EMAIL, connection='default', manifest=None))[0]
    assert new['services']['email']['connection'] == 'default'
