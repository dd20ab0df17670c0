#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real packets for the molecule verifiers: the address the lab's internet echo
server sees for lab peers, against the address each peer should leave by.

    lab_exits.py [--timeout SECONDS] CELL/PEER=EXPECT ...

EXPECT is ``exit`` (the lab's WireGuard exit server), ``wan`` (the peer's own
cell's WAN address) or ``wan:CELL`` (another cell's WAN address: a relay).
IPv4 and IPv6 are both checked, polling until every expectation holds or the
timeout passes (a new tunnel takes a handshake). Prints JSON
``{"CELL/PEER": {"4": {"seen": ..., "expected": ..., "ok": ...}, "6": ...}}``
and exits 1 unless every check holds. The lab follows PICLAB_PREFIX and
PICLAB_RUN like lab/piclab itself.
"""
import argparse
import json
import os
import sys
import time

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'lab')
sys.path.insert(0, os.path.normpath(LAB))
import piclab  # noqa: E402  pylint: disable=wrong-import-position


def expected_address(cell, expect, family):
    if expect == 'exit':
        return piclab.exit_address(family)
    if expect == 'wan':
        return piclab.wan_address(cell, family)
    if expect.startswith('wan:'):
        return piclab.wan_address(expect.split(':', 1)[1], family)
    raise ValueError('unknown expectation %r (exit, wan or wan:CELL)' % expect)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--timeout', type=float, default=20.0)
    parser.add_argument('checks', nargs='+', metavar='CELL/PEER=EXPECT')
    args = parser.parse_args(argv)
    report = {}
    pending = []
    for check in args.checks:
        target, expect = check.split('=', 1)
        cell, peer = target.split('/', 1)
        report[target] = {}
        for family in (4, 6):
            entry = {'seen': None, 'expected': expected_address(cell, expect, family), 'ok': False}
            report[target][str(family)] = entry
            pending.append((cell, peer, family, entry))
    deadline = time.time() + args.timeout
    while pending:
        for cell, peer, family, entry in list(pending):
            entry['seen'] = piclab.fetch(peer, family, cell=cell, timeout=2)
            entry['ok'] = entry['seen'] == entry['expected']
            if entry['ok']:
                pending.remove((cell, peer, family, entry))
        if not pending or time.time() >= deadline:
            break
        time.sleep(0.5)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 1 if pending else 0


if __name__ == '__main__':
    sys.exit(main())
