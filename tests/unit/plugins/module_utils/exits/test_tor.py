# -*- coding: utf-8 -*-
"""The tor provider: one per cell, fail-open, its ports with Tor's defaults; the
guide's check needs its SOCKS port and its TransPort."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, exits
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits import tor


def test_declares():
    prov = exits.provider('tor')
    assert prov is tor.Tor and prov.kind == exits.PROXY
    assert (prov.fail_open, prov.singleton, prov.creatable, prov.needs_config) == (True, True, True, False)
    assert (prov.service_role, prov.instance_file) == ('tor', ('tor', 'torrc'))


def test_ports_default_and_are_checked():
    public, _payload, secrets, routes = connections.validate_config('tor', {})
    assert (public, secrets, routes) == ({'socks_port': 9050, 'trans_port': 9040, 'dns_port': 9053}, [],
                                         {'4': [], '6': []})
    with pytest.raises(PicError) as err:
        connections.validate_config('tor', {'trans_port': 0})
    assert err.value.field == 'config.trans_port'


def test_its_second_target_is_the_transport():
    conn = {'type': 'tor', 'local_port': 12304, 'config': {'socks_port': 9050}}
    assert tor.Tor.instance_port(conn) == 9050
    assert tor.Tor.second_target(conn, 0.8) == (('127.0.0.1', 12304), 1.0)
    assert tor.Tor.second_target(dict(conn, local_port=9050), 0.8) is None
    assert tor.Tor.second_verdict(False, 9050, '127.0.0.1', 12304, 'refused') == (
        False, 'SOCKS port 9050 answers, but the TransPort 12304 does not: refused')
