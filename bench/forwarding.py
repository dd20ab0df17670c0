"""Forwarding cost: iperf3 throughput and ping latency through a cell with 1 and with 10,000
assigned peers, side by side with the naive per-peer ``ip rule``/iptables setup of the same peers.

    python3 bench/forwarding.py [--peers 10000] [--runs 3] [--seconds 5] [--pings 500]
                                [--out bench/forwarding-results.json]

What it does (root, Linux, stdlib only; see docs/benchmarks.md, section "Forwarding cost"):

* builds its own namespaces (prefix ``picf-``): an "internet" ``picf-inet`` (the iperf3 server
  and ping target 192.0.2.1 on its loopback), an exit server ``picf-exit`` (a WireGuard server,
  wireguard-go when the kernel has no WireGuard, which masquerades what it decrypts towards the
  internet), and three cells side by side, each with its own "peer" namespace behind a veth
  ``wg0`` (10.64.0.1/10; the peer side need not be WireGuard: the forwarding cost is the cell's
  nftables and policy routing) and its own WAN veth to the internet (198.51.100.0/24):
  - ``picf-one``: converged with the collection's module, ``pic_peer_exit`` run as
    bench/run.py runs it (the cell interpreter, inside the namespace), with 10 wireguard_ext
    connections c1..c10 (c1 to the exit server, c2..c10 to endpoints nobody answers) and
    **1** assigned peer;
  - ``picf-many``: the same connections and **10,000** peers (bench/run.py's peers: round-robin
    over c1..c10, every third fail-open); the measured peer is one of them;
  - ``picf-naive``: the naive setup of the same 10,000 peers (bench/run.py's naive commands,
    applied with ``ip -batch`` and ``iptables-restore``): one ``ip rule add from <addr> lookup
    <table>`` per peer and address family, an iptables/ip6tables FORWARD drop per fail-closed
    peer, the exit a wireguard-go interface ``pic-c1`` in table 10001, masqueraded;
* the measured peer is p9980 (fail-closed, on c1: late in the naive rule lists, so that its
  forward lookup walks them almost to the end; a reply walks all of them); a second source,
  10.127.255.250 (assigned to no exit), measures the cell's WAN path through the same tables;
* checks that the measured peer's packets leave through the exit (the exit server's WireGuard
  counters of that cell grow) before measuring;
* measures, interleaved round by round (one, many, naive; so that load changes hit all three
  alike): iperf3 TCP throughput for --seconds, peer to internet and internet to peer (-R),
  and ping -i 0.01 round trips (median and p99), through the exit and through the WAN;
* prints a Markdown table with the ratios (many / one, naive / one) and writes JSON to --out.

Everything it creates (namespaces, processes in them, a temporary directory) is removed at
the end, on failure and on SIGINT/SIGTERM/SIGHUP too.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import BenchError, add_cleanup, cleanup, install_cleanup, loadavg, rnd, sh, table, write_results
import run
from run import Cell, find_tools, machine_info, make_peers, naive_commands, ns_delete, wg_keypair

log = benchlib.logger('bench-forwarding')

PREFIX = 'picf-'
INET, EXIT = PREFIX + 'inet', PREFIX + 'exit'
SETUPS = ('one', 'many', 'naive')
TARGET_IP = '192.0.2.1'
EXIT_ENDPOINT = '203.0.113.2'
WAN_PROBE = '10.127.255.250'        # in the peers' /10, assigned to no exit
MEASURED = 9980                     # p9980: on c1, fail-closed, late in the naive rule lists
TARGET_RATIO = 0.95                 # 10,000 peers within 5 % of 1 peer
MODULE_TIMEOUT = 900


def cell_ns(setup):
    return PREFIX + setup


def peer_ns(setup):
    return PREFIX + 'p-' + setup


# ---------------------------------------------------------------- namespaces

def ns_add(name):
    ns_delete(name)         # left over by an interrupted run
    sh(['ip', 'netns', 'add', name])
    add_cleanup(ns_delete, name)
    batch(name, ['link set lo up'])


def batch(ns, lines, family=None):
    args = ['ip'] + (['-%d' % family] if family else []) + ['-n', ns, '-batch', '-']
    sh(args, input='\n'.join(lines) + '\n')


def sysctl(ns, *settings):
    sh(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w'] + list(settings))


def nft(ns, text):
    sh(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], input=text)


def masquerade(ns, ifname, table_name='bench_nat'):
    """A NAT table of the benchmark's own (not the collection's) masquerading what leaves IFNAME."""
    nft(ns, 'table inet %s {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n'
            '  oifname "%s" masquerade\n }\n}\n' % (table_name, ifname))


def build_internet():
    ns_add(INET)
    batch(INET, ['addr add %s/32 dev lo' % TARGET_IP])
    sysctl(INET, 'net.ipv4.ip_forward=1')


def build_exit_link():
    ns_add(EXIT)
    sh(['ip', '-n', INET, 'link', 'add', 'x-exit', 'type', 'veth', 'peer', 'name', 'uplink', 'netns', EXIT])
    batch(INET, ['addr add 203.0.113.1/30 dev x-exit', 'link set x-exit up'])
    batch(EXIT, ['addr add %s/30 dev uplink' % EXIT_ENDPOINT, 'link set uplink up',
                 'route add default via 203.0.113.1'])
    sysctl(EXIT, 'net.ipv4.ip_forward=1')
    masquerade(EXIT, 'uplink')


def build_cell(index, setup, measured_addr):
    """Cell namespace SETUP: WAN veth to the internet, wg0 veth to its peer namespace."""
    cns, pns = cell_ns(setup), peer_ns(setup)
    ns_add(cns)
    ns_add(pns)
    inet_if, inet_ip, wan_ip = 'x-%s' % setup, '198.51.100.%d' % (4 * index + 1), '198.51.100.%d' % (4 * index + 2)
    sh(['ip', '-n', INET, 'link', 'add', inet_if, 'type', 'veth', 'peer', 'name', 'wan', 'netns', cns])
    batch(INET, ['addr add %s/30 dev %s' % (inet_ip, inet_if), 'link set %s up' % inet_if])
    sh(['ip', '-n', cns, 'link', 'add', 'wg0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pns])
    batch(cns, ['addr add %s/30 dev wan' % wan_ip, 'link set wan up', 'route add default via %s' % inet_ip,
                'addr add 10.64.0.1/10 dev wg0', 'addr add fd00:64::1/64 dev wg0 nodad', 'link set wg0 up'])
    sysctl(cns, 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1')
    masquerade(cns, 'wan')     # the peers' private sources on the WAN, as any gateway has
    batch(pns, ['addr add %s/10 dev eth0' % measured_addr, 'addr add %s/10 dev eth0' % WAN_PROBE,
                'link set eth0 up', 'route add default via 10.64.0.1'])


# ---------------------------------------------------------------- WireGuard

def wg_process(cell, ifname, log_path):
    """wireguard-go IFNAME in the foreground inside CELL's namespace (its own /run/wireguard)."""
    with open(log_path, 'w') as out:
        subprocess.Popen(cell.wrap(['wireguard-go', '-f', ifname]), stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(cell.wgdir, ifname + '.sock')):
        if time.time() > deadline:
            raise BenchError('wireguard-go %s did not start in %s' % (ifname, cell.ns))
        time.sleep(0.05)


def wg_set(cell, workdir, ifname, private_key, *args):
    keyfile = os.path.join(workdir, 'key-%s-%s' % (cell.ns, ifname))
    with open(keyfile, 'w') as handle:
        os.chmod(keyfile, 0o600)
        handle.write(private_key + '\n')
    sh(cell.wrap(['wg', 'set', ifname, 'private-key', keyfile] + list(args)))


def start_exit_server(workdir, helper, clients):
    """The exit server: wireguard-go ``picfx0`` in the exit namespace, one WireGuard peer per
    cell (CLIENTS: {setup: public key}), tunnel addresses 10.200.<cell>.0/24."""
    priv, pub = wg_keypair()
    wg_process(helper, 'picfx0', os.path.join(workdir, 'wg-exit.log'))
    args = ['listen-port', '51820']
    for index, setup in enumerate(SETUPS, 1):
        args += ['peer', clients[setup], 'allowed-ips', '10.200.%d.0/24,fd00:200:%d::/64' % (index, index)]
    wg_set(helper, workdir, 'picfx0', priv, *args)
    batch(EXIT, ['addr add 10.200.0.254/32 dev picfx0', 'link set picfx0 up', 'route add 10.200.0.0/16 dev picfx0'])
    return pub


def wg_transfer(helper, client_pub):
    """Bytes the exit server received from the client CLIENT_PUB."""
    out = sh(helper.wrap(['wg', 'show', 'picfx0', 'transfer'])).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == client_pub:
            return int(fields[1])
    return 0


# ---------------------------------------------------------------- the three setups

def collection_connections(cell, index, exit_pub, client_priv):
    """c1 to the exit server, c2..c10 to endpoints nobody answers (as bench/run.py's)."""
    for k in range(1, run.NCONN + 1):
        priv, server_pub = (client_priv, exit_pub) if k == 1 else (wg_keypair()[0], wg_keypair()[1])
        endpoint = '%s:51820' % (EXIT_ENDPOINT if k == 1 else '203.0.113.%d' % (200 + k))
        args = {'state_dir': cell.state_dir, 'name': 'c%d' % k, 'type': 'wireguard_ext',
                'config': {'private_key': priv, 'address': ['10.200.%d.%d/32' % (index, k),
                                                            'fd00:200:%d::%x/128' % (index, k)],
                           'peer_public_key': server_pub, 'endpoint': endpoint,
                           'allowed_ips': ['0.0.0.0/0', '::/0']}}
        cell.module('pic_connection', args, expect_changed=True, label='create c%d in %s' % (k, cell.ns))


def converge_collection(cell, peers):
    started = time.time()
    res = cell.module('pic_peer_exit', {'state_dir': cell.state_dir, 'peers': peers}, expect_changed=True,
                      label='%d peers in %s' % (len(peers), cell.ns))
    if len(res['changed_peers']) != len(peers):
        raise BenchError('%s: %d changed peers, expected %d' % (cell.ns, len(res['changed_peers']), len(peers)))
    elements = cell.map_elements('peer4') or []
    if len(elements) != len(peers):
        raise BenchError('%s: nft map peer4 holds %d elements, expected %d' % (cell.ns, len(elements), len(peers)))
    log('%s: pic_peer_exit converged %d peer(s) in %.2f s' % (cell.ns, len(peers), time.time() - started))
    counts = cell.counts()
    return {'peers': len(peers), 'nft_rules_table': counts['nft_rules_table'],
            'ip_rules_v4': counts['ip_rules_v4'], 'ip_rules_v6': counts['ip_rules_v6'],
            'peer4_elements': counts['peer4_elements']}


def naive_rules(peers):
    """bench/run.py's naive commands for PEERS as ip -batch lines (v4, v6) and iptables-restore
    inputs (v4, v6); -I in that order puts the last peer's drop first."""
    rules4, rules6, drops4, drops6 = [], [], [], []
    for peer in peers:
        for cmd in naive_commands(peer):
            if cmd.startswith('ip rule '):
                rules4.append(cmd[len('ip '):])
            elif cmd.startswith('ip -6 rule '):
                rules6.append(cmd[len('ip -6 '):])
            else:
                tool, rest = cmd.split(' -I FORWARD ', 1)
                (drops4 if tool == 'iptables' else drops6).insert(0, '-A FORWARD ' + rest)
    return rules4, rules6, drops4, drops6


def restore(ns, tool, filter_rules, nat_rules):
    text = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'] + filter_rules
    text += ['COMMIT', '*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]',
             ':POSTROUTING ACCEPT [0:0]'] + nat_rules + ['COMMIT']
    sh(['ip', 'netns', 'exec', ns, tool], input='\n'.join(text) + '\n')


def converge_naive(helper, workdir, peers, exit_pub, client_priv):
    """The naive cell: pic-c1 (wireguard-go) to the exit in table 10001, tables 10002..10010
    unreachable, and the naive rules of PEERS."""
    ns = helper.ns
    wg_process(helper, 'pic-c1', os.path.join(workdir, 'wg-naive.log'))
    wg_set(helper, workdir, 'pic-c1', client_priv, 'peer', exit_pub, 'endpoint', '%s:51820' % EXIT_ENDPOINT,
           'allowed-ips', '0.0.0.0/0,::/0')
    lines = ['addr add 10.200.3.1/32 dev pic-c1', 'link set pic-c1 up',
             'route add default dev pic-c1 table %d' % (run.TABLE_BASE + 1)]
    lines += ['route add unreachable default table %d' % (run.TABLE_BASE + k) for k in range(2, run.NCONN + 1)]
    batch(ns, lines)
    batch(ns, ['route add unreachable default table %d' % (run.TABLE_BASE + k) for k in range(1, run.NCONN + 1)], 6)
    started = time.time()
    rules4, rules6, drops4, drops6 = naive_rules(peers)
    batch(ns, rules4, 4)
    batch(ns, rules6, 6)
    restore(ns, 'iptables-restore', drops4, ['-A POSTROUTING -o pic-c1 -j MASQUERADE'])
    restore(ns, 'ip6tables-restore', drops6, [])
    log('%s: naive rules of %d peers applied in %.2f s (ip -batch, iptables-restore)'
        % (ns, len(peers), time.time() - started))
    return {'peers': len(peers), 'ip_rules_v4': len(json.loads(sh(['ip', '-4', '-n', ns, '-j', 'rule']).stdout)),
            'ip_rules_v6': len(json.loads(sh(['ip', '-6', '-n', ns, '-j', 'rule']).stdout)),
            'iptables_forward_drops': len(drops4), 'ip6tables_forward_drops': len(drops6)}


# ---------------------------------------------------------------- measuring

def in_peer(setup, argv, timeout=120, check=True):
    return sh(['ip', 'netns', 'exec', peer_ns(setup)] + argv, timeout=timeout, check=check)


def check_exit_path(helper, setup, source, client_pub):
    """Pings from SOURCE through the cell SETUP reach the internet, and (for the exit source)
    through the exit server: its WireGuard counter of that cell grows."""
    before = wg_transfer(helper, client_pub)
    argv = ['ping', '-n', '-c', '1', '-W', '1', '-I', source, TARGET_IP]
    if not any(in_peer(setup, argv, check=False).returncode == 0 for _attempt in range(20)):
        raise BenchError('%s: no ping from %s reaches the internet' % (setup, source))
    grew = wg_transfer(helper, client_pub) > before
    if source != WAN_PROBE and not grew:
        raise BenchError('%s: the pings of %s did not go through the exit server' % (setup, source))
    if source == WAN_PROBE and grew:
        raise BenchError('%s: the WAN probe %s went through the exit server' % (setup, source))


def iperf(setup, source, seconds, reverse, attempts=3):
    """Mbit/s received in one iperf3 TCP run from SOURCE (-R: the internet sends); a run that
    fails (say its control connection times out under load) is retried, and after ATTEMPTS
    failures counts as 0 with its error logged."""
    argv = ['iperf3', '-c', TARGET_IP, '-B', source, '-t', str(seconds), '-J', '-O', '1']
    if reverse:
        argv.append('-R')
    error = None
    for _attempt in range(attempts):
        proc = in_peer(setup, argv, timeout=seconds + 60, check=False)
        try:
            return json.loads(proc.stdout)['end']['sum_received']['bits_per_second'] / 1e6, None
        except (ValueError, KeyError):
            try:
                error = json.loads(proc.stdout).get('error') or proc.stderr.strip()
            except ValueError:
                error = (proc.stderr or proc.stdout).strip()[-300:]
            log('%s: iperf3 from %s%s failed: %s' % (setup, source, ' -R' if reverse else '', error))
            time.sleep(1)
    return 0.0, error


_RTT = re.compile(r'time=([0-9.]+) ms')


def ping(setup, source, count):
    out = in_peer(setup, ['ping', '-n', '-c', str(count), '-i', '0.01', '-I', source, TARGET_IP],
                  timeout=count * 0.05 + 60, check=False).stdout
    rtts = sorted(float(x) for x in _RTT.findall(out))
    if len(rtts) < count:
        log('%s: %d of %d pings from %s unanswered' % (setup, count - len(rtts), count, source))
    if not rtts:
        raise BenchError('%s: no ping from %s answered' % (setup, source))
    return rtts


def percentile(sorted_values, pct):
    return sorted_values[min(len(sorted_values) - 1, int(round(pct / 100.0 * (len(sorted_values) - 1))))]


def measure_round(args, sources, raw):
    """One round: every setup, path and direction once (setups interleaved)."""
    for path in ('exit', 'wan'):
        for setup in SETUPS:
            cell = raw[setup][path]
            for key, reverse in (('up_mbps', False), ('down_mbps', True)):
                mbps, error = iperf(setup, sources[setup][path], args.seconds, reverse)
                cell[key].append(mbps)
                if error:
                    cell['errors'].append('%s: %s' % (key, error))
            rtts = ping(setup, sources[setup][path], args.pings)
            cell['rtt_ms'].extend(rtts)
            cell['rtt_round_ms'].append(percentile(rtts, 50))
            cell['lost'] += args.pings - len(rtts)
            log('%s via %s: up %.0f Mbit/s, down %.0f Mbit/s, rtt median %.3f ms'
                % (setup, path, cell['up_mbps'][-1], cell['down_mbps'][-1],
                   sorted(cell['rtt_ms'])[len(cell['rtt_ms']) // 2]))


def summarize(raw):
    out = {}
    for setup in SETUPS:
        out[setup] = {}
        for path in ('exit', 'wan'):
            cell = raw[setup][path]
            rtts = sorted(cell['rtt_ms'])
            out[setup][path] = {
                'up_mbps': rnd(benchlib.med(cell['up_mbps']), 1), 'down_mbps': rnd(benchlib.med(cell['down_mbps']), 1),
                'up_runs_mbps': [rnd(x, 1) for x in cell['up_mbps']],
                'down_runs_mbps': [rnd(x, 1) for x in cell['down_mbps']],
                'rtt_median_ms': rnd(percentile(rtts, 50), 4), 'rtt_p99_ms': rnd(percentile(rtts, 99), 4),
                'rtt_round_medians_ms': [rnd(x, 4) for x in cell['rtt_round_ms']],
                'pings': len(rtts), 'pings_lost': cell['lost'], 'failed_iperf_runs': cell['errors']}
    return out


def paired(cur, base):
    """The median of the per-round ratios CUR[i] / BASE[i] (both measured in round i, minutes
    apart at most: a change of the machine's load between rounds cancels out)."""
    values = [c / b for c, b in zip(cur, base) if b]
    return rnd(benchlib.med(values), 3) if values else None


def ratios(raw, summary_):
    """many / one and naive / one (throughput: higher is better; latency: lower): throughput and
    median round trip paired round by round, p99 from all the pings of each setup."""
    out = {}
    for other in ('many', 'naive'):
        for path in ('exit', 'wan'):
            base, cur = raw['one'][path], raw[other][path]
            p99 = summary_['one'][path]['rtt_p99_ms']
            out['%s_%s' % (other, path)] = {
                'up_mbps': paired(cur['up_mbps'], base['up_mbps']),
                'down_mbps': paired(cur['down_mbps'], base['down_mbps']),
                'rtt_median_ms': paired(cur['rtt_round_ms'], base['rtt_round_ms']),
                'rtt_p99_ms': rnd(summary_[other][path]['rtt_p99_ms'] / p99, 3) if p99 else None}
    return out


def targets(ratio):
    """10,000 peers within 5 % of 1 peer: throughput at least 0.95x, latency at most 1/0.95x."""
    out = {}
    for path in ('exit', 'wan'):
        r = ratio['many_%s' % path]
        for key in ('up_mbps', 'down_mbps'):
            out['%s_%s' % (path, key)] = {'ratio': r[key], 'met': r[key] is not None and r[key] >= TARGET_RATIO}
        for key in ('rtt_median_ms', 'rtt_p99_ms'):
            out['%s_%s' % (path, key)] = {'ratio': r[key], 'met': r[key] is not None and r[key] <= 1 / TARGET_RATIO}
    return out


# ---------------------------------------------------------------- report

def markdown(results):
    s, r = results['summary'], results['ratios']
    rows = []
    for path in ('exit', 'wan'):
        for setup in SETUPS:
            x = s[setup][path]
            ratio = r.get('%s_%s' % (setup, path))
            rows.append((path, LABELS[setup], '%.0f' % x['up_mbps'], '%.0f' % x['down_mbps'],
                         '%.3f' % x['rtt_median_ms'], '%.3f' % x['rtt_p99_ms'],
                         ' / '.join('n/a' if ratio[k] is None else '%.3f' % ratio[k] for k in ('up_mbps', 'down_mbps', 'rtt_median_ms', 'rtt_p99_ms'))
                         if ratio else '1 (baseline)'))
    lines = table(['path', 'setup', 'up, Mbit/s', 'down (-R), Mbit/s', 'rtt median, ms', 'rtt p99, ms',
                   'ratio to 1 peer (up / down / rtt median / rtt p99)*'], 'llrrrrr', rows)
    lines += ['', '\\* throughput and median round trip: the median of the per-round ratios (setups interleaved '
              'within a round); p99: of all the pings of each setup.']
    return '\n'.join(lines) + '\n'


LABELS = {'one': 'collection, 1 peer', 'many': 'collection, 10,000 peers', 'naive': 'naive, 10,000 peers'}


def report_text(results):
    m = results['machine']
    lines = ['## Forwarding cost', '',
             'commit %s%s, %s, %d cores (%s), kernel %s, %s, %s, %s' % (
                 m['git_commit'], ' (uncommitted changes in plugins/)' if m['git_tracked_changes'] else '',
                 m['os'], m['nproc'], m['cpu'], m['kernel'], m['wireguard'], m['nftables'], m['iptables']),
             '', 'Command: `%s`' % results['command'], '',
             '%d round(s) of iperf3 %d s per setup, path and direction (median), %d pings at 0.01 s per round; '
             'load average %s at the start, %s at the end.' % (
                 results['setup']['runs'], results['setup']['seconds'], results['setup']['pings'],
                 results['loadavg_start'], results['loadavg_end']), '', results['markdown'], 'Targets (10,000 peers '
             'within 5 % of 1 peer):']
    for name, tgt in sorted(results['targets'].items()):
        lines.append('- %s: %s -> %s' % (name, tgt['ratio'], 'met' if tgt['met'] else 'MISSED'))
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- main

def ensure_iperf3():
    if shutil.which('iperf3'):
        return
    log('iperf3 is missing: apt-get install iperf3')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '--no-install-recommends', 'iperf3']
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        sh(['apt-get', 'update'], env=env)
        sh(cmd, env=env)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--peers', type=int, default=10000, help='peers of the large setups (default 10000)')
    parser.add_argument('--runs', type=int, default=3, help='rounds of measurements, medians reported (default 3)')
    parser.add_argument('--seconds', type=int, default=5, help='seconds per iperf3 run (default 5)')
    parser.add_argument('--pings', type=int, default=500, help='pings per round and setup (default 500)')
    parser.add_argument('--out', default=os.path.join('bench', 'forwarding-results.json'), help='JSON results')
    args = parser.parse_args()
    if args.peers <= MEASURED:
        parser.error('--peers must be above %d (the measured peer is p%d)' % (MEASURED, MEASURED))
    args.out = args.out if os.path.isabs(args.out) else os.path.join(os.getcwd(), args.out)
    return args


def build(args, tools, workdir):
    """Every namespace, the exit server and the three setups; returns (sources, counts)."""
    peers = make_peers(args.peers)
    measured = peers[MEASURED]
    addr = measured['address'][0].split('/')[0]
    build_internet()
    build_exit_link()
    for index, setup in enumerate(SETUPS, 1):
        build_cell(index, setup, addr)
    cells = dict((s, Cell(cell_ns(s), workdir, tools['cell_python'], tools['ansible_pkg'])) for s in SETUPS)
    helper = Cell(EXIT, workdir, tools['cell_python'], tools['ansible_pkg'])
    keys = dict((s, wg_keypair()) for s in SETUPS)
    exit_pub = start_exit_server(workdir, helper, dict((s, keys[s][1]) for s in SETUPS))
    counts = {}
    for index, setup in enumerate(('one', 'many'), 1):
        collection_connections(cells[setup], index, exit_pub, keys[setup][0])
        counts[setup] = converge_collection(cells[setup], [measured] if setup == 'one' else peers)
    counts['naive'] = converge_naive(cells['naive'], workdir, peers, exit_pub, keys['naive'][0])
    for setup in SETUPS:
        check_exit_path(helper, setup, addr, keys[setup][1])
        check_exit_path(helper, setup, WAN_PROBE, keys[setup][1])
    log('every setup sends p%d (%s) through the exit server and %s through its WAN' % (MEASURED, addr, WAN_PROBE))
    return dict((s, {'exit': addr, 'wan': WAN_PROBE}) for s in SETUPS), counts, measured


def start_iperf_server(workdir):
    out = open(os.path.join(workdir, 'iperf3-server.log'), 'w')
    proc = subprocess.Popen(['ip', 'netns', 'exec', INET, 'iperf3', '-s', '-B', TARGET_IP], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    add_cleanup(proc.kill)
    time.sleep(0.5)


def measure(args):
    ensure_iperf3()
    tools = find_tools(args)
    workdir = tempfile.mkdtemp(prefix='picf-')
    add_cleanup(shutil.rmtree, workdir, True)
    os.makedirs('/run/wireguard', exist_ok=True)      # mount point of the per-namespace bind mounts
    results = {'command': ' '.join(['python3', 'bench/forwarding.py'] + sys.argv[1:]),
               'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'machine': machine_info(tools),
               'loadavg_start': loadavg()}
    sources, counts, measured = build(args, tools, workdir)
    start_iperf_server(workdir)
    raw = dict((s, dict((p, {'up_mbps': [], 'down_mbps': [], 'rtt_ms': [], 'rtt_round_ms': [], 'errors': [], 'lost': 0}) for p in ('exit', 'wan')))
               for s in SETUPS)
    for r in range(args.runs):
        log('round %d of %d' % (r + 1, args.runs))
        measure_round(args, sources, raw)
    results.update({
        'setup': {'runs': args.runs, 'seconds': args.seconds, 'pings': args.pings, 'peers': args.peers,
                  'connections': run.NCONN, 'measured_peer': measured, 'wan_probe': WAN_PROBE,
                  'target': TARGET_IP, 'exit': 'wireguard_ext c1 to wireguard-go in %s, masqueraded there' % EXIT},
        'counts': counts, 'summary': summarize(raw), 'loadavg_end': loadavg()})
    results['ratios'] = ratios(raw, results['summary'])
    results['targets'] = targets(results['ratios'])
    results['markdown'] = markdown(results)
    return results


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.stderr.write('bench/forwarding.py needs root (network namespaces)\n')
        return 2
    install_cleanup()
    started = time.time()
    try:
        results = measure(args)
    finally:
        cleanup()
    results['duration_s'] = round(time.time() - started, 1)
    write_results(args.out, results)
    print(report_text(results))
    log('results written to %s (%.0f s in all)' % (args.out, results['duration_s']))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.stderr.write('bench failed: %s\n' % exc)
        sys.exit(1)
