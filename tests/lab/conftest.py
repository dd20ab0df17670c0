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

_BASE = os.path.join(tempfile.gettempdir(), 'pic-lab-collections')
_LINK = os.path.join(_BASE, 'ansible_collections', 'pic', 'connectivity')
_LIB = os.path.join(tempfile.gettempdir(), 'pic-lab-lib')


def _link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.islink(path) and os.readlink(path) != target:
        os.unlink(path)
    if not os.path.lexists(path):
        os.symlink(target, path)


_link(_LINK, ROOT)
_link(os.path.join(_LIB, 'pic_connectivity_lib'), os.path.join(ROOT, 'plugins', 'module_utils'))


def ansible_pythonpath():
    import ansible
    return os.pathsep.join([_BASE, os.path.dirname(os.path.dirname(ansible.__file__))])


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

    def sh(self, *cmd, check=True):
        return piclab.run(self.name, *cmd, check=check)

    def cli(self, *args, background=False):
        code = ('import sys; sys.path.insert(0, %r); from pic_connectivity_lib.cli import main; '
                'sys.exit(main(sys.argv[1:]))' % _LIB)
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
