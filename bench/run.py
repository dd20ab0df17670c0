"""Benchmark of the bulk form of pic.connectivity.pic_peer_exit against the naive approach.

    python3 bench/run.py [--sizes 1000,10000] [--naive-sizes 1000] [--out bench/results.json] [--ref COMMIT]

What it does (root, Linux, stdlib only; see docs/benchmarks.md):

* creates a scratch network namespace ``picb-cell`` with a peer interface ``wg0`` (a veth
  pair inside the namespace, 10.64.0.1/10 and fd00:64::1/64) and a private /run/wireguard,
  and 10 ``wireguard_ext`` connections (wireguard-go when the kernel has no WireGuard);
* runs the collection's modules as Ansible runs them on a cell, without the controller:
  ``python3 plugins/modules/pic_peer_exit.py args.json`` with the cell interpreter, inside
  the namespace; "module time" is the wall time of that process;
* for each size N: first apply of N peers across the 10 connections, no-op re-run and a
  one-peer change (medians of --repeat runs), peak RSS, nft/ip rule counts, and a check
  that the nft map ``peer4`` holds N elements;
* for the sizes of --playbook-sizes, the same task once through ``ansible-playbook``
  (local connection, an interpreter wrapper that enters the namespace), to show the
  controller's overhead;
* the naive approach in the same run, in a fresh namespace ``picb-naive``: a generated
  playbook with one task per peer running ``ip rule``/``ip -6 rule`` and
  ``iptables``/``ip6tables`` commands (and, smaller, the one-command-per-task variant);
  sizes not measured are extrapolated linearly (the naive approach is O(N) tasks);
* prints a side-by-side Markdown table and writes JSON to --out.

Everything it creates (namespaces, wireguard-go processes, a temporary directory) is
removed at the end, on failure and on SIGINT/SIGTERM too.

Environment (defaults in brackets):
  PIC_BENCH_PYTHON            controller python with ansible-core [the python running this
                              script if it has ansible-core, else the interpreter of the
                              ansible-playbook found on PATH, else .venv/bin/python]
  PIC_BENCH_ANSIBLE_PLAYBOOK  ansible-playbook [next to PIC_BENCH_PYTHON, else on PATH]
  PIC_BENCH_CELL_PYTHON       the cell's interpreter [/usr/bin/python3]
"""

import argparse
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import (BenchError, CURRENT, add_cleanup, cleanup, find_controller, install_cleanup,
                      logger, med, rnd, sh, table, timed_run, write_results)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The collection measured: the working tree, or an export of --ref (set in main()).
SOURCE = {'root': REPO, 'ref': None}
CELL_NS = 'picb-cell'
NAIVE_NS = 'picb-naive'
NCONN = 10
PEER_NET4 = ipaddress.ip_network('10.64.0.0/10')
PEER_NET6 = ipaddress.ip_network('fd00:64::/64')
TABLE_BASE = 10000          # the collection's default: connection k uses table 10000 + k
NAIVE_PRIORITY_BASE = 1000  # naive rules: priority 1000 + peer number
MODULE_TIMEOUT = 900
PLAYBOOK_TIMEOUT = 3600
TARGETS = {'first_apply_1000_s': 2.0, 'noop_1000_s': 0.5, 'speedup_min': 100.0}


log = logger('bench')


# ---------------------------------------------------------------- namespaces

def ns_exists(name):
    return os.path.exists('/run/netns/%s' % name)


def ns_delete(name):
    """Stop the processes left in the namespace (ours: wireguard-go) and delete it."""
    if not ns_exists(name):
        return
    pids = [int(p) for p in sh(['ip', 'netns', 'pids', name], check=False).stdout.split() if p.strip()]
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + 3
    while pids and time.time() < deadline:
        pids = [p for p in pids if os.path.exists('/proc/%d' % p)]
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    sh(['ip', 'netns', 'del', name])
    log('deleted namespace %s (stopped %d process(es) in it)' % (name, len(pids)))


def ns_create(name):
    """A namespace with lo and a peer interface wg0 (veth wg0/wg0p inside it)."""
    ns_delete(name)   # left over by an interrupted run of this benchmark
    sh(['ip', 'netns', 'add', name])
    add_cleanup(ns_delete, name)
    batch = '\n'.join([
        'link set lo up',
        'link add wg0 type veth peer name wg0p',
        'addr add 10.64.0.1/10 dev wg0',
        'addr add fd00:64::1/64 dev wg0 nodad',
        'link set wg0 up',
        'link set wg0p up',
    ]) + '\n'
    sh(['ip', '-n', name, '-batch', '-'], input=batch)


class Cell(object):
    """The scratch cell: namespace, private /run/wireguard, how to run modules in it."""

    def __init__(self, ns, workdir, cell_python, ansible_pkg):
        self.ns = ns
        self.workdir = workdir
        self.cell_python = cell_python
        self.wgdir = os.path.join(workdir, 'run-wireguard-%s' % ns)
        self.state_dir = os.path.join(workdir, 'state-%s' % ns)
        self.pylib = os.path.join(workdir, 'pylib')
        self.seq = 0
        os.makedirs(self.wgdir, 0o700, exist_ok=True)
        os.makedirs(os.path.join(workdir, 'calls'), exist_ok=True)
        coll = os.path.join(self.pylib, 'ansible_collections', 'pic')
        os.makedirs(coll, exist_ok=True)
        if not os.path.lexists(os.path.join(coll, 'connectivity')):
            os.symlink(SOURCE['root'], os.path.join(coll, 'connectivity'))
        # only the ansible package (not the whole controller site-packages, which would
        # shadow the cell's own pyroute2 with the venv's)
        if not os.path.lexists(os.path.join(self.pylib, 'ansible')):
            os.symlink(ansible_pkg, os.path.join(self.pylib, 'ansible'))
        self.env = dict(os.environ)
        self.env['PYTHONPATH'] = self.pylib
        self.env.pop('PYTHONHOME', None)
        self.env['PYTHONDONTWRITEBYTECODE'] = '1'

    def wrap(self, argv):
        """argv run inside the namespace with /run/wireguard bound to this cell's own dir."""
        return ['ip', 'netns', 'exec', self.ns, 'sh', '-c', 'mount --bind "$0" /run/wireguard && exec "$@"',
                self.wgdir] + list(argv)

    def nsrun(self, argv, check=True, **kwargs):
        return sh(['ip', 'netns', 'exec', self.ns] + list(argv), check=check, **kwargs)

    def module(self, name, args, expect_changed=None, label=''):
        """Run one module as AnsiballZ does for a directly run module; returns its result
        with ``_wall`` (s) and ``_maxrss_kib``."""
        self.seq += 1
        base = os.path.join(self.workdir, 'calls', '%04d-%s' % (self.seq, name))
        with open(base + '.args.json', 'w') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
        path = os.path.join(SOURCE['root'], 'plugins', 'modules', '%s.py' % name)
        argv = [self.cell_python, path, base + '.args.json']
        with open(base + '.out', 'w') as out, open(base + '.err', 'w') as err:
            wall, rc, rss = timed_run(self.wrap(argv), out, err, env=self.env, timeout=MODULE_TIMEOUT)
        with open(base + '.out') as handle:
            text = handle.read()
        try:
            result = json.loads(text)
        except ValueError:
            with open(base + '.err') as handle:
                err_text = handle.read()
            raise BenchError('%s (%s) printed no JSON (rc=%d)\nstdout: %s\nstderr: %s'
                             % (name, label, rc, text[-3000:], err_text[-3000:]))
        if result.get('failed') or rc != 0:
            detail = json.dumps(result, sort_keys=True)[:3000]
            raise BenchError('%s (%s) failed (rc=%d): %s' % (name, label, rc, detail))
        if expect_changed is not None and bool(result.get('changed')) != expect_changed:
            raise BenchError('%s (%s): expected changed=%s, got changed=%s; changes: %s'
                             % (name, label, expect_changed, result.get('changed'),
                                json.dumps(result.get('changes'))[:2000]))
        result['_wall'] = wall
        result['_cpu'] = CURRENT['cpu']
        result['_maxrss_kib'] = rss
        return result

    def profile(self, name, args, expect_changed, top_cum=35, top_tot=20):
        """``python3 -m cProfile`` of one module run: the top lines by cumulative and by own time."""
        self.seq += 1
        base = os.path.join(self.workdir, 'calls', '%04d-%s-profile' % (self.seq, name))
        with open(base + '.args.json', 'w') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
        path = os.path.join(SOURCE['root'], 'plugins', 'modules', '%s.py' % name)
        argv = [self.cell_python, '-m', 'cProfile', '-o', base + '.pstats', path, base + '.args.json']
        with open(base + '.out', 'w') as out, open(base + '.err', 'w') as err:
            wall, rc, _rss = timed_run(self.wrap(argv), out, err, env=self.env, timeout=MODULE_TIMEOUT)
        with open(base + '.out') as handle:
            result = json.loads(handle.read())
        if rc != 0 or result.get('failed') or bool(result.get('changed')) != expect_changed:
            raise BenchError('profiled %s: rc=%d changed=%s failed=%s'
                             % (name, rc, result.get('changed'), result.get('msg')))
        script = ('import pstats, sys; s = pstats.Stats(sys.argv[1]); s.strip_dirs(); '
                  's.sort_stats("cumulative").print_stats(%d); s.sort_stats("tottime").print_stats(%d)'
                  % (top_cum, top_tot))
        text = sh([self.cell_python, '-c', script, base + '.pstats']).stdout
        lines = [line.rstrip() for line in text.splitlines()
                 if line.strip() and '.pstats' not in line and 'List reduced' not in line]
        return {'wall_s': rnd(wall), 'lines': lines}

    # -- facts read from the namespace ---------------------------------------------
    def nft_json(self, what):
        proc = self.nsrun(['nft', '-j', 'list'] + what.split(), check=False)
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout).get('nftables', [])

    def map_elements(self, name):
        objs = self.nft_json('map inet pic_connectivity %s' % name)
        if objs is None:
            return None
        for obj in objs:
            if 'map' in obj:
                return obj['map'].get('elem', [])
        return None

    def counts(self):
        table = self.nft_json('table inet pic_connectivity') or []
        ruleset = self.nft_json('ruleset') or []
        rules4 = json.loads(self.nsrun(['ip', '-4', '-j', 'rule', 'show']).stdout or '[]')
        rules6 = json.loads(self.nsrun(['ip', '-6', '-j', 'rule', 'show']).stdout or '[]')
        peer4 = self.map_elements('peer4')
        peer6 = self.map_elements('peer6')
        return {
            'nft_rules_table': sum(1 for o in table if 'rule' in o),
            'nft_rules_ruleset': sum(1 for o in ruleset if 'rule' in o),
            'nft_chains_table': sum(1 for o in table if 'chain' in o),
            'ip_rules_v4': len(rules4),
            'ip_rules_v6': len(rules6),
            'ip_rules_total': len(rules4) + len(rules6),
            'peer4_elements': len(peer4 or []),
            'peer6_elements': len(peer6 or []),
        }


# ---------------------------------------------------------------- helpers

def wg_keypair():
    priv = sh(['wg', 'genkey']).stdout.strip()
    pub = sh(['wg', 'pubkey'], input=priv + '\n').stdout.strip()
    return priv, pub


def make_peers(n):
    """p0..pN-1: one /32 and one /128 each, round-robin over c1..c10, every third fail-open."""
    base4 = int(PEER_NET4.network_address)
    base6 = int(PEER_NET6.network_address)
    peers = []
    for i in range(n):
        off = i + 2   # .0 is the network, .1 is the cell's own wg0 address
        item = {'peer': 'p%d' % i,
                'address': ['%s/32' % ipaddress.IPv4Address(base4 + off),
                            '%s/128' % ipaddress.IPv6Address(base6 + off)],
                'connection': 'c%d' % (i % NCONN + 1)}
        if i % 3 == 0:
            item['fail_open'] = True
        peers.append(item)
    return peers


def elem_key(elem):
    val = elem[0] if isinstance(elem, list) else elem
    if isinstance(val, dict) and 'elem' in val:
        val = val['elem'].get('val')
    if isinstance(val, dict) and 'prefix' in val:
        return '%s/%s' % (val['prefix']['addr'], val['prefix']['len'])
    return str(val)


def elem_verdict(elem):
    data = elem[1] if isinstance(elem, list) else None
    if isinstance(data, dict):
        for kind in ('jump', 'goto'):
            if kind in data:
                return '%s %s' % (kind, data[kind]['target'])
    return json.dumps(data)


def find_tools(args):
    """The controller python (with ansible-core), ansible-playbook and the cell python."""
    tools = find_controller()
    tools['cell_python'] = os.environ.get('PIC_BENCH_CELL_PYTHON', '/usr/bin/python3')
    return tools


def ensure_packages():
    missing = [t for t in ('ip', 'nft', 'wg') if not shutil.which(t)]
    if missing:
        raise BenchError('missing on this machine: %s (Debian: iproute2 nftables wireguard-tools; '
                         'make deps installs them)' % ', '.join(missing))
    if not shutil.which('iptables') or not shutil.which('ip6tables'):
        log('iptables is missing (needed by the naive approach): apt-get install iptables')
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        cmd = ['apt-get', 'install', '-y', '--no-install-recommends', 'iptables']
        if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
            sh(['apt-get', 'update'], env=env)
            sh(cmd, env=env)


def machine_info(tools):
    cpu = ''
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except IOError:
        pass
    mem = ''
    try:
        with open('/proc/meminfo') as handle:
            mem = '%.1f GiB' % (int(handle.readline().split()[1]) / 1048576.0)
    except (IOError, ValueError, IndexError):
        pass
    if SOURCE['ref']:
        commit = sh(['git', '-C', REPO, 'rev-parse', '--short', SOURCE['ref']]).stdout.strip()
        dirty = ''      # an export of the commit: nothing else in it
    else:
        commit = sh(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'], check=False).stdout.strip() or 'unknown'
        dirty = sh(['git', '-C', REPO, 'status', '--porcelain', '--untracked-files=no', '--', 'plugins'],
                   check=False).stdout.strip()
    cell_py = sh([tools['cell_python'], '-c', 'import sys; print(sys.version.split()[0])']).stdout.strip()
    pyroute2 = sh([tools['cell_python'], '-c', 'from importlib.metadata import version as v; print(v("pyroute2"))'],
                  check=False).stdout.strip() or 'unknown'
    nft = sh(['nft', '--version'], check=False).stdout.strip()
    iptables = sh(['iptables', '--version'], check=False).stdout.strip()
    return {
        'nproc': os.cpu_count(), 'cpu': cpu, 'memory': mem, 'kernel': platform.release(),
        'os': _os_release(), 'cell_python': '%s (%s)' % (cell_py, tools['cell_python']),
        'controller_python': '%s (%s)' % (tools['controller_python_version'], tools['controller_python']),
        'ansible_core': tools['ansible_core'], 'pyroute2': pyroute2, 'nftables': nft, 'iptables': iptables,
        'wireguard': 'kernel' if os.path.isdir('/sys/module/wireguard') else 'wireguard-go (no kernel module)',
        'git_commit': commit, 'git_tracked_changes': bool(dirty),
        'measured': ('git archive %s (%s)' % (SOURCE['ref'], commit)) if SOURCE['ref'] else 'working tree',
        'loadavg_at_start': round(os.getloadavg()[0], 2),
    }


def _os_release():
    try:
        with open('/etc/os-release') as handle:
            for line in handle:
                if line.startswith('PRETTY_NAME='):
                    return line.split('=', 1)[1].strip().strip('"')
    except IOError:
        pass
    return platform.platform()


# ---------------------------------------------------------------- the collection

def create_connections(cell):
    times = []
    for k in range(1, NCONN + 1):
        priv, _pub = wg_keypair()
        _spriv, server_pub = wg_keypair()
        args = {'state_dir': cell.state_dir, 'name': 'c%d' % k, 'type': 'wireguard_ext',
                'config': {'private_key': priv,
                           'address': ['10.200.0.%d/32' % k, 'fd00:200::%x/128' % k],
                           'peer_public_key': server_pub,
                           'endpoint': '203.0.113.%d:51820' % (200 + k - 1),
                           'allowed_ips': ['0.0.0.0/0', '::/0']}}
        res = cell.module('pic_connection', args, expect_changed=True, label='create c%d' % k)
        times.append(res['_wall'])
        iface = res['connection']['interface']
        if iface != 'pic-c%d' % k:
            raise BenchError('connection c%d got interface %r, expected pic-c%d' % (k, iface, k))
    links = json.loads(cell.nsrun(['ip', '-j', 'link', 'show']).stdout)
    names = sorted(link['ifname'] for link in links)
    missing = ['pic-c%d' % k for k in range(1, NCONN + 1) if 'pic-c%d' % k not in names]
    if missing:
        raise BenchError('exit interfaces missing after pic_connection: %s' % missing)
    log('%d wireguard_ext connections up (%s); pic_connection median %s s'
        % (NCONN, ', '.join(n for n in names if n.startswith('pic-')), rnd(med(times))))
    return {'count': NCONN, 'module_s': [rnd(t) for t in times], 'median_s': rnd(med(times))}


def reset_peers(cell, snapshot):
    """Back to "connections, no peers": the registry as it was after the connections were
    created, and a run that converges the data plane to it (empty peer maps)."""
    shutil.copy2(snapshot, os.path.join(cell.state_dir, 'registry.json'))
    cell.module('pic_peer_exit', {'state_dir': cell.state_dir, 'peers': []}, label='reset')
    left = cell.map_elements('peer4')
    if left:
        raise BenchError('reset: nft map peer4 still holds %d elements' % len(left))


def bench_size(cell, snapshot, n, repeat):
    peers = make_peers(n)
    args = {'state_dir': cell.state_dir, 'peers': peers}
    out = {'peers': n, 'connections': NCONN, 'loadavg_at_start': round(os.getloadavg()[0], 2)}

    first = []
    for r in range(repeat):
        reset_peers(cell, snapshot)
        res = cell.module('pic_peer_exit', args, expect_changed=True, label='first apply N=%d #%d' % (n, r + 1))
        if len(res['changed_peers']) != n:
            raise BenchError('first apply N=%d: %d changed peers reported' % (n, len(res['changed_peers'])))
        peer4 = cell.map_elements('peer4') or []
        peer6 = cell.map_elements('peer6') or []
        if len(peer4) != n or len(peer6) != n:
            raise BenchError('first apply N=%d: nft maps hold %d (peer4) and %d (peer6) elements, expected %d'
                             % (n, len(peer4), len(peer6), n))
        first.append(res)
        log('N=%d first apply #%d: %.3f s, peak RSS %d MiB, peer4=%d peer6=%d, changes=%s'
            % (n, r + 1, res['_wall'], res['_maxrss_kib'] // 1024, len(peer4), len(peer6), res['changes']))
    counts = cell.counts()

    noop = []
    for r in range(repeat):
        res = cell.module('pic_peer_exit', args, expect_changed=False, label='no-op N=%d #%d' % (n, r + 1))
        if res['changes'] or res['changed_peers']:
            raise BenchError('no-op N=%d reported changes: %s %s' % (n, res['changes'], res['changed_peers'][:5]))
        noop.append(res)
        log('N=%d no-op #%d: %.3f s' % (n, r + 1, res['_wall']))

    one = []
    p0_addr = peers[0]['address'][0].split('/')[0]
    for r in range(repeat):
        target = 'c%d' % ((r + 1) % NCONN + 1)       # p0 starts on c1: c2, c3, c4, ...
        peers[0]['connection'] = target
        res = cell.module('pic_peer_exit', args, expect_changed=True, label='one-peer N=%d #%d' % (n, r + 1))
        if res['changed_peers'] != ['p0']:
            raise BenchError('one-peer change N=%d: changed_peers=%s' % (n, res['changed_peers'][:10]))
        verdicts = dict((elem_key(e), elem_verdict(e)) for e in cell.map_elements('peer4') or [])
        want = 'jump c_%s_open' % target      # p0 is fail_open
        if verdicts.get(p0_addr) != want:
            raise BenchError('one-peer change N=%d: peer4[%s] = %r, expected %r'
                             % (n, p0_addr, verdicts.get(p0_addr), want))
        one.append(res)
        log('N=%d one-peer change #%d (p0 -> %s): %.3f s' % (n, r + 1, target, res['_wall']))

    def summary(runs):
        walls = [x['_wall'] for x in runs]
        return {'median_s': rnd(med(walls)), 'min_s': rnd(min(walls)), 'runs_s': [rnd(w) for w in walls],
                'cpu_median_s': rnd(med([x['_cpu'] for x in runs])),
                'peak_rss_mib': rnd(max(x['_maxrss_kib'] for x in runs) / 1024.0, 1)}

    out['first_apply'] = summary(first)
    out['first_apply']['changes'] = first[-1]['changes']
    out['noop'] = summary(noop)
    out['one_peer'] = summary(one)
    out['one_peer']['changes'] = one[-1]['changes']
    out['counts_after_apply'] = counts
    out['registry_bytes'] = os.path.getsize(os.path.join(cell.state_dir, 'registry.json'))
    return out, peers


def profile_size(cell, snapshot, n):
    """cProfile of the first apply, the no-op and a one-peer change at N peers."""
    reset_peers(cell, snapshot)
    peers = make_peers(n)
    pargs = {'state_dir': cell.state_dir, 'peers': peers}
    out = {}
    out['first_apply_%d' % n] = cell.profile('pic_peer_exit', pargs, True)
    out['noop_%d' % n] = cell.profile('pic_peer_exit', pargs, False)
    peers[0]['connection'] = 'c5'
    out['one_peer_%d' % n] = cell.profile('pic_peer_exit', pargs, True)
    log('profiled N=%d: %s' % (n, ', '.join('%s %.2f s' % (k, v['wall_s']) for k, v in sorted(out.items()))))
    return out


# ---------------------------------------------------------------- ansible-playbook

def write_inventory(path, host, wrapper):
    with open(path, 'w') as handle:
        handle.write('all:\n  hosts:\n    %s:\n      ansible_connection: local\n'
                     '      ansible_python_interpreter: %s\n' % (host, wrapper))


def write_wrapper(path, argv_prefix):
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\n# the cell interpreter, inside the benchmark namespace\nexec %s "$@"\n'
                     % ' '.join("'%s'" % a.replace("'", "'\\''") for a in argv_prefix))
    os.chmod(path, 0o755)


def ansible_env(tools, workdir, pylib):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': pylib,        # the working tree, like the direct runs
        'ANSIBLE_LOCAL_TEMP': os.path.join(workdir, 'ansible-local'),
        'ANSIBLE_REMOTE_TEMP': os.path.join(workdir, 'ansible-remote'),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_HOST_KEY_CHECKING': '0',
        'ANSIBLE_STDOUT_CALLBACK': 'default',
    })
    for key in ('PYTHONPATH', 'ANSIBLE_CALLBACKS_ENABLED', 'ANSIBLE_CALLBACK_WHITELIST', 'ANSIBLE_CONFIG'):
        env.pop(key, None)
    return env


_RECAP = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def run_playbook(tools, workdir, pylib, inventory, playbook, extra=None, label=''):
    cmd = [tools['controller_python'], tools['ansible_playbook'], '-i', inventory, playbook]
    if extra:
        cmd += ['-e', '@' + extra]
    logbase = os.path.join(workdir, 'calls', 'playbook-%s' % re.sub(r'[^A-Za-z0-9]+', '-', label))
    with open(logbase + '.out', 'w') as out, open(logbase + '.err', 'w') as err:
        wall, rc, rss = timed_run(cmd, out, err, env=ansible_env(tools, workdir, pylib), cwd=workdir,
                                  timeout=PLAYBOOK_TIMEOUT)
    with open(logbase + '.out') as handle:
        text = handle.read()
    recap = _RECAP.findall(text)
    if rc != 0 or not recap:
        with open(logbase + '.err') as handle:
            err_text = handle.read()
        raise BenchError('ansible-playbook (%s) failed (rc=%d)\n%s\n%s' % (label, rc, text[-4000:], err_text[-2000:]))
    _host, ok, changed, unreachable, failed = recap[-1]
    return {'wall_s': wall, 'rc': rc, 'ok': int(ok), 'changed': int(changed), 'failed': int(failed),
            'unreachable': int(unreachable), 'peak_rss_mib': rss / 1024.0}


def bench_playbook(cell, tools, snapshot, n, repeat_noop=1):
    workdir = cell.workdir
    wrapper = os.path.join(workdir, 'cell-python')
    write_wrapper(wrapper, cell.wrap([cell.cell_python]))
    inventory = os.path.join(workdir, 'inventory-cell.yml')
    write_inventory(inventory, CELL_NS, wrapper)
    playbook = os.path.join(workdir, 'bulk.yml')
    with open(playbook, 'w') as handle:
        handle.write('- name: Bulk form, all peers in one task\n  hosts: all\n  gather_facts: false\n  tasks:\n'
                     '    - name: Assign the exits of all peers\n      pic.connectivity.pic_peer_exit:\n'
                     '        state_dir: "{{ bench_state_dir }}"\n        peers: "{{ bench_peers }}"\n')
    extra = os.path.join(workdir, 'bulk-vars-%d.json' % n)
    with open(extra, 'w') as handle:
        json.dump({'bench_state_dir': cell.state_dir, 'bench_peers': make_peers(n)}, handle)
    reset_peers(cell, snapshot)
    first = run_playbook(tools, workdir, cell.pylib, inventory, playbook, extra, 'bulk-first-%d' % n)
    if first['changed'] != 1 or first['failed']:
        raise BenchError('ansible-playbook first apply N=%d: recap %s' % (n, first))
    got = len(cell.map_elements('peer4') or [])
    if got != n:
        raise BenchError('ansible-playbook first apply N=%d: peer4 holds %d elements' % (n, got))
    log('N=%d ansible-playbook first apply: %.3f s (recap changed=%d)' % (n, first['wall_s'], first['changed']))
    noops = []
    for r in range(repeat_noop):
        noop = run_playbook(tools, workdir, cell.pylib, inventory, playbook, extra, 'bulk-noop-%d-%d' % (n, r))
        if noop['changed'] != 0 or noop['failed']:
            raise BenchError('ansible-playbook no-op N=%d: recap %s' % (n, noop))
        noops.append(noop)
        log('N=%d ansible-playbook no-op: %.3f s (recap changed=0)' % (n, noop['wall_s']))
    return {'peers': n, 'first_apply_s': rnd(first['wall_s']), 'noop_s': rnd(med([x['wall_s'] for x in noops])),
            'noop_runs_s': [rnd(x['wall_s']) for x in noops], 'first_apply_peak_rss_mib': rnd(first['peak_rss_mib'], 1),
            'playbook': 'one task: pic.connectivity.pic_peer_exit with peers: "{{ bench_peers }}" (%d items, '
                        'passed with -e @file)' % n}


def naive_commands(peer):
    """What a hand-written setup runs for one peer: a source rule per address, and for a
    fail-closed peer a FORWARD drop for anything not leaving through its exit."""
    k = int(peer['connection'][1:])
    table = TABLE_BASE + k
    i = int(peer['peer'][1:])
    prio = NAIVE_PRIORITY_BASE + i
    a4 = peer['address'][0].split('/')[0]
    a6 = peer['address'][1].split('/')[0]
    cmds = ['ip rule add from %s lookup %d priority %d' % (a4, table, prio),
            'ip -6 rule add from %s lookup %d priority %d' % (a6, table, prio)]
    if not peer.get('fail_open'):
        cmds += ['iptables -I FORWARD -s %s ! -o pic-c%d -j DROP' % (a4, k),
                 'ip6tables -I FORWARD -s %s ! -o pic-c%d -j DROP' % (a6, k)]
    return cmds


def write_naive_playbook(path, peers, mode):
    lines = ['- name: Naive exits (%s)' % ('one task per peer' if mode == 'peer' else 'one task per command'),
             '  hosts: all', '  gather_facts: false', '  tasks:']
    for peer in peers:
        cmds = naive_commands(peer)
        if mode == 'peer':
            lines.append('    - name: Exit of %s (%s)' % (peer['peer'], peer['connection']))
            lines.append('      ansible.builtin.shell: |')
            lines.append('        set -e')
            lines.extend('        ' + c for c in cmds)
        else:
            for j, cmd in enumerate(cmds):
                lines.append('    - name: Exit of %s, step %d' % (peer['peer'], j + 1))
                lines.append('      ansible.builtin.command: %s' % cmd)
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')
    return sum(1 for line in lines if line.startswith('    - name:'))


def bench_naive(tools, workdir, pylib, cell_python, n, mode):
    ns_create(NAIVE_NS)
    try:
        wrapper = os.path.join(workdir, 'naive-python')
        write_wrapper(wrapper, ['ip', 'netns', 'exec', NAIVE_NS, cell_python])
        inventory = os.path.join(workdir, 'inventory-naive.yml')
        write_inventory(inventory, NAIVE_NS, wrapper)
        peers = make_peers(n)
        playbook = os.path.join(workdir, 'naive-%s-%d.yml' % (mode, n))
        ntasks = write_naive_playbook(playbook, peers, mode)
        ncmds = sum(len(naive_commands(p)) for p in peers)
        log('naive (%s) N=%d: %d tasks, %d commands; running ansible-playbook ...' % (mode, n, ntasks, ncmds))
        res = run_playbook(tools, workdir, pylib, inventory, playbook, None, 'naive-%s-%d' % (mode, n))
        if res['failed'] or res['ok'] != ntasks:
            raise BenchError('naive N=%d: recap %s (expected ok=%d)' % (n, res, ntasks))
        rules4 = json.loads(sh(['ip', '-n', NAIVE_NS, '-4', '-j', 'rule', 'show']).stdout or '[]')
        rules6 = json.loads(sh(['ip', '-n', NAIVE_NS, '-6', '-j', 'rule', 'show']).stdout or '[]')
        ipt4 = sh(['ip', 'netns', 'exec', NAIVE_NS, 'iptables', '-S', 'FORWARD']).stdout.splitlines()
        ipt6 = sh(['ip', 'netns', 'exec', NAIVE_NS, 'ip6tables', '-S', 'FORWARD']).stdout.splitlines()
        want_drop = sum(1 for p in peers if not p.get('fail_open'))
        counts = {'ip_rules_v4': len(rules4), 'ip_rules_v6': len(rules6),
                  'iptables_forward_rules': len([x for x in ipt4 if x.startswith('-A')]),
                  'ip6tables_forward_rules': len([x for x in ipt6 if x.startswith('-A')])}
        if counts['iptables_forward_rules'] != want_drop or counts['ip_rules_v4'] < n:
            raise BenchError('naive N=%d: unexpected rule counts %s' % (n, counts))
        log('naive (%s) N=%d: %.1f s (%.3f s per peer, %.3f s per task); rules: %s'
            % (mode, n, res['wall_s'], res['wall_s'] / n, res['wall_s'] / ntasks, counts))
        return {'peers': n, 'mode': mode, 'tasks': ntasks, 'commands': ncmds, 'wall_s': rnd(res['wall_s'], 2),
                'per_peer_s': rnd(res['wall_s'] / n, 4), 'per_task_s': rnd(res['wall_s'] / ntasks, 4),
                'peak_rss_mib': rnd(res['peak_rss_mib'], 1), 'counts': counts, 'extrapolated': False}
    finally:
        ns_delete(NAIVE_NS)


# ---------------------------------------------------------------- report

def fmt_s(value):
    return benchlib.fmt_s(value, small_digits=3)


def fmt_mb(summary):
    """median (best) of a module measurement"""
    return '%s (%s)' % (fmt_s(summary['median_s']), fmt_s(summary['min_s']))


def naive_for(results, n):
    for item in results['naive']:
        if item['peers'] == n and item['mode'] == 'peer':
            return item
    measured = [x for x in results['naive'] if x['mode'] == 'peer' and not x['extrapolated']]
    if not measured:
        return None
    src = max(measured, key=lambda x: x['peers'])
    return {'peers': n, 'mode': 'peer', 'tasks': n, 'wall_s': rnd(src['per_peer_s'] * n, 1),
            'per_peer_s': src['per_peer_s'], 'extrapolated': True,
            'extrapolated_from': src['peers'],
            'why': 'the naive approach is one task per peer (O(N) tasks); a measured run would take about '
                   '%.0f min' % (src['per_peer_s'] * n / 60.0)}


def size_row(results, size):
    """A row of the main table: one peer count."""
    n = size['peers']
    pb = next((p for p in results['playbook'] if p['peers'] == n), None)
    nv = naive_for(results, n)
    naive_txt = 'n/a'
    ratio = ratio_pb = 'n/a'
    if nv:
        naive_txt = '%s (%.3f s/peer)%s' % (fmt_s(nv['wall_s']), nv['per_peer_s'],
                                            ' **extrapolated**' if nv['extrapolated'] else '')
        ratio = '%.0f x' % (nv['wall_s'] / size['first_apply']['median_s'])
        if pb:
            ratio_pb = '%.0f x' % (nv['wall_s'] / pb['first_apply_s'])
    c = size['counts_after_apply']
    return ('%d' % n, '%d' % size['connections'], fmt_mb(size['first_apply']), fmt_mb(size['noop']),
            fmt_mb(size['one_peer']),
            ('%s / %s' % (fmt_s(pb['first_apply_s']), fmt_s(pb['noop_s']))) if pb else 'not run',
            naive_txt, ratio, ratio_pb, '%.0f MiB' % size['first_apply']['peak_rss_mib'], '%d' % c['nft_rules_table'],
            '%d (v4 %d + v6 %d)' % (c['ip_rules_total'], c['ip_rules_v4'], c['ip_rules_v6']))


def cpu_row(size):
    """A row of the CPU time table: one peer count."""
    c = size['counts_after_apply']
    return ('%d' % size['peers'], fmt_s(size['first_apply']['cpu_median_s']), fmt_s(size['noop']['cpu_median_s']),
            fmt_s(size['one_peer']['cpu_median_s']), '%d / %d' % (c['peer4_elements'], c['peer6_elements']),
            '%.0f KiB' % (size['registry_bytes'] / 1024.0))


def markdown(results):
    rows = table(['peers', 'connections', 'first apply, median (best)', 'no-op re-run', 'one-peer change',
                  'ansible-playbook first / no-op', 'naive, one task per peer', 'naive / first apply',
                  'naive / ansible-playbook', 'peak RSS', 'nft rules', 'ip rules'], 'r' * 12,
                 [size_row(results, size) for size in results['sizes']])
    rows += ['', 'CPU time (user + system) of the module process, medians:', '']
    rows += table(['peers', 'first apply', 'no-op re-run', 'one-peer change', 'nft map elements peer4 / peer6',
                   'registry.json'], 'r' * 6, [cpu_row(size) for size in results['sizes']])
    return '\n'.join(rows) + '\n'


def targets(results):
    size = next((s for s in results['sizes'] if s['peers'] == 1000), None)
    if size is None:
        return {}
    nv = naive_for(results, 1000)
    first = size['first_apply']['median_s']
    noop = size['noop']['median_s']
    out = {
        'first_apply_1000_under_2s': {'value_s': first, 'target_s': TARGETS['first_apply_1000_s'],
                                      'met': first < TARGETS['first_apply_1000_s']},
        'noop_1000_under_0_5s': {'value_s': noop, 'target_s': TARGETS['noop_1000_s'],
                                 'met': noop < TARGETS['noop_1000_s']},
    }
    if nv:
        ratio = nv['wall_s'] / first
        out['speedup_1000_at_least_100x'] = {'value': round(ratio, 1), 'target': TARGETS['speedup_min'],
                                             'met': ratio >= TARGETS['speedup_min'],
                                             'naive_s': nv['wall_s'], 'module_first_apply_s': first}
        pb = next((p for p in results['playbook'] if p['peers'] == 1000), None)
        if pb:
            out['speedup_1000_playbook_vs_playbook'] = {
                'value': round(nv['wall_s'] / pb['first_apply_s'], 1),
                'note': 'informative: both sides through ansible-playbook'}
    return out


# ---------------------------------------------------------------- main

def parse_sizes(text):
    return [int(x) for x in text.split(',') if x.strip()] if text else []


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--sizes', default='1000,10000', help='peer counts for the module (default 1000,10000)')
    parser.add_argument('--naive-sizes', default='1000',
                        help='peer counts for the naive playbook, one task per peer (default 1000); other '
                             'sizes are extrapolated linearly')
    parser.add_argument('--naive-command-sizes', default='100',
                        help='peer counts for the naive variant with one ansible.builtin.command task per '
                             'command (default 100; empty to skip)')
    parser.add_argument('--playbook-sizes', default='1000',
                        help='peer counts also run through ansible-playbook (default 1000)')
    parser.add_argument('--repeat', type=int, default=3, help='runs per measurement, median reported (default 3)')
    parser.add_argument('--profile', action='store_true',
                        help='also cProfile the first apply, the no-op and a one-peer change at every size '
                             '(done for 1,000 peers anyway when it misses a time target)')
    parser.add_argument('--out', default=os.path.join('bench', 'results.json'), help='JSON results')
    parser.add_argument('--ref', help='measure the collection as of this git commit (an export of it in the '
                                      'temporary directory) instead of the working tree')
    parser.add_argument('--nice', type=int, default=0,
                        help='run the benchmark (and so every module and playbook it starts) at this nice '
                             'increment, e.g. -10 on a machine shared with other work (default 0)')
    parser.add_argument('--keep-workdir', action='store_true', help='keep the temporary directory (debugging)')
    args = parser.parse_args()
    for name in ('sizes', 'naive_sizes', 'naive_command_sizes', 'playbook_sizes'):
        setattr(args, name, parse_sizes(getattr(args, name)))
    args.out = args.out if os.path.isabs(args.out) else os.path.join(os.getcwd(), args.out)
    return args


def check_machine():
    ensure_packages()
    if not shutil.which('wireguard-go') and not os.path.isdir('/sys/module/wireguard'):
        raise BenchError('neither kernel WireGuard nor wireguard-go is available')


def make_workdir(args):
    workdir = tempfile.mkdtemp(prefix='picb-')
    if not args.keep_workdir:
        add_cleanup(shutil.rmtree, workdir, True)
    else:
        log('work dir kept: %s' % workdir)
    return workdir


def export_ref(ref, workdir):
    """Measure REF: an export of it in WORKDIR becomes the collection measured."""
    export = os.path.join(workdir, 'collection')
    os.makedirs(export)
    archive = subprocess.run(['git', '-C', REPO, 'archive', '--format=tar', ref], capture_output=True, check=False)
    if archive.returncode != 0:
        raise BenchError('git archive %s: %s' % (ref, archive.stderr.decode(errors='replace').strip()))
    sh(['tar', '-x', '-C', export], input=archive.stdout, text=False)
    SOURCE.update(root=export, ref=ref)
    log('measuring %s (exported to %s)' % (ref, export))


def initial_results(args, tools):
    return {
        'command': ' '.join(['python3', 'bench/run.py'] + sys.argv[1:]),
        'measured': SOURCE['ref'] or 'working tree',
        'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'machine': machine_info(tools),
        'tools': dict((k, v) for k, v in tools.items() if k != 'ansible_pkg'),
        'setup': {'namespace': CELL_NS, 'peer_interface': 'wg0 (veth) 10.64.0.1/10 fd00:64::1/64',
                  'peers': 'pN: one /32 from 10.64.0.0/10 and one /128 from fd00:64::/64, round-robin '
                           'over c1..c10, every third fail_open: true',
                  'connections': '%d wireguard_ext (endpoints 203.0.113.200-209:51820, nothing answers)'
                                 % NCONN,
                  'module_time': 'wall time of `python3 plugins/modules/pic_peer_exit.py args.json` run '
                                 'with the cell interpreter inside the namespace (includes interpreter '
                                 'start-up and `ip netns exec`)',
                  'repeat': args.repeat, 'nice': os.nice(0)},
        'sizes': [], 'playbook': [], 'naive': [],
    }


def startup_floor(cell, repeat):
    """The fixed cost of any module run here: interpreter + ansible.module_utils.basic import."""
    floor = []
    for _r in range(repeat):
        wall, rc, _rss = timed_run(cell.wrap([cell.cell_python, '-c', 'import ansible.module_utils.basic']),
                                   subprocess.DEVNULL, subprocess.DEVNULL, env=cell.env, timeout=MODULE_TIMEOUT)
        if rc != 0:
            raise BenchError('the cell python cannot import ansible.module_utils.basic from %s' % cell.pylib)
        floor.append(wall)
    log('start-up floor (ip netns exec + python + import ansible.module_utils.basic): %.3f s' % med(floor))
    return rnd(med(floor))


def zero_peers_noop(cell, repeat):
    """The fixed cost of a pic_peer_exit run on this cell: no peers at all, nothing to change."""
    cell.module('pic_peer_exit', {'state_dir': cell.state_dir, 'peers': []}, label='zero peers')
    zero = [cell.module('pic_peer_exit', {'state_dir': cell.state_dir, 'peers': []}, expect_changed=False,
                        label='zero peers no-op')['_wall'] for _r in range(repeat)]
    log('no-op with 0 peers (the fixed cost of a run with %d connections): %.3f s' % (NCONN, med(zero)))
    return rnd(med(zero))


def measure_sizes(args, cell, tools, snapshot, results):
    """The module at every size (profiled where asked or where 1,000 peers misses a target), and
    through ansible-playbook at the playbook sizes."""
    for n in args.sizes:
        size, _peers = bench_size(cell, snapshot, n, args.repeat)
        results['sizes'].append(size)
        missed = n == 1000 and (size['first_apply']['median_s'] >= TARGETS['first_apply_1000_s']
                                or size['noop']['median_s'] >= TARGETS['noop_1000_s'])
        if args.profile or missed:
            if missed and not args.profile:
                log('N=1000 misses a time target: profiling it (cProfile)')
            results.setdefault('profile', {}).update(profile_size(cell, snapshot, n))
        if n in args.playbook_sizes:
            results['playbook'].append(bench_playbook(cell, tools, snapshot, n))


def measure_naive(args, cell, tools, workdir, results):
    """The naive playbooks (one task per peer, one per command), extrapolated to the other sizes."""
    for n in args.naive_sizes:
        results['naive'].append(bench_naive(tools, workdir, cell.pylib, tools['cell_python'], n, 'peer'))
    for n in args.naive_command_sizes:
        results['naive'].append(bench_naive(tools, workdir, cell.pylib, tools['cell_python'], n, 'command'))
    for n in args.sizes:
        if not any(x['peers'] == n and x['mode'] == 'peer' for x in results['naive']):
            nv = naive_for(results, n)
            if nv:
                results['naive'].append(nv)


def measure(args, started):
    check_machine()
    tools = find_tools(args)
    workdir = make_workdir(args)
    if args.ref:
        export_ref(args.ref, workdir)
    os.makedirs('/run/wireguard', exist_ok=True)   # mount point for the per-namespace bind mounts
    results = initial_results(args, tools)
    log('machine: %s' % json.dumps(results['machine']))
    ns_create(CELL_NS)
    cell = Cell(CELL_NS, workdir, tools['cell_python'], tools['ansible_pkg'])
    add_cleanup(stop_wireguard_go, cell)
    results['startup_floor_s'] = startup_floor(cell, args.repeat)
    results['connections'] = create_connections(cell)
    snapshot = os.path.join(workdir, 'registry-no-peers.json')
    shutil.copy2(os.path.join(cell.state_dir, 'registry.json'), snapshot)
    results['noop_0_peers_s'] = zero_peers_noop(cell, args.repeat)
    measure_sizes(args, cell, tools, snapshot, results)
    measure_naive(args, cell, tools, workdir, results)
    results['targets'] = targets(results)
    results['markdown'] = markdown(results)
    results['duration_s'] = round(time.time() - started, 1)
    results['machine']['loadavg_at_end'] = round(os.getloadavg()[0], 2)
    return results


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.stderr.write('bench/run.py needs root (network namespaces)\n')
        return 2
    install_cleanup()
    if args.nice:
        os.nice(args.nice)
    started = time.time()
    try:
        results = measure(args, started)
    finally:
        cleanup()
    write_results(args.out, results, indent=1)
    print(report_text(results))
    log('results written to %s (%.0f s in all)' % (args.out, results['duration_s']))
    return 0


def stop_wireguard_go(cell):
    """Stop the wireguard-go processes the modules started (pid files under the state dir)."""
    run_dir = os.path.join(cell.state_dir, 'run')
    if not os.path.isdir(run_dir):
        return
    for name in os.listdir(run_dir):
        if not name.endswith('.pid'):
            continue
        try:
            with open(os.path.join(run_dir, name)) as handle:
                os.kill(int(handle.read().strip()), signal.SIGTERM)
        except (ValueError, OSError):
            pass


def report_text(results):
    m = results['machine']
    lines = ['## pic.connectivity bulk peer benchmark', '',
             'commit %s%s, %s, %d cores (%s), kernel %s, cell python %s, ansible-core %s, %s' % (
                 m['git_commit'], ' (working tree with uncommitted changes in plugins/)'
                 if m['git_tracked_changes'] else '', m['os'],
                 m['nproc'], m['cpu'], m['kernel'], m['cell_python'], m['ansible_core'], m['wireguard']),
             '', 'Command: `%s`' % results['command'], '',
             'Module times: median (best) of %d runs, wall time of the module process; start-up floor %.3f s '
             '(python + import of ansible.module_utils.basic); no-op with 0 peers %.3f s (the fixed cost with %d '
             'connections); load average %.2f at the start, %.2f at the end; nice %d.'
             % (results['setup']['repeat'], results['startup_floor_s'], results['noop_0_peers_s'], NCONN,
                m['loadavg_at_start'], m['loadavg_at_end'], results['setup']['nice']),
             '',
             results['markdown']]
    for item in results['naive']:
        if item['mode'] == 'command':
            lines.append('Naive, one ansible.builtin.command task per command, N=%d: %d tasks, %s (%.3f s per '
                         'peer, %.3f s per task).' % (item['peers'], item['tasks'], fmt_s(item['wall_s']),
                                                      item['per_peer_s'], item['per_task_s']))
    if results['targets']:
        lines.append('')
        lines.append('Targets (1,000 peers):')
        for name, tgt in results['targets'].items():
            if 'met' in tgt:
                lines.append('- %s: %s -> %s' % (name, tgt.get('value_s', tgt.get('value')),
                                                 'met' if tgt['met'] else 'MISSED'))
            else:
                lines.append('- %s: %s (%s)' % (name, tgt['value'], tgt['note']))
    for name, prof in sorted((results.get('profile') or {}).items()):
        lines.append('')
        lines.append('cProfile %s (wall %.3f s under the profiler):' % (name, prof['wall_s']))
        lines.append('```')
        lines.extend(prof['lines'])
        lines.append('```')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.stderr.write('bench failed: %s\n' % exc)
        sys.exit(1)
