# -*- coding: utf-8 -*-
"""The connectivity role through playbooks/site.yml and the lab inventory, as an operator runs it.
Runs after test_dataplane (file order): it leaves the cell's monitor running."""
import os
import re
import subprocess
import sys

from conftest import ROOT, piclab, wait_for
from test_dataplane import sources, via_exit, via_wan


def playbook(*extra):
    env = dict(os.environ)
    if 'ANSIBLE_COLLECTIONS_PATH' not in env:
        from conftest import _BASE
        env['ANSIBLE_COLLECTIONS_PATH'] = _BASE
    binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    if '-i' not in extra:
        extra = ('-i', os.path.join(ROOT, 'lab', 'inventory', 'hosts.yml')) + extra
    proc = subprocess.run([binary if os.path.exists(binary) else 'ansible-playbook',
                           os.path.join(ROOT, 'playbooks', 'site.yml')] + list(extra),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    changed = sum(int(n) for n in re.findall(r'cell\d+\s*:\s*ok=\d+\s+changed=(\d+)', proc.stdout))
    return changed, proc.stdout


def test_site_converges_the_lab_cell_idempotently(cell):
    changed, out = playbook('--check')
    assert changed > 0
    changed, out = playbook('-vvv')
    assert changed > 0
    with open(piclab.exit_config_path('cell1')) as handle:
        key = [line.split('=', 1)[1].strip() for line in handle if line.startswith('PrivateKey')][0]
    assert key not in out
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')
    assert via_exit('p2') and via_wan('p3')
    changed, out = playbook()
    assert changed == 0, out[-3000:]


def test_site_runs_the_monitor_under_supervisord(cell):
    conf = os.path.join(cell.state_dir, 'supervisor', 'supervisord.conf')
    status = cell.sh('supervisorctl', '-c', conf, 'status', 'pic-monitor', check=False).stdout
    assert 'RUNNING' in status, status
    # the supervised monitor brings a deleted exit interface back by itself
    cell.sh('ip', 'link', 'del', 'pic-exit-wg')
    assert wait_for(lambda: 'pic-exit-wg' in cell.sh('ip', 'link').stdout, 10)
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')
