# -*- coding: utf-8 -*-
"""The kill switch under faults, proven with packets (issue 11, Deliver 6).

A sender in a fail-closed peer fires TCP SYN, UDP (53, 443) and ICMP, IPv4 and
IPv6, every 20 ms through each fault; the internet counts, by source, what
arrives. Through the exit the packets arrive from the exit's address; anything
from another source (the cell's WAN address, or the peer's own address when
the lab's masquerade went with a flushed ruleset) is a leak.

Baseline: "Exit WG" (wireguard_ext, fail-closed); p1 on it (fail-closed), p2
on it with a fail_open override, p3 on the default gateway; the cell's monitor
runs.
"""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import desired_rules, exit_path_report, piclab, quiet_counters, reset_cell, wait_for

EXIT = 'Exit WG'
LAB_NAT = 'table inet lab_nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n' \
          '  oifname "wan0" masquerade\n }\n}\n'



class Sender(object):
    """A continuous sender in a lab peer (started by ``with``)."""

    def __init__(self, peer, cell='cell1'):
        self.node = piclab.peer_node(peer, cell)
        self.proc = None
        self.sent = None

    def __enter__(self):
        self.proc = subprocess.Popen([piclab.NSEXEC, self.node, piclab.PYTHON, piclab.STEADY_SENDER,
                                      piclab.server_address(4), piclab.server_address(6)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(2)
        out, _err = self.proc.communicate(timeout=10)
        self.sent = int(out.strip() or 0)


def leaks(exit_ok=True):
    """Packets at the internet from any source but the exit (all of them with exit_ok False)."""
    allowed = set([piclab.exit_address(4), piclab.exit_address(6)]) if exit_ok else set()
    return dict((src, n) for src, n in piclab.counters()['by_source'].items() if n and src not in allowed)


def exit_conf(v4only=False):
    with open(piclab.exit_config_path('cell1', v4only=v4only)) as handle:
        return handle.read()


def baseline(cell):
    def peer(name, **extra):
        return dict({'peer': name, 'address': [piclab.peer_address(name, 4) + '/32',
                                               piclab.peer_address(name, 6) + '/128']}, **extra)
    cell.module('pic_connection', {'name': EXIT, 'type': 'wireguard_ext',
                                   'config': {'wg_config': exit_conf(), 'health_target': piclab.EXIT_TUN_V4}})
    cell.module('pic_peer_exit', {'peers': [peer('p1', connection=EXIT), peer('p2', connection=EXIT, fail_open=True),
                                            peer('p3', connection='default')], 'purge': True})


def via_exit(peer):
    return piclab.via_exit(peer, timeout=2)


def table_present(cell):
    return cell.sh('nft', 'list', 'chain', 'inet', 'pic_connectivity', 'forward', check=False).returncode == 0


def our_rules(cell):
    """The collection's ip rules on the cell: priorities 10000-10001, and the DNS guard at 0."""
    count = 0
    for fam in ('-4', '-6'):
        for line in cell.sh('ip', fam, 'rule', check=False).stdout.splitlines():
            if line.startswith(('10000:', '10001:')) or (line.startswith('0:') and 'dport 53' in line):
                count += 1
    return count


# The ip rules of the baseline, by (family, action, ingress interface): the exit's
# table, the kill switch's unreachable, the guard of the peer interface wg0, and
# its DNS guard ahead of the local rule (UDP and TCP).
BASELINE_RULES = sorted([(4, 'table', None), (6, 'table', None), (4, 'unreachable', None),
                         (6, 'unreachable', None)] + [(4, 'table', 'wg0'), (6, 'unreachable', 'wg0')] * 3, key=str)


def wanted_rules(cell):
    """How many ip rules the cell's desired state has (our_rules counts them on the cell)."""
    rules = desired_rules(cell)
    assert set(r['priority'] for r in rules) <= set([0, 10000, 10001]), rules
    return len(rules)


@pytest.fixture(scope='module')
def monitored(cell):
    reset_cell(cell)
    baseline(cell)
    assert sorted(((r['family'], r['action'], r['iif']) for r in desired_rules(cell)), key=str) == BASELINE_RULES
    assert wait_for(lambda: via_exit('p1'), 60), (piclab.fetch('p1', 4), piclab.fetch('p1', 6), exit_path_report(cell))
    monitor = cell.cli('monitor', '--interval', '0.5', background=True)
    time.sleep(1.5)
    yield cell
    monitor.terminate()
    monitor.wait(10)
    drop_baseline(cell)


def drop_baseline(cell):
    cell.module('pic_peer_exit', {'peers': [{'peer': p, 'connection': 'default', 'fail_open': None}
                                            for p in ('p1', 'p2', 'p3')]})
    cell.module('pic_connection', {'name': EXIT, 'state': 'absent'})


def table_shape(cell):
    text = cell.sh('nft', '-t', 'list', 'table', 'inet', 'pic_connectivity').stdout
    return re.sub(r'counter packets \d+ bytes \d+', 'counter', text)


def restore_lab_nat(cell):
    if 'lab_nat' not in cell.sh('nft', 'list', 'tables').stdout:
        piclab.run(cell.name, 'nft', '-f', '-', input=LAB_NAT)


def rules_total(cell):
    """Every ip rule of the cell (to see a flush of our own)."""
    return cell.sh('ip', '-4', 'rule').stdout + cell.sh('ip', '-6', 'rule').stdout


FAULTS = {
    'nft flush ruleset': [('nft', 'flush ruleset')],
    'table deleted': [('nft', 'delete table inet pic_connectivity')],
    # a firewall manager's reload / "systemctl restart nftables" with Debian's stock nftables.conf
    'ruleset reloaded': [('nft', '-f', '-', 'flush ruleset\ntable inet filter {\n chain forward {\n'
                          '  type filter hook forward priority filter; policy accept;\n }\n}\n')],
    'ip rules deleted': [('sh', '-c', 'for f in -4 -6; do for p in 10000 10001; do while ip $f rule del pref $p '
                          '2>/dev/null; do :; done; done; done')],
}
BOTH = [('nft', 'flush ruleset'),
        ('sh', '-c', 'for f in -4 -6; do for p in 10000 10001; do while ip $f rule del pref $p '
         '2>/dev/null; do :; done; done; done')]


def _damage(cell, steps):
    for step in steps:
        if step[:3] == ('nft', '-f', '-'):
            piclab.run(cell.name, 'nft', '-f', '-', input=step[3])
        else:
            cell.sh(*step)


@pytest.mark.parametrize('fault', sorted(FAULTS))
def test_fail_closed_peer_never_leaks_and_the_monitor_restores(monitored, fault):
    cell = monitored
    full = (our_rules(cell), table_shape(cell))
    assert full[0] == wanted_rules(cell)
    quiet_counters()
    with Sender('p1') as sender:
        time.sleep(0.5)
        started = time.time()
        _damage(cell, FAULTS[fault])
        back = wait_for(lambda: table_present(cell) and our_rules(cell) == full[0], 5, 0.02)
        recovery = time.time() - started
        time.sleep(1.0)
    restore_lab_nat(cell)
    leaked = leaks()
    print('%s: recovered in %.2fs, %d packets sent, leaked %r' % (fault, recovery, sender.sent, leaked))
    assert back, 'not restored: %s' % rules_total(cell)
    assert leaked == {}
    assert recovery < 1.0
    assert (our_rules(cell), table_shape(cell)) == full
    assert piclab.counters()['by_source'].get(piclab.exit_address(4)), 'the positive control: p1 via the exit'
    assert wait_for(lambda: via_exit('p2'), 10)


def test_both_layers_lost_at_once_are_back_within_a_second(monitored):
    """The table and the ip rules gone together: nothing is left to hold the
    packets until the monitor has restored them (the packets of that gap are
    reported, not asserted); from then on not one leaks."""
    cell = monitored
    wanted = wanted_rules(cell)
    assert our_rules(cell) == wanted
    quiet_counters()
    with Sender('p1') as sender:
        time.sleep(0.3)
        started = time.time()
        _damage(cell, BOTH)
        back = wait_for(lambda: table_present(cell) and our_rules(cell) == wanted, 5, 0.02)
        recovery = time.time() - started
        restore_lab_nat(cell)
        time.sleep(0.3)
        during = leaks()
        piclab.counters_reset()
        time.sleep(1.0)
        after = leaks()
    print('both layers lost: recovered in %.2fs, %d packets sent, %r leaked in the gap, %r after'
          % (recovery, sender.sent, during, after))
    assert back and recovery < 1.0
    assert after == {}


def test_a_registry_ahead_of_the_data_plane_is_converged_by_the_monitor(monitored):
    """A run killed between its registry write and its apply: the monitor converges it."""
    cell = monitored
    path = os.path.join(cell.state_dir, 'registry.json')
    with open(path) as handle:
        doc = json.load(handle)
    doc['peers']['p3']['connection'] = 'exit-wg'
    with open(path + '.tmp', 'w') as handle:
        json.dump(doc, handle, indent=1, sort_keys=True)
    os.chmod(path + '.tmp', 0o600)
    os.rename(path + '.tmp', path)
    assert wait_for(lambda: piclab.fetch('p3', 4, timeout=1) == piclab.exit_address(4), 5)
    cell.module('pic_peer_exit', {'peer': 'p3', 'connection': 'default'})


def test_ipv6_of_a_v4_only_exit_converges_and_never_leaks(cell):
    """Finding: a v4-only exit re-added and deleted its 'unreachable ::/0' on
    every run; the route ended up missing and a fail-open peer's IPv6 left by
    the WAN. (Alone on the cell, whatever ran before: the lab's exit server
    knows one client key per cell.)"""
    reset_cell(cell)
    assert wait_for(lambda: 'pic-exit-wg' not in cell.sh('ip', 'link').stdout, 5)
    args = {'name': 'V4 Only', 'type': 'wireguard_ext', 'config': {'wg_config': exit_conf(v4only=True)}}
    table = str(cell.module('pic_connection', args)['connection']['table'])
    p3 = {'peer': 'p3', 'connection': 'V4 Only', 'fail_open': True,
          'address': [piclab.peer_address('p3', 4) + '/32', piclab.peer_address('p3', 6) + '/128']}
    cell.module('pic_peer_exit', p3)
    assert wait_for(lambda: piclab.fetch('p3', 4) == piclab.exit_address(4), 15)
    again = cell.module('pic_connection', args)
    assert not again['changed'], again.get('changes')
    assert not cell.module('pic_peer_exit', p3)['changed']
    assert 'unreachable default' in cell.sh('ip', '-6', 'route', 'show', 'table', table).stdout
    quiet_counters()
    with Sender('p3'):
        time.sleep(1.0)
    counts = piclab.counters()
    assert counts['v4'] > 0                        # IPv4 goes through the exit ...
    assert counts['v6'] == 0, counts               # ... IPv6 nowhere, never by the WAN
    assert piclab.wan_address('cell1', 6) not in counts['by_source']
    cell.module('pic_peer_exit', {'peer': 'p3', 'connection': 'default', 'fail_open': None})
    cell.module('pic_connection', {'name': 'V4 Only', 'state': 'absent'})
