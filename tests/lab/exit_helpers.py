# -*- coding: utf-8 -*-
"""Helpers shared by the lab tests: running playbooks (site.yml with a vars file,
on a copy of the lab inventory), the lab's exit server plugins, DNS queries and
packets from a peer, the cell's supervisord.  Where traffic leaves (sources,
via_wan, via_exit) is the lab's own API (piclab)."""
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

from conftest import COLLECTIONS_BASE, ROOT, cell_resolver, piclab, wait_for, leak_count, quiet_counters


def server_plugin(name):
    """The lab server plugin lab/servers/NAME.py (loaded by piclab)."""
    for plugin in piclab.server_plugins():
        if plugin.__name__ == 'piclab_server_' + name:
            return plugin
    raise AssertionError('lab/servers/%s.py is missing' % name)


def addresses(peer):
    return [piclab.peer_address(peer, 4) + '/32', piclab.peer_address(peer, 6) + '/128']


def peers_on(conn):
    """p1 on CONN (its fail mode), p2 on CONN with fail_open: true, p3 on the default gateway."""
    return [
        {'name': 'p1', 'address': addresses('p1'), 'connection': conn},
        {'name': 'p2', 'address': addresses('p2'), 'connection': conn, 'fail_open': True},
        {'name': 'p3', 'address': addresses('p3'), 'connection': 'default'},
    ]


# -- playbook ------------------------------------------------------------------------
def inventory_dir():
    """A copy of lab/inventory for this lab's run dir (the committed one names /run/piclab)."""
    out = tempfile.mkdtemp(prefix='pic-exit-inv-')
    src = os.path.join(ROOT, 'lab', 'inventory')
    for base, _dirs, files in os.walk(src):
        for name in files:
            rel = os.path.relpath(os.path.join(base, name), src)
            os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(base, name)) as handle:
                text = handle.read().replace('/run/piclab', piclab.run_dir())
            with open(os.path.join(out, rel), 'w') as handle:
                handle.write(text)
    return out


SITE = os.path.join(ROOT, 'playbooks', 'site.yml')
LAB_INVENTORY = os.path.join(ROOT, 'lab', 'inventory', 'hosts.yml')
ANY_CELL = r'cell\d+'      # playbook(hosts=...): count the changes of every cell


def ansible_env():
    """The environment of an ansible command: this checkout as the collection,
    unless ANSIBLE_COLLECTIONS_PATH says otherwise (make's .collections/)."""
    env = dict(os.environ)
    env.setdefault('ANSIBLE_COLLECTIONS_PATH', COLLECTIONS_BASE)
    return env


def ansible_bin(name):
    """The ansible command NAME next to this python, else from PATH."""
    binary = os.path.join(os.path.dirname(sys.executable), name)
    return binary if os.path.exists(binary) else name


def changed_count(out, hosts='cell1'):
    """The play recap's changed= of the hosts matching HOSTS (a regex), summed."""
    counts = re.findall(r'%s\s*:\s*ok=\d+\s+changed=(\d+)' % hosts, out)
    assert counts, out[-3000:]
    return sum(int(n) for n in counts)


def playbook(inventory, variables=None, *extra, playbook_path=SITE, expect_fail=False, hosts='cell1',
             timeout=900):
    """Run PLAYBOOK_PATH (playbooks/site.yml) on INVENTORY (a directory holding
    hosts.yml, or an inventory file) with VARIABLES (-e @file, if any) and EXTRA
    arguments.  Returns (changed, output): the changes of HOSTS in the recap
    (None with EXPECT_FAIL, which asserts the run failed) and stdout + stderr."""
    if os.path.isdir(inventory):
        inventory = os.path.join(inventory, 'hosts.yml')
    argv = [ansible_bin('ansible-playbook'), '-i', inventory, playbook_path] + list(extra)
    varfile = None
    if variables is not None:
        with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as handle:   # 0600
            yaml.safe_dump(variables, handle)
        varfile = handle.name
        argv += ['-e', '@' + varfile]
    try:
        started = time.time()
        proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), timeout=timeout)
    finally:
        if varfile:
            os.unlink(varfile)
    print('playbook: %.1fs' % (time.time() - started))
    out = proc.stdout + proc.stderr
    if expect_fail:
        assert proc.returncode != 0, proc.stdout[-3000:]
        return None, out
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return changed_count(proc.stdout, hosts), out


def run_play(inventory, play, variables=None, **kwargs):
    """playbook() of PLAY (a list of plays, or YAML text) written to a temporary file."""
    with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as handle:
        handle.write(play if isinstance(play, str) else yaml.safe_dump(play))
    try:
        return playbook(inventory, variables, playbook_path=handle.name, **kwargs)
    finally:
        os.unlink(handle.name)


# -- DNS and packets from a peer -----------------------------------------------------


def dns_query(peer, server=None, family=4, tcp=False):
    """One DNS query (A for family 4, AAAA for 6) from PEER to SERVER:53 (default:
    the lab's DNS echo, which answers with the source address it saw).  Returns
    that address, 'truncated', 'empty rcode N' or 'error ...'."""
    server = server or (piclab.SERVER_ROUTER4 if family == 4 else piclab.SERVER_ROUTER6)
    cp = piclab.run(piclab.peer_node(peer, 'cell1'), piclab.PYTHON, piclab.DNS_QUERY, server, 'echo.piclab.test',
                    '1' if family == 4 else '28', 'tcp' if tcp else 'udp', check=False, timeout=20)
    return cp.stdout.strip() or ('error ' + cp.stderr.strip()[-200:])





def uncarried_count(peer):
    """Packets that reach the internet namespace when PEER sends what a proxy exit
    cannot carry: UDP (QUIC on 443, 4433, NTP) and ICMP echo, both families."""
    quiet_counters()
    for family in (4, 6):
        piclab.run(piclab.peer_node(peer, 'cell1'), piclab.PYTHON, piclab.UNCARRIED_BURST, str(family),
                   piclab.server_address(family), '3', timeout=20)
    time.sleep(0.5)
    counts = piclab.counters()
    return counts['v4'] + counts['v6']



# -- the cell's supervisord -------------------------------------------------------------
class Supervisor(object):
    def __init__(self, cell):
        self.cell = cell
        self.conf = os.path.join(cell.state_dir, 'supervisor', 'supervisord.conf')

    def ctl(self, *args):
        return self.cell.sh('supervisorctl', '-c', self.conf, *args, check=False).stdout

    def pid(self, program):
        match = re.search(r'RUNNING\s+pid (\d+)', self.ctl('status', program))
        return int(match.group(1)) if match else None

    def programs(self):
        return [line.split()[0] for line in self.ctl('status').splitlines() if line.strip()]

    def program_file(self, program):
        return os.path.join(self.cell.state_dir, 'supervisor', 'conf.d', program + '.conf')


def wait_pid(supervisor, program, timeout=15):
    return wait_for(lambda: supervisor.pid(program), timeout)


def installed(package):
    proc = subprocess.run(['dpkg-query', '-W', '-f=${Status}', package], capture_output=True, text=True)
    return proc.stdout.strip() == 'install ok installed'


# -- resolvers -----------------------------------------------------------------------------
DNS_ECHO = os.path.join(ROOT, 'lab', 'servers', '_dnsecho.py')


def dns_echo(node, daemon, addresses_):
    """Start the lab's DNS echo (answers with the source address it saw) in NODE on ADDRESSES_:53."""
    piclab.spawn(node, daemon, [piclab.PYTHON, DNS_ECHO, '53'] + list(addresses_))
    assert wait_for(lambda: str(53) in piclab.run(node, 'ss', '-lnu', check=False).stdout, 10)


def wan_resolver(cell='cell1'):
    """The cell's own resolver, resolving through the cell's WAN (conftest.cell_resolver).
    Returns its daemons, for piclab.stop."""
    return [cell_resolver(cell)]


# -- the egress proof through an exit (egress_url, expect_egress) -----------------------------
WRONG_EGRESS = '198.51.100.250/32'


def echo_url():
    """The lab's echo server (answers with the source address it saw)."""
    return 'http://%s/' % piclab.server_address(4)


def working_entry(cell, name, timeout):
    """pic_health of connection NAME once it reads working (None after TIMEOUT seconds)."""
    return wait_for(lambda: (lambda e: e if e['status'] == 'working' else None)(cell.health(name)), timeout)


def check_egress_proof(cell, connection, name, expected, peers=None, timeout=20):
    """The egress proof through connection NAME: ``connection(**config)`` gives its
    pic_connection arguments with those settings added. ``expect_egress`` = EXPECTED (the
    address the lab's echo server sees through the exit): working, the address reported;
    another address: down with the address still reported, and when PEERS is
    (fail-open peer, fail-closed peer) of NAME, the monitor holds it down: the first
    leaves by the WAN, the second is blocked. The connection is given back its plain
    settings at the end (working again)."""
    cell.module('pic_connection', connection(egress_url=echo_url(), expect_egress=[expected]))
    try:
        entry = working_entry(cell, name, timeout)
        assert entry, cell.health(name)
        assert entry['egress'] == expected, entry
        assert 'leaves from %s (expected)' % expected in entry['reason'], entry
        cell.module('pic_connection', connection(egress_url=echo_url(), expect_egress=[WRONG_EGRESS]))
        started = time.time()
        entry = cell.health(name)
        assert entry['status'] == 'down' and entry['egress'] == expected, entry
        assert 'not from expect_egress %s' % WRONG_EGRESS in entry['reason'], entry
        if peers:
            assert wait_for(lambda: piclab.fetch(peers[0], 4, timeout=1) == piclab.wan_address('cell1', 4), timeout)
            print('%s leaving from an unexpected address: fail-open fallback after %.1fs' % (name, time.time() - started))
            assert leak_count(peers[1]) == 0, piclab.counters()
            assert leak_count(peers[0]) > 0       # positive control: the fail-open peer reaches the internet
    finally:
        cell.module('pic_connection', connection())
    assert working_entry(cell, name, 30), cell.health(name)
