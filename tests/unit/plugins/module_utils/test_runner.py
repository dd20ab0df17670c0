# -*- coding: utf-8 -*-
"""runner: the one module builder (secrets masked before AnsibleModule logs)
and the read-only path (a PicError keeps its details)."""
import base64
import json
import types

import pytest

from ansible.module_utils import basic

from ansible_collections.pic.connectivity.plugins.module_utils import connections
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.runner import (
    build_module, cell_argument_spec, config_secrets, mask_forms, read_only, read_only_argument_spec)

PRIVATE = base64.b64encode(b'\x07' * 32).decode()
SSH_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----\n'


@pytest.fixture(params=['journal', 'syslog'])
def logged(monkeypatch, request):
    """What AnsibleModule sends to the journal (or to syslog on a cell without it)."""
    sent = []
    monkeypatch.setattr(basic, 'has_journal', request.param == 'journal')
    monkeypatch.setattr(basic.syslog, 'openlog', lambda *a: None)
    monkeypatch.setattr(basic, 'journal', types.SimpleNamespace(send=lambda **kw: sent.append(repr(kw))),
                        raising=False)
    monkeypatch.setattr(basic.syslog, 'syslog', lambda *a: sent.append(repr(a)))
    return sent


def _args(monkeypatch, **args):
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode())
    monkeypatch.setattr(basic, '_ANSIBLE_PROFILE', 'legacy', raising=False)


def _connection_spec():
    spec = cell_argument_spec()
    spec.update(name=dict(type='str', required=True), type=dict(type='str'), config=dict(type='dict'))
    return spec


@pytest.mark.parametrize('config', [
    {'private_key': PRIVATE, 'preshared_key': PRIVATE[::-1]},
    {'ssh_key': SSH_KEY, 'host': '192.0.2.9'},
    {'password': 'Pass-0123', 'username': 'u'},
    json.dumps({'password': 'Pass-0123', 'username': 'u'}),
    'password=Pass-0123 username=u',
    # secrets of another type than a string, and misspelt secret keys: logged in clear before
    {'password': 83726151, 'username': 'u', 'host': '192.0.2.1', 'port': 1080},
    {'password': ['Pass-0123'], 'username': 'u'},
    {'privatekey': PRIVATE, 'host': '192.0.2.9'},
    {'private-key': PRIVATE},
    {'Password': 'Pass-0123'},
    {'passwd': 'Pass-0123'},
    {'wg_config': ['[Interface]', 'PrivateKey = ' + PRIVATE]},
    {'ssh_key': {'text': SSH_KEY}},
])
def test_the_invocation_is_logged_with_the_secrets_masked(monkeypatch, logged, config):
    _args(monkeypatch, name='x', type='proxy', config=config)
    module = build_module(_connection_spec(), secrets_of=config_secrets(connections.secrets_in))
    assert logged, 'nothing was logged: the test proves nothing'
    assert any('Invoked with' in line for line in logged)
    text = '\n'.join(logged)
    for secret in (PRIVATE, PRIVATE[::-1], 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmU', 'Pass-0123', '83726151'):
        assert secret not in text
    assert module.params['name'] == 'x'


def test_the_task_no_log_still_silences_the_log(monkeypatch, logged):
    _args(monkeypatch, name='x', _ansible_no_log=True)
    build_module(_connection_spec(), secrets_of=config_secrets(connections.secrets_in))
    assert logged == []


def test_mask_forms_cover_lines_and_escaped_forms():
    forms = mask_forms(SSH_KEY)
    assert SSH_KEY in forms
    assert 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmU' in forms
    assert repr(SSH_KEY)[1:-1] in forms
    assert mask_forms('') == [] and mask_forms(None) == []


def test_read_only_returns_the_details_of_a_pic_error(monkeypatch, logged, capsys):
    _args(monkeypatch, name='x')
    module = build_module(_connection_spec())

    def gather(_module):
        raise PicError("is still used", 'name', 'x', details={'users': {'peers': ['alice']}})
    with pytest.raises(SystemExit):
        read_only(module, gather)
    out = json.loads(capsys.readouterr().out)
    assert out['failed'] and out['users'] == {'peers': ['alice']}
    assert "name: is still used (got 'x')" == out['msg']


def test_read_only_modules_share_the_cell_options_and_allow_empty():
    spec = read_only_argument_spec()
    assert spec['allow_empty'] == dict(type='bool', default=False)
    assert dict((k, v) for k, v in spec.items() if k != 'allow_empty') == cell_argument_spec()


def test_a_bulk_list_is_deep_copied_as_copy_deepcopy_would():
    import copy
    from ansible_collections.pic.connectivity.plugins.module_utils.runner import BulkItems
    nested = {'deep': [{'x': 1}]}
    items = BulkItems([{'peer': 'p%d' % i, 'address': ['10.0.0.%d/32' % i], 'fail_open': None} for i in range(100)] +
                      [nested, 'text', 3])
    copied = copy.deepcopy(items)
    assert copied.__class__ is list and copied == list(items) == copy.deepcopy(list(items))
    assert copied[0] is not items[0] and copied[0]['address'] is not items[0]['address']
    assert copied[100]['deep'][0] is not nested['deep'][0]
