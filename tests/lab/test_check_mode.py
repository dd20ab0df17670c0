# -*- coding: utf-8 -*-
"""Check mode of the connectivity role on a lab cell reports what a real run does, errors
included; read-only modules refuse a state_dir that holds no cell; ``pic-connectivity
status`` prints the cell as tables after a real run."""
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT, piclab, reset_cell, wait_for
from exit_helpers import ansible_bin, ansible_env


@pytest.fixture(scope='module', autouse=True)
def bare_cell_after(cell):
    """The last test converges the cell for real: later test files expect a bare gateway."""
    yield
    reset_cell(cell)


def run_site(*extra):
    argv = [ansible_bin('ansible-playbook'), os.path.join(ROOT, 'playbooks', 'site.yml'),
            '-i', os.path.join(ROOT, 'lab', 'inventory', 'hosts.yml')] + list(extra)
    return subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), timeout=600)


def _changed(proc):
    return sum(int(n) for n in re.findall(r'cell1\s*:\s*ok=\d+\s+changed=(\d+)', proc.stdout))


def _peers_file(tmp_path, connection):
    path = str(tmp_path / 'peers.json')
    with open(path, 'w') as handle:
        json.dump({'pic_peers': [{'name': 'p1', 'address': ['10.0.0.11/32', 'fd00:10::11/128'],
                                  'connection': connection}]}, handle)
    return path


# The two tests below are about the role run task by task (site.yml's fast path, one
# pic_cell run, is checked in test_cell_fast_path.py): -e pic_fast_path=false.
ROLE = ('-e', 'pic_fast_path=false')


def test_check_mode_of_the_role_fails_on_a_mistyped_connection(cell, tmp_path):
    reset_cell(cell)
    before, table = cell.registry_bytes(), cell.nft_table()
    proc = run_site('--check', '-e', '@' + _peers_file(tmp_path, 'Exit GW'), *ROLE)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert 'unknown connection' in proc.stdout and 'peers[0].connection' in proc.stdout, proc.stdout[-3000:]
    assert cell.registry_bytes() == before and cell.nft_table() == table


def test_check_mode_of_the_role_reports_peers_of_connections_it_creates(cell):
    before, table = cell.registry_bytes(), cell.nft_table()
    assert 'exit-wg' not in json.loads(before or b'{"connections": {}}')['connections']
    proc = run_site('--check', '-v', *ROLE)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert _changed(proc) > 0
    assert 'assign peer p1 to connection exit-wg, which an earlier task of this run creates' in proc.stdout
    assert cell.registry_bytes() == before and cell.nft_table() == table


def test_removing_a_connection_that_never_existed_sets_up_nothing(cell, tmp_path):
    fresh = str(tmp_path / 'new-cell')
    for check in (True, False):
        result = cell.module('pic_connection', {'name': 'Never there', 'state': 'absent', 'state_dir': fresh},
                             check=check)
        assert result['changed'] is False and result['changes'] == [], result
    assert not os.path.exists(os.path.join(fresh, 'registry.json'))


def test_read_only_modules_refuse_a_state_dir_without_a_cell(cell, tmp_path):
    mistyped = str(tmp_path / 'var-lib-pic-conectivity')
    for name, args in (('pic_health', {}), ('pic_connectivity_info', {}), ('pic_commit', {'action': 'status'})):
        result = cell.module(name, dict(args, state_dir=mistyped), expect_fail=True)
        assert 'state_dir' in result['msg'] and 'allow_empty=true' in result['msg'], result
        result = cell.module(name, dict(args, state_dir=mistyped, allow_empty=True))
        assert not result.get('connections'), result


def test_status_on_the_cell_after_a_real_run(cell):
    proc = run_site()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert wait_for(lambda: cell.module('pic_health', {'connection': 'Exit WG'})['connections']['exit-wg']
                    ['status'] == 'working', 20)
    out = cell.cli('status')
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert 'Connections (1)' in text and 'Peers (3)' in text, text
    rows = dict((line.split()[0], line) for line in text.splitlines() if line.split()[:1] in (['p1'], ['p2'], ['p3']))
    assert rows['p1'].endswith('exit Exit WG') and rows['p2'].endswith('exit Exit WG'), text
    assert rows['p3'].endswith('WAN (default gateway)'), text
    data = json.loads(cell.cli('status', '--json').stdout)
    exit_row = [line for line in text.splitlines() if line.startswith('exit-wg ')][0]
    assert ' working ' in exit_row and ' %s ' % data['connections']['exit-wg']['interface'] in exit_row, text
    assert data['connections']['exit-wg']['addresses'], data
    assert data['peers']['p1']['carried_by'] == 'exit'
    assert piclab.state_dir('cell1') == data['state_dir']
