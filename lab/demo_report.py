#!/usr/bin/python3
"""Print the demo table: for every lab peer, its assigned connection and its type,
the fail mode, the source address the lab's internet server saw (IPv4 and IPv6),
what carries it and the health of its exit, and whether it left where its
connection's type says it must ("right"). Reads the cells through Ansible
(pic_connectivity_info), and the addresses by sending real requests from each peer.

Where each type must leave (the lab's exit servers, lab/servers/):

| type          | IPv4 and IPv6 seen by the internet |
|---------------|-------------------------------------|
| wireguard_ext | the WireGuard exit (wgexit) |
| openvpn       | the OpenVPN server (ovpnexit) |
| sshuttle      | the SSH server (sshexit) |
| proxy         | the SOCKS5 or HTTP proxy over IPv4; IPv6 blocked (redsocks is IPv4 only) |
| tor           | the private Tor network's exit relay (torx) |
| cell_relay    | the WAN of the cell the relay names |
| default       | the peer's own cell's WAN |

Peers are polled until every one is right or PIC_DEMO_WAIT seconds (default 120)
have passed: a cell's Tor needs some seconds after the playbook to build its
first circuit. Exit status 1 when a peer is not right.

Environment: PIC_DEMO_INVENTORY (default lab/demo/hosts.yml), ANSIBLE (the
ansible command), PIC_DEMO_WAIT."""

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import piclab  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVENTORY = os.path.join(ROOT, 'lab', 'demo', 'hosts.yml')
FETCH_TIMEOUT = 5       # seconds per request: a Tor circuit is slower than a tunnel
POLL = 3                # seconds between two rounds of requests
HEAD = ['cell', 'peer', 'connection', 'type', 'fail mode', 'seen by the internet (IPv4)', 'seen (IPv6)',
        'carried by', 'health', 'right']


def cell_info(inventory=None, env=None, ansible=None):
    """{cell: pic_connectivity_info result} of the inventory's group pic_cells."""
    tree = tempfile.mkdtemp(prefix='pic-demo-')
    inventory = inventory or os.environ.get('PIC_DEMO_INVENTORY', INVENTORY)
    cmd = [ansible or os.environ.get('ANSIBLE', 'ansible'), 'pic_cells', '-i', inventory,
           '-m', 'pic.connectivity.pic_connectivity_info', '-a', 'state_dir={{ pic_state_dir }} force=true',
           '-t', tree]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    out = {}
    for host in os.listdir(tree):
        with open(os.path.join(tree, host)) as handle:
            out[host] = json.load(handle)
        os.unlink(os.path.join(tree, host))
    os.rmdir(tree)
    if proc.returncode != 0 or not out:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit('could not read the cells with pic_connectivity_info')
    return out


# -- where each exit leaves ----------------------------------------------------------
@lru_cache(maxsize=None)
def _servers():
    """The lab's exit server plugins by short name (openvpn, sshd, proxies, tor), loaded once."""
    return dict((p.__name__.rsplit('_', 1)[-1], p) for p in piclab.server_plugins())


def exit_names():
    """{address: what it is} for every address the internet may see."""
    srv = _servers()
    names = {}
    for family in (4, 6):
        names[piclab.exit_address(family)] = 'WireGuard exit'
        names[srv['openvpn'].address(family)] = 'OpenVPN server'
        names[srv['sshd'].address(family)] = 'SSH server'
        names[srv['proxies'].address(srv['proxies'].SOCKS_NODE, family)] = 'SOCKS5 proxy'
        names[srv['proxies'].address(srv['proxies'].HTTP_NODE, family)] = 'HTTP proxy'
        names[srv['tor'].exit_address(family)] = 'Tor exit relay'
        for cell in piclab.cell_names(len(piclab.cells()) or 1):
            names[piclab.wan_address(cell, family)] = '%s WAN' % cell
    return names


def expected(ctype, conn_id, cell, family):
    """The addresses (None: blocked) a peer on a connection of type CTYPE may be seen from."""
    srv = _servers()
    if ctype == 'proxy':
        proxies = srv['proxies']
        if family == 6:
            return {None}
        return {proxies.address(proxies.SOCKS_NODE, 4), proxies.address(proxies.HTTP_NODE, 4)}
    by_type = {
        'wireguard_ext': lambda: piclab.exit_address(family),
        'openvpn': lambda: srv['openvpn'].address(family),
        'sshuttle': lambda: srv['sshd'].address(family),
        'tor': lambda: srv['tor'].exit_address(family),
        'cell_relay': lambda: piclab.wan_address(conn_id, family),
        'default': lambda: piclab.wan_address(cell, family),
    }
    return {by_type[ctype]()} if ctype in by_type else set()


def label(addr, names):
    if addr is None:
        return 'blocked'
    return '%s (%s)' % (addr, names.get(addr, 'other'))


# -- the rows ------------------------------------------------------------------------
def describe(cell, peer, info):
    """The row of PEER of CELL without what the internet saw (its assignment, from INFO)."""
    entry = info.get('peers', {}).get(peer, {'connection': 'default', 'fail_open': None})
    conn = info.get('connections', {}).get(entry['connection'])
    row = {'cell': cell, 'peer': peer, 'connection_id': entry['connection'],
           'connection': conn['name'] if conn else 'default', 'type': conn['type'] if conn else 'default',
           'fail_mode': '-', 'carried_by': entry.get('carried_by', 'default'),
           'health': conn['health']['status'] if conn else '-'}
    if conn:
        row['fail_mode'] = 'fail-open' if entry['fail_open'] else 'fail-closed'
        if entry.get('fail_open_override') is not None:
            row['fail_mode'] += ' (peer override)'
    return row


def observe(row):
    """Fill in what the internet sees from the row's peer, and whether it is right."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        seen = list(pool.map(lambda fam: piclab.fetch(row['peer'], fam, cell=row['cell'], timeout=FETCH_TIMEOUT),
                             (4, 6)))
    row['seen4'], row['seen6'] = seen
    row['right'] = all(seen[i] in expected(row['type'], row['connection_id'], row['cell'], fam)
                       for i, fam in enumerate((4, 6)))
    return row


def rows(info_by_cell):
    """One observed row per lab peer of every cell of INFO_BY_CELL, peers probed in parallel."""
    todo = [describe(cell, peer, info) for cell, info in sorted(info_by_cell.items()) for peer in piclab.PEERS]
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        return list(pool.map(observe, todo))


def wait_rows(timeout=None, inventory=None, env=None, ansible=None):
    """Rows once every peer is right, or the last rows when TIMEOUT seconds have passed
    (each round reads the cells again: what carries a peer may change meanwhile)."""
    timeout = float(os.environ.get('PIC_DEMO_WAIT', 120)) if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        out = rows(cell_info(inventory, env, ansible))
        if all(r['right'] for r in out) or time.monotonic() >= deadline:
            return out
        time.sleep(POLL)


def table(out):
    """The rows as a Markdown table (a string)."""
    names = exit_names()
    lines = [[r['cell'], r['peer'], r['connection'], r['type'], r['fail_mode'], label(r['seen4'], names),
              label(r['seen6'], names), r['carried_by'], r['health'], 'yes' if r['right'] else 'NO']
             for r in out]
    widths = [max(len(str(r[i])) for r in lines + [HEAD]) for i in range(len(HEAD))]
    text = ['| ' + ' | '.join(h.ljust(w) for h, w in zip(HEAD, widths)) + ' |',
            '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    text += ['| ' + ' | '.join(str(c).ljust(w) for c, w in zip(row, widths)) + ' |' for row in lines]
    return '\n'.join(text)


def main():
    started = time.monotonic()
    out = wait_rows()
    print(table(out))
    wrong = [r for r in out if not r['right']]
    types = sorted(set(r['type'] for r in out if r['right']))
    print('\n%d of %d peers left where their exit type says (types proven: %s) after %.0fs'
          % (len(out) - len(wrong), len(out), ', '.join(types), time.monotonic() - started))
    return 1 if wrong else 0


if __name__ == '__main__':
    sys.exit(main())
