# -*- coding: utf-8 -*-
"""Secrets never logged, nothing saved that the kernel refuses, rollback, and
the write-ahead marker: the collection's modules run as processes in a
throwaway network namespace (no lab needed; root).

The modules run under a small wrapper (test instrumentation only, nothing in
the collection reads it) that records what they send to syslog and the
journal and the argv of every process they start, and can SIGKILL the module
right after it saved the registry or make the apply fail after saving.
"""
import base64
import glob
import json
import os
import signal
import stat
import subprocess
import uuid

import pytest

from conftest import ROOT, ansible_pythonpath

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root (network namespaces)')

WRAPPER = r'''
import json, os, runpy, signal, subprocess, sys, syslog, types
record_path, mode, module_path, args_path = sys.argv[1:5]

def record(kind, *args, **kwargs):
    with open(record_path, 'a') as handle:
        handle.write(json.dumps({'kind': kind, 'args': [repr(a) for a in args],
                                 'kwargs': dict((k, repr(v)) for k, v in kwargs.items())}) + '\n')

syslog.openlog = lambda *a, **k: record('openlog', *a, **k)
syslog.syslog = lambda *a, **k: record('syslog', *a, **k)
import ansible.module_utils.basic as basic
basic.has_journal = True
basic.journal = types.SimpleNamespace(send=lambda *a, **k: record('journal', *a, **k))
_popen_init = subprocess.Popen.__init__
def _popen(self, args, *a, **k):
    record('argv', *(args if isinstance(args, (list, tuple)) else [args]), input=k.get('input'))
    return _popen_init(self, args, *a, **k)
subprocess.Popen.__init__ = _popen
from ansible_collections.pic.connectivity.plugins.module_utils import registry, dataplane, errors
if mode == 'kill-after-save':
    _save = registry.Registry.save
    def save(self, doc):
        _save(self, doc)
        os.kill(os.getpid(), signal.SIGKILL)
    registry.Registry.save = save
elif mode == 'fail-nft-apply':
    def replace(self, script):
        raise errors.PicError('nftables refused the change: injected by the test')
    dataplane.Nft.replace = replace
sys.argv = [module_path, args_path]
runpy.run_path(module_path, run_name='__main__')
'''


def key(i):
    return base64.b64encode(bytes([i]) * 32).decode()


class Netns(object):
    """A throwaway namespace with a peer interface wg0 (one end of a veth pair) (10.0.0.1/24)."""

    def __init__(self, tmp):
        self.name = 'pics-%s' % uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.state_dir = str(tmp / 'state')
        self.wrapper = str(tmp / 'wrapper.py')
        with open(self.wrapper, 'w') as handle:
            handle.write(WRAPPER)
        subprocess.run(['ip', 'netns', 'add', self.name], check=True)
        try:
            self._setup()
        except BaseException:
            subprocess.run(['ip', 'netns', 'del', self.name], check=False)
            raise
        self.calls = 0

    def _setup(self):
        for cmd in (['link', 'set', 'lo', 'up'], ['link', 'add', 'wg0', 'type', 'veth', 'peer', 'name', 'wg0-peer'],
                    ['addr', 'add', '10.0.0.1/24', 'dev', 'wg0'], ['link', 'set', 'wg0', 'up']):
            subprocess.run(['ip', '-n', self.name] + cmd, check=True)

    def close(self):
        for pidfile in glob.glob(os.path.join(self.state_dir, 'run', '*.pid')):
            try:
                os.kill(int(open(pidfile).read().strip()), signal.SIGTERM)
            except (ValueError, OSError):
                pass
        subprocess.run(['ip', 'netns', 'del', self.name], check=False)

    def module(self, name, args, check=False, diff=True, mode='plain'):
        """Run a module; returns (result or None when killed, records, returncode)."""
        self.calls += 1
        payload = dict(args, state_dir=self.state_dir, _ansible_check_mode=check, _ansible_diff=diff)
        args_path = str(self.tmp / ('args%d.json' % self.calls))
        records_path = str(self.tmp / ('records%d.jsonl' % self.calls))
        with open(args_path, 'w') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        env = dict(os.environ, PYTHONPATH=ansible_pythonpath())
        proc = subprocess.run(['ip', 'netns', 'exec', self.name, '/usr/bin/python3',
                               self.wrapper, records_path, mode,
                               os.path.join(ROOT, 'plugins', 'modules', name + '.py'), args_path],
                              capture_output=True, text=True, env=env, timeout=120)
        os.unlink(args_path)
        records = []
        if os.path.exists(records_path):
            with open(records_path) as handle:
                records = [json.loads(line) for line in handle]
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            result = None
        return result, records, proc, proc.returncode

    def nft(self):
        return subprocess.run(['ip', 'netns', 'exec', self.name, 'nft', 'list', 'table', 'inet', 'pic_connectivity'],
                              capture_output=True, text=True, check=False).stdout

    def registry_bytes(self):
        path = os.path.join(self.state_dir, 'registry.json')
        return open(path, 'rb').read() if os.path.exists(path) else None


@pytest.fixture
def ns(tmp_path):
    cell = Netns(tmp_path)
    try:
        yield cell
    finally:
        cell.close()


SECRET_CONFIGS = [
    ('wireguard_ext', {'private_key': key(11), 'address': ['10.64.0.2/32'], 'peer_public_key': key(12),
                       'preshared_key': key(13), 'endpoint': '192.0.2.1:51820'}, [key(11), key(13)]),
    ('wireguard_ext', {'wg_config': '[Interface]\nPrivateKey = %s\nAddress = 10.64.0.2/32\n\n[Peer]\n'
                                    'PublicKey = %s\nPresharedKey = %s\nEndpoint = 192.0.2.1:51820\n'
                                    'AllowedIPs = 0.0.0.0/0\n' % (key(21), key(22), key(23))},
     [key(21), key(23)]),
    ('openvpn', {'ovpn_config': 'client\ndev tun\nremote 192.0.2.7 1194 udp\n', 'username': 'bob',
                 'password': 'Ovpn-Pass-7f3a9c'}, ['Ovpn-Pass-7f3a9c']),
    ('sshuttle', {'host': '192.0.2.9', 'ssh_key': '-----BEGIN OPENSSH PRIVATE KEY-----\nSshKeyBody5e1d\n'
                  '-----END OPENSSH PRIVATE KEY-----\n'}, ['SshKeyBody5e1d']),
    ('proxy', {'host': '192.0.2.10', 'port': 1080, 'username': 'carol', 'password': 'Proxy-Pass-c0ffee'},
     ['Proxy-Pass-c0ffee']),
]


def _assert_nowhere(secrets, *texts):
    for secret in secrets:
        for text in texts:
            assert secret not in text, 'a secret leaked: %s' % text[:300]


def _argv_texts(records):
    return [json.dumps(r) for r in records if r['kind'] == 'argv']


def _log_texts(records):
    return [json.dumps(r) for r in records if r['kind'] in ('syslog', 'journal')]


@pytest.mark.parametrize('ctype,config,secrets', SECRET_CONFIGS, ids=[c[0] + str(i) for i, c in
                                                                       enumerate(SECRET_CONFIGS)])
def test_secrets_reach_no_log_result_diff_or_command_line(ns, ctype, config, secrets):
    result, records, proc, _rc = ns.module('pic_connection', {'name': 'exit one', 'type': ctype, 'config': config})
    assert result is not None and not result.get('failed'), proc.stdout + proc.stderr
    logs = _log_texts(records)
    assert logs, 'the wrapper saw no log call: the test would prove nothing'
    assert any('Invoked with' in text for text in logs)
    _assert_nowhere(secrets, proc.stdout, proc.stderr, *(logs + _argv_texts(records)))
    assert 'diff' in result
    for path in glob.glob(os.path.join(ns.state_dir, 'secrets', '*')) + [os.path.join(ns.state_dir, 'registry.json')]:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path
    _assert_nowhere(secrets, ns.registry_bytes().decode())


def test_a_refused_config_logs_and_returns_no_secret(ns):
    config = {'private_key': key(31), 'preshared_key': key(32), 'address': ['10.64.0.2/32'],
              'peer_public_key': key(33), 'endpoint': 'not an endpoint; %s' % key(31)}
    result, records, proc, _rc = ns.module('pic_connection', {'name': 'bad', 'type': 'wireguard_ext',
                                                              'config': config})
    assert result['failed'], result
    _assert_nowhere([key(31), key(32)], proc.stdout, proc.stderr, *_log_texts(records))
    assert _log_texts(records)


def test_a_config_given_as_text_is_masked_too(ns):
    text = json.dumps({'host': '192.0.2.10', 'port': 1080, 'username': 'carol', 'password': 'Text-Pass-beef42'})
    result, records, proc, _rc = ns.module('pic_connection', {'name': 'p', 'type': 'proxy', 'config': text})
    assert not result.get('failed'), result
    _assert_nowhere(['Text-Pass-beef42'], proc.stdout, *_log_texts(records))


def test_wg_setconf_reads_a_file_not_argv(ns):
    config = SECRET_CONFIGS[0][1]
    result, records, _proc, _rc = ns.module('pic_connection', {'name': 'wg', 'type': 'wireguard_ext',
                                                               'config': config})
    assert not result.get('failed'), result
    setconf = [json.loads(t)['args'] for t in _argv_texts(records) if 'setconf' in t]
    assert setconf, 'wg setconf did not run'
    path = setconf[0][-1].strip("'")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def _peer(ns, mode='plain', **extra):
    args = dict(peer='alice', address=['10.0.0.2/32'], connection='default')
    args.update(extra)
    return ns.module('pic_peer_exit', args, mode=mode)


def test_nothing_is_saved_that_nftables_refuses(ns):
    result, _r, _p, _rc = _peer(ns)
    assert not result.get('failed'), result
    before, table = ns.registry_bytes(), ns.nft()
    assert 'pic_connectivity' in table
    # local_networks covering the peer network: the validator takes it, the
    # kernel refuses the interval set (conflicting intervals).
    result, _r, _p, _rc = _peer(ns, local_networks=['10.0.0.0/16'])
    assert result['failed'], result
    assert 'nftables' in result['msg']
    assert ns.registry_bytes() == before
    assert ns.nft() == table
    assert not os.path.exists(os.path.join(ns.state_dir, 'registry.applying'))
    # and check mode says so as well, without changing anything
    result, _r, _p, _rc = ns.module('pic_peer_exit', dict(peer='alice', address=['10.0.0.2/32'],
                                                          local_networks=['10.0.0.0/16']), check=True)
    assert result['failed'] and 'nftables' in result['msg'], result


def test_a_failed_apply_puts_the_previous_state_back(ns):
    result, _r, _p, _rc = _peer(ns)
    assert not result.get('failed'), result
    before, table = ns.registry_bytes(), ns.nft()
    config = SECRET_CONFIGS[0][1]
    result, _r, _p, _rc = ns.module('pic_connection', {'name': 'wg', 'type': 'wireguard_ext', 'config': config},
                                    mode='fail-nft-apply')
    assert result['failed'], result
    assert 'put back' in result['msg'], result['msg']
    assert ns.registry_bytes() == before
    assert ns.nft() == table
    assert os.listdir(os.path.join(ns.state_dir, 'secrets')) == []
    assert not os.path.exists(os.path.join(ns.state_dir, 'registry.applying'))
    links = subprocess.run(['ip', '-n', ns.name, '-o', 'link'], capture_output=True, text=True).stdout
    assert 'pic-wg' not in links


def test_sigkill_after_saving_is_reported_and_applied_by_the_next_run(ns):
    result, _r, _p, _rc = ns.module('pic_connection', {'name': 'p', 'type': 'proxy',
                                                       'config': {'host': '192.0.2.10', 'port': 1080}})
    assert not result.get('failed'), result
    result, _r, _p, _rc = _peer(ns, connection='p')
    assert not result.get('failed'), result
    table = ns.nft()
    assert '10.0.0.2' in table and '10.0.0.3' not in table
    result, _r, proc, rc = _peer(ns, peer='bob', address=['10.0.0.3/32'], connection='p', mode='kill-after-save')
    assert rc == -signal.SIGKILL or rc == 128 + signal.SIGKILL, (rc, proc.stderr)
    assert 'bob' in json.loads(ns.registry_bytes())['peers']
    assert ns.nft() == table   # the registry and the data plane disagree now
    info, _r, _p, _rc = ns.module('pic_connectivity_info', {})
    assert info['pending_apply'] is True, info
    assert 'did not finish applying' in json.dumps(info.get('warnings')), info
    for name, args in (('pic_health', {}), ('pic_commit', {'action': 'status'})):
        result, _r, _p, _rc = ns.module(name, args)
        assert result is not None and not result.get('failed'), (name, result)
    # any run converges from the registry first
    result, _r, _p, _rc = _peer(ns, connection='p')
    assert not result.get('failed'), result
    assert 'did not finish applying' in json.dumps(result.get('warnings')), result
    assert result['changed'] and any('nftables' in change for change in result['changes']), result
    assert '10.0.0.3' in ns.nft()
    info, _r, _p, _rc = ns.module('pic_connectivity_info', {})
    assert info['pending_apply'] is False


def test_read_only_modules_return_the_error_of_a_damaged_registry(ns):
    os.makedirs(ns.state_dir, 0o700)
    with open(os.path.join(ns.state_dir, 'registry.json'), 'w') as handle:
        handle.write('{"version": 1, "settings": {}, "connections": [], "peers": {}}')
    for name, args in (('pic_health', {}), ('pic_connectivity_info', {}), ('pic_peer_exit', {'peer': 'a'})):
        result, _r, proc, _rc = ns.module(name, args)
        assert result is not None, proc.stderr
        assert result['failed'] and 'connections must be a mapping, not list' in result['msg'], (name, result)


def test_every_module_is_built_by_the_runner_and_logs_its_invocation(ns):
    for name, args in (('pic_service_egress', {'service': 'mail', 'state': 'absent'}),
                       ('pic_cell_link', {'links': []}), ('pic_peer_exit', {'peer': 'a', 'address': ['10.0.0.9']}),
                       ('pic_connectivity_info', {}), ('pic_health', {}), ('pic_commit', {'action': 'status'})):
        result, records, proc, _rc = ns.module(name, args)
        assert result is not None and not result.get('failed'), (name, result, proc.stderr)
        assert sum('Invoked with' in text for text in _log_texts(records)) == 1, (name, records)


def test_a_failed_first_apply_leaves_the_cell_as_it_was(ns):
    config = SECRET_CONFIGS[0][1]
    result, _r, _p, _rc = ns.module('pic_connection', {'name': 'wg', 'type': 'wireguard_ext', 'config': config},
                                    mode='fail-nft-apply')
    assert result['failed'] and 'put back' in result['msg'], result
    assert ns.registry_bytes() is None
    assert ns.nft() == ''
    assert os.listdir(os.path.join(ns.state_dir, 'secrets')) == []
    links = subprocess.run(['ip', '-n', ns.name, '-o', 'link'], capture_output=True, text=True).stdout
    assert 'pic-wg' not in links
    rules = subprocess.run(['ip', '-n', ns.name, 'rule'], capture_output=True, text=True).stdout
    assert 'fwmark' not in rules


def test_apply_pending_for_the_monitor(ns):
    result, _r, _p, _rc = ns.module('pic_connection', {'name': 'p', 'type': 'proxy',
                                                       'config': {'host': '192.0.2.10', 'port': 1080}})
    assert not result.get('failed'), result
    _result, _r, _p, rc = _peer(ns, peer='bob', address=['10.0.0.3/32'], connection='p', mode='kill-after-save')
    assert rc == -signal.SIGKILL
    assert '10.0.0.3' not in ns.nft()
    code = ('import json, sys; from ansible_collections.pic.connectivity.plugins.module_utils.registry import '
            'Registry; reg = Registry(sys.argv[1]); print(json.dumps([reg.has_pending(), reg.apply_pending(), '
            'reg.has_pending(), reg.apply_pending()]))')
    proc = subprocess.run(['ip', 'netns', 'exec', ns.name, '/usr/bin/python3', '-c', code, ns.state_dir],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ansible_pythonpath()))
    before, changes, after, again = json.loads(proc.stdout)
    assert before is True and after is False and again == []
    assert any('nftables' in change for change in changes), changes
    assert '10.0.0.3' in ns.nft()
