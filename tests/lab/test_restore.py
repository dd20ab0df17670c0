# -*- coding: utf-8 -*-
"""Fail-closed boot restore, proven with packets (issue 11, Deliver 5).

A reboot is simulated (forwarding off; the exit interface, the nftables table,
the ip rules and routes gone), the state is damaged, and the restore entry
point runs while a fail-closed peer sends continuously; forwarding is turned
on right after it, as the boot order says. Nothing from the peer may reach the
internet (the exit is down after a reboot until restored, so every packet
counted is a leak), and restore must say why it could not restore. A good
state brings the exit back.
"""
import os
import shutil
import stat
import time

import pytest

from conftest import piclab, quiet_counters, reset_cell, wait_for
from test_killswitch import Sender, leaks, baseline, via_exit


def reboot(cell):
    cell.sh('sysctl', '-qw', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0')
    cell.sh('ip', 'link', 'del', 'pic-exit-wg', check=False)
    cell.sh('nft', 'delete table inet pic_connectivity', check=False)
    cell.sh('sh', '-c', 'for f in -4 -6; do for p in 10000 10001; do while ip $f rule del pref $p 2>/dev/null; '
            'do :; done; done; done; ip route flush table 10127 2>/dev/null; ip -6 route flush table 10001 '
            '2>/dev/null; true')


def forwarding_on(cell):
    cell.sh('sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1')


def _write(path, text):
    with open(path, 'w') as handle:
        handle.write(text)


def damage(cell, case):
    state = cell.state_dir
    secret = os.path.join(state, 'secrets', 'exit-wg.conf')
    registry = os.path.join(state, 'registry.json')
    if case == 'secret file missing':
        os.unlink(secret)
    elif case == 'secret file corrupt':
        _write(secret, 'not a secret {')
    elif case == 'registry {}':
        _write(registry, '{}\n')
    elif case == 'registry garbage':
        _write(registry, '\x00garbage')
    elif case == 'no last good, registry garbage':
        os.unlink(os.path.join(state, 'last-good.json'))
        _write(registry, '[]')


def sockets(folder, names):
    """copytree's ignore: the unix sockets (a daemon's of an earlier run), which cannot be copied."""
    return [n for n in names if stat.S_ISSOCK(os.lstat(os.path.join(folder, n)).st_mode)]


@pytest.fixture(scope='module')
def good_state(cell):
    reset_cell(cell)
    baseline(cell)
    assert wait_for(lambda: via_exit('p1'), 15)
    backup = cell.state_dir + '.good'
    shutil.rmtree(backup, ignore_errors=True)
    shutil.copytree(cell.state_dir, backup, symlinks=True, ignore=sockets)
    yield backup
    shutil.rmtree(backup, ignore_errors=True)


def put_back(cell, backup):
    shutil.rmtree(cell.state_dir)
    shutil.copytree(backup, cell.state_dir, symlinks=True)


@pytest.mark.parametrize('case', ['secret file missing', 'secret file corrupt', 'registry {}', 'registry garbage',
                                  'no last good, registry garbage'])
def test_corrupt_state_keeps_a_fail_closed_peer_blocked(cell, good_state, case):
    put_back(cell, good_state)
    reboot(cell)
    damage(cell, case)
    quiet_counters()
    with Sender('p1') as sender:
        proc = cell.cli('restore', '--peer-interface', 'wg0')
        forwarding_on(cell)
        time.sleep(1.5)
    leaked = leaks(exit_ok=False)
    print('%s: restore rc=%d, %d packets sent, leaked %r; %s' % (case, proc.returncode, sender.sent, leaked,
                                                                  proc.stderr.strip()))
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert 'peers stay blocked' in proc.stderr
    assert leaked == {}
    if case.startswith('no last good'):
        # without a last good state nothing tells the peers apart: all are blocked
        assert 'a block of everything forwarded from wg0' in proc.stderr
        assert piclab.fetch('p3', 4, timeout=1) is None
    else:
        # a positive control: the default peer still gets out
        assert piclab.fetch('p3', 4) == piclab.wan_address('cell1', 4)


def test_good_state_brings_the_exit_back(cell, good_state):
    put_back(cell, good_state)
    reboot(cell)
    quiet_counters()
    with Sender('p1'):
        started = time.time()
        proc = cell.cli('restore', '--peer-interface', 'wg0')
        forwarding_on(cell)
        back = wait_for(lambda: via_exit('p1'), 15)
        took = time.time() - started
    assert proc.returncode == 0, proc.stderr
    assert 'kill switch: the last good state' in proc.stdout
    assert back
    assert leaks() == {}
    print('restore with a good state: exit back after %.1fs' % took)
