# -*- coding: utf-8 -*-
"""exits/base.py: the settings every type takes, unknown keys named but never shown,
the keyed fingerprint, and the defaults a provider inherits."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits import base


@pytest.mark.parametrize('config, public', [
    ({}, {}),
    ({'health_target': '192.0.2.1'}, {'health_target': '192.0.2.1'}),
    ({'health_fail_after': 3, 'health_recover_after': '2'}, {'health_fail_after': 3, 'health_recover_after': 2}),
    ({'interface': 'pic-x1'}, {'interface': 'pic-x1'}),
])
def test_common_settings_validated(config, public):
    assert base.common(config, 'config') == public


@pytest.mark.parametrize('config, field', [
    ({'health_target': ['192.0.2.1']}, 'config.health_target'),
    ({'health_target': 'example.org'}, 'config.health_target'),
    ({'health_fail_after': 0}, 'config.health_fail_after'),
    ({'health_recover_after': 101}, 'config.health_recover_after'),
    ({'interface': 'eth0'}, 'config.interface'),
])
def test_bad_common_settings_name_their_field(config, field):
    with pytest.raises(PicError) as err:
        base.common(config, 'config')
    assert err.value.field == field


def test_an_unknown_key_is_named_and_its_value_hidden():
    with pytest.raises(PicError) as err:
        base.check_keys({'host': 'x', 'PrivateKey': 'sEcReT-value-1234'}, {'host'}, 'config')
    assert err.value.field == 'config.PrivateKey'
    assert 'sEcReT' not in str(err.value) and 'sEcReT' not in repr(err.value.__dict__)


def test_the_fingerprint_depends_on_the_key_and_the_config():
    key1, key2 = base.new_fingerprint_key(), base.new_fingerprint_key()
    assert key1 != key2 and len(key1) == 32
    config = {'password': 'hunter2', 'host': '192.0.2.1'}
    assert base.fingerprint(config, key1) == base.fingerprint(dict(config), key1)
    assert base.fingerprint(config, key1) != base.fingerprint(config, key2)
    assert base.fingerprint(config, key1) != base.fingerprint(dict(config, password='hunter3'), key1)


@pytest.mark.parametrize('conn, server', [
    ({'config': {'host': '192.0.2.1', 'port': 2222}}, ('192.0.2.1', 2222)),
    ({'config': {'host': 'ssh.example.org'}}, ('ssh.example.org', 22)),
    ({'config': {}}, None),
    ({}, None),
])
def test_server_of(conn, server):
    assert base.server_of(conn) == server


def test_what_a_provider_inherits():
    assert base.InterfaceExit.kind == base.INTERFACE and base.ProxyExit.kind == base.PROXY
    assert base.InterfaceExit.keys() == frozenset(o.name for o in base.COMMON_OPTIONS)
    assert base.InterfaceExit.restart_orphaned('/nonexistent', {}) is None
    assert base.ProxyExit.instance_port({'local_port': 9040}) == 9040
    assert base.ProxyExit.second_target({}, 2.0) is None
    with pytest.raises(NotImplementedError):
        base.Exit.validate({}, {}, 'config', None)


def test_a_secret_option_is_masked_in_the_docs_sense():
    assert base.Option('password', 'str', 'x', secret=True).no_log
    assert base.Option('ovpn', 'str', 'x', holds_secrets=True).no_log
    assert not base.Option('host', 'str', 'x').no_log
