# -*- coding: utf-8 -*-
"""Lab test fixtures: the lab itself, and running the collection's modules in a lab cell."""
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'lab'))
import piclab  # noqa: E402

# This checkout as an installed collection (ansible_collections/pic/connectivity)
# and its module_utils as the cell's library (pic_connectivity_lib), by symlinks
# made when the session starts (pytest_configure).
COLLECTIONS_BASE = os.path.join(tempfile.gettempdir(), 'pic-lab-collections')
LIB_BASE = os.path.join(tempfile.gettempdir(), 'pic-lab-lib')


def _link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.islink(path) and os.readlink(path) != target:
        os.unlink(path)
    if not os.path.lexists(path):
        os.symlink(target, path)


def pytest_configure(config):
    _link(os.path.join(COLLECTIONS_BASE, 'ansible_collections', 'pic', 'connectivity'), ROOT)
    _link(os.path.join(LIB_BASE, 'pic_connectivity_lib'), os.path.join(ROOT, 'plugins', 'module_utils'))


def ansible_pythonpath():
    import ansible
    return os.pathsep.join([COLLECTIONS_BASE, os.path.dirname(os.path.dirname(ansible.__file__))])


class Cell(object):
    """A lab cell and the collection's modules run in it, as Ansible runs them on a cell."""

    def __init__(self, name='cell1'):
        self.name = name
        self.state_dir = piclab.state_dir(name)

    def module(self, name, args, check=False, diff=False, expect_fail=False):
        payload = dict(args)
        payload.setdefault('state_dir', self.state_dir)
        payload['_ansible_check_mode'] = check
        payload['_ansible_diff'] = diff
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        try:
            env = dict(os.environ, PYTHONPATH=ansible_pythonpath())
            proc = subprocess.run([piclab.NSEXEC, self.name, '/usr/bin/python3',
                                   os.path.join(ROOT, 'plugins', 'modules', name + '.py'), handle.name],
                                  capture_output=True, text=True, env=env, timeout=120)
        finally:
            os.unlink(handle.name)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError('module %s printed no JSON: %s %s' % (name, proc.stdout, proc.stderr))
        result['_stdout'] = proc.stdout
        if expect_fail:
            assert result.get('failed'), result
        else:
            assert not result.get('failed'), result.get('msg', result)
        return result

    def health(self, conn):
        """pic_health of one connection, probed now (force): its entry."""
        entries = self.module('pic_health', {'connection': conn, 'force': True})['connections']
        assert len(entries) == 1, entries
        return list(entries.values())[0]

    def start_module(self, name, args):
        """Run module NAME in the cell in the background (for killing it mid-run): the Popen."""
        payload = dict(args, state_dir=self.state_dir, _ansible_check_mode=False, _ansible_diff=False)
        handle = tempfile.NamedTemporaryFile('w', suffix='.json', delete=False)
        with handle:
            json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        env = dict(os.environ, PYTHONPATH=ansible_pythonpath())
        proc = subprocess.Popen([piclab.NSEXEC, self.name, '/usr/bin/python3',
                                 os.path.join(ROOT, 'plugins', 'modules', name + '.py'), handle.name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        proc.args_file = handle.name
        return proc

    def sh(self, *cmd, check=True):
        return piclab.run(self.name, *cmd, check=check)

    def cli(self, *args, background=False):
        code = ('import sys; sys.path.insert(0, %r); from pic_connectivity_lib.cli import main; '
                'sys.exit(main(sys.argv[1:]))' % LIB_BASE)
        argv = [piclab.NSEXEC, self.name, '/usr/bin/python3', '-c', code] + list(args) + \
            ['--state-dir', self.state_dir]
        if background:
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    def registry_bytes(self):
        try:
            with open(os.path.join(self.state_dir, 'registry.json'), 'rb') as handle:
                return handle.read()
        except IOError:
            return None

    def nft_table(self):
        return self.sh('nft', 'list', 'table', 'inet', 'pic_connectivity', check=False).stdout


def wait_for(func, timeout=10.0, interval=0.2):
    """Poll ``func`` until it returns a truthy value; returns the last value."""
    deadline = time.time() + timeout
    value = func()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = func()
    return value


def quiet_counters():
    """Reset the internet's counters once no other traffic (say the last FIN of an
    earlier request) is still arriving, so that what is counted next is ours."""
    for _attempt in range(20):
        piclab.counters_reset()
        time.sleep(0.3)
        counts = piclab.counters()
        if counts['v4'] + counts['v6'] == 0:
            return
    raise AssertionError('the internet namespace never went quiet: %r' % counts)


def leak_count(peer):
    """Packets of every kind (TCP, UDP incl. DNS, ICMP) from ``peer`` that reach the internet namespace."""
    quiet_counters()
    for family in (4, 6):
        piclab.send_probe(peer, family, count=3)
        piclab.fetch(peer, family, timeout=1)
    time.sleep(0.5)
    counts = piclab.counters()
    return counts['v4'] + counts['v6']


@pytest.fixture(scope='session')
def lab():
    if os.geteuid() != 0:
        pytest.fail('the lab tests need root (network namespaces)')
    piclab.down()    # start from a clean lab: no state from an earlier run
    piclab.up(cells=3)   # cell1 linked to cell2 and cell3 (lab/servers/links.py)
    yield piclab
    piclab.down()


@pytest.fixture(scope='session')
def cell(lab):
    return Cell('cell1')


def registry_doc(cell):
    """The cell's registry as a dict ({} when it has none yet)."""
    data = cell.registry_bytes()
    return json.loads(data.decode('utf-8')) if data else {}


def stop_supervisord(cell):
    """Shut down the cell's supervisord of an earlier role run (site.yml, the fleet), with
    its monitor and exit instances: a test that runs its own monitor, or simulates a
    reboot, must not have a second one converging behind its back. The next role run
    starts it again."""
    conf = os.path.join(cell.state_dir, 'supervisor', 'supervisord.conf')
    if not os.path.exists(conf):
        return
    cell.sh('supervisorctl', '-c', conf, 'shutdown', check=False)
    assert wait_for(lambda: cell.sh('supervisorctl', '-c', conf, 'pid', check=False).returncode != 0, 15), \
        'the supervisord of %s does not stop' % cell.name


def reset_cell(cell):
    """Bring a lab cell back to a bare gateway whatever earlier test files left on it
    (the lab persists across them): no supervisord, every lab peer (p1-p3) on the default gateway
    (a purge keeps the peers, with their addresses), and no service, cell link or
    connection in its registry, each removed through the collection's own modules so
    that its data plane (nftables table, ip rules, routes, exit interfaces) follows."""
    stop_supervisord(cell)
    doc = registry_doc(cell)
    if doc.get('peers'):
        # the lab's own peers back on the default gateway (known, their addresses kept);
        # any other a test added is removed, so that its addresses are free again
        strangers = [{'peer': name, 'state': 'absent'} for name in sorted(doc['peers']) if name not in piclab.PEERS]
        cell.module('pic_peer_exit', {'peers': strangers, 'purge': True})
    for service in sorted(doc.get('services', {})):
        cell.module('pic_service_egress', {'service': service, 'state': 'absent'})
    if doc.get('links'):
        cell.module('pic_cell_link', {'links': []})
    for conn in sorted(doc.get('connections', {}).values(), key=lambda c: c['index']):
        if conn['type'] != 'cell_relay':
            cell.module('pic_connection', {'name': conn['name'], 'state': 'absent'})
    left = registry_doc(cell)
    assert not any(left.get(section) for section in ('services', 'links', 'connections')), left
    peers = left.get('peers', {}).values()
    assert all((p.get('connection'), p.get('fail_open')) == ('default', None) for p in peers), left
    return cell


def exit_path_report(cell):
    """What a failure to reach the lab's WireGuard exit needs to be understood: both ends'
    handshakes, endpoints and transfer (no keys), the cell's rules, exit routes and nft
    tables, and the exit server's tables."""
    def out(node, *cmd):
        cp = piclab.run(node, *cmd, check=False)
        return '$ %s %s\n%s%s' % (node, ' '.join(cmd), cp.stdout[-1500:], cp.stderr[-300:])
    wg = [('wg', 'show', 'all', what) for what in ('latest-handshakes', 'endpoints', 'transfer', 'allowed-ips')]
    parts = [out(cell.name, *c) for c in wg] + [out('wgexit', *c) for c in wg]
    parts += [out(cell.name, 'ip', 'rule'), out(cell.name, 'ip', 'route', 'show', 'table', 'all', 'proto', '0x70'),
              out(cell.name, 'nft', 'list', 'tables'), out('wgexit', 'nft', 'list', 'tables'),
              'monotonic %.1f' % time.monotonic()]
    return '\n'.join(parts)


def desired_rules(cell):
    """The ip rules of the cell's desired state: those of its last successful apply."""
    with open(os.path.join(cell.state_dir, 'last-good.json')) as handle:
        return json.load(handle)['rules']



# -- continuous traffic, the cell's resolver and the internet's per-flow counter ---------
# (the leak matrix, tests/lab/test_leak_matrix.py, and the DNS tests)


def cell_resolver(cell='cell1', upstream=None, daemon='cellresolver'):
    """The cell's own resolver as a PIC cell runs one: on the cell's peer-side
    addresses (10.0.0.1, fd00:10::1) port 53 (UDP), resolving through the cell's
    WAN. A query from a source in UPSTREAM ({source: server}) goes to that server
    (so that the internet can tell whose query leaked), any other to the
    internet's DNS echo, which answers with the cell's WAN address. The answer
    is relayed back. Stop it with piclab.stop(cell, daemon)."""
    piclab.spawn(cell, daemon, [piclab.PYTHON, piclab.CELL_RESOLVER, json.dumps(upstream or {}), piclab.SERVER_ROUTER4,
                                piclab.SERVER_ROUTER6, piclab.CELL_TUN_V4, piclab.CELL_TUN_V6])
    assert wait_for(lambda: '%s:53 ' % piclab.CELL_TUN_V4 in piclab.run(cell, 'ss', '-lnu', check=False).stdout, 10)
    return daemon




class VirtualPeer(object):
    """A peer of the collection that is one more source address of a lab peer
    (its WireGuard client), with a destination of its own on the internet, so
    that the internet can tell its packets from every other peer's."""

    def __init__(self, index, cell, peer, name, **record):
        self.index, self.cell, self.node, self.name, self.record = index, cell, piclab.peer_node(peer, cell), name, record
        self.src4, self.src6 = '10.0.0.%d' % (100 + index), 'fd00:10::%d' % (100 + index)
        self.dst4, self.dst6 = '198.51.100.%d' % (100 + index), '2001:db8:ff::%d' % (100 + index)
        self.lab_peer = peer

    def addresses(self):
        return [self.src4 + '/32', self.src6 + '/128']

    def flow(self):
        return {'src4': self.src4, 'src6': self.src6, 'dst4': self.dst4, 'dst6': self.dst6}


def _wg_peer_key(cell, peer):
    for line in piclab.run(cell, 'wg', 'show', 'wg0', 'allowed-ips').stdout.splitlines():
        key, _tab, allowed = line.partition('\t')
        if piclab.peer_address(peer, 4) + '/32' in allowed.split():
            return key, allowed.split()
    raise AssertionError('no WireGuard peer %s on %s' % (peer, cell))


def add_virtual_peers(vpeers):
    """Put the virtual peers' addresses on their lab peers (and in the cell's AllowedIPs)."""
    for (cell, peer), group in _grouped(vpeers).items():
        key, allowed = _wg_peer_key(cell, peer)
        extra = [a for v in group for a in v.addresses()]
        piclab.run(cell, 'wg', 'set', 'wg0', 'peer', key, 'allowed-ips', ','.join(allowed + extra))
        piclab.ipbatch(group[0].node, ['addr replace %s dev wg0%s' % (a, ' nodad' if ':' in a else '')
                                        for a in extra])


def remove_virtual_peers(vpeers):
    for (cell, peer), group in _grouped(vpeers).items():
        key, allowed = _wg_peer_key(cell, peer)
        extra = [a for v in group for a in v.addresses()]
        piclab.run(cell, 'wg', 'set', 'wg0', 'peer', key, 'allowed-ips', ','.join(a for a in allowed if a not in extra))
        piclab.ipbatch(group[0].node, ['addr del %s dev wg0' % a for a in extra], check=False)


def _grouped(vpeers):
    groups = {}
    for v in vpeers:
        groups.setdefault((v.cell, v.lab_peer), []).append(v)
    return groups


class Senders(object):
    """One sender per lab peer, sending for each of its virtual peers, both families,
    every INTERVAL seconds: TCP SYN :80 (every other round), UDP :443, DNS to its
    destination and DNS to the cell (10.0.0.1 / fd00:10::1), ICMP echo."""

    def __init__(self, vpeers, interval=0.2):
        self.procs = []
        for (_cell, _peer), group in sorted(_grouped(vpeers).items()):
            argv = [piclab.NSEXEC, group[0].node, piclab.PYTHON, piclab.LEAK_SENDER, json.dumps([v.flow() for v in group]),
                    str(interval), piclab.CELL_TUN_V4, piclab.CELL_TUN_V6]
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                               start_new_session=True))

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            proc.wait(10)


_FLOWCOUNT = """table inet leakflows {
    set flows4 { type ipv4_addr . ipv4_addr; flags dynamic; counter; size 65536; }
    set flows6 { type ipv6_addr . ipv6_addr; flags dynamic; counter; size 65536; }
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        ip daddr %s update @flows4 { ip saddr . ip daddr }
        ip6 daddr %s update @flows6 { ip6 saddr . ip6 daddr }
    }
}
"""


class FlowCounter(object):
    """The internet counts packets per (source, destination) to the virtual peers'
    destinations, which it also holds (so that TCP, ICMP and DNS get an answer)."""

    def __init__(self, vpeers):
        self.vpeers = vpeers
        dst4 = sorted(v.dst4 for v in vpeers)
        dst6 = sorted(v.dst6 for v in vpeers)
        self.script = _FLOWCOUNT % ('{ %s }' % ', '.join(dst4), '{ %s }' % ', '.join(dst6))

    def install(self):
        piclab.ipbatch('inet', ['addr replace %s/32 dev srv0' % v.dst4 for v in self.vpeers] +
                        ['addr replace %s/128 dev srv0 nodad' % v.dst6 for v in self.vpeers])
        piclab.nft_replace('inet', 'inet leakflows', self.script)

    def remove(self):
        piclab.run('inet', 'nft', 'delete', 'table', 'inet', 'leakflows', check=False)
        piclab.ipbatch('inet', ['addr del %s/32 dev srv0' % v.dst4 for v in self.vpeers] +
                        ['addr del %s/128 dev srv0' % v.dst6 for v in self.vpeers], check=False)

    def sample(self):
        """{(source, destination): packets} so far."""
        out = {}
        cp = piclab.run('inet', 'nft', '-j', 'list', 'table', 'inet', 'leakflows', check=False)
        try:
            doc = json.loads(cp.stdout)
        except ValueError:
            return out
        for item in doc.get('nftables', []):
            for elem in (item.get('set') or {}).get('elem', []):
                inner = elem.get('elem', {})
                key = inner.get('val', {}).get('concat')
                if key:
                    out[(key[0], key[1])] = (inner.get('counter') or {}).get('packets', 0)
        return out
