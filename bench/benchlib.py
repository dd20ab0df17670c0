"""What the benchmarks in bench/ share (stdlib only): their error type, logging, clean-up on exit
and on SIGTERM/SIGHUP, commands, timed runs with CPU accounting, finding the controller's
python and ansible-playbook, and reporting (statistics, Markdown tables, the JSON results file)."""

import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BenchError(Exception):
    pass


_TAG = {'name': 'bench'}


def logger(tag):
    """The log function of a benchmark: ``[TAG HH:MM:SS] message`` on stderr."""
    _TAG['name'] = tag
    return log


def log(msg):
    sys.stderr.write('[%s %s] %s\n' % (_TAG['name'], time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------- clean-up

_CLEANUPS = []
# The process timed_run waits for (killed by cleanup) and the CPU time of the last one.
CURRENT = {'proc': None, 'group': False, 'cpu': 0.0}
_CLEANED = {'done': False}


def add_cleanup(func, *args):
    _CLEANUPS.append((func, args))


def _kill(proc, group):
    try:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)     # e.g. ansible-playbook and its workers
        else:
            os.kill(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def cleanup():
    """Kill the timed process if one runs, then undo what add_cleanup registered, newest first."""
    if _CLEANED['done']:
        return
    _CLEANED['done'] = True
    proc = CURRENT['proc']
    if proc is not None and proc.returncode is None:
        _kill(proc, CURRENT['group'])
        try:
            os.waitpid(proc.pid, 0)
        except OSError:
            pass
    while _CLEANUPS:
        func, args = _CLEANUPS.pop()
        try:
            func(*args)
        except Exception as exc:  # keep cleaning
            log('clean-up step %s failed: %s' % (getattr(func, '__name__', func), exc))


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def install_cleanup():
    """Run cleanup() at exit, and turn SIGTERM/SIGHUP into an exit so that it runs then too."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(cleanup)


# ---------------------------------------------------------------- processes

def sh(args, check=True, **kwargs):
    kwargs.setdefault('capture_output', True)
    kwargs.setdefault('text', True)
    proc = subprocess.run(args, check=False, **kwargs)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or '').strip()[-2000:]
        raise BenchError('%s failed (rc=%d): %s' % (' '.join(args), proc.returncode, detail))
    return proc


def loadavg():
    with open('/proc/loadavg') as handle:
        return [float(x) for x in handle.read().split()[:3]]


def timed_run(args, stdout, stderr, env=None, cwd=None, timeout=3600, group=False):
    """Run ``args``; returns (wall seconds, exit code, peak RSS in KiB of it and its descendants).
    The CPU time (user + system) of it and the descendants it waited for is kept in
    ``CURRENT['cpu']``. With ``group`` it runs in a process group of its own, killed as a whole
    on timeout and by cleanup()."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                            start_new_session=group)
    CURRENT['proc'], CURRENT['group'] = proc, group
    timer = threading.Timer(timeout, _kill, (proc, group))
    timer.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    CURRENT['proc'] = None
    CURRENT['cpu'] = usage.ru_utime + usage.ru_stime
    return wall, proc.returncode, usage.ru_maxrss


# ---------------------------------------------------------------- the controller

def find_controller():
    """The controller python (with ansible-core) and ansible-playbook: ``$PIC_BENCH_PYTHON``, else the
    python running the benchmark if it has ansible-core, else the interpreter of the ansible-playbook
    on PATH, else .venv/bin/python; ``$PIC_BENCH_ANSIBLE_PLAYBOOK``, else the one next to that python,
    else the one on PATH."""
    py = os.environ.get('PIC_BENCH_PYTHON')
    if not py:
        probe = subprocess.run([sys.executable, '-c', 'import ansible'], capture_output=True, check=False)
        if probe.returncode == 0:
            py = sys.executable
        else:
            found = shutil.which('ansible-playbook')
            if found:
                with open(found) as handle:
                    first = handle.readline()
                if first.startswith('#!'):
                    py = first[2:].strip().split()[0]
            elif os.access(os.path.join(REPO, '.venv', 'bin', 'python'), os.X_OK):
                py = os.path.join(REPO, '.venv', 'bin', 'python')    # the venv of `make deps`
    if not py:
        raise BenchError('no python with ansible-core: run this script with the venv python '
                         '(make bench does) or set PIC_BENCH_PYTHON')
    playbook = os.environ.get('PIC_BENCH_ANSIBLE_PLAYBOOK')
    if not playbook:
        near = os.path.join(os.path.dirname(py), 'ansible-playbook')
        playbook = near if os.path.exists(near) else shutil.which('ansible-playbook')
    if not playbook:
        raise BenchError('ansible-playbook not found; set PIC_BENCH_ANSIBLE_PLAYBOOK')
    info = json.loads(sh([py, '-c', 'import ansible, os, sys, json; from ansible.release import __version__ as v; '
                              'print(json.dumps({"pkg": os.path.dirname(ansible.__file__), "version": v, '
                              '"python": sys.version.split()[0]}))']).stdout)
    return {'controller_python': py, 'ansible_playbook': playbook, 'ansible_pkg': info['pkg'],
            'ansible_core': info['version'], 'controller_python_version': info['python']}


# ---------------------------------------------------------------- reporting

def rnd(value, digits=3):
    return None if value is None else round(value, digits)


def med(values):
    return statistics.median(values) if values else None


def summary(values, digits=3):
    """{median, max, min, n} of VALUES (None ones left out), or None if there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {'median': round(statistics.median(values), digits), 'max': round(max(values), digits),
            'min': round(min(values), digits), 'n': len(values)}


def fmt_s(value, small_digits=1):
    """Seconds for a table: 'n/a', '123 s', '12.3 s', or SMALL_DIGITS decimals below 10 s."""
    if value is None:
        return 'n/a'
    if value >= 100:
        return '%.0f s' % value
    if value >= 10:
        return '%.1f s' % value
    return '%.*f s' % (small_digits, value)


def table(header, align, rows):
    """A Markdown table: HEADER cells, ALIGN one of 'l'/'r' per column (or a string of them), ROWS
    of cells (strings). Returns its lines."""
    rule = {'l': '---', 'r': '---:'}
    return (['| %s |' % ' | '.join(header), '|%s|' % '|'.join(rule[a] for a in align)] +
            ['| %s |' % ' | '.join(str(c) for c in row) for row in rows])


def public(results):
    """RESULTS without its private keys (those starting with an underscore)."""
    return {k: v for k, v in results.items() if not k.startswith('_')}


def write_results(path, results, indent=1):
    """Write RESULTS (its public keys) to PATH as sorted JSON with a final newline."""
    with open(path, 'w') as handle:
        json.dump(public(results), handle, indent=indent, sort_keys=True)
        handle.write('\n')


def git_commit(ref='HEAD'):
    """The short commit of REF in this repository ('' if git cannot tell)."""
    return sh(['git', '-C', REPO, 'rev-parse', '--short', ref], check=False).stdout.strip()


def git_dirty(*paths):
    """True if tracked files (under PATHS) have uncommitted changes."""
    args = ['git', '-C', REPO, 'status', '--porcelain', '--untracked-files=no'] + (['--'] + list(paths) if paths else [])
    return bool(sh(args, check=False).stdout.strip())
