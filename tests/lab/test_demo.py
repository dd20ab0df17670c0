# -*- coding: utf-8 -*-
"""make demo in the lab suite: playbooks/site.yml with the demo's inventory
(lab/demo: cell1 WireGuard, OpenVPN and a cell_relay peer carried by cell2;
cell2 sshuttle, SOCKS5 proxy and Tor) on the suite's lab, then the demo report's
own logic (lab/demo_report.py): every type's peer must leave by its exit's
address, checked here against the lab's exit servers too, not only by the
report's verdict.  The file leaves cell1 and cell2 bare (conftest.reset_cell)
and stops the private Tor network when it started it."""
import os
import sys
import time

import pytest

from conftest import Cell, ROOT, piclab, reset_cell
from exit_helpers import ANY_CELL, ansible_bin, ansible_env, playbook, server_plugin

sys.path.insert(0, os.path.join(ROOT, 'lab'))
import demo_report  # noqa: E402

DEMO = os.path.join(ROOT, 'lab', 'demo', 'hosts.yml')
CELLS = ('cell1', 'cell2')
TYPES = {'wireguard_ext', 'openvpn', 'tor', 'sshuttle', 'proxy', 'cell_relay'}
OVPN, SSHD, PROXIES, TORNET = (server_plugin(n) for n in ('openvpn', 'sshd', 'proxies', 'tor'))
WAIT = 90       # seconds for every peer to be right after the playbook (a new Tor's first circuit)


@pytest.fixture(scope='module')
def demo_cells(lab):
    cells = [Cell(name) for name in CELLS]
    for cell in cells:
        reset_cell(cell)
    tor_was_running = bool(TORNET.running())
    TORNET.start()
    TORNET.wait_ready(60)
    yield cells
    for cell in cells:
        reset_cell(cell)
    if not tor_was_running:
        TORNET.stop()


def report_rows(timeout=WAIT):
    return demo_report.wait_rows(timeout=timeout, inventory=DEMO, env=ansible_env(), ansible=ansible_bin('ansible'))


def settled_rows(timeout=WAIT):
    """The rows once every peer is right and its exit healthy and carrying it (health is cached
    on the cell for 30 s: a Tor still building its first circuit reads down a little longer)."""
    deadline = time.monotonic() + timeout
    rows = report_rows(timeout)
    while not all(r['right'] and r['carried_by'] == 'exit' and r['health'] == 'working' for r in rows) \
            and time.monotonic() < deadline:
        time.sleep(2)
        rows = report_rows(0)
    return rows


def exit_of(ctype, family):
    """Where the lab's exit server of CTYPE is seen from (None: blocked), independent of the report."""
    return {
        'wireguard_ext': piclab.exit_address(family),
        'openvpn': OVPN.address(family),
        'sshuttle': SSHD.address(family),
        'proxy': PROXIES.address(PROXIES.SOCKS_NODE, 4) if family == 4 else None,
        'tor': TORNET.exit_address(family),
        'cell_relay': piclab.wan_address('cell2', family),
    }[ctype]


def test_demo_converges_and_every_type_leaves_by_its_exit(demo_cells):
    started = time.monotonic()
    changed, _out = playbook(DEMO, hosts=ANY_CELL)
    assert changed > 0
    rows = settled_rows()
    table = demo_report.table(rows)
    print(table)
    print('demo: converged and proven in %.0fs' % (time.monotonic() - started))
    assert len(rows) == len(CELLS) * len(piclab.PEERS), table
    assert all(r['right'] for r in rows), table
    by_type = dict((r['type'], r) for r in rows)
    assert set(by_type) == TYPES, table
    for ctype, row in by_type.items():
        assert (row['seen4'], row['seen6']) == (exit_of(ctype, 4), exit_of(ctype, 6)), (ctype, table)
        assert row['carried_by'] == 'exit' and row['health'] == 'working', (ctype, table)
    relay = by_type['cell_relay']
    assert (relay['cell'], relay['connection_id']) == ('cell1', 'cell2'), table


def test_the_report_says_when_a_peer_left_by_another_exit(demo_cells):
    """A peer seen from an address its type does not give is not right: the WireGuard
    peer's row read as if it were on OpenVPN, Tor or the relay."""
    info = demo_report.cell_info(DEMO, ansible_env(), ansible_bin('ansible'))
    row = demo_report.describe('cell1', 'p1', info['cell1'])
    assert row['type'] == 'wireguard_ext'
    assert demo_report.observe(dict(row))['right']
    for ctype in ('openvpn', 'tor', 'cell_relay', 'default'):
        wrong = demo_report.observe(dict(row, type=ctype, connection_id='cell2'))
        assert not wrong['right'], wrong
        assert 'NO' in demo_report.table([wrong])
