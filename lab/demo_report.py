#!/usr/bin/python3
"""Print the demo table: for every lab peer, its assigned connection, fail mode,
the source address the lab's internet server saw (IPv4 and IPv6) and the health
of its exit. Reads the cells through Ansible (pic_connectivity_info), and the
addresses by sending real requests from each peer."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import piclab  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cell_info():
    tree = tempfile.mkdtemp(prefix='pic-demo-')
    inventory = os.environ.get('PIC_DEMO_INVENTORY', os.path.join(ROOT, 'lab', 'demo', 'hosts.yml'))
    cmd = [os.environ.get('ANSIBLE', 'ansible'), 'pic_cells', '-i', inventory,
           '-m', 'pic.connectivity.pic_connectivity_info', '-a', 'state_dir={{ pic_state_dir }} force=true',
           '-t', tree]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = {}
    for host in os.listdir(tree):
        with open(os.path.join(tree, host)) as handle:
            out[host] = json.load(handle)
    if proc.returncode != 0 or not out:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit('could not read the cells with pic_connectivity_info')
    return out


def label(addr, cell):
    names = {piclab.exit_address(4): 'WireGuard exit', piclab.exit_address(6): 'WireGuard exit',
             '203.0.113.30': 'OpenVPN server', '2001:db8:1::30': 'OpenVPN server',
             '203.0.113.40': 'SSH server', '2001:db8:1::40': 'SSH server',
             '203.0.113.50': 'SOCKS5 proxy', '203.0.113.60': 'HTTP proxy',
             '203.0.113.80': 'Tor exit relay', '2001:db8:1::80': 'Tor exit relay',
             piclab.wan_address(cell, 4): '%s WAN' % cell, piclab.wan_address(cell, 6): '%s WAN' % cell}
    if addr is None:
        return 'blocked'
    return '%s (%s)' % (addr, names.get(addr, 'other'))


def main():
    rows = []
    for cell, info in sorted(cell_info().items()):
        for peer in piclab.PEERS:
            entry = info.get('peers', {}).get(peer, {'connection': 'default', 'fail_open': None})
            conn = info.get('connections', {}).get(entry['connection'])
            if conn:
                mode = 'fail-open' if entry['fail_open'] else 'fail-closed'
                if entry.get('fail_open_override') is not None:
                    mode += ' (peer override)'
                health = conn['health']['status']
            else:
                mode, health = '-', '-'
            rows.append([cell, peer, conn['name'] if conn else 'default', mode,
                         label(piclab.fetch(peer, 4, cell=cell), cell),
                         label(piclab.fetch(peer, 6, cell=cell), cell), entry.get('carried_by', 'default'), health])
    head = ['cell', 'peer', 'connection', 'fail mode', 'seen by the internet (IPv4)', 'seen (IPv6)', 'carried by',
            'health']
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    print('| ' + ' | '.join(h.ljust(w) for h, w in zip(head, widths)) + ' |')
    print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    for row in rows:
        print('| ' + ' | '.join(str(c).ljust(w) for c, w in zip(row, widths)) + ' |')


if __name__ == '__main__':
    main()
