# -*- coding: utf-8 -*-
"""pic_connection's main(), run as Ansible runs it, on a cell that is a throwaway network
namespace: check mode changes nothing, a bad input fails naming the field with nothing
written, a second run is not changed, removal, and secrets never reach the result."""
import json
import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_connection
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import (
    PRIV, PSK, files_under, in_netns, keyed, kernel_state, run_module)

PROXY = {'host': '192.0.2.10', 'port': 1080, 'proxy_type': 'socks5', 'username': 'u', 'password': 'Hunter2-secret'}


@pytest.fixture
def state_dir(tmp_path, libnftables):
    return str(tmp_path / 'state')


def args(state_dir, **over):
    base = {'name': 'Tor', 'type': 'tor', 'config': {}, 'state_dir': state_dir}
    base.update(over)
    return base


def test_check_mode_reports_the_change_and_writes_nothing(state_dir):
    def scenario():
        return run_module(pic_connection, args(state_dir), check_mode=True), kernel_state(), files_under(state_dir)
    result, kernel, files = in_netns(scenario)
    assert result['changed'] is True and 'failed' not in result
    assert result['connection']['type'] == 'tor' and result['changes']
    assert kernel['table'] is None and 'lookup 10001' not in kernel['rules']
    assert files == []


def test_create_then_the_same_call_is_not_changed(state_dir):
    def scenario():
        first = run_module(pic_connection, args(state_dir))
        return first, run_module(pic_connection, args(state_dir)), kernel_state()
    first, second, kernel = in_netns(scenario)
    assert first['changed'] is True and first['connection']['id'] == 'tor'
    assert second['changed'] is False and second['changes'] == []
    assert second['connection'] == first['connection']
    assert kernel['table'] is not None
    assert 'lookup 10001' in kernel['rules']


@pytest.mark.parametrize('over, field', [
    ({'name': 'x\ny'}, 'name'),
    ({'type': 'proxy', 'config': dict(PROXY, port=70000)}, 'config.port'),
    ({'type': 'proxy', 'config': dict(PROXY, host='192.0.2.10\n--x')}, 'config.host'),
    ({'mark': 0x00800000}, 'mark'),
    ({'table_base': 253}, 'table_base'),
])
def test_a_bad_input_fails_naming_the_field_and_writes_nothing(state_dir, over, field):
    def scenario():
        return run_module(pic_connection, args(state_dir, **over)), kernel_state(), files_under(state_dir)
    result, kernel, files = in_netns(scenario)
    assert result['failed'] is True
    assert result['msg'].startswith(field + ':'), result['msg']
    assert kernel['table'] is None
    assert [f for f in files if not f.endswith('.lock')] == []


def test_secrets_never_reach_the_result(state_dir):
    def scenario():
        return run_module(pic_connection, args(state_dir, name='Proxy', type='proxy', config=PROXY), diff=True)
    result = in_netns(scenario)
    assert result['changed'] is True
    text = json.dumps(result)
    assert 'Hunter2-secret' not in text
    assert result['connection']['config']['host'] == '192.0.2.10'
    assert result['diff']['before'] == {} and result['diff']['after']['name'] == 'Proxy'


def test_absent_removes_and_a_second_absent_is_not_changed(state_dir):
    def scenario():
        run_module(pic_connection, args(state_dir))
        gone = run_module(pic_connection, args(state_dir, state='absent'))
        return gone, run_module(pic_connection, args(state_dir, state='absent')), kernel_state()
    gone, again, kernel = in_netns(scenario)
    assert gone['changed'] is True and gone['connection'] is None
    assert again['changed'] is False
    assert 'lookup 10001' not in kernel['rules']


def test_an_interface_exit_is_created_once_with_its_secret_kept_apart(state_dir):
    if not shutil.which('wg') or not shutil.which('wireguard-go'):
        pytest.skip('wg and wireguard-go are needed')
    wg = args(state_dir, name='Exit WG', type='wireguard_ext',
              config=keyed(address=['10.200.0.11/32'], allowed_ips=['0.0.0.0/0'], preshared_key=PSK,
                           # wireguard-go's control sockets are shared by every namespace: a
                           # name of this run's own, not the lab's pic-exit-wg
                           interface='pic-ut%d' % (os.getpid() % 100000)))

    def scenario():
        first = run_module(pic_connection, wg)
        second = run_module(pic_connection, wg)
        links = subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True, check=True).stdout
        secret = os.stat(Registry(state_dir).secret_path('exit-wg'))
        gone = run_module(pic_connection, dict(wg, state='absent'))
        after = subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True, check=True).stdout
        return first, second, links, stat.S_IMODE(secret.st_mode), gone, after, files_under(state_dir)
    first, second, links, mode, gone, after, files = in_netns(scenario)
    ifname = first['connection']['interface']
    assert first['changed'] is True and any(change.startswith('created %s' % ifname) for change in first['changes'])
    assert second['changed'] is False and second['changes'] == []
    assert ': %s:' % ifname in links and mode == 0o600
    text = json.dumps([first, second, gone])
    assert PRIV not in text and PSK not in text
    assert gone['changed'] is True and ': %s:' % ifname not in after
    assert not [f for f in files if f.startswith('secrets/')]
