# -*- coding: utf-8 -*-
"""The sshuttle provider: an SSH server, its defaults, its secret key; the health
check's upstream is the SSH server."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


def test_declares():
    prov = exits.provider('sshuttle')
    assert prov.kind == exits.PROXY and not prov.fail_open and not prov.singleton and prov.needs_config
    assert (prov.service_role, prov.instance_file) == ('sshuttle', ('sshuttle', '%s.conf'))
    assert [o.name for o in prov.options if o.secret] == ['ssh_key']
    assert [o.name for o in prov.options if o.required] == ['host']


def test_defaults_secrets_and_upstream():
    public, _payload, secrets, _routes = connections.validate_config(
        'sshuttle', {'host': 'ssh.example', 'ssh_key': 'KEY-TEXT\n', 'dns': '192.0.2.53'})
    assert public == {'host': 'ssh.example', 'port': 22, 'user': 'root', 'dns': ['192.0.2.53']}
    assert secrets == ['KEY-TEXT\n']
    assert exits.provider('sshuttle').upstream({'config': public}) == ('ssh.example', 22)


def test_refuses_subnets():
    with pytest.raises(PicError) as err:
        connections.validate_config('sshuttle', {'host': 'ssh.example', 'subnets': ['10.0.0.0/8']})
    assert err.value.field == 'config.subnets'
