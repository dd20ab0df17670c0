# -*- coding: utf-8 -*-
"""playbooks/site.yml and playbooks/rollout.yml, unchanged, under ansible-runner (the engine AWX and
the automation controller run jobs with) on the lab fleet (lab/fleet, three cells).

The private data dir is built the way AWX builds one for a job: project/ holds the collection's
playbooks, inventory/ the fleet's inventory (hosts, group_vars, host_vars), env/envvars the
environment (the collections path, as an execution environment or a project's collections/
provides it, and the lab's run directory). Runner's own stdout callback (awx_display) records the
events that AWX shows; the assertions read them and runner's per-host stats."""
import os
import shutil

import ansible_runner
import pytest
import yaml

from conftest import Cell, ROOT, piclab, reset_cell, wait_for
from exit_helpers import ansible_bin, ansible_env

CELLS = ('cell1', 'cell2', 'cell3')
# The tasks of rollout.yml that change a cell on every run: the confirmed commit itself.
COMMIT_TASKS = ('Arm the automatic revert', 'Keep the change')


@pytest.fixture(scope='module')
def bare_fleet(lab):
    cells = [Cell(name) for name in CELLS]
    for cell in cells:
        reset_cell(cell)
    yield cells
    for cell in cells:
        reset_cell(cell)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """A runner private data dir as AWX lays one out for a job on the lab fleet."""
    pdd = str(tmp_path_factory.mktemp('runner'))
    shutil.copytree(os.path.join(ROOT, 'playbooks'), os.path.join(pdd, 'project'))
    shutil.copytree(os.path.join(ROOT, 'lab', 'fleet'), os.path.join(pdd, 'inventory'))
    os.makedirs(os.path.join(pdd, 'env'))
    # ansible-playbook is runner's own choice (ANSIBLE_PLAYBOOK mode, its awx_display callback):
    # the one next to this python first on PATH, as in an execution environment
    tools = os.path.dirname(ansible_bin('ansible-playbook'))
    envvars = {'ANSIBLE_COLLECTIONS_PATH': ansible_env()['ANSIBLE_COLLECTIONS_PATH'],
               'PICLAB_RUN': piclab.run_dir(),
               'PATH': os.pathsep.join(([tools] if tools else []) + [os.environ.get('PATH', os.defpath)])}
    with open(os.path.join(pdd, 'env', 'envvars'), 'w') as handle:
        yaml.safe_dump(envvars, handle)
    yield pdd
    shutil.rmtree(pdd, ignore_errors=True)


def entry_point(cell):
    return os.path.join(piclab.run_dir(), 'nodes', cell, 'bin', 'pic-connectivity')


def run(pdd, playbook, ident, expect_fail=False):
    """ansible_runner.run of PLAYBOOK (a path in project/): the Runner, asserted successful (or failed)."""
    result = ansible_runner.run(private_data_dir=pdd, playbook=playbook, ident=ident, quiet=True, timeout=900)
    stdout = result.stdout.read()
    result.text = stdout
    if expect_fail:
        assert result.status == 'failed' and result.rc != 0, (result.status, result.rc, stdout[-4000:])
        return result
    assert (result.status, result.rc) == ('successful', 0), stdout[-4000:]
    stats = result.stats
    assert not any(stats.get(kind) for kind in ('failures', 'dark')), stats
    assert sorted(stats['processed']) == list(CELLS), stats
    return result


def changed_tasks(result):
    """{host: [names of the tasks that reported a change there]} from runner's events."""
    out = dict((host, []) for host in CELLS)
    for event in result.events:
        data = event.get('event_data', {})
        if event['event'] == 'runner_on_ok' and data.get('res', {}).get('changed'):
            out[data['host']].append(data['task'])
    return out


def facts(result, task):
    """{host: ansible_facts} that the set_fact TASK recorded, from runner's events."""
    return dict((e['event_data']['host'], e['event_data']['res'].get('ansible_facts', {}))
                for e in result.events
                if e['event'] == 'runner_on_ok' and e['event_data'].get('task') == task)


def assert_no_secret(pdd):
    """The exit's WireGuard private key is nowhere in runner's artifacts (stdout, events, env)."""
    with open(piclab.exit_config_path('cell1')) as handle:
        key = [line.split('=', 1)[1].strip() for line in handle if line.startswith('PrivateKey')][0]
    for base, _dirs, files in os.walk(os.path.join(pdd, 'artifacts')):
        for name in files:
            with open(os.path.join(base, name), errors='replace') as handle:
                assert key not in handle.read(), os.path.join(base, name)


def assert_exits():
    """Packets leave where the fleet's exits say (as tests/lab/test_fleet_site.py checks)."""
    assert wait_for(lambda: piclab.fetch('p1', 4) == piclab.exit_address(4), 15), piclab.fetch('p1', 4)
    assert piclab.fetch('p2', 4) == piclab.wan_address('cell1', 4)
    assert piclab.fetch('p3', 4) == piclab.wan_address('cell2', 4)
    assert piclab.fetch('p3', 6) == piclab.wan_address('cell2', 6)
    assert piclab.fetch('p1', 4, cell='cell2') == piclab.wan_address('cell2', 4)


def test_site_under_ansible_runner_converges_then_is_idempotent(bare_fleet, data_dir):
    first = run(data_dir, 'site.yml', 'site-1')
    for host in CELLS:
        assert first.stats['changed'].get(host, 0) > 0, first.stats
    changed = changed_tasks(first)
    assert all(changed[host] for host in CELLS), changed
    assert_exits()

    second = run(data_dir, 'site.yml', 'site-2')
    assert not any(second.stats['changed'].get(host, 0) for host in CELLS), changed_tasks(second)
    assert changed_tasks(second) == dict((host, []) for host in CELLS)
    assert_exits()
    assert_no_secret(data_dir)


def test_rollout_under_ansible_runner_goes_canary_first_then_is_idempotent(bare_fleet, data_dir):
    for cell in bare_fleet:
        reset_cell(cell)
    first = run(data_dir, 'rollout.yml', 'rollout-1')
    outcome = facts(first, 'Record the outcome')
    assert dict((h, f.get('pic_rollout_result')) for h, f in outcome.items()) == \
        dict((host, 'changed') for host in CELLS), outcome
    assert 'batch of 1 cell(s): cell1' in first.text, first.text[-3000:]
    armed = [e['event_data']['host'] for e in first.events
             if e['event'] == 'runner_on_ok' and e['event_data'].get('task') == 'Arm the automatic revert']
    assert armed[0] == 'cell1' and sorted(armed) == list(CELLS), armed     # the canary first
    changed = changed_tasks(first)
    assert all(set(changed[host]) - set(COMMIT_TASKS) for host in CELLS), changed
    assert_exits()

    second = run(data_dir, 'rollout.yml', 'rollout-2')
    outcome = facts(second, 'Record the outcome')
    assert dict((h, f.get('pic_rollout_result')) for h, f in outcome.items()) == \
        dict((host, 'untouched') for host in CELLS), outcome
    changed = changed_tasks(second)
    assert all(set(changed[host]) <= set(COMMIT_TASKS) for host in CELLS), changed   # only the commit itself
    for cell in bare_fleet:
        assert not cell.module('pic_commit', {'action': 'status'})['pending']
    assert_exits()
    assert_no_secret(data_dir)


def test_rollout_under_ansible_runner_leaves_another_runs_commit_alone(bare_fleet, data_dir):
    """A second controller starts the rollout while the first one's commit on the canary waits for
    its confirmation (same commit id, the default): the cell refuses, the second run neither
    applies nor rolls back anything there, and stops before the other cells."""
    before = dict((cell.name, cell.registry_bytes()) for cell in bare_fleet)
    canary = bare_fleet[0]
    first = canary.module('pic_commit', {'action': 'begin', 'id': 'rollout', 'timeout': 300,
                                         'entry_point': entry_point(canary.name)})
    try:
        second = run(data_dir, 'rollout.yml', 'rollout-concurrent', expect_fail=True)
        assert 'still waiting for confirmation' in second.text, second.text[-3000:]
        refused = facts(second, 'Record the rollback')
        assert list(refused) == ['cell1'], refused
        assert refused['cell1']['pic_rollout_result'].startswith('refused'), refused
        assert not facts(second, 'Roll the cell back to its state before the run')
        assert canary.module('pic_commit', {'action': 'status'})['pending'] == first['pending']
        reached = set(e['event_data'].get('host') for e in second.events if e['event'].startswith('runner_on_'))
        assert reached == {'cell1'}, reached       # the other cells never reached
        assert dict((cell.name, cell.registry_bytes()) for cell in bare_fleet) == before
    finally:
        canary.module('pic_commit', {'action': 'rollback', 'id': 'rollout'})
    assert not canary.module('pic_commit', {'action': 'status'})['pending']
    assert_exits()
