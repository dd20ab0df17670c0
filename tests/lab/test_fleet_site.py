# -*- coding: utf-8 -*-
"""site.yml over the lab as a fleet of three cells (lab/fleet): links, relays and service
egress converge for the whole set of cells in one run."""
import os

from conftest import ROOT, piclab, wait_for
from exit_helpers import ANY_CELL, playbook

FLEET = os.path.join(ROOT, 'lab', 'fleet', 'hosts.yml')


def test_fleet_converges_in_one_run(lab):
    changed, out = playbook(FLEET, hosts=ANY_CELL)
    assert changed > 0
    assert wait_for(lambda: piclab.fetch('p1', 4) == piclab.exit_address(4), 15), piclab.fetch('p1', 4)
    assert piclab.fetch('p2', 4) == piclab.wan_address('cell1', 4)
    # p3 of cell1 goes through the relay to cell2 and out of cell2's WAN
    assert piclab.fetch('p3', 4) == piclab.wan_address('cell2', 4)
    assert piclab.fetch('p3', 6) == piclab.wan_address('cell2', 6)
    assert piclab.fetch_node('cell1-svc', 4) == piclab.exit_address(4)
    assert piclab.fetch('p1', 4, cell='cell2') == piclab.wan_address('cell2', 4)
    for host in ('cell1', 'cell2', 'cell3'):
        assert '%s ' % host in out
    changed, out = playbook(FLEET, hosts=ANY_CELL)
    assert changed == 0, out[-3000:]
