# -*- coding: utf-8 -*-
"""cli: the cell-side ``pic-connectivity`` command (boot restore, the monitor's pass, the
state guard's pass, status) on state dirs, in a throwaway network namespace wherever it
touches the kernel."""
import contextlib
import io
import json
import socket
import subprocess

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cli, dataplane, model, nft
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, kernel_state, saved_registry

TOR = {'name': 'Tor', 'type': 'tor', 'config': {}}


@pytest.fixture
def registry(tmp_path, libnftables):
    return saved_registry(str(tmp_path / 'state'), TOR, alice=('10.0.0.2', 'Tor'))


def command(*argv):
    """(exit code, stdout, stderr) of ``pic-connectivity argv``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_status_prints_the_runtime_state(registry):
    registry.save_runtime({'down': ['tor'], 'reasons': {'tor': 'x'}})
    code, out, _err = command('status', '--json', '--state-dir', registry.state_dir)
    monitor = json.loads(out)['monitor']
    assert code == 0 and (monitor['down'], monitor['reasons']) == (['tor'], {'tor': 'x'})


def test_no_command_prints_the_usage():
    code, out, _err = command()
    assert code == 2 and 'usage: pic-connectivity' in out


def test_a_pic_error_is_one_line_on_stderr(tmp_path):
    state = tmp_path / 'state'
    state.mkdir()
    (state / 'registry.json').write_text('[]')
    code, _out, err = command('revert', '--state-dir', str(state), '--commit', 'r1', '--deadline', '0')
    assert code == 0   # nothing pending: the timer has nothing to revert
    code, out, err = command('openvpn-up', '--state-dir', str(state), '--connection', 'x')
    assert code == 1 and err.startswith('pic-connectivity: ') and err.count('\n') == 1 and out == ''


def test_restore_of_a_fresh_cell_does_nothing(tmp_path):
    code, out, _err = in_netns(command, 'restore', '--state-dir', str(tmp_path / 'state'))
    assert code == cli.RESTORED and out.startswith('nothing to restore')


def test_restore_converges_the_registry_behind_the_kill_switch(registry):
    def scenario():
        return command('restore', '--state-dir', registry.state_dir), kernel_state()
    (code, out, err), kernel = in_netns(scenario)
    assert code == cli.RESTORED, err
    assert out.startswith('kill switch: a block of everything forwarded from wg0')   # no last good state yet
    assert 'lookup 10001' in kernel['rules'] and kernel['table'] is not None
    assert nft.BOOT_BLOCK_COMMENT not in json.dumps(kernel['table'])


def test_restore_with_a_damaged_registry_keeps_the_kill_switch(registry):
    def scenario():
        cell = dataplane.Cell(registry)
        doc = registry.load()
        dataplane.save_last_good(registry.state_dir, model.desired(doc, cell.facts(doc)))
        cell.close()
        with open(registry.path, 'w') as handle:
            handle.write('{}')
        return command('restore', '--state-dir', registry.state_dir), kernel_state()
    (code, out, err), kernel = in_netns(scenario)
    assert code == cli.KILL_SWITCH_ONLY
    assert out.startswith('kill switch: the last good state of ')
    assert 'peers stay blocked' in err
    assert kernel['table'] is not None and 'lookup 10001' in kernel['rules']


def test_the_state_guard_puts_back_what_was_deleted(registry):
    logged = []

    def scenario():
        guard = cli.StateGuard(registry.state_dir, log=logged.append)
        first = guard.check()                    # never converged: the registry counts as drift
        dataplane.record_converged(registry)
        quiet = guard.check()
        subprocess.run(['ip', 'rule', 'del', 'pref', '10000', 'fwmark', '0x10000/0x7f0000', 'lookup', '10001'],
                       check=True)
        healed = guard.check()
        return first, quiet, healed, list(logged), kernel_state()
    first, quiet, healed, log, kernel = in_netns(scenario)
    assert 'create nftables table inet pic_connectivity' in first
    assert quiet == []
    assert healed == ['add ipv4 rule pref 10000 fwmark 0x10000/0x7f0000 lookup 10001']
    assert any('missing ipv4 rule pref 10000' in line for line in log)
    assert 'lookup 10001' in kernel['rules']


def test_the_state_guard_of_a_cell_without_registry_does_nothing(tmp_path):
    assert in_netns(cli.StateGuard(str(tmp_path / 'state')).check) == []


def test_the_monitor_holds_a_dead_exit_down_after_fail_after_passes_and_lets_it_recover(registry):
    port = registry.load()['connections']['tor']['local_port']

    def scenario():
        monitor = cli.Monitor(registry.state_dir, fail_after=2, recover_after=1)
        states = []
        with contextlib.redirect_stdout(io.StringIO()):
            dataplane_cell = dataplane.Cell(registry)
            dataplane_cell.converge(registry.load())
            dataplane_cell.close()
            for _tick in range(2):
                monitor.tick()
                states.append(registry.load_runtime()['down'])
            listener = socket.socket()
            listener.bind(('127.0.0.1', port))
            listener.listen(4)
            monitor.tick()
            states.append(registry.load_runtime()['down'])
            listener.close()
        return states, registry.load_runtime()['reasons']
    states, reasons = in_netns(scenario)
    assert states == [[], ['tor'], []]
    assert reasons['tor'].startswith('instance port %d' % port)


def test_the_verdict_of_an_interface_exit_without_its_interface(tmp_path):
    monitor = cli.Monitor(str(tmp_path / 'state'))
    _settings, layout = model.normalize_settings(None)
    conn = {'id': 'x', 'type': 'wireguard_ext', 'interface': 'pic-nosuch', 'index': 1, 'config': {}}
    assert in_netns(monitor.verdict, conn, layout) == (True, 'interface pic-nosuch is missing')


def test_audit_prints_the_recent_entries_as_text_and_json(tmp_path):
    from ansible_collections.pic.connectivity.plugins.module_utils import audit
    state = str(tmp_path)
    journal = audit.Journal(state)
    for i in range(3):
        line = audit.entry('pic_peer_exit', 'alice@laptop', None, None, ['change %d' % i], now=i)
        line['changed'] = {'peers.p%d' % i: {'before': None, 'after': {'connection': 'tor'}}}
        journal.append(line)
    code, out, _err = command('audit', '--state-dir', state, '-n', '2')
    assert code == 0 and 'change 0' not in out
    assert '1970-01-01T00:00:02Z  pic_peer_exit  by alice@laptop' in out and 'peers.p2: (none) -> ' in out
    code, out, _err = command('audit', '--json', '--state-dir', state)
    assert code == 0 and [e['changes'] for e in json.loads(out)] == [['change 0'], ['change 1'], ['change 2']]
    code, out, _err = command('audit', '--state-dir', str(tmp_path / 'nothing'))
    assert code == 0 and out == 'no audit entries\n'


def test_audit_has_help():
    with pytest.raises(SystemExit):
        command('audit', '--help')
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(['audit', '--help'])
    assert '--json' in out.getvalue() and '-n N' in out.getvalue()


def test_the_monitor_journals_what_it_changes(tmp_path):
    from ansible_collections.pic.connectivity.plugins.module_utils import audit
    cli.journal_monitor(str(tmp_path), [], ['tor'], ['tor down: fail-open peers to the default gateway'])
    cli.journal_monitor(str(tmp_path), ['tor'], ['tor'], ['put back ip rule'])
    first, second = audit.Journal(str(tmp_path)).recent(5)
    assert first['source'] == 'monitor' and first['changed'] == {'runtime.down': {'before': [], 'after': ['tor']}}
    assert second['changed'] == {} and second['changes'] == ['put back ip rule']
