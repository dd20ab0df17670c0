# -*- coding: utf-8 -*-
"""The monitor's hysteresis and the health cache's expiry, as the guide states them.

* hysteresis: a deep probe target (``health_target``) that stops answering holds the
  exit down only after ``health_fail_after`` failed probes in a row, and brings it back
  only after ``health_recover_after`` answered ones; the monitor's real passes
  (``tick``) on a converged cell in a throwaway network namespace, with a fake ``ping``
  first in PATH that answers while a file exists;
* the 30 s cache: a result is reused at 29 s and probed again after 30 s, in REAL
  time (the test sleeps about 31 s; marked ``real_time``)."""
import contextlib
import io
import os
import stat
import subprocess
import time

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cli, dataplane, health, wgconf, wgiface
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, keyed, saved_registry

FAIL_AFTER, RECOVER_AFTER = 3, 2
CONN = {'name': 'Exit WG', 'type': 'wireguard_ext',
        'config': keyed(health_target='192.0.2.1', health_fail_after=FAIL_AFTER,
                        health_recover_after=RECOVER_AFTER, interface='pic-t-hyst')}
# (an interface name of this test's own: wireguard-go's control socket, /var/run/wireguard/<name>.sock,
# is shared by every network namespace)
CLONE_NEWNS = 0x00020000


def _own_sysfs():
    """/sys/class/net of this namespace (link_exists reads it): a private mount namespace
    of this child's own with sysfs mounted again (the host's /sys is untouched)."""
    import ctypes
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), 'unshare(CLONE_NEWNS)')
    subprocess.run(['mount', '--make-rprivate', '/'], check=True)
    subprocess.run(['mount', '-t', 'sysfs', 'sysfs', '/sys'], check=True)


def _fake_ping(monkeypatch, tmp_path):
    """A ``ping`` first in PATH that answers while the returned file exists."""
    answering = tmp_path / 'answering'
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    fake = bindir / 'ping'
    fake.write_text('#!/bin/sh\n[ -e %s ] && exit 0\nexit 1\n' % answering)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('PATH', '%s:%s' % (bindir, os.environ['PATH']))
    return answering


def _passes(registry, answering):
    """The runtime's ``down`` after each monitor pass: answering, then 4 passes without
    an answer, then 3 with answers again."""
    _own_sysfs()
    states = []
    with contextlib.redirect_stdout(io.StringIO()):
        cell = dataplane.Cell(registry)
        cell.store_wg('exit-wg', wgconf.parse(CONN['config']))
        try:
            cell.converge(registry.load())
            monitor = cli.Monitor(registry.state_dir, fail_after=99, recover_after=99)   # the config's counts rule
            for answers in [True] + [False] * 4 + [True] * 3:
                if answers:
                    answering.touch()
                elif answering.exists():
                    answering.unlink()
                monitor.tick()
                runtime = registry.load_runtime()
                states.append((answers, runtime['down'], runtime['reasons'].get('exit-wg')))
        finally:
            # wireguard-go outlives the namespace: stop it
            wgiface.WgInterface(cell.routing, 'pic-t-hyst', os.path.join(registry.state_dir, 'run')).remove()
            cell.close()
    return states


def test_the_monitor_holds_an_exit_down_after_fail_after_and_back_after_recover_after(
        tmp_path, monkeypatch, libnftables):
    answering = _fake_ping(monkeypatch, tmp_path)
    registry = saved_registry(str(tmp_path / 'state'), CONN, alice=('10.0.0.2', 'Exit WG'))
    states = in_netns(_passes, registry, answering)
    downs = [bool(down) for _answers, down, _why in states]
    assert downs == [False,                       # answered
                     False, False, True, True,    # down at the 3rd failure in a row (health_fail_after 3)
                     True, False, False], states  # up again at the 2nd answer in a row (health_recover_after 2)
    assert states[3][2] == 'probe of 192.0.2.1 failed 3 times'
    assert states[6][2] == 'probe of 192.0.2.1 answered'


class _Counting(object):
    """check_all's stand-in: counts the probes, answers 'working'."""

    def __init__(self):
        self.calls = 0

    def __call__(self, conns, *args, **kwargs):
        self.calls += 1
        return [(health.WORKING, 'probed') for _conn in conns]


@pytest.mark.real_time
def test_a_cached_result_is_reused_at_29s_and_probed_again_after_30s_of_real_time(tmp_path, monkeypatch):
    """REAL TIME: sleeps about 31 s (the cache's 30 s, as pic_health and the status use it)."""
    state = tmp_path / 'state'
    state.mkdir()
    probe = _Counting()
    monkeypatch.setattr(health, 'check_all', probe)
    doc = {'settings': None, 'connections': {'exit': {'id': 'exit', 'type': 'tor', 'config': {}}}}
    cache = health.HealthCache(str(state))
    started = time.time()
    first = health.report(doc, {}, cache, ['exit'])      # max_age=30, the default, and the real clock
    assert first['exit']['cached'] is False and probe.calls == 1
    time.sleep(max(0.0, started + 29 - time.time()))
    at_29 = health.report(doc, {}, cache, ['exit'])
    assert time.time() - first['exit']['checked_at'] < 30
    assert at_29['exit']['cached'] is True and probe.calls == 1
    assert at_29['exit']['checked_at'] == first['exit']['checked_at']
    time.sleep(max(0.0, first['exit']['checked_at'] + 30.5 - time.time()))
    after_30 = health.report(doc, {}, cache, ['exit'])
    assert after_30['exit']['cached'] is False and probe.calls == 2
    assert after_30['exit']['checked_at'] > first['exit']['checked_at'] + 30
