"""Fleet benchmark: playbooks/site.yml (and playbooks/rollout.yml) across 20 lab cells.

    python3 bench/fleet.py [--cells 20] [--forks 10] [--cell-counts 1,5,10,20] [--fork-counts 1,5,10,20]
                           [--repeat 1] [--out bench/fleet-results.json] [--keep-lab] [--no-rollout]
                           [--light] [--variants roles,fast] [--scaling-variants fast] [--profile]
                           [--packet-sample N] [--lab-only]

What it does (root, Linux, stdlib only; see "Fleet runs: 20 lab cells" in docs/benchmarks.md):

* brings up its own lab (lab/piclab) of --cells cells, isolated from any other lab on the
  machine: namespaces ``$PICLAB_PREFIX-*`` (default ``picf``), run directory ``$PICLAB_RUN``
  (default ``/run/piclab-fleetbench``); it refuses to start when a lab with that prefix exists;
* writes an inventory of the cells in a temporary directory: every cell has the WireGuard exit
  ``Exit WG`` (a ``wireguard_ext`` connection to the lab's ``wgexit``, from
  ``$PICLAB_RUN/exits/cellK-wgexit.conf``) and its three peers: p1 on the exit (fail-closed),
  p2 on the exit with ``fail_open: true``, p3 on the default gateway;
* times ``ansible-playbook playbooks/site.yml`` (wall time of the whole command, and the CPU time
  of it and everything it waited for): the first converge of the fleet (checked with real
  packets), the no-op fleet run (every cell must report changed=0 in the recap), and a
  one-connection change across the fleet: the exit's tunnel MTU (``MTU =`` in its wg-quick
  config, one inventory variable), which every cell must report as changed and which is then
  checked on every cell's exit interface; the same kind of change rolled out in batches with
  ``playbooks/rollout.yml`` (canary first, health gate, confirmed commit);
* scaling: the no-op run against the number of cells (``--limit``, at --forks) and against the
  number of forks (at --cells cells);
* records the load average before and after every run, the lab's processes and memory;
* --light: light lab cells (``piclab up --light``: no WireGuard peers, no process per cell), for
  100 cells and more; the packets are then checked on a sample of the cells (--packet-sample),
  the converge itself on every cell (the nft map holds the exit's peers, the exit interface is up);
* --variants roles,fast: every measured run (no-op, change, rollout, scaling) once per variant in
  the same benchmark run, ``-e pic_fast_path=false`` for ``roles`` and ``-e pic_fast_path=true`` for
  ``fast``, and the ratio of CPU per cell between them; the first converge runs once, with the
  first variant; --scaling-variants restricts the scaling points to some of them;
* --profile: the CPU per task of every no-op run (bench/callback_plugins/fleet_profile.py);
* --lab-only: bring the lab up, measure its processes and memory, take it down (no playbook);
* prints Markdown tables and writes everything to --out (JSON).

The lab and the temporary directory are removed at the end, on failure and on SIGINT/SIGTERM too
(--keep-lab keeps the lab, to look at it; remove it with
``PICLAB_PREFIX=picf PICLAB_RUN=/run/piclab-fleetbench python3 lab/piclab down``).

Environment (defaults in brackets):
  PICLAB_PREFIX               namespace prefix of the benchmark's lab [picf]
  PICLAB_RUN                  run directory of the benchmark's lab [/run/piclab-fleetbench]
  PIC_BENCH_PYTHON            controller python with ansible-core [the python running this script
                              if it has ansible-core, else the interpreter of the ansible-playbook on
                              PATH, else .venv/bin/python]
  PIC_BENCH_ANSIBLE_PLAYBOOK  ansible-playbook [next to PIC_BENCH_PYTHON, else on PATH]
The collection measured is a copy of the working tree taken at the start (galaxy.yml, meta, plugins,
roles, playbooks), in a temporary collections path.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time

from benchlib import (BenchError, CURRENT, add_cleanup, find_controller, fmt_s, git_commit, git_dirty,
                      install_cleanup, loadavg, logger, sh, table, timed_run, write_results)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PREFIX = 'picf'
DEFAULT_RUN = '/run/piclab-fleetbench'
PLAYBOOK_TIMEOUT = 3600
EXIT_NAME = 'Exit WG'
# The one-connection change: the exit tunnel's MTU, alternating between these values
# (the lab's config has no MTU line: the collection's default is 1420).
CHANGE_MTUS = (1380, 1400)
ROLLOUT_MTUS = (1360, 1340)
# what the snapshot of the collection holds
SNAPSHOT = ('galaxy.yml', 'meta', 'plugins', 'roles', 'playbooks')


log = logger('fleet')


# ---------------------------------------------------------------- the lab

def import_piclab():
    sys.path.insert(0, os.path.join(REPO, 'lab'))
    import piclab   # noqa: E402 (the lab's own module, stdlib only)
    return piclab


def lab_namespaces(prefix):
    out = sh(['ip', 'netns', 'list'], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + '-')]


def lab_memory(prefix):
    """Processes in the lab's namespaces and the sum of their resident memory (MiB)."""
    pids = set()
    for name in lab_namespaces(prefix):
        pids.update(int(p) for p in sh(['ip', 'netns', 'pids', name], check=False).stdout.split() if p.isdigit())
    rss_kib = 0
    by_name = {}
    for pid in pids:
        try:
            with open('/proc/%d/status' % pid) as handle:
                fields = dict(line.split(':', 1) for line in handle if ':' in line)
        except (IOError, OSError):
            continue
        kib = int(fields.get('VmRSS', '0 kB').split()[0] or 0)
        rss_kib += kib
        comm = fields.get('Name', '?').strip()
        by_name[comm] = by_name.get(comm, 0) + 1
    return {'processes': len(pids), 'rss_mib': round(rss_kib / 1024.0, 1), 'by_name': by_name,
            'namespaces': len(lab_namespaces(prefix))}


def mem_available_mib():
    with open('/proc/meminfo') as handle:
        for line in handle:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) / 1024.0
    return 0.0


def wait_for(func, timeout, step=0.3):
    end = time.monotonic() + timeout
    while True:
        value = func()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


def exit_interface(piclab, cell):
    """The exit's interface name in CELL, from the cell's registry."""
    path = os.path.join(piclab.state_dir(cell), 'registry.json')
    with open(path) as handle:
        doc = json.load(handle)
    conns = doc.get('connections', {})
    items = conns.values() if isinstance(conns, dict) else conns
    for conn in items:
        if conn.get('name') == EXIT_NAME:
            return conn.get('interface')
    raise BenchError('%s: no connection %r in %s' % (cell, EXIT_NAME, path))


def link_mtu(piclab, cell, ifname):
    out = sh(['ip', '-n', piclab.ns(cell), '-j', 'link', 'show', 'dev', ifname]).stdout
    return json.loads(out)[0]['mtu']


def check_mtu(piclab, cells, mtu):
    bad = {}
    for cell in cells:
        got = link_mtu(piclab, cell, exit_interface(piclab, cell))
        if got != mtu:
            bad[cell] = got
    if bad:
        raise BenchError('exit MTU should be %d on every cell; differs on %s' % (mtu, bad))


def check_paths(piclab, cells, timeout=20):
    """Real packets: p1 and p2 leave through the exit, p3 through the cell's own WAN."""
    exit4 = piclab.exit_address(4)
    bad = []
    for cell in cells:
        for peer, want in (('p1', exit4), ('p2', exit4), ('p3', piclab.wan_address(cell, 4))):
            got = wait_for(lambda: piclab.fetch(peer, 4, cell) == want and want, timeout)
            if not got:
                bad.append('%s-%s: seen as %r, expected %s' % (cell, peer, piclab.fetch(peer, 4, cell), want))
    if bad:
        raise BenchError('traffic check failed: ' + '; '.join(bad))


def link_up(piclab, cell, ifname):
    out = sh(['ip', '-n', piclab.ns(cell), '-j', 'link', 'show', 'dev', ifname], check=False).stdout
    try:
        flags = json.loads(out)[0].get('flags', [])
    except (ValueError, IndexError):
        return False
    return 'UP' in flags


def check_converged(piclab, cells):
    """On every cell: the nft maps peer4/peer6 hold the exit's peers (p1, p2) and the exit
    interface is up (what the packets prove on the sampled cells, without sending any)."""
    bad = []
    for cell in cells:
        maps = ''.join(sh(['ip', 'netns', 'exec', piclab.ns(cell), 'nft', 'list', 'map', 'inet',
                           'pic_connectivity', name], check=False).stdout for name in ('peer4', 'peer6'))
        missing = [a for p in ('p1', 'p2') for a in (piclab.peer_address(p, 4), piclab.peer_address(p, 6))
                   if a not in maps]
        ifname = exit_interface(piclab, cell)
        if missing or not link_up(piclab, cell, ifname):
            bad.append('%s: map lacks %s, %s %s' % (cell, missing, ifname, 'up' if link_up(piclab, cell, ifname)
                                                    else 'not up'))
    if bad:
        raise BenchError('converge check failed: ' + '; '.join(bad))


def packet_sample(cells, size):
    """SIZE cells spread evenly over CELLS (the first and the last among them); all if SIZE is 0."""
    if not size or size >= len(cells):
        return list(cells)
    if size == 1:
        return [cells[0]]
    step = (len(cells) - 1) / float(size - 1)
    return sorted(set(cells[int(round(i * step))] for i in range(size)), key=cells.index)


# ---------------------------------------------------------------- inventory

GROUP_VARS = """---
# Generated by bench/fleet.py: the lab cells of PICLAB_RUN, reached as in lab/fleet.
piclab_run: "{{ lookup('ansible.builtin.env', 'PICLAB_RUN', default='/run/piclab') }}"
ansible_connection: local
ansible_become: false
ansible_python_interpreter: "{{ piclab_run }}/bin/python-{{ inventory_hostname }}"
pic_state_dir: "{{ piclab_run }}/nodes/{{ inventory_hostname }}/state"
pic_peer_interface: wg0
pic_lib_dir: "{{ piclab_run }}/nodes/{{ inventory_hostname }}/lib"
pic_entry_point: "{{ piclab_run }}/nodes/{{ inventory_hostname }}/bin/pic-connectivity"
pic_purge_peers: true

# The fleet-wide setting the one-connection change edits: the exit tunnel's MTU
# (null: the config as the provider hands it out, no MTU line, 1420).
fleetbench_exit_mtu: %(mtu)s
fleetbench_newline: "\\n"
"""

HOST_VARS = """---
pic_connections:
  - name: %(exit)s
    type: wireguard_ext
    config:
      wg_config: >-
        {{ lookup('ansible.builtin.file', piclab_run ~ '/exits/' ~ inventory_hostname ~ '-wgexit.conf')
           | replace('[Interface]', '[Interface]' ~ fleetbench_newline ~ 'MTU = ' ~ fleetbench_exit_mtu)
           if fleetbench_exit_mtu else
           lookup('ansible.builtin.file', piclab_run ~ '/exits/' ~ inventory_hostname ~ '-wgexit.conf') }}
      health_target: 10.200.0.1

pic_peers:
  - name: p1
    address: [10.0.0.11/32, fd00:10::11/128]
    connection: %(exit)s
  - name: p2
    address: [10.0.0.12/32, fd00:10::12/128]
    connection: %(exit)s
    fail_open: true
  - name: p3
    address: [10.0.0.13/32, fd00:10::13/128]
    connection: default
"""


def write_inventory(invdir, ncells, mtu=None, service_manager=None):
    """The fleet's inventory; ``service_manager``: pic_service_manager for every cell (light
    cells: ``none``, no supervisord and no monitor per cell, as they run no process)."""
    os.makedirs(os.path.join(invdir, 'group_vars'), exist_ok=True)
    os.makedirs(os.path.join(invdir, 'host_vars'), exist_ok=True)
    with open(os.path.join(invdir, 'hosts.yml'), 'w') as handle:
        handle.write('---\npic_cells:\n  hosts:\n' + ''.join('    cell%d:\n' % k for k in range(1, ncells + 1)))
    with open(os.path.join(invdir, 'group_vars', 'pic_cells.yml'), 'w') as handle:
        handle.write(GROUP_VARS % {'mtu': 'null' if mtu is None else int(mtu)})
        if service_manager:
            handle.write('pic_service_manager: %s\n' % service_manager)
    for k in range(1, ncells + 1):
        with open(os.path.join(invdir, 'host_vars', 'cell%d.yml' % k), 'w') as handle:
            handle.write(HOST_VARS % {'exit': EXIT_NAME})
    return os.path.join(invdir, 'hosts.yml')


def set_exit_mtu(invdir, mtu):
    """The operator's edit: one line of group_vars."""
    path = os.path.join(invdir, 'group_vars', 'pic_cells.yml')
    with open(path) as handle:
        text = handle.read()
    text, n = re.subn(r'(?m)^fleetbench_exit_mtu: .*$', 'fleetbench_exit_mtu: %d' % mtu, text)
    if n != 1:
        raise BenchError('could not set the MTU in %s' % path)
    with open(path, 'w') as handle:
        handle.write(text)


# ---------------------------------------------------------------- ansible-playbook

_RECAP = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)'
                    r'\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)', re.M)


VARIANT_VARS = {'roles': 'pic_fast_path=false', 'fast': 'pic_fast_path=true'}
PROFILE_PLUGINS = os.path.join(REPO, 'bench', 'callback_plugins')


def read_profile(path):
    """The fleet_profile callback's JSON (None if it wrote none)."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def snapshot(root, ref=None):
    """Copy the collection (SNAPSHOT) into ROOT: from the working tree, or from git REF."""
    if ref:
        parts = [p for p in SNAPSHOT if sh(['git', '-C', REPO, 'cat-file', '-e', '%s:%s' % (ref, p)],
                                           check=False).returncode == 0]
        archive = sh(['git', '-C', REPO, 'archive', '--format=tar', ref] + parts, text=False).stdout
        sh(['tar', '-x', '-C', root], input=archive, text=False)
        return
    for part in SNAPSHOT:
        src = os.path.join(REPO, part)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(root, part), ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(root, part))


class Runner(object):
    def __init__(self, tools, workdir, inventory, cells, profile=False, ref=None, site_fast_override=False):
        self.profile = profile
        self.site_fast_override = site_fast_override
        self.tools = tools
        self.workdir = workdir
        self.inventory = inventory
        self.cells = cells
        self.seq = 0
        # a snapshot of the working tree, taken once: edits made while the benchmark runs (other
        # work on the same checkout) must not turn a no-op run into a change
        self.root = os.path.join(workdir, 'collections', 'ansible_collections', 'pic', 'connectivity')
        os.makedirs(self.root)
        snapshot(self.root, ref)
        os.makedirs(os.path.join(workdir, 'logs'), exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            'ANSIBLE_COLLECTIONS_PATH': os.path.join(workdir, 'collections'),   # the snapshot
            'ANSIBLE_LOCAL_TEMP': os.path.join(workdir, 'ansible-local'),
            'ANSIBLE_REMOTE_TEMP': os.path.join(workdir, 'ansible-remote'),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_FORCE_COLOR': '0',
            'ANSIBLE_RETRY_FILES_ENABLED': '0',
            'ANSIBLE_STDOUT_CALLBACK': 'default',
        })
        for key in ('PYTHONPATH', 'ANSIBLE_CALLBACKS_ENABLED', 'ANSIBLE_CALLBACK_WHITELIST', 'ANSIBLE_CONFIG'):
            self.env.pop(key, None)

    def command(self, playbook, forks, hosts, limit, extra, variant):
        cmd = [self.tools['controller_python'], self.tools['ansible_playbook'], '-i', self.inventory,
               os.path.join(self.root, 'playbooks', playbook), '-f', str(forks)] + list(extra)
        if variant:
            cmd += ['-e', VARIANT_VARS[variant]]
            if self.site_fast_override:
                cmd += ['-e', 'pic_site_fast=%s' % ('true' if variant == 'fast' else 'false')]
        if limit:
            cmd += ['--limit', ','.join(hosts)]
        return cmd

    def run_env(self, logbase):
        env = dict(self.env)
        if self.profile:
            env.update({'ANSIBLE_CALLBACK_PLUGINS': PROFILE_PLUGINS, 'ANSIBLE_CALLBACKS_ENABLED': 'fleet_profile',
                        'FLEET_PROFILE_OUT': logbase + '.profile.json'})
        return env

    def run(self, playbook, label, forks, limit=None, expect=None, extra=(), variant=None):
        """One ansible-playbook run. EXPECT: 'changed' (every cell changed), 'unchanged' (changed=0
        on every cell) or None; VARIANT: 'roles' or 'fast' (pic_fast_path) or None (the playbook's
        default). Returns a result dict (wall, CPU, recap, load average)."""
        self.seq += 1
        hosts = self.cells[:limit] if limit else self.cells
        cmd = self.command(playbook, forks, hosts, limit, extra, variant)
        logbase = os.path.join(self.workdir, 'logs', '%02d-%s' % (self.seq, re.sub(r'[^A-Za-z0-9]+', '-', label)))
        load_before = loadavg()
        with open(logbase + '.out', 'w') as out, open(logbase + '.err', 'w') as err:
            wall, rc, _rss = timed_run(cmd, out, err, env=self.run_env(logbase), cwd=self.workdir,
                                       timeout=PLAYBOOK_TIMEOUT, group=True)
        load_after = loadavg()
        with open(logbase + '.out') as handle:
            text = handle.read()
        recap = {m[0]: {'ok': int(m[1]), 'changed': int(m[2]), 'unreachable': int(m[3]), 'failed': int(m[4]),
                        'skipped': int(m[5]), 'rescued': int(m[6])} for m in _RECAP.findall(text)}

        def fail(why):
            with open(logbase + '.err') as handle:
                err_text = handle.read()
            raise BenchError('ansible-playbook %s (%s): %s\n--- stdout (end) ---\n%s\n--- stderr (end) ---\n%s'
                             % (playbook, label, why, text[-5000:], err_text[-2000:]))
        if rc != 0:
            fail('exit code %d' % rc)
        missing = [h for h in hosts if h not in recap]
        if missing:
            fail('no recap line for %s' % ', '.join(missing))
        bad = {h: r for h, r in recap.items() if r['failed'] or r['unreachable']}
        if bad:
            fail('failed or unreachable: %s' % bad)
        changed = {h: recap[h]['changed'] for h in hosts}
        if expect == 'unchanged' and any(changed.values()):
            fail('a no-op run must report changed=0 on every cell; changed: %s'
                 % {h: n for h, n in changed.items() if n})
        if expect == 'changed' and not all(changed.values()):
            fail('every cell must report a change; unchanged: %s' % [h for h, n in changed.items() if not n])
        res = {'label': label, 'playbook': playbook, 'cells': len(hosts), 'forks': forks, 'wall_s': round(wall, 2),
               'cpu_s': round(CURRENT['cpu'], 2), 'per_cell_s': round(wall / len(hosts), 3),
               'cpu_per_cell_s': round(CURRENT['cpu'] / len(hosts), 3), 'variant': variant,
               'profile': read_profile(logbase + '.profile.json') if self.profile else None,
               'changed_total': sum(changed.values()), 'changed_cells': sum(1 for n in changed.values() if n),
               'tasks_ok_per_cell': round(statistics.mean(recap[h]['ok'] for h in hosts), 1),
               'loadavg_before': load_before, 'loadavg_after': load_after, 'log': logbase + '.out'}
        res['_stdout'] = text
        log('%s: %d cell(s), forks %d: %.1f s wall, %.1f s CPU, changed on %d cell(s) (%d in all), '
            'load %.2f -> %.2f' % (label, len(hosts), forks, wall, res['cpu_s'], res['changed_cells'],
                                   res['changed_total'], load_before[0], load_after[0]))
        return res


def summarize(runs):
    walls = [r['wall_s'] for r in runs]
    cpus = [r['cpu_s'] for r in runs]
    return {'runs': [{k: v for k, v in r.items() if not k.startswith('_')} for r in runs],
            'cells': runs[0]['cells'], 'forks': runs[0]['forks'],
            'median_s': round(statistics.median(walls), 2), 'min_s': round(min(walls), 2),
            'cpu_median_s': round(statistics.median(cpus), 2),
            'per_cell_s': round(statistics.median(walls) / runs[0]['cells'], 3),
            'cpu_per_cell_s': round(statistics.median(cpus) / runs[0]['cells'], 3),
            'variant': runs[0].get('variant'), 'profile': runs[0].get('profile'),
            'loadavg_before': [r['loadavg_before'][0] for r in runs],
            'loadavg_after': [r['loadavg_after'][0] for r in runs],
            'tasks_ok_per_cell': runs[0]['tasks_ok_per_cell'],
            'changed_cells': [r['changed_cells'] for r in runs]}


# ---------------------------------------------------------------- report

def fmt_load(summary):
    return ', '.join('%.2f-%.2f' % (a, b) for a, b in zip(summary['loadavg_before'], summary['loadavg_after']))


def fmt_wall(summary):
    if len(summary['runs']) == 1:
        return fmt_s(summary['median_s'])
    return '%s (%s)' % (fmt_s(summary['median_s']), fmt_s(summary['min_s']))


def run_key(key, variant):
    """Where a run's summary is kept in results['runs']: KEY, or KEY@VARIANT."""
    return '%s@%s' % (key, variant) if variant else key


def run_variants(results):
    return results['settings'].get('variants') or [None]


def runs_table(results):
    labels = [('first_converge', 'first converge (`site.yml`)'),
              ('noop', 'no-op fleet run (`site.yml`)'),
              ('change', 'one-connection change: exit MTU (`site.yml`)'),
              ('rollout_change', 'one-connection change: exit MTU (`rollout.yml`, batches %s)'
               % results['settings'].get('rollout_batches_text', ''))]
    rows = []
    for key, text in labels:
        for variant in run_variants(results):
            s = results['runs'].get(run_key(key, variant))
            if s:
                rows.append((text + (' [%s]' % s['variant'] if s.get('variant') else ''), '%d' % s['cells'],
                             '%d' % s['forks'], fmt_wall(s), fmt_s(s['per_cell_s']), fmt_s(s['cpu_median_s']),
                             fmt_s(s['cpu_per_cell_s']), '/'.join(str(n) for n in s['changed_cells']),
                             s['tasks_ok_per_cell'], fmt_load(s)))
    return table(['run', 'cells', 'forks', 'wall time', 'wall per cell', 'CPU time', 'CPU per cell', 'cells changed',
                  'tasks ok per cell', 'load average (1 min) before-after'], 'lrrrrrrrrl', rows) + ['']


def ratio_table(results):
    """CPU per cell of each run, variant against variant (roles, else the first variant, over the others)."""
    variants = results['settings'].get('variants') or []
    if len(variants) < 2:
        return []
    base = 'roles' if 'roles' in variants else variants[0]
    rows = []
    for key in ('noop', 'change', 'rollout_change'):
        for other in [v for v in variants if v != base]:
            a, b = results['runs'].get(run_key(key, base)), results['runs'].get(run_key(key, other))
            if a and b and b['cpu_per_cell_s']:
                rows.append((key, '%d' % a['cells'], fmt_s(a['cpu_per_cell_s']), fmt_s(b['cpu_per_cell_s']),
                             '%.2fx' % (a['cpu_per_cell_s'] / b['cpu_per_cell_s'])))
    return ['CPU per cell, %s against the other variants (same benchmark run):' % base, ''] + table(
        ['run', 'cells', 'CPU per cell [%s]' % base, 'CPU per cell [other]', 'ratio'], 'lrrrr', rows) + ['']


def scaling_table(results, key, head, col):
    if not results['scaling'].get(key):
        return []
    rows = [('%d' % s[col], s.get('variant') or '-', fmt_wall(s), fmt_s(s['per_cell_s']), fmt_s(s['cpu_median_s']),
             fmt_s(s['cpu_per_cell_s']), fmt_load(s))
            for s in sorted(results['scaling'][key], key=lambda x: (x.get('variant') or '', x[col]))]
    return [head + ':', ''] + table([col, 'variant', 'wall time', 'wall per cell', 'CPU time', 'CPU per cell',
                                     'load average (1 min) before-after'], 'rlrrrrl', rows) + ['']


def linear_fit(points):
    """(intercept, slope) of the least-squares line through POINTS [(x, y)]; None if under 2 x."""
    xs = [x for x, _y in points]
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.mean(xs), statistics.mean(y for _x, y in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def extrapolate(results, target=1000):
    """The no-op run at TARGET cells from the by-cells points of each variant: CPU from a line
    through (cells, CPU), wall as that CPU over the parallelism (CPU / wall) of the largest point."""
    out = []
    by_variant = {}
    for s in results['scaling'].get('by_cells') or []:
        by_variant.setdefault(s.get('variant'), []).append(s)
    for variant, points in sorted(by_variant.items(), key=lambda kv: kv[0] or ''):
        fit = linear_fit([(p['cells'], p['cpu_median_s']) for p in points])
        if not fit:
            continue
        top = max(points, key=lambda p: p['cells'])
        cpu = fit[0] + fit[1] * target
        parallel = top['cpu_median_s'] / top['median_s']
        out.append({'variant': variant, 'cells': target, 'cpu_s': round(cpu, 1), 'cpu_per_cell_s': round(fit[1], 3),
                    'fixed_cpu_s': round(fit[0], 1), 'parallelism': round(parallel, 2),
                    'wall_s': round(cpu / parallel, 1), 'from_cells': sorted(p['cells'] for p in points),
                    'forks': top['forks']})
    return out


def extrapolation_table(results):
    rows = [(e['variant'] or '-', '%d' % e['cells'], '%s (%s per cell + %s)' % (
        fmt_s(e['cpu_s']), fmt_s(e['cpu_per_cell_s']), fmt_s(e['fixed_cpu_s'])), '%.2f' % e['parallelism'],
        '%s (%.1f h)' % (fmt_s(e['wall_s']), e['wall_s'] / 3600.0), ', '.join(str(c) for c in e['from_cells']))
        for e in results.get('extrapolation') or []]
    if not rows:
        return []
    return ['No-op run extrapolated (a line through CPU against cells; wall = CPU / the parallelism of the '
            'largest point, forks %d):' % results['settings']['forks'], ''] + table(
        ['variant', 'cells', 'CPU time', 'parallelism (CPU / wall)', 'wall time', 'from cells'], 'lrrrrl', rows) + ['']


def profile_table(results, top=12):
    """Where the CPU of the fleet's no-op run goes, per task (the first profiled no-op)."""
    for variant in run_variants(results):
        s = results['runs'].get(run_key('noop', variant))
        if s and s.get('profile'):
            break
    else:
        return []
    prof = s['profile']
    tasks = sorted(prof['tasks'], key=lambda t: -(t['main_cpu_s'] + t['workers_cpu_s']))
    total = sum(t['main_cpu_s'] + t['workers_cpu_s'] for t in prof['tasks']) or 1.0
    rows = [('%s (`%s`)' % (t['task'].replace('|', '/'), t['action']), '%d' % (t['ok'] + t['skipped'] + t['failed']),
             '%d' % t['items'], '%d' % t['skipped'], fmt_s(t['workers_cpu_s']), fmt_s(t['main_cpu_s']),
             '%.0f %%' % (100.0 * (t['main_cpu_s'] + t['workers_cpu_s']) / total)) for t in tasks[:top]]
    head = ('Where the CPU of the no-op run goes (%d cells%s, %d tasks; the %d costliest; workers = forked workers '
            'and the modules in the cells, main = the ansible-playbook process; %s workers + %s main in all):'
            % (s['cells'], ' [%s]' % variant if variant else '', len(prof['tasks']), min(top, len(tasks)),
               fmt_s(prof['workers_cpu_s']), fmt_s(prof['main_cpu_s'])))
    return [head, ''] + table(['task', 'host results', 'loop items', 'skipped', 'workers CPU', 'main CPU', 'share'],
                              'lrrrrrr', rows) + ['']


def markdown(results):
    return '\n'.join(
        runs_table(results) + ratio_table(results) +
        scaling_table(results, 'by_cells', 'No-op run against the number of cells (forks %d)'
                      % results['settings']['forks'], 'cells') +
        scaling_table(results, 'by_forks', 'No-op run against forks (%d cells)' % results['settings']['cells'],
                      'forks') + extrapolation_table(results) + profile_table(results))


def lab_line(results, cells):
    lab = results['lab']
    after_up, conv = lab['after_up'], lab.get('after_converge') or {}
    return ('Lab (%s cells): %d cells up in %.1f s; %d namespaces, %d processes, %.0f MiB RSS after up '
            '(MemAvailable %.0f MiB lower; per cell %.2f namespaces, %.2f processes, %.1f MiB)%s.' % (
                'light' if results['settings'].get('light') else 'full', cells, lab['up_s'],
                after_up['namespaces'], after_up['processes'], after_up['rss_mib'],
                after_up['mem_available_drop_mib'], after_up['namespaces'] / float(cells),
                after_up['processes'] / float(cells), after_up['mem_available_drop_mib'] / cells,
                '; after the first converge %d processes, %.0f MiB RSS (MemAvailable %.0f MiB lower)' % (
                    conv['processes'], conv['rss_mib'], conv['mem_available_drop_mib']) if conv else ''))


def print_report(results, args):
    print(results.get('markdown', ''))
    print(lab_line(results, args.cells))
    print('Load average (1, 5, 15 min) at start %s, at end %s; %.0f s in all. Results: %s'
          % (results['machine']['loadavg_at_start'], results['machine'].get('loadavg_at_end'),
             results['duration_s'], args.out))


def parse_counts(text):
    return [int(x) for x in text.split(',') if x.strip()] if text else []


# ---------------------------------------------------------------- the steps

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cells', type=int, default=20, help='cells in the lab and the inventory [20]')
    parser.add_argument('--forks', type=int, default=10,
                        help='forks of the converge, no-op, change and by-cells runs [10]')
    parser.add_argument('--cell-counts', default='1,5,10,20',
                        help='no-op scaling: numbers of cells (--limit), at --forks; empty to skip [1,5,10,20]')
    parser.add_argument('--fork-counts', default='1,5,10,20',
                        help='no-op scaling: forks, at --cells cells; empty to skip [1,5,10,20]')
    parser.add_argument('--repeat', type=int, default=1,
                        help='runs of each no-op, change and scaling measurement (median and best) [1]')
    parser.add_argument('--no-rollout', action='store_true', help='skip the rollout.yml change')
    parser.add_argument('--rollout-batches', default='1,2,50%,100%',
                        help='pic_rollout_batches of the rollout run [1,2,50%%,100%%] (the playbook default)')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'fleet-results.json'),
                        help='JSON results [bench/fleet-results.json]')
    parser.add_argument('--keep-lab', action='store_true', help='leave the lab up at the end (not on errors)')
    parser.add_argument('--nice', type=int, default=0,
                        help='run the benchmark and everything it starts at this nice increment')
    add_scale_args(parser)
    args = parser.parse_args()
    args.cell_counts = [n for n in parse_counts(args.cell_counts) if n <= args.cells]
    args.fork_counts = parse_counts(args.fork_counts)
    if not 1 <= args.cells <= 200 or args.forks < 1 or args.repeat < 1 or \
            any(n < 1 for n in args.cell_counts + args.fork_counts):
        parser.error('--cells 1..200, --forks, --repeat and the counts must be positive')
    args.variants = parse_variants(parser, args.variants)
    args.scaling_variants = parse_variants(parser, args.scaling_variants) if args.scaling_variants is not None \
        else args.variants
    if args.packet_sample is None:
        args.packet_sample = 10 if args.light else 0
    return args


def add_scale_args(parser):
    parser.add_argument('--light', action='store_true',
                        help='light lab cells (piclab up --light: no WireGuard peers, no process per cell)')
    parser.add_argument('--variants', default='',
                        help='run every measured run once per variant: roles (-e pic_fast_path=false), fast '
                             '(-e pic_fast_path=true); empty: neither variable [""]')
    parser.add_argument('--scaling-variants', default=None,
                        help='the variants of the scaling points [those of --variants]')
    parser.add_argument('--profile', action='store_true',
                        help='CPU per task of every no-op run (bench/callback_plugins/fleet_profile.py)')
    parser.add_argument('--packet-sample', type=int, default=None,
                        help='cells whose peers send real packets after a converge or change; 0: all '
                             '[all; 10 with --light]')
    parser.add_argument('--collection-ref', default=None,
                        help='measure the collection of this git commit or branch (git archive) instead of the '
                             'working tree')
    parser.add_argument('--no-change', action='store_true', help='skip the one-connection change (site.yml)')
    parser.add_argument('--site-fast-override', action='store_true',
                        help='also pass -e pic_site_fast=true/false with the variants (site.yml\'s own switch; a '
                             'workaround while site.yml compares ansible_run_tags, a tuple under ansible-core 2.19, '
                             'with a list and so never takes the fast path)')
    parser.add_argument('--lab-only', action='store_true',
                        help='bring the lab up, measure its processes and memory, take it down (no playbook)')


def parse_variants(parser, text):
    names = [v.strip() for v in (text or '').split(',') if v.strip()]
    bad = [v for v in names if v not in VARIANT_VARS]
    if bad or len(set(names)) != len(names):
        parser.error('variants are roles and fast, each once; got %r' % text)
    return names


def lab_identity():
    """(prefix, run dir) of the benchmark's own lab, from the environment or the defaults;
    refuses the default lab's and one that exists already."""
    os.environ.setdefault('PICLAB_PREFIX', DEFAULT_PREFIX)
    os.environ.setdefault('PICLAB_RUN', DEFAULT_RUN)
    prefix, rundir = os.environ['PICLAB_PREFIX'], os.path.abspath(os.environ['PICLAB_RUN'])
    os.environ['PICLAB_RUN'] = rundir
    if prefix == 'picl' or rundir == '/run/piclab':
        raise BenchError('PICLAB_PREFIX=picl / PICLAB_RUN=/run/piclab are the default lab\'s: '
                         'the benchmark brings up (and removes) a lab of its own; pick another')
    existing = lab_namespaces(prefix)
    if existing or os.path.exists(rundir):
        raise BenchError('a lab with prefix %s or run dir %s exists (another run?): %d namespace(s). Remove it with '
                         'PICLAB_PREFIX=%s PICLAB_RUN=%s python3 lab/piclab down, or set other values'
                         % (prefix, rundir, len(existing), prefix, rundir))
    return prefix, rundir


def initial_results(args, tools, prefix, rundir):
    with open('/proc/meminfo') as handle:
        memory_mib = int(handle.readline().split()[1]) // 1024
    return {
        'settings': {'cells': args.cells, 'forks': args.forks, 'cell_counts': args.cell_counts,
                     'fork_counts': args.fork_counts, 'repeat': args.repeat, 'rollout': not args.no_rollout,
                     'rollout_batches': args.rollout_batches, 'nice': os.nice(0),
                     'rollout_batches_text': args.rollout_batches,
                     'piclab_prefix': prefix, 'piclab_run': rundir, 'command': ' '.join(sys.argv),
                     'light': args.light, 'variants': args.variants, 'scaling_variants': args.scaling_variants,
                     'packet_sample': args.packet_sample, 'profile': args.profile,
                     'collection_ref': args.collection_ref, 'site_fast_override': args.site_fast_override},
        'machine': {
            'nproc': os.cpu_count(), 'kernel': platform.release(), 'memory_mib': memory_mib,
            'controller_python': '%s (%s)' % (tools['controller_python_version'], tools['controller_python']),
            'ansible_core': tools['ansible_core'],
            'git_commit': git_commit(), 'git_dirty': git_dirty(),
            'collection_commit': git_commit(args.collection_ref) if args.collection_ref else None,
            'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
            'loadavg_at_start': loadavg(),
        },
        'lab': {}, 'runs': {}, 'scaling': {}, 'checks': [],
    }


class FleetBench(object):
    """The benchmark's state between its steps: the lab, the inventory, the runner, the results."""

    def __init__(self, args, piclab, tools, prefix, rundir):
        self.args, self.piclab, self.tools = args, piclab, tools
        self.prefix, self.rundir = prefix, rundir
        self.t_start = time.time()
        self.results = initial_results(args, tools, prefix, rundir)
        self.workdir = tempfile.mkdtemp(prefix='pic-fleetbench-')
        add_cleanup(shutil.rmtree, self.workdir, True)
        self.cells = ['cell%d' % k for k in range(1, args.cells + 1)]
        self.invdir = os.path.join(self.workdir, 'inventory')
        self.runner = None
        self.avail0 = None
        self.measured = {}

    def save(self):
        """The results so far (after every phase: an interrupted run leaves what it measured)."""
        self.results['duration_s'] = round(time.time() - self.t_start, 1)
        write_results(self.args.out, self.results, indent=2)

    def lab_down(self):
        if self.args.keep_lab and self.results.get('_complete'):     # kept only after a complete run
            log('lab kept (--keep-lab): PICLAB_PREFIX=%s PICLAB_RUN=%s python3 lab/piclab down'
                % (self.prefix, self.rundir))
            return
        res = self.piclab.down()
        log('lab removed: %s namespace(s), %s process(es) stopped, %.1f s'
            % (res['namespaces'], res['killed'], res['seconds']))

    def _up_failure_detail(self, exc):
        node = re.search(r'ip -n %s-(\S+) ' % re.escape(self.prefix), str(exc))
        if not node:
            return ''
        node = node.group(1)
        return ' | %s: wireguard-go %s, links %s, log: %s' % (
            node, self.piclab.daemon_pid(node) or 'not running',
            sh(['ip', '-n', self.piclab.ns(node), '-o', 'link'], check=False).stdout.split('\n')[:4],
            self.piclab.tail(os.path.join(self.rundir, 'logs', '%s-wireguard-go.log' % node), 300).splitlines()[-3:])

    def lab_up(self):
        add_cleanup(self.lab_down)
        self.avail0 = mem_available_mib()
        log('bringing up a lab of %d cells (prefix %s, run dir %s) ...' % (self.args.cells, self.prefix, self.rundir))
        t0 = time.perf_counter()
        try:
            up = self.piclab.up(cells=self.args.cells, light=self.args.light)
        except self.piclab.LabError as exc:
            # seen once with 20 cells on a loaded machine: a peer's wg0 missing right after its
            # wireguard-go socket appeared. `up` repairs (restarts dead daemons): log it, try once more.
            detail = self._up_failure_detail(exc)
            log('lab up failed, repairing with a second up: %s%s' % (str(exc).strip(), detail))
            self.results['lab']['up_retry'] = str(exc).strip() + detail
            up = self.piclab.up(cells=self.args.cells, light=self.args.light)
        lab = self.results['lab']
        lab['up_s'] = round(time.perf_counter() - t0, 2)
        time.sleep(2)       # let the lab settle before measuring its memory
        lab['after_up'] = self.lab_memory()
        log('lab of %s cells up in %.1f s (verified: %s): %s'
            % ('light' if up.get('light') else 'full', up['seconds'],
               'v4+v6 fetch from p1 and p3 of every cell' if up.get('light') else
               'handshakes, v4+v6 fetch from every peer', {k: v for k, v in lab['after_up'].items() if k != 'by_name'}))
        inventory = write_inventory(self.invdir, self.args.cells, service_manager='none' if self.args.light else None)
        self.runner = Runner(self.tools, self.workdir, inventory, self.cells,
                             profile=self.args.profile, ref=self.args.collection_ref,
                             site_fast_override=self.args.site_fast_override)

    def lab_memory(self):
        mem = lab_memory(self.prefix)
        mem['mem_available_drop_mib'] = round(self.avail0 - mem_available_mib(), 1)
        return mem

    def variants(self):
        return self.args.variants or [None]

    def noop(self, ncells, forks, label, variant=None):
        key = (ncells, forks, variant)
        if key not in self.measured:
            tag = '-' + variant if variant else ''
            self.measured[key] = summarize([
                self.runner.run('site.yml', '%s%s-%d' % (label, tag, i + 1), forks, variant=variant,
                                limit=ncells if ncells < self.args.cells else None, expect='unchanged')
                for i in range(self.args.repeat)])
        return self.measured[key]

    def check_cells(self, when):
        """The converge on every cell (maps, exit interface), real packets on the sample."""
        check_converged(self.piclab, self.cells)
        sample = packet_sample(self.cells, self.args.packet_sample)
        check_paths(self.piclab, sample)
        self.results['checks'].append(
            '%s: on every cell the nft maps peer4/peer6 hold p1 and p2 and the exit interface is up; on %s: p1 and '
            'p2 leave through the exit, p3 through the cell\'s WAN (HTTP fetch from the peer\'s address)'
            % (when, 'every cell' if len(sample) == len(self.cells) else '%d cells (%s)' % (
                len(sample), ', '.join(sample))))

    def first_converge(self):
        variant = self.variants()[0]
        first = self.runner.run('site.yml', 'first-converge', self.args.forks, expect='changed', variant=variant)
        self.results['runs'][run_key('first_converge', variant)] = summarize([first])
        self.check_cells('after the first converge')
        check_mtu(self.piclab, self.cells, 1420)
        self.results['checks'].append('after the first converge: exit MTU 1420 on every cell')
        self.results['lab']['after_converge'] = self.lab_memory()
        self.save()

    def noop_fleet_run(self):
        for variant in self.variants():
            summary = self.noop(self.args.cells, self.args.forks, 'noop', variant)
            self.results['runs'][run_key('noop', variant)] = summary
            self.save()

    def exit_mtu_change(self):
        """One-connection change: the exit's MTU, across the fleet (MTUs alternate: each run changes)."""
        if self.args.no_change:
            return
        seq = 0
        for variant in self.variants():
            changes = []
            for _i in range(self.args.repeat):
                mtu = CHANGE_MTUS[seq % len(CHANGE_MTUS)]
                seq += 1
                set_exit_mtu(self.invdir, mtu)
                changes.append(self.runner.run('site.yml', 'change-mtu-%d%s' % (mtu, '-' + variant if variant else ''),
                                               self.args.forks, expect='changed', variant=variant))
                check_mtu(self.piclab, self.cells, mtu)
            self.results['runs'][run_key('change', variant)] = summarize(changes)
            self.save()
        self.results['checks'].append('after every MTU change: the exit interface of every cell has the new MTU')
        self.check_cells('after the change')
        self.save()

    def _rollout_once(self, mtu, extra_vars, variant):
        set_exit_mtu(self.invdir, mtu)
        res = self.runner.run('rollout.yml', 'rollout-mtu-%d%s' % (mtu, '-' + variant if variant else ''),
                              self.args.forks, extra=['-e', '@' + extra_vars], variant=variant)
        totals = re.findall(r'\*\*total\*\* \| (\d+) changed, (\d+) rolled back', res['_stdout'])
        if not totals or totals[-1] != (str(self.args.cells), '0'):
            raise BenchError('rollout summary: expected %d changed, 0 rolled back; got %s'
                             % (self.args.cells, totals[-1:] or 'no summary'))
        res['batches'] = len(re.findall(r'^PLAY \[', res['_stdout'], re.M))
        check_mtu(self.piclab, self.cells, mtu)
        return res

    def rollout_change(self):
        """The same change through rollout.yml."""
        if self.args.no_rollout:
            return
        batches = [b.strip() for b in self.args.rollout_batches.split(',') if b.strip()]
        extra_vars = os.path.join(self.workdir, 'rollout-vars.json')
        with open(extra_vars, 'w') as handle:
            json.dump({'pic_rollout_batches': [int(b) if b.isdigit() else b for b in batches]}, handle)
        seq = 0
        for variant in self.variants():
            rollouts = []
            for _i in range(self.args.repeat):
                rollouts.append(self._rollout_once(ROLLOUT_MTUS[seq % len(ROLLOUT_MTUS)], extra_vars, variant))
                seq += 1
            key = run_key('rollout_change', variant)
            self.results['runs'][key] = summarize(rollouts)
            self.results['runs'][key]['batches'] = rollouts[0]['batches']
            self.save()
        self.results['checks'].append('rollout: summary "%d changed, 0 rolled back"; the new MTU on every cell'
                                      % self.args.cells)
        self.check_cells('after the rollout')
        self.save()

    def noop_scaling(self):
        """The no-op run against the number of cells, then against forks (each scaling variant)."""
        self.results['scaling']['by_cells'] = []
        self.results['scaling']['by_forks'] = []
        for variant in self.args.scaling_variants or [None]:
            for n in self.args.cell_counts:
                s = dict(self.noop(n, self.args.forks, 'noop-cells-%d' % n, variant))
                s['cells'] = n
                self.results['scaling']['by_cells'].append(s)
                self.save()
            for f in self.args.fork_counts:
                s = dict(self.noop(self.args.cells, f, 'noop-forks-%d' % f, variant))
                s['forks'] = f
                self.results['scaling']['by_forks'].append(s)
                self.save()

    def finish(self):
        self.results['lab']['at_end'] = lab_memory(self.prefix)
        self.results['machine']['loadavg_at_end'] = loadavg()
        self.results['extrapolation'] = extrapolate(self.results)
        self.results['_complete'] = True
        self.results['markdown'] = markdown(self.results)
        self.save()
        return self.results

    def lab_only(self):
        """--lab-only: the lab's processes and memory after up, then down."""
        self.lab_up()
        self.results['_complete'] = True
        self.results['machine']['loadavg_at_end'] = loadavg()
        self.save()


def main():
    args = parse_args()
    install_cleanup()
    if os.geteuid() != 0:
        raise BenchError('needs root (network namespaces)')
    if args.nice:
        os.nice(args.nice)
    prefix, rundir = lab_identity()
    bench = FleetBench(args, import_piclab(), find_controller(), prefix, rundir)
    if args.lab_only:
        bench.lab_only()
        print_report(bench.results, args)
        return 0
    bench.lab_up()
    bench.first_converge()
    bench.noop_fleet_run()
    bench.exit_mtu_change()
    bench.rollout_change()
    bench.noop_scaling()
    print_report(bench.finish(), args)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as exc:
        log('FAILED: %s' % exc)
        sys.exit(1)
    except KeyboardInterrupt:
        log('interrupted')
        sys.exit(130)
