# -*- coding: utf-8 -*-
"""pic_health: the guide's checks, the shared cache, the deep probe and the fleet report."""
import base64
import os
import subprocess
import tempfile

import pytest

from conftest import ROOT, piclab, wait_for
from exit_helpers import ansible_bin, ansible_env
from test_dataplane import EXIT, converge

BLACKHOLE = ('add table inet blackhole; '
             'add chain inet blackhole drop_in { type filter hook input priority 0; }; '
             'add rule inet blackhole drop_in iifname "wg0" drop; '
             'add chain inet blackhole drop_fwd { type filter hook forward priority 0; }; '
             'add rule inet blackhole drop_fwd iifname "wg0" drop')


def health(cell, **args):
    args.setdefault('connection', EXIT)
    return cell.module('pic_health', args)['connections']


@pytest.fixture(scope='module', autouse=True)
def exit_connection(cell):
    converge(cell)
    assert wait_for(lambda: health(cell, force=True)['exit-wg']['status'] == 'working', 15)
    yield


def test_cache_is_shared_and_force_probes_again(cell):
    first = health(cell, force=True)['exit-wg']
    second = health(cell)['exit-wg']
    assert not first['cached'] and second['cached']
    assert second['checked_at'] == first['checked_at']
    third = health(cell, force=True)['exit-wg']
    assert not third['cached'] and third['checked_at'] > first['checked_at']
    stale = health(cell, max_age=0)['exit-wg']
    assert not stale['cached']


def test_unknown_when_the_tunnel_never_handshook(cell):
    key = base64.b64encode(os.urandom(32)).decode()
    peer = base64.b64encode(os.urandom(32)).decode()
    cell.module('pic_connection', {'name': 'Nowhere', 'type': 'wireguard_ext', 'config': {
        'private_key': key, 'address': ['10.250.0.2/32'], 'peer_public_key': peer,
        'endpoint': '203.0.113.99:51820'}})
    try:
        entry = health(cell, connection='Nowhere', force=True)['nowhere']
        assert entry['status'] == 'unknown', entry
        assert 'no handshake' in entry['reason']
    finally:
        cell.module('pic_connection', {'name': 'Nowhere', 'state': 'absent'})


def test_down_within_one_probe_after_the_server_stops(cell):
    piclab.exit_stop()
    try:
        entry = health(cell, force=True)['exit-wg']
        assert entry['status'] == 'down', entry
    finally:
        piclab.exit_start()
    assert wait_for(lambda: health(cell, force=True)['exit-wg']['status'] == 'working', 20)


def test_deep_probe_catches_a_tunnel_that_carries_nothing(cell):
    piclab.run('wgexit', 'nft', BLACKHOLE)
    try:
        entry = health(cell, force=True)['exit-wg']
        assert entry['status'] == 'down', entry
        # the deep probe of this call, or the monitor's (when one runs on the cell) got there first
        assert 'deep probe' in entry['reason'] or 'monitor: probe' in entry['reason'], entry
    finally:
        piclab.run('wgexit', 'nft', 'delete table inet blackhole')
    assert wait_for(lambda: health(cell, force=True)['exit-wg']['status'] == 'working', 10)


def test_fleet_health_report(cell):
    html = os.path.join(tempfile.mkdtemp(), 'health.html')
    proc = subprocess.run([ansible_bin('ansible-playbook'), '-i', os.path.join(ROOT, 'lab', 'inventory', 'hosts.yml'),
                           os.path.join(ROOT, 'playbooks', 'health.yml'), '-e', 'pic_health_html=%s' % html,
                           '-e', 'pic_health_force=true'], capture_output=True, text=True, env=ansible_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert '| cell1 | Exit WG | wireguard_ext | working |' in proc.stdout
    with open(html) as handle:
        page = handle.read()
    assert '<tr class="working"><td>cell1</td><td>Exit WG</td>' in page
