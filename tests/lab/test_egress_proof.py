# -*- coding: utf-8 -*-
"""The egress proof (issue 13, item 6), with real packets: a wireguard_ext exit
whose ``egress_url`` is the lab's echo server, asked through the exit with the
connection's mark.

* ``expect_egress`` = the lab exit's public address: working, and the address is
  reported (pic_health, the status CLI);
* ``expect_egress`` = another address: down; the monitor holds it down, so the
  fail-closed peer p1 is blocked (none of its packets reach the internet) and the
  fail-open peer p2 leaves by the WAN; the right address again: back on the exit.
"""
import json
import os
import subprocess
import tempfile

import pytest

from conftest import LIB_BASE, leak_count, piclab, reset_cell, wait_for

EXIT = 'Exit WG'
CID = 'exit-wg'
WRONG = '198.51.100.250/32'


def exit_conf():
    with open(piclab.exit_config_path('cell1')) as handle:
        return handle.read()


def echo_url():
    return 'http://%s/' % piclab.server_address(4)


def set_exit(cell, expect):
    cell.module('pic_connection', {'name': EXIT, 'type': 'wireguard_ext', 'config': {
        'wg_config': exit_conf(), 'health_target': piclab.EXIT_TUN_V4, 'egress_url': echo_url(),
        'expect_egress': expect}})


def peer(name, **extra):
    return dict({'peer': name, 'address': [piclab.peer_address(name, 4) + '/32',
                                           piclab.peer_address(name, 6) + '/128']}, **extra)


def health(cell):
    return cell.module('pic_health', {'connection': EXIT, 'force': True})['connections'][CID]


def monitor_down(cell):
    """Does the cell's monitor hold the exit down (its runtime state)?"""
    try:
        with open(os.path.join(cell.state_dir, 'runtime.json')) as handle:
            return CID in (json.load(handle).get('down') or [])
    except IOError:
        return False


class Monitor(object):
    """The cell's monitor (``pic-connectivity monitor``) for a ``with`` block, its output
    kept for the failure messages (``log()``)."""

    def __init__(self, cell):
        self.cell = cell
        self.out = tempfile.NamedTemporaryFile('w+', prefix='pic-egress-monitor-', suffix='.log')
        self.proc = None

    def __enter__(self):
        code = ('import sys; sys.path.insert(0, %r); from pic_connectivity_lib.cli import main; '
                'sys.exit(main(sys.argv[1:]))' % LIB_BASE)
        self.proc = subprocess.Popen([piclab.NSEXEC, self.cell.name, '/usr/bin/python3', '-c', code, 'monitor',
                                      '--interval', '0.5', '--state-dir', self.cell.state_dir],
                                     stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self):
        self.out.seek(0)
        return 'monitor (%s): %s' % (self.proc.poll(), self.out.read()[-3000:])

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


@pytest.fixture(scope='module')
def egress_cell(cell):
    reset_cell(cell)
    set_exit(cell, [piclab.exit_address(4)])
    cell.module('pic_peer_exit', {'peers': [peer('p1', connection=EXIT), peer('p2', connection=EXIT, fail_open=True),
                                            peer('p3', connection='default')], 'purge': True})
    assert wait_for(lambda: piclab.via_exit('p1', timeout=2), 15), piclab.sources('p1')
    yield cell
    cell.module('pic_peer_exit', {'peers': [peer(p, connection='default', fail_open=None) for p in ('p1', 'p2')]})
    cell.module('pic_connection', {'name': EXIT, 'state': 'absent'})


def test_the_expected_exit_is_working_and_its_address_reported(egress_cell):
    cell = egress_cell
    entry = wait_for(lambda: (lambda e: e if e['status'] == 'working' else None)(health(cell)), 15)
    assert entry, health(cell)
    assert entry['egress'] == piclab.exit_address(4), entry
    assert 'leaves from %s (expected)' % piclab.exit_address(4) in entry['reason'], entry
    info = cell.module('pic_connectivity_info', {'max_age': 30})
    assert info['connections'][CID]['health']['egress'] == piclab.exit_address(4)
    out = cell.cli('status').stdout
    assert 'public %s' % piclab.exit_address(4) in out, out


def test_an_exit_leaving_from_elsewhere_is_down_and_the_monitor_applies_the_fail_modes(egress_cell):
    cell = egress_cell
    set_exit(cell, [WRONG])
    try:
        entry = health(cell)
        assert entry['status'] == 'down', entry
        assert entry['egress'] == piclab.exit_address(4), entry
        assert 'not from expect_egress %s' % WRONG in entry['reason'], entry
        with Monitor(cell) as monitor:
            assert wait_for(lambda: monitor_down(cell), 15), (monitor.log(), health(cell))
        held = health(cell)
        assert held['status'] == 'down' and held['reason'].startswith('monitor: '), held
        assert held['egress'] == piclab.exit_address(4), held
        # held down (the monitor's state stays in the data plane): counted without its probes
        assert wait_for(lambda: piclab.via_wan('p2', timeout=2), 10), piclab.sources('p2')
        assert leak_count('p1') == 0, piclab.counters()
        assert piclab.sources('p1', timeout=1) == (None, None)
        assert piclab.via_wan('p3', timeout=2)
    finally:
        set_exit(cell, [piclab.exit_address(4)])
    with Monitor(cell) as monitor:
        assert wait_for(lambda: not monitor_down(cell), 20), (monitor.log(), health(cell))
        assert wait_for(lambda: piclab.via_exit('p1', timeout=2), 10), monitor.log()
        assert wait_for(lambda: piclab.via_exit('p2', timeout=2), 10), monitor.log()
