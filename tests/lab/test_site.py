# -*- coding: utf-8 -*-
"""The connectivity role through playbooks/site.yml and the lab inventory, as an operator runs it.
Runs after test_dataplane (file order): it leaves the cell's monitor running."""
import json
import os
import re

from conftest import ROOT, piclab, wait_for
from exit_helpers import ANY_CELL, LAB_INVENTORY, playbook
from piclab import sources, via_exit, via_wan


def site(*extra):
    """site.yml on the committed lab inventory: (changes of every cell, output)."""
    return playbook(LAB_INVENTORY, None, *extra, hosts=ANY_CELL)


def test_site_converges_the_lab_cell_idempotently(cell):
    changed, out = site('--check')
    assert changed > 0
    changed, out = site('-vvv')
    assert changed > 0
    with open(piclab.exit_config_path('cell1')) as handle:
        key = [line.split('=', 1)[1].strip() for line in handle if line.startswith('PrivateKey')][0]
    assert key not in out
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')
    assert via_exit('p2') and via_wan('p3')
    changed, out = site()
    assert changed == 0, out[-3000:]


def test_site_runs_the_monitor_under_supervisord(cell):
    conf = os.path.join(cell.state_dir, 'supervisor', 'supervisord.conf')
    status = cell.sh('supervisorctl', '-c', conf, 'status', 'pic-monitor', check=False).stdout
    assert 'RUNNING' in status, status
    # the supervised monitor brings a deleted exit interface back by itself
    cell.sh('ip', 'link', 'del', 'pic-exit-wg')
    assert wait_for(lambda: 'pic-exit-wg' in cell.sh('ip', 'link').stdout, 10)
    assert wait_for(lambda: via_exit('p1'), 15), sources('p1')


def test_site_restores_a_tampered_cell_library(cell):
    """The cell's copy of the collection's module_utils: one pic_library run decides what to write; every kind of
    drift (content, mode, owner, a missing file, a file the collection no longer has) is restored."""
    lib = os.path.join(os.path.dirname(cell.state_dir), 'lib', 'pic_connectivity_lib')
    sources = os.path.join(ROOT, 'plugins', 'module_utils')
    site()                                            # converged (the tests above did it already)
    assert os.path.isfile(os.path.join(lib, 'model.py')), lib

    def drift():
        found = []
        for name in sorted(set(os.listdir(lib)) | set(os.listdir(sources))):
            if not name.endswith('.py'):
                continue
            mine, theirs = os.path.join(lib, name), os.path.join(sources, name)
            if not os.path.exists(mine) or not os.path.exists(theirs):
                found.append(name)
                continue
            st = os.stat(mine)
            with open(mine, 'rb') as a, open(theirs, 'rb') as b:
                if a.read() != b.read() or (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (0o644, 0, 0):
                    found.append(name)
        return found

    assert drift() == []
    with open(os.path.join(lib, 'model.py'), 'a') as handle:
        handle.write('# edited by hand\n')
    os.chmod(os.path.join(lib, 'nft.py'), 0o600)
    os.chown(os.path.join(lib, 'errors.py'), 1, 1)
    os.unlink(os.path.join(lib, 'health.py'))
    open(os.path.join(lib, 'stale_module.py'), 'w').close()
    tampered = drift()
    assert tampered == ['errors.py', 'health.py', 'model.py', 'nft.py', 'stale_module.py']

    changed, out = site('--check', '-v')
    assert changed > 0 and drift() == tampered            # check mode changes nothing
    # (pic_library: one module run; only what differs is written, what the collection lacks removed)
    written = json.loads(re.search(r'"written": (\[[^\]]*\])', out).group(1))
    removed = json.loads(re.search(r'"removed": (\[[^\]]*\])', out).group(1))
    assert (written, removed) == (['errors.py', 'health.py', 'model.py', 'nft.py'], ['stale_module.py']), out[-3000:]

    changed, out = site()
    assert changed > 0 and drift() == [], out[-3000:]
    changed, out = site()
    assert changed == 0, out[-3000:]
