# -*- coding: utf-8 -*-
"""Fleet rollout (playbooks/rollout.yml) and confirmed commits (pic_commit) over the lab fleet."""
import base64
import json
import os
import re
import subprocess
import tempfile
import time

import pytest

from conftest import Cell, ROOT, piclab, wait_for
from test_fleet_site import FLEET
from exit_helpers import ANY_CELL, ansible_bin, ansible_env, playbook

CELLS = ('cell1', 'cell2', 'cell3')


def run_rollout(*extra, timeout=600):
    return subprocess.run([ansible_bin('ansible-playbook'), '-i', FLEET,
                           os.path.join(ROOT, 'playbooks', 'rollout.yml')] + list(extra),
                          capture_output=True, text=True, env=ansible_env(), timeout=timeout)


def registries():
    return dict((name, Cell(name).registry_bytes()) for name in CELLS)


def entry_point(cell):
    return os.path.join(piclab.run_dir(), 'nodes', cell, 'bin', 'pic-connectivity')


@pytest.fixture(scope='module', autouse=True)
def fleet(lab):
    playbook(FLEET, hosts=ANY_CELL)
    assert wait_for(lambda: piclab.fetch('p1', 4) == piclab.exit_address(4), 15)
    yield


def test_rollout_of_a_good_change_reaches_every_cell():
    proc = run_rollout('-e', '{"pic_rollout_batches": [1, "100%"]}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'batch of 1 cell(s): cell1' in proc.stdout
    assert '| cell3 | untouched |' in proc.stdout
    assert re.search(r'\| \*\*total\*\* \| 0 changed, 0 rolled back \|', proc.stdout)


def test_broken_change_stops_at_the_canary_and_is_rolled_back(tmp_path):
    before = registries()
    broken = os.path.join(str(tmp_path), 'broken.json')
    with open(piclab.exit_config_path('cell1')) as handle:
        # the exit server's key replaced by another: the tunnel never completes a handshake
        lines = handle.read().splitlines()
    wrong = base64.b64encode(os.urandom(32)).decode()
    conf = '\n'.join('PublicKey = %s' % wrong if line.startswith('PublicKey') else line for line in lines) + '\n'
    with open(broken, 'w') as handle:
        json.dump({'pic_connections': [{'name': 'Exit WG', 'type': 'wireguard_ext', 'config': {
            'wg_config': conf, 'health_target': '10.200.0.1'}}], 'pic_rollout_gate_retries': 3,
            'pic_rollout_batches': [1, '100%']}, handle)
    proc = run_rollout('-e', '@' + broken)
    assert proc.returncode != 0
    assert '| cell1 | rolled back |' in proc.stdout, proc.stdout[-3000:]
    after = registries()
    assert after == before     # the canary as it was, the others never touched
    assert wait_for(lambda: piclab.fetch('p1', 4) == piclab.exit_address(4), 15)
    assert piclab.fetch('p3', 4) == piclab.wan_address('cell2', 4)
    assert not Cell('cell1').module('pic_commit', {'action': 'status'})['pending']


def test_unconfirmed_commit_reverts_by_itself():
    cell = Cell('cell1')
    before = cell.registry_bytes()
    assert piclab.fetch('p2', 4) == piclab.wan_address('cell1', 4)
    cell.module('pic_commit', {'action': 'begin', 'id': 'trial', 'timeout': 5, 'entry_point': entry_point('cell1')})
    started = time.time()
    cell.module('pic_peer_exit', {'peer': 'p2', 'connection': 'Exit WG'})
    assert piclab.fetch('p2', 4) == piclab.exit_address(4)
    assert wait_for(lambda: cell.registry_bytes() == before, 15, 0.2)
    took = time.time() - started
    assert took <= 5 + 5, took
    assert wait_for(lambda: piclab.fetch('p2', 4) == piclab.wan_address('cell1', 4), 5)
    print('unconfirmed commit reverted after %.1fs (timeout 5s)' % took)

    # The rest of that change (a controller that comes back late) is refused, and
    # changes nothing, until the operator acknowledges the revert.
    refused = cell.module('pic_peer_exit', {'peer': 'p2', 'connection': 'Exit WG'}, expect_fail=True)
    assert "'trial' was not confirmed in time" in refused['msg'], refused['msg']
    assert refused['expired_commit']['id'] == 'trial'
    assert cell.registry_bytes() == before
    assert piclab.fetch('p2', 4) == piclab.wan_address('cell1', 4)
    late = cell.module('pic_commit', {'action': 'confirm', 'id': 'trial'}, expect_fail=True)
    assert 'not confirmed in time' in late['msg']
    assert cell.module('pic_commit', {'action': 'rollback', 'id': 'trial'})['changed']   # acknowledged
    assert not cell.module('pic_peer_exit', {'peer': 'p2', 'connection': 'default'})['changed']


def test_confirmed_commit_stays():
    cell = Cell('cell1')
    cell.module('pic_commit', {'action': 'begin', 'id': 'keep', 'timeout': 5, 'entry_point': entry_point('cell1')})
    cell.module('pic_peer_exit', {'peer': 'p2', 'connection': 'Exit WG'})
    assert cell.module('pic_commit', {'action': 'confirm', 'id': 'keep'})['changed']
    changed = cell.registry_bytes()
    time.sleep(7)
    assert cell.registry_bytes() == changed
    assert piclab.fetch('p2', 4) == piclab.exit_address(4)
    cell.module('pic_peer_exit', {'peer': 'p2', 'connection': 'default'})


# Where the controller is killed: the role path, while it assigns the peers; the fast path
# (the default), once its one pic_cell run has applied the change, at the health gate.
MID_APPLY = {'role': ('pic_fast_path=false', 'Assign peers to their exits'),
             'fast': ('pic_fast_path=true', 'Health gate on every connection the change touched')}


@pytest.mark.parametrize('path', sorted(MID_APPLY))
def test_interrupted_run_leaves_the_old_state(path):
    """The controller killed mid-apply: the cell ends in its old state (the armed commit
    reverts), and a fail-closed peer never reaches the WAN meanwhile."""
    variable, marker = MID_APPLY[path]
    cell = Cell('cell1')
    before = cell.registry_bytes()
    changed = os.path.join(tempfile.mkdtemp(), 'change.json')
    with open(changed, 'w') as handle:
        json.dump({'pic_rollout_confirm_timeout': 20, 'pic_rollout_batches': [1, '100%'],
                   'pic_rollout_gate_retries': 30, 'pic_peers': [
                       {'name': 'p1', 'address': ['10.0.0.11/32', 'fd00:10::11/128'], 'connection': 'Exit WG'},
                       {'name': 'p2', 'address': ['10.0.0.12/32', 'fd00:10::12/128'], 'connection': 'Exit WG'}]},
                  handle)
    proc = subprocess.Popen([ansible_bin('ansible-playbook'), '-i', FLEET,
                             os.path.join(ROOT, 'playbooks', 'rollout.yml'), '-e', '@' + changed, '-e', variable],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env(),
                            start_new_session=True)
    seen = ''
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen += line
        if marker in line or not line:   # mid-apply
            break
    os.killpg(proc.pid, 9)
    proc.wait()
    assert 'Arm the automatic revert' in seen and marker in seen, seen[-2000:]
    if path == 'fast':
        assert cell.registry_bytes() != before      # the change was applied: the revert has work to do
    # whatever the cell got, p1 (fail-closed on Exit WG in both states) never left by cell1's WAN
    assert piclab.fetch('p1', 4) in (piclab.exit_address(4), None)
    # the timer on the cell fires (the controller is gone) and puts the old state back
    assert wait_for(lambda: not cell.module('pic_commit', {'action': 'status'})['pending'], 40, 1)
    assert cell.registry_bytes() == before
    assert wait_for(lambda: piclab.fetch('p2', 4) == piclab.wan_address('cell1', 4), 10)
    cell.module('pic_commit', {'action': 'rollback', 'id': 'rollout'})
