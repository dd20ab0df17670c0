"""Benchmark of runtime failover and health probing (issue 4).

    python3 bench/health.py [--rounds 5] [--conns 50] [--repeat 5] [--out bench/health-results.json] [--keep]

What it does (root, Linux, stdlib only; see docs/benchmarks.md, section "Health"):

* starts its own lab (lab/piclab, prefix ``phb``, run dir ``/run/piclab-hbench``; one
  cell) and the lab's private Tor network (lab/servers/tor.py), and converges cell1 with
  playbooks/site.yml as tests/lab/test_exit_tor.py does: connection "Tor"; p1 on it
  fail-open (Tor's default), p2 on it fail-closed, p3 on the default gateway; the
  connectivity role runs the cell's monitor (``pic-connectivity monitor``) and Tor
  (program ``pic-tor``) under the cell's supervisord;
* (a) Tor failover, ``--rounds`` times: ``supervisorctl stop pic-tor``, then polls an HTTP
  GET from p1 to the internet's echo server until it answers with the cell's WAN address
  ("fallback": from the moment Tor is gone); ``supervisorctl start pic-tor``, then polls
  until the echo server sees the Tor exit relay again ("back": from the start command).
  From just before the stop until just before the start, p2 (fail-closed) sprays UDP (53,
  443, 9999) and ICMP echo every 50 ms and TCP (ports 81, 8080) every 0.5 s at the internet,
  IPv4 and IPv6; an nftables counter in the internet namespace counts what of it arrives
  from the cell's WAN addresses (must be 0);
* (b) health probing: ``--conns`` proxy connections on cell1 (pic_connection), half to the
  lab's SOCKS5 server, half to its HTTP proxy; one process in the cell listens on all
  their local ports as their instances (their configuration files are written where the
  proxy role writes them, so that pic_health sees them as installed), then ``pic_health``
  with ``force: true`` over all of them, ``--repeat`` times: the module's wall time (a
  process as Ansible runs it on a cell) and ``probe_seconds`` (the probing inside it);
  once with both proxies up, once with the SOCKS5 server stopped (half of them down);
* writes JSON to --out and prints a Markdown table; the load average is recorded with
  each part (the figures are wall times on a shared machine).

Everything is torn down at the end (``--keep`` leaves the lab up).

Environment: PIC_BENCH_PYTHON, the controller python with ansible-core [.venv/bin/python,
else the python running this script]; ansible-playbook is taken next to it.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import loadavg, logger, summary, table, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX, RUN = 'phb', '/run/piclab-hbench'
TARGETS = {'fallback_s': 3.0, 'back_s': 3.0, 'leaked_packets': 0, 'probe_50_s': 1.0}
INSTANCE = 'pic-tor'


log = logger('bench-health')


# ---------------------------------------------------------------- the lab
os.environ['PICLAB_PREFIX'] = os.environ.get('PIC_BENCH_PICLAB_PREFIX', PREFIX)
os.environ['PICLAB_RUN'] = os.environ.get('PIC_BENCH_PICLAB_RUN', RUN)
sys.path.insert(0, os.path.join(REPO, 'lab'))
import piclab  # noqa: E402


def plugin(name):
    for mod in piclab.server_plugins():
        if mod.__name__ == 'piclab_server_' + name:
            return mod
    raise SystemExit('lab/servers/%s.py is missing' % name)


def controller_python():
    python = os.environ.get('PIC_BENCH_PYTHON') or os.path.join(REPO, '.venv', 'bin', 'python')
    return python if os.path.exists(python) else sys.executable


def ansible_paths(python, workdir):
    """(ANSIBLE_COLLECTIONS_PATH with the work tree as pic.connectivity, the dir holding ansible)."""
    base = os.path.join(workdir, 'collections')
    os.makedirs(os.path.join(base, 'ansible_collections', 'pic'))
    os.symlink(REPO, os.path.join(base, 'ansible_collections', 'pic', 'connectivity'))
    out = subprocess.run([python, '-c', 'import ansible, os; print(os.path.dirname(os.path.dirname('
                          'ansible.__file__)))'], capture_output=True, text=True, check=True)
    return base, out.stdout.strip()


class Cell(object):
    """cell1's modules, run as Ansible runs them on a cell (tests/lab/conftest.py)."""

    def __init__(self, collections, ansible_dir, name='cell1'):
        self.name = name
        self.state_dir = piclab.state_dir(name)
        self.pythonpath = os.pathsep.join([collections, ansible_dir])

    def module(self, name, args):
        payload = dict(args, state_dir=self.state_dir, _ansible_check_mode=False, _ansible_diff=False)
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        try:
            started = time.time()
            proc = subprocess.run([piclab.NSEXEC, self.name, '/usr/bin/python3',
                                   os.path.join(REPO, 'plugins', 'modules', name + '.py'), handle.name],
                                  capture_output=True, text=True, timeout=300,
                                  env=dict(os.environ, PYTHONPATH=self.pythonpath))
            wall = time.time() - started
        finally:
            os.unlink(handle.name)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise SystemExit('module %s printed no JSON: %s %s' % (name, proc.stdout[-2000:], proc.stderr[-2000:]))
        if result.get('failed'):
            raise SystemExit('module %s failed: %s' % (name, result.get('msg')))
        return result, wall

    def supervisorctl(self, *args):
        conf = os.path.join(self.state_dir, 'supervisor', 'supervisord.conf')
        return piclab.run(self.name, 'supervisorctl', '-c', conf, *args, check=False).stdout


def addresses(peer):
    return [piclab.peer_address(peer, 4) + '/32', piclab.peer_address(peer, 6) + '/128']


def converge_tor(tornet, python, collections, workdir):
    variables = {
        'pic_connections': [{'name': 'Tor', 'type': 'tor', 'config': {'socks_port': 9050}}],
        'pic_peers': [{'name': 'p1', 'address': addresses('p1'), 'connection': 'Tor'},
                      {'name': 'p2', 'address': addresses('p2'), 'connection': 'Tor', 'fail_open': False},
                      {'name': 'p3', 'address': addresses('p3'), 'connection': 'default'}],
        'pic_purge_peers': True,
        'tor_dir_authorities': tornet.authority_lines(),
        'tor_extra_settings': ['TestingTorNetwork 1'],
    }
    path = os.path.join(workdir, 'tor-vars.json')
    with open(path, 'w') as handle:
        json.dump(variables, handle)
    playbook = os.path.join(os.path.dirname(python), 'ansible-playbook')
    if not os.path.exists(playbook):
        playbook = shutil.which('ansible-playbook') or 'ansible-playbook'
    started = time.time()
    proc = subprocess.run([playbook, '-i', os.path.join(REPO, 'lab', 'inventory', 'hosts.yml'),
                           os.path.join(REPO, 'playbooks', 'site.yml'), '-e', '@' + path],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections))
    if proc.returncode != 0:
        raise SystemExit('site.yml failed:\n%s\n%s' % (proc.stdout[-4000:], proc.stderr[-2000:]))
    return time.time() - started


# ---------------------------------------------------------------- (a) Tor failover
_LEAKS = """table inet hbench {
    counter leaked { }
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        ip saddr %(wan4)s ip daddr %(net4)s tcp dport { 81, 8080 } counter name "leaked"
        ip saddr %(wan4)s ip daddr %(net4)s udp dport { 53, 443, 9999 } counter name "leaked"
        ip saddr %(wan4)s ip daddr %(net4)s icmp type echo-request counter name "leaked"
        ip6 saddr %(wan6)s ip6 daddr %(net6)s tcp dport { 81, 8080 } counter name "leaked"
        ip6 saddr %(wan6)s ip6 daddr %(net6)s udp dport { 53, 443, 9999 } counter name "leaked"
        ip6 saddr %(wan6)s ip6 daddr %(net6)s icmpv6 type echo-request counter name "leaked"
    }
}
"""

# p2's traffic while it runs: nothing of it may arrive from the cell's WAN address.
_SPRAY = r"""
import socket, struct, sys, time
v4, v6 = sys.argv[1], sys.argv[2]
def icmp(seq, six):
    h = struct.pack('!BBHHH', 128 if six else 8, 0, 0, 0x6862, seq & 0xffff) + b'hbench'
    if not six:
        s = sum(struct.unpack('!%dH' % (len(h) // 2), h)); s = (s >> 16) + (s & 0xffff); s += s >> 16
        h = h[:2] + struct.pack('!H', ~s & 0xffff) + h[4:]
    return h
seq = 0
tcp = []
while True:
    seq += 1
    keep = []
    for dst, af in ((v4, socket.AF_INET), (v6, socket.AF_INET6)):
        for port in (81, 8080) if seq % 10 == 1 else ():   # TCP every 0.5 s: Tor takes each as a stream
            t = socket.socket(af, socket.SOCK_STREAM); t.setblocking(False); tcp.append(t)
            try:
                t.connect((dst, port))
            except OSError:
                pass
        for port in (53, 443, 9999):
            u = socket.socket(af, socket.SOCK_DGRAM); keep.append(u)
            try:
                u.sendto(b'hbench', (dst, port))
            except OSError:
                pass
        try:
            six = af == socket.AF_INET6
            r = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if six else socket.IPPROTO_ICMP)
            keep.append(r); r.sendto(icmp(seq, six), (dst, 0))
        except OSError:
            pass
    time.sleep(0.05)
    for s in keep:
        s.close()
    while len(tcp) > 40:
        tcp.pop(0).close()
"""


# When Tor's TransPort accepts connections again (Tor is back), on the host's clock.
_PORT_WATCH = r"""
import socket, sys, time
while True:
    try:
        socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.01)
print(time.time())
"""


def leaked():
    cp = piclab.run('inet', 'nft', '-j', 'list', 'counter', 'inet', 'hbench', 'leaked')
    for item in json.loads(cp.stdout).get('nftables', []):
        if 'counter' in item:
            return item['counter'].get('packets', 0)
    return 0


def reset_leaks():
    text = _LEAKS % {'wan4': piclab.wan_address('cell1', 4), 'wan6': piclab.wan_address('cell1', 6),
                     'net4': piclab.SERVER_NET4, 'net6': piclab.SERVER_NET6}
    piclab.run('inet', 'nft', '-f', '-', input='add table inet hbench\ndelete table inet hbench\n' + text)


def poll(func, timeout, interval=0.05):
    """Seconds until ``func()`` is true (None on timeout)."""
    started = time.time()
    while time.time() - started < timeout:
        if func():
            return time.time() - started
        time.sleep(interval)
    return None


def start_spray():
    """p2 (fail-closed) sprays UDP, ICMP and TCP at the internet (until stop_spray)."""
    return subprocess.Popen([piclab.NSEXEC, piclab.peer_node('p2', 'cell1'), piclab.PYTHON, '-c',
                             _SPRAY, piclab.SERVER_V4, piclab.SERVER_V6], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop_spray(spray):
    os.killpg(spray.pid, signal.SIGKILL)
    spray.wait()


def port_listening_at(watcher):
    """When the port watcher saw the TransPort listen (time.time()), or None."""
    try:
        return float(watcher.communicate(timeout=30)[0].strip())
    except (ValueError, subprocess.TimeoutExpired):
        watcher.kill()
        return None


def failover_entry(number, times, fallback, back, listening, leaks, load):
    """One round's figures, from the stop command (supervisorctl's own start-up and Tor's exit included)."""
    issued, gone, issued_start, started = times
    back_at = None if back is None else started + back
    back = None if back is None else back_at - issued_start
    return {'round': number, 'stop_command_s': round(gone - issued, 3),
            'fallback_s': None if fallback is None else round(gone - issued + fallback, 3),
            'fallback_after_exit_s': None if fallback is None else round(fallback, 3),
            'back_s': None if back is None else round(back, 3),
            'tor_listening_after_start_s': None if listening is None else round(listening - issued_start, 3),
            'back_after_listening_s': None if None in (back_at, listening) else round(back_at - listening, 3),
            'leaked_packets': leaks, 'loadavg': load}


def failover_round(cell, number, wan4, tor4, trans_port, sprays):
    """Stop Tor (p2 spraying), time p1's fallback to the WAN; start it, time p1 back through Tor."""
    if poll(lambda: piclab.fetch('p1', 4, timeout=5) == tor4, 60, 0.5) is None:
        raise SystemExit('round %d: p1 is not through Tor' % number)
    time.sleep(2)      # the monitor has seen Tor up for a while
    before = leaked()
    # p2 (fail-closed) sprays from just before the stop until just before the start
    sprays.append(start_spray())
    time.sleep(0.5)
    load = loadavg()
    issued = time.time()
    cell.supervisorctl('stop', INSTANCE)
    gone = time.time()
    fallback = poll(lambda: piclab.fetch('p1', 4, timeout=0.5) == wan4, 30)
    time.sleep(3)      # Tor down a while longer: p2 keeps trying
    # stop spraying before Tor starts again: the cell's Tor 0.4.9 was seen dying
    # (SIGSEGV) again and again while starting under p2's spray
    stop_spray(sprays.pop())
    watcher = subprocess.Popen([piclab.NSEXEC, 'cell1', piclab.PYTHON, '-c', _PORT_WATCH, str(trans_port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    issued_start = time.time()
    cell.supervisorctl('start', INSTANCE)
    started = time.time()
    back = poll(lambda: piclab.fetch('p1', 4, timeout=2) == tor4, 90)
    listening = port_listening_at(watcher)
    if back is None:
        log('round %d: p1 not back through Tor: fetch %s; %s; monitor %s' % (
            number, piclab.fetch('p1', 4, timeout=5), cell.supervisorctl('status').strip(),
            piclab.run('cell1', 'cat', os.path.join(cell.state_dir, 'runtime.json'), check=False).stdout))
    entry = failover_entry(number, (issued, gone, issued_start, started), fallback, back, listening,
                           leaked() - before, load)
    log('round %d: %s' % (number, entry))
    return entry


def bench_failover(cell, tornet, rounds):
    wan4, tor4 = piclab.wan_address('cell1', 4), tornet.exit_address(4)
    if poll(lambda: piclab.fetch('p1', 4, timeout=5) == tor4, 90, 1) is None:
        raise SystemExit('p1 never reached the internet through Tor')
    if not cell.supervisorctl('status', 'pic-monitor').split()[1:2] == ['RUNNING']:
        raise SystemExit('the cell monitor does not run: %s' % cell.supervisorctl('status'))
    with open(os.path.join(cell.state_dir, 'registry.json')) as handle:
        trans_port = json.load(handle)['connections']['tor']['local_port']
    reset_leaks()
    sprays = []
    try:
        return [failover_round(cell, number, wan4, tor4, trans_port, sprays) for number in range(1, rounds + 1)]
    finally:
        for spray in sprays:
            stop_spray(spray)


# ---------------------------------------------------------------- (b) probing many
_LISTEN = r"""
import socket, sys, time
socks = []
for port in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', int(port))); s.listen(128); socks.append(s)
print('ready', flush=True)
while True:
    time.sleep(3600)
"""


def bench_probing(cell, proxies, nconns, repeat):
    socks, http = proxies.info(proxies.SOCKS_NODE), proxies.info(proxies.HTTP_NODE)
    names = ['Probe %02d' % k for k in range(nconns)]
    started = time.time()
    records = []
    for k, name in enumerate(names):
        info = socks if k % 2 == 0 else http
        result, _wall = cell.module('pic_connection', {'name': name, 'type': 'proxy', 'config': {
            'host': info['host'], 'port': info['port'], 'proxy_type': info['proxy_type'],
            'username': info['username'], 'password': info['password']}})
        records.append(result['connection'])
    log('%d proxy connections created in %.1fs' % (nconns, time.time() - started))
    proxy_dir = os.path.join(cell.state_dir, 'proxy')
    os.makedirs(proxy_dir, mode=0o700, exist_ok=True)
    for record in records:      # where the proxy role writes the instance's configuration
        with open(os.path.join(proxy_dir, record['id'] + '.conf'), 'w') as handle:
            handle.write('# bench/health.py: a stand-in instance listens on %d\n' % record['local_port'])
    listener = subprocess.Popen([piclab.NSEXEC, 'cell1', piclab.PYTHON, '-c', _LISTEN] +
                                [str(r['local_port']) for r in records], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    out = {}
    try:
        if listener.stdout.readline().strip() != 'ready':
            raise SystemExit('the stand-in instances did not start')
        ids = set(r['id'] for r in records)

        def settled(want):
            result, _wall = cell.module('pic_health', {'force': True})
            return sum(1 for cid, e in result['connections'].items() if cid in ids and e['status'] == 'working') == want
        # the cell's monitor saw the ports closed before the stand-ins listened: wait until it
        # sees them up (pic_health reports the monitor's verdict too)
        if poll(lambda: settled(nconns), 30, 0.5) is None:
            raise SystemExit('the %d connections never all reported working' % nconns)
        for label, stopped in (('all_up', False), ('socks5_server_stopped', True)):
            if stopped:
                proxies.stop_socks()
                time.sleep(3)      # the exit guard and the monitor have seen it
            walls, probes, statuses = [], [], {}
            load = loadavg()
            for _run in range(repeat):
                result, wall = cell.module('pic_health', {'force': True})
                mine = dict((cid, e) for cid, e in result['connections'].items() if cid in ids)
                if len(mine) != nconns:
                    raise SystemExit('pic_health reported %d of %d connections' % (len(mine), nconns))
                walls.append(wall)
                probes.append(result['probe_seconds'])
                statuses = {}
                for entry in mine.values():
                    statuses[entry['status']] = statuses.get(entry['status'], 0) + 1
            out[label] = {'connections_probed': len(result['connections']), 'ours': nconns,
                          'module_wall_s': summary(walls), 'probe_s': summary(probes), 'statuses': statuses,
                          'loadavg': load}
            log('%s: %s' % (label, out[label]))
    finally:
        proxies.start_socks()
        os.killpg(listener.pid, signal.SIGKILL)
        listener.wait()
    return out


# ---------------------------------------------------------------- report
FAILOVER_ROWS = (
    ('fallback_s', '`supervisorctl stop pic-tor` issued -> fail-open peer reaches the echo server '
     'from the WAN', '< 3 s'),
    ('fallback_after_exit_s', '... of which after the stop command returned (Tor gone)', ''),
    ('back_s', '`supervisorctl start pic-tor` issued -> fail-open peer seen through Tor again', '< 3 s'),
    ('tor_listening_after_start_s', '... of which until Tor listens on its TransPort', ''),
    ('back_after_listening_s', '... and from then on (monitor: 2 good probes; Tor: a circuit)', ''))


def failover_table(fo):
    rows = []
    for key, label, target in FAILOVER_ROWS:
        s = fo.get(key)
        rows.append((label, '%s s' % (s and s['median']), '%s s' % (s and s['max']), target))
    rows.append(('packets of the fail-closed peer reaching the internet while Tor was down',
                 '%d (total)' % fo['leaked_total'],
                 '%d (one round)' % max(r['leaked_packets'] for r in fo['rounds']), '0'))
    return table(['Tor failover (%d rounds)' % len(fo['rounds']), 'median', 'max', 'target'], 'llll', rows) + ['']


def probing_table(pr, conns):
    rows = [(label, '%s s' % data['module_wall_s']['median'], '%s s' % data['module_wall_s']['max'],
             '%s s' % data['probe_s']['median'], '%s s' % data['probe_s']['max'],
             ', '.join('%s %d' % kv for kv in sorted(data['statuses'].items())),
             ' '.join('%.2f' % x for x in data['loadavg']))
            for label, data in sorted(pr.items())]
    return table(['pic_health force, %d connections' % conns, 'module wall median', 'max', 'probing median', 'max',
                  'statuses', 'load avg'], 'lllllll', rows)


def markdown(results):
    lines = []
    if results.get('failover'):
        lines += failover_table(results['failover'])
    if results.get('probing'):
        lines += probing_table(results['probing'], results['conns'])
    return '\n'.join(lines)


# ---------------------------------------------------------------- the steps
def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--conns', type=int, default=50)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'health-results.json'))
    parser.add_argument('--skip-failover', action='store_true')
    parser.add_argument('--skip-probing', action='store_true')
    parser.add_argument('--keep', action='store_true', help='leave the lab up')
    return parser.parse_args()


def initial_results(args):
    return {'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'machine': {
        'cpus': os.cpu_count(), 'kernel': platform.release(), 'python': platform.python_version()},
        'lab': {'prefix': piclab.prefix(), 'run_dir': piclab.run_dir()}, 'targets': TARGETS,
        'loadavg_start': loadavg(), 'rounds': args.rounds, 'conns': args.conns}


def failover_summary(rounds):
    out = {'rounds': rounds}
    for key in ('fallback_s', 'fallback_after_exit_s', 'back_s', 'tor_listening_after_start_s',
                'back_after_listening_s'):
        out[key] = summary([r[key] for r in rounds])
    out['leaked_total'] = sum(r['leaked_packets'] for r in rounds)
    out['misses'] = sum(1 for r in rounds if r['fallback_s'] is None or r['back_s'] is None)
    return out


def run_failover(args, cell, tornet, python, collections, workdir, results):
    """(a): the private Tor network, cell1 converged on it, the failover rounds."""
    started = time.time()
    tornet.start()
    tornet.wait_ready(90)
    log('private Tor network ready after %.1fs' % (time.time() - started))
    results['site_yml_s'] = round(converge_tor(tornet, python, collections, workdir), 1)
    log('site.yml (Tor exit) %.1fs' % results['site_yml_s'])
    results['failover'] = failover_summary(bench_failover(cell, tornet, args.rounds))


def run_probing(args, cell, proxies, results):
    """(b): the lab's proxies up, pic_health over --conns proxy connections."""
    proxies.start_socks()
    proxies.start_http()
    results['probing'] = bench_probing(cell, proxies, args.conns, args.repeat)


def tear_down(args, tornet, workdir):
    if not args.keep:
        try:
            tornet.stop()
        except Exception as exc:  # keep cleaning
            log('stopping the Tor network: %s' % exc)
        piclab.down()
    shutil.rmtree(workdir, ignore_errors=True)


def main():
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit('needs root (network namespaces)')
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    workdir = tempfile.mkdtemp(prefix='pic-bench-health-')
    python = controller_python()
    collections, ansible_dir = ansible_paths(python, workdir)
    results = initial_results(args)
    tornet, proxies = plugin('tor'), plugin('proxies')
    try:
        log('lab %s: down, then up (1 cell)' % piclab.prefix())
        piclab.down()
        piclab.up(cells=1)
        cell = Cell(collections, ansible_dir)
        if not args.skip_failover:
            run_failover(args, cell, tornet, python, collections, workdir, results)
        if not args.skip_probing:
            run_probing(args, cell, proxies, results)
        results['loadavg_end'] = loadavg()
    finally:
        tear_down(args, tornet, workdir)
    write_results(args.out, results, indent=1)
    print(markdown(results))
    print('load average: start %s, end %s' % (results['loadavg_start'], results['loadavg_end']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
