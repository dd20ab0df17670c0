# -*- coding: utf-8 -*-
"""pic_cell's main(), run as Ansible runs it: rendered and parsed with no cell, and on a
cell that is a throwaway network namespace, merged / replaced / overridden / deleted on
connections, peers and services, gathered round-tripping through merged as a no-op,
dotted error paths, secrets masked, the stamp, and the exit service files."""
import json
import os

import pytest

from ansible_collections.pic.connectivity.plugins.modules import pic_cell
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import PRIV, in_netns, kernel_state, keyed, run_module

STAMP = 'a' * 64


def cell_config(wireguard=False):
    """A cell of two exits (on a namespace cell a Tor exit: wireguard-go's control
    sockets are shared by every namespace), two peers and a service."""
    home = {'name': 'Home VPN', 'type': 'wireguard_ext', 'config': keyed()} if wireguard else \
        {'name': 'Home VPN', 'type': 'tor', 'config': {}}
    return {
        'connections': [dict(home, fallback=['Socks']),
                        {'name': 'Socks', 'type': 'proxy', 'config': {'host': '203.0.113.50', 'port': 1080,
                                                                      'username': 'u', 'password': 'secret-pass-1'}}],
        'peers': [{'name': 'alice', 'address': ['10.0.0.2'], 'connection': 'Home VPN'},
                  {'name': 'bob', 'address': ['10.0.0.3'], 'connection': 'Socks', 'fail_open': True}],
        'services': [{'service': 'email', 'address': ['172.31.0.10/32'], 'interface': 'svc0',
                      'manifest': {'has_egress': True}, 'connection': 'Home VPN'}],
    }


@pytest.fixture
def state_dir(tmp_path, libnftables):
    return str(tmp_path / 'state')


def on_cell(state_dir, *calls):
    def scenario():
        results = [run_module(pic_cell, dict(args, state_dir=state_dir), **options) for args, options in calls]
        return results, Registry(state_dir).load(), kernel_state()
    return in_netns(scenario)


def test_rendered_needs_no_cell_and_shows_ruleset_rules_routes(tmp_path):
    result = run_module(pic_cell, {'config': cell_config(wireguard=True), 'state': 'rendered', 'state_dir': str(tmp_path / 'none')})
    assert result['changed'] is False and not os.path.exists(str(tmp_path / 'none'))
    rendered = result['rendered']
    assert 'table inet pic_connectivity' in rendered['nftables']
    assert any('lookup 10001' in rule for rule in rendered['rules'])
    assert 'ipv4 route 0.0.0.0/0 dev pic-home-vpn table 10001' in rendered['routes']
    text = json.dumps(result)
    assert PRIV not in text and 'secret-pass-1' not in text
    assert any(rule.endswith('lookup 10002') for rule in rendered['rules'])


def test_parsed_reads_a_registry_and_a_gathered_config(tmp_path):
    rendered_doc = {'version': 1, 'settings': {}, 'connections': {}, 'peers': {
        'alice': {'name': 'alice', 'address': ['10.0.0.2/32'], 'connection': 'default', 'fail_open': None}},
        'services': {}}
    parsed = run_module(pic_cell, {'state': 'parsed', 'running_config': json.dumps(rendered_doc)})['parsed']
    assert parsed['peers'] == [{'name': 'alice', 'address': ['10.0.0.2/32'], 'connection': 'default',
                                'fail_open': None}]
    again = run_module(pic_cell, {'state': 'parsed', 'running_config': json.dumps({'gathered': parsed})})['parsed']
    assert again == parsed
    bad = run_module(pic_cell, {'state': 'parsed', 'running_config': '{"config": {"nodes": []}}'})
    assert bad['failed'] and bad['msg'].startswith('config.nodes')


def test_merged_converges_once_and_gathered_round_trips(state_dir):
    config = cell_config()

    def scenario():
        first, second, gathered = [run_module(pic_cell, dict(args, state_dir=state_dir)) for args in
                                   ({'config': config}, {'config': config}, {'state': 'gathered'})]
        back = run_module(pic_cell, {'config': gathered['gathered'], 'state': 'overridden', 'state_dir': state_dir})
        return first, second, back, Registry(state_dir).load(), kernel_state()
    first, second, back, doc, kernel = in_netns(scenario)
    assert first['changed'] is True and second['changed'] is False, second['changes']
    assert sorted(doc['connections']) == ['home-vpn', 'socks'] and doc['peers']['bob']['connection'] == 'socks'
    assert doc['services']['email']['connection'] == 'home-vpn'
    assert 'lookup 10001' in kernel['rules']
    assert 'secret-pass-1' not in json.dumps(first)
    assert back['changed'] is False, back


def test_merged_leaves_unlisted_overridden_removes_them_deleted_empties(state_dir):
    config = cell_config()
    home = dict(config['connections'][0])
    del home['fallback']
    only_alice = {'peers': [config['peers'][0]], 'connections': [home]}
    (_first, merged, _again, overridden, deleted), doc, kernel = on_cell(
        state_dir, ({'config': config}, {}), ({'config': only_alice}, {}), ({'config': config}, {}),
        ({'config': dict(only_alice, services=[]), 'state': 'overridden'}, {}), ({'state': 'deleted'}, {}))
    assert merged['changed'] is False, merged
    assert [c['name'] for c in overridden['config']['connections']] == ['Home VPN']
    assert [p['name'] for p in overridden['config']['peers']] == ['alice']
    assert overridden['config']['services'] == []
    assert deleted['changed'] is True and doc['connections'] == {} and doc['peers'] == {}


def test_replaced_resets_what_an_item_leaves_out(state_dir):
    config = cell_config()
    socks = dict(config['connections'][1], fail_open=True)
    bare = {'name': 'Home VPN', 'type': 'tor'}
    (_first, _open, replaced, merged), doc, _kernel = on_cell(
        state_dir, ({'config': config}, {}), ({'config': {'connections': [socks]}}, {}),
        ({'config': {'connections': [bare, {'name': 'Socks'}]}, 'state': 'replaced'}, {}),
        ({'config': {'connections': [bare]}}, {}))
    assert replaced['changed'] is True
    assert doc['connections']['socks']['fail_open'] is False
    assert not doc['connections']['home-vpn'].get('fallback')
    assert merged['changed'] is False


def test_an_error_names_the_dotted_path_and_changes_nothing(state_dir):
    config = cell_config()
    config['peers'].append({'name': 'carol', 'address': ['10.0.0.9', 'not-an-address']})
    (result,), doc, kernel = on_cell(state_dir, ({'config': config}, {}))
    assert result['failed'] is True
    assert result['msg'].startswith('config.peers[2].address[1]'), result['msg']
    assert doc['connections'] == {} and kernel['table'] is None


def test_check_mode_reports_and_writes_nothing(state_dir):
    (result,), doc, kernel = on_cell(state_dir, ({'config': cell_config()}, {'check_mode': True, 'diff': True}))
    assert result['changed'] is True and doc['connections'] == {} and kernel['table'] is None
    assert [c['name'] for c in result['diff']['after']['connections']] == ['Home VPN', 'Socks']


def test_a_stale_stamp_changes_nothing_until_written(state_dir):
    (stale, written, fresh), doc, _kernel = on_cell(
        state_dir, ({'config': cell_config(), 'stamp': STAMP}, {}),
        ({'config': cell_config(), 'stamp': STAMP, 'write_stamp': True}, {}),
        ({'config': cell_config(), 'stamp': STAMP}, {}))
    assert stale['stamp_stale'] is True and stale['changed'] is False
    assert written['stamp_stale'] is False and written['changed'] is True
    assert fresh['stamp_stale'] is False and fresh['changed'] is False
    assert sorted(doc['connections']) == ['home-vpn', 'socks']


def test_exit_files_are_written_once_with_tokens_and_masked(state_dir):
    secret_line = 'password = "secret-pass-1";'
    files = [{'path': state_dir + '/proxy/socks.conf', 'instance': 'pic-proxy-socks', 'connection': 'Socks',
              'content': 'local_port = PICALLOCLOCALPORTZ;\n%s\n' % secret_line}]
    args = {'config': cell_config(), 'files': files}
    (first, second), doc, _kernel = on_cell(state_dir, (args, {'diff': True}), (args, {}))
    assert first['files_changed'] == [state_dir + '/proxy/socks.conf'] and first['restarted'] == ['pic-proxy-socks']
    assert second['changed'] is False and second['files_changed'] == [] and second['restarted'] == []
    with open(state_dir + '/proxy/socks.conf') as handle:
        assert handle.read().startswith('local_port = %d;' % doc['connections']['socks']['local_port'])
    assert os.stat(state_dir + '/proxy/socks.conf').st_mode & 0o777 == 0o600
    assert 'secret-pass-1' not in json.dumps(first)


def test_a_file_its_check_refuses_changes_nothing_and_check_mode_runs_no_check(state_dir, tmp_path):
    """A new file whose check (the role's validate) fails stops the run before the registry,
    the data plane or any file changes; in check mode the check does not run (as the role's
    validate does not)."""
    checker = tmp_path / 'refuse'
    checker.write_text('#!/bin/sh\necho "[warn] Failed to parse the file"; exit 1\n')
    checker.chmod(0o755)
    files = [{'path': state_dir + '/tor/torrc', 'instance': 'pic-tor', 'connection': 'Home VPN',
              'content': 'SocksPort PICALLOCLOCALPORTZ\n', 'validate': '%s -f %%s' % checker}]
    args = {'config': cell_config(), 'files': files}
    (checked, refused), doc, kernel = on_cell(state_dir, (args, {'check_mode': True}), (args, {}))
    assert checked['changed'] is True and 'failed' not in checked
    assert 'fails its check' in refused['msg'] and 'Failed to parse' in refused['msg'], refused
    assert doc['connections'] == {} and kernel['table'] is None and not os.path.exists(state_dir + '/tor/torrc')


def test_a_cell_whose_monitor_does_not_run_is_stale(state_dir):
    """With monitor: true a fresh stamp is not enough: no monitor of this cell runs, so the
    role's steps (which start it) must run; write_stamp records as before."""
    (written, fresh, unmonitored), _doc, _kernel = on_cell(
        state_dir, ({'config': cell_config(), 'stamp': STAMP, 'write_stamp': True}, {}),
        ({'config': cell_config(), 'stamp': STAMP}, {}),
        ({'config': cell_config(), 'stamp': STAMP, 'monitor': True}, {}))
    assert written['stamp_stale'] is False and fresh['stamp_stale'] is False
    assert unmonitored['stamp_stale'] is True and unmonitored['changed'] is False
