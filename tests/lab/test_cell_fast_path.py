# -*- coding: utf-8 -*-
"""playbooks/site.yml's fast path (pic_cell, one round trip per cell) on the lab cell:
it converges the cell with its packets leaving where their exits say, a second run is
one task and no change, the role run task by task (-e pic_fast_path=false) finds
nothing to change after it, and a gathered config given back (overridden) is a no-op.
The file starts and leaves the cell bare."""
import os
import re
import resource

import pytest
import yaml

from conftest import registry_doc, reset_cell, wait_for
from exit_helpers import (ANY_CELL, LAB_INVENTORY, Supervisor, inventory_dir, playbook, run_play, server_plugin,
                          wait_pid)
import piclab
from piclab import sources, via_exit, via_wan

ONE_TASK = 'pic.connectivity.connectivity : Converge the cell in one round trip'
PROXIES = server_plugin('proxies')


@pytest.fixture(scope='module')
def bare(cell):
    reset_cell(cell)
    yield cell
    reset_cell(cell)


def site(*extra, **kwargs):
    return playbook(LAB_INVENTORY, None, '-e', 'pic_fast_path=true', *extra, hosts=ANY_CELL, **kwargs)


def test_fast_path_check_mode_reports_and_changes_nothing_errors_name_the_field(bare, tmp_path):
    before, table = bare.registry_bytes(), bare.nft_table()
    changed, out = site('--check', '--diff')
    assert changed > 0
    assert bare.registry_bytes() == before and bare.nft_table() == table
    mistyped = tmp_path / 'peers.yml'
    mistyped.write_text(yaml.safe_dump({'pic_peers': [{'name': 'p1', 'address': ['10.0.0.11/32'],
                                                       'connection': 'Exit GW'}]}))
    _changed, out = site('--check', '-e', '@%s' % mistyped, expect_fail=True)
    assert 'unknown connection' in out and 'config.peers[0].connection' in out, out[-3000:]
    assert bare.registry_bytes() == before and bare.nft_table() == table


def test_fast_path_converges_and_a_second_run_is_one_task(bare):
    changed, out = site()
    assert changed > 0
    assert ONE_TASK in out
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')
    assert via_exit('p2'), sources('p2')
    assert via_wan('p3'), sources('p3')
    changed, out = site()
    assert changed == 0, out[-3000:]
    tasks = re.findall(r'^TASK \[([^\]]*)\]', out, re.M)
    assert tasks == ['Converge the cell (one round trip, or the role task by task)', ONE_TASK,
                     'pic.connectivity.connectivity : Install what the stamp says is missing, then converge'], tasks
    # the include and pic_cell ran; the stale-stamp steps were skipped as one include
    assert re.search(r'cell1\s*:\s*ok=2\s+changed=0\s+unreachable=0\s+failed=0\s+skipped=1', out), out[-1500:]


def cpu_of(*extra):
    """(changed, CPU seconds of the run: ansible-playbook and its children, the module runs on
    the lab cell included: the lab connects locally)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    changed, out = site(*extra)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return changed, out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_the_role_task_by_task_finds_nothing_to_change_after_the_fast_path(bare):
    site()
    changed, out, role_cpu = cpu_of('-e', 'pic_fast_path=false')
    assert changed == 0, out[-3000:]
    assert 'pic.connectivity.connectivity : Assign peers to their exits' in out
    changed, out, fast_cpu = cpu_of()
    assert changed == 0, out[-3000:]
    # the same no-op, side by side (one cell, this machine's load): printed for the report
    print('no-op CPU: role %.2fs, fast path %.2fs, ratio %.1fx' % (role_cpu, fast_cpu, role_cpu / fast_cpu))
    assert fast_cpu < role_cpu


def test_a_gathered_config_given_back_is_a_no_op(bare):
    site()
    play = [{'hosts': 'pic_cells', 'gather_facts': False, 'tasks': [
        {'name': 'Gather', 'pic.connectivity.pic_cell': {'state': 'gathered', 'state_dir': '{{ pic_state_dir }}'},
         'register': 'cell'},
        {'name': 'Give it back', 'pic.connectivity.pic_cell': {'config': '{{ cell.gathered }}', 'state': 'overridden',
                                                                'state_dir': '{{ pic_state_dir }}'},
         'register': 'back'},
        {'name': 'Check', 'ansible.builtin.assert': {'that': ['cell.gathered.peers | length == 3',
                                                             'cell.gathered.connections | length == 1',
                                                             "'config' not in cell.gathered.connections[0]"]}}]}]
    changed, out = run_play(LAB_INVENTORY, play, hosts=ANY_CELL)
    assert changed == 0, out[-3000:]


def test_rendered_shows_what_the_cell_would_run_without_touching_it(bare):
    play = [{'hosts': 'pic_cells', 'gather_facts': False, 'tasks': [
        {'name': 'Render', 'pic.connectivity.pic_cell': {
            'config': {'connections': '{{ pic_connections }}', 'peers': '{{ pic_peers }}'},
            'state': 'rendered', 'state_dir': '/nonexistent/pic'}, 'register': 'out'},
        {'name': 'Check', 'ansible.builtin.assert': {'that': [
            "'table inet pic_connectivity' in out.rendered.nftables",
            "out.rendered.rules | select('search', 'lookup 10001') | list | length == 2",
            "out.rendered.routes | select('search', 'dev pic-exit-wg table 10001') | list | length > 0"]}}]}]
    changed, out = run_play(LAB_INVENTORY, play, hosts=ANY_CELL)
    assert changed == 0, out[-3000:]


def test_a_connection_the_role_started_leaves_nothing_when_the_fast_path_removes_it(bare):
    """A cell converged by the role, then run on the fast path: removing the role's proxy
    connection stops its redsocks and removes its files and program (the roles' own removal
    tasks, rendered by the action plugin), and leaves the other connection alone."""
    socks_ran = bool(piclab.daemon_pid(PROXIES.SOCKS_NODE, 'microsocks'))
    PROXIES.start_socks()
    info = PROXIES.info(PROXIES.SOCKS_NODE)
    socks = {'name': 'Old Socks', 'type': 'proxy',
             'config': dict((k, info[k]) for k in ('host', 'port', 'proxy_type', 'username', 'password'))}
    inventory = inventory_dir()
    supervisor = Supervisor(bare)
    files = [os.path.join(bare.state_dir, 'proxy', 'old-socks.conf'), supervisor.program_file('pic-proxy-old-socks')]
    try:
        playbook(inventory, {'pic_connections': [socks], 'pic_peers': []}, '-e', 'pic_fast_path=false')
        pid = wait_pid(supervisor, 'pic-proxy-old-socks')
        assert pid and all(os.path.exists(f) for f in files), supervisor.ctl('status')
        # (the fast path never wrote these: no manifest of its own names them)
        changed, out = playbook(inventory, {'pic_connections': [{'name': 'Old Socks', 'state': 'absent'}],
                                            'pic_peers': []}, '-e', 'pic_fast_path=true')
        assert changed > 0 and ONE_TASK in out, out[-3000:]
        assert [f for f in files if os.path.exists(f)] == []
        assert 'pic-proxy-old-socks' not in supervisor.programs(), supervisor.ctl('status')
        assert wait_for(lambda: not os.path.exists('/proc/%d' % pid), 10), 'redsocks still runs'
        assert 'old-socks' not in registry_doc(bare)['connections']
    finally:
        if not socks_ran:      # (the lab's SOCKS server as it was: later files, the demo, use it)
            PROXIES.stop_socks()
