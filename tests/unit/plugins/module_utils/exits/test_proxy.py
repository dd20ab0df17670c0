# -*- coding: utf-8 -*-
"""The proxy provider: an IPv4 proxy server and port, socks5 by default, a
password that redsocks can read; the health check's upstream is the proxy."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits import proxy


def test_declares():
    prov = exits.provider('proxy')
    assert prov is proxy.Proxy and prov.kind == exits.PROXY and not prov.fail_open
    assert (prov.service_role, prov.instance_file) == ('proxy', ('proxy', '%s.conf'))
    assert sorted(o.name for o in prov.options if o.required) == ['host', 'port']
    assert connections.REDSOCKS_TOKENS is proxy.REDSOCKS_TOKENS


def test_validates_and_masks():
    public, _payload, secrets, _routes = connections.validate_config(
        'proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u', 'password': 'pw-1'})
    assert public == {'host': '203.0.113.50', 'port': 1080, 'proxy_type': 'socks5', 'username': 'u'}
    assert secrets == ['pw-1']
    assert proxy.Proxy.upstream({'config': public}) == ('203.0.113.50', 1080)


@pytest.mark.parametrize('token', proxy.REDSOCKS_TOKENS)
def test_refuses_a_password_redsocks_reads_as_a_token(token):
    with pytest.raises(PicError) as err:
        connections.validate_config('proxy', {'host': '203.0.113.50', 'port': 1080, 'username': 'u',
                                              'password': token})
    assert err.value.field == 'config.password' and err.value.value is None
