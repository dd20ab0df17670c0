# -*- coding: utf-8 -*-
"""Exit service files: checked paths, tokens, written once, instances restarted only when
their files change, gone instances stopped and their files removed (no service manager run)."""
import os

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import exitfiles
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError

DOC = {'connections': {'socks': {'id': 'socks', 'name': 'Socks', 'local_port': 12001, 'dns_port': 12002,
                                 'interface': None}}}


def files(root, content='port PICALLOCLOCALPORTZ\n'):
    return exitfiles.check_files([
        {'path': root + '/proxy/socks.conf', 'content': content, 'instance': 'pic-proxy-socks', 'connection': 'Socks'},
        {'path': root + '/sup/conf.d/pic-proxy-socks.conf', 'content': '[program:x]\n', 'instance': 'pic-proxy-socks',
         'program': True, 'mode': '0600', 'manager': 'supervisord'}], [root], root + '/sup')


@pytest.mark.parametrize('item', [
    {'path': '/etc/passwd', 'content': '', 'instance': 'pic-x'},
    {'path': '/s/../etc/passwd', 'content': '', 'instance': 'pic-x'},
    {'path': '/s/t/a', 'content': '', 'instance': 'x; reboot'},
    {'path': '/s/t/a', 'content': '', 'instance': 'pic-x', 'mode': 0o4777},
    {'path': '/s/registry.json', 'content': '{}', 'instance': 'pic-x'},
    {'path': '/s/secrets/x.conf', 'content': '', 'instance': 'pic-x'},
    {'path': '/s/sup/conf.d/pic-y.conf', 'content': '', 'instance': 'pic-x', 'program': True},
    {'path': '/s/sup/conf.d/pic-x.conf', 'content': '', 'instance': 'pic-x'},
    {'path': '/etc/systemd/system/pic-x.service', 'content': '', 'instance': 'pic-x'},
    {'path': '/etc/systemd/system/getty.service', 'content': '', 'instance': 'pic-x', 'program': True,
     'manager': 'systemd'},
])
def test_bad_files_are_refused(item):
    with pytest.raises(PicError):
        exitfiles.check_files([item], ['/s', '/s/sup/conf.d', '/etc/systemd/system'], '/s/sup')


def test_files_are_written_once_and_only_changed_instances_restart(tmp_path):
    root = str(tmp_path)
    calls = []

    class Done(object):
        returncode = 0

    def runner(argv, check=True, daemon=False):
        if argv[-1] != 'pid' and 'status' not in argv:   # supervisord runs, its programs started
            calls.append(argv)
        return Done()
    ef = exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=runner)
    wanted = files(root)
    planned = ef.plan(DOC, wanted)
    assert planned[2] == ['pic-proxy-socks']
    ef.apply(wanted, planned)
    with open(root + '/proxy/socks.conf') as handle:
        assert handle.read() == 'port 12001\n'
    assert os.stat(root + '/proxy/socks.conf').st_mode & 0o777 == 0o600
    assert [c[-1] for c in calls] == ['update']
    assert ef.plan(DOC, wanted)[:3] == ([], [], [])
    changed = files(root, 'port PICALLOCLOCALPORTZ\nx\n')
    calls[:] = []
    ef.apply(changed, ef.plan(DOC, changed))
    assert [c[-2:] for c in calls] == [['restart', 'pic-proxy-socks']]
    calls[:] = []
    planned = ef.plan(DOC, [])
    assert planned[3] == ['pic-proxy-socks']
    ef.apply([], planned)
    assert not os.path.exists(root + '/proxy/socks.conf') and [c[-1] for c in calls] == ['update']


def test_a_token_of_an_unknown_connection_is_refused(tmp_path):
    item = dict(files(str(tmp_path))[0], connection='Nope')
    with pytest.raises(PicError):
        exitfiles.resolve_tokens(DOC, item)


class Recorder(object):
    """A service manager runner that records what it is asked and answers ``rc``."""

    def __init__(self, rc=0, out=b''):
        self.calls = []
        self.rc = rc
        self.out = out

    def __call__(self, argv, check=True, daemon=False):
        self.calls.append(list(argv))
        proc = type('Done', (), {})()
        proc.returncode, proc.stdout, proc.stderr = (self.rc if argv[-1] != 'pid' else 0), self.out, b''
        return proc


CLEANUP = [{'type': 'proxy', 'path': '/R/proxy/PICREMOVEDIDZ.conf', 'when': 'removed'},
           {'type': 'proxy', 'path': '/R/sup/conf.d/pic-proxy-PICREMOVEDIDZ.conf', 'instance': 'pic-proxy-PICREMOVEDIDZ',
            'manager': 'supervisord', 'when': 'removed'},
           {'type': 'proxy', 'path': '/R/sys/pic-proxy-PICREMOVEDIDZ.service', 'instance': 'pic-proxy-PICREMOVEDIDZ',
            'manager': 'systemd', 'when': 'removed'},
           {'type': 'openvpn', 'path': '/R/openvpn/PICREMOVEDIDZ.conf', 'when': 'removed'},
           {'type': 'openvpn', 'path': '/R/openvpn/vpn.auth', 'when': 'unwanted'}]


def cleanup(root):
    return exitfiles.check_cleanup([dict(c, path=c['path'].replace('/R', root),
                                         **({'instance': c['instance']} if 'instance' in c else {})) for c in CLEANUP],
                                   [root])


def test_files_the_role_wrote_for_a_removed_connection_are_removed_and_its_instance_stopped(tmp_path):
    """A connection converged by the role (no manifest entry) and removed on the fast path:
    its files and program go, its instance stops; other types' files and the kept ones stay."""
    root = str(tmp_path)
    for rel in ('proxy/old.conf', 'sup/conf.d/pic-proxy-old.conf', 'openvpn/old.conf', 'openvpn/vpn.auth',
                'proxy/kept.conf'):
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), 'w') as handle:
            handle.write('x')
    runner = Recorder()
    ef = exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=runner)
    planned = ef.plan(DOC, [], cleanup(root), [{'id': 'old', 'type': 'proxy'}])
    assert sorted(r[0] for r in planned[1]) == [root + '/openvpn/vpn.auth', root + '/proxy/old.conf',
                                                root + '/sup/conf.d/pic-proxy-old.conf']
    assert planned[3] == ['pic-proxy-old']
    ef.apply([], planned)
    assert not os.path.exists(root + '/proxy/old.conf') and not os.path.exists(root + '/sup/conf.d/pic-proxy-old.conf')
    assert os.path.exists(root + '/openvpn/old.conf') and os.path.exists(root + '/proxy/kept.conf')
    assert [c[-1] for c in runner.calls if c[-1] != 'pid'] == ['update']


@pytest.mark.parametrize('item', [
    {'type': 'proxy', 'path': '/etc/PICREMOVEDIDZ', 'when': 'removed'},
    {'type': 'proxy', 'path': '/s/PICREMOVEDIDZ/../../etc/passwd', 'when': 'removed'},
    {'type': 'proxy', 'path': '/s/t/a', 'when': 'always'},
    {'type': 'proxy', 'path': '/s/t/a', 'instance': 'pic-x; reboot', 'when': 'removed'},
    {'type': 'proxy', 'path': '/s/registry.json', 'when': 'unwanted'},
])
def test_bad_cleanup_is_refused(item):
    with pytest.raises(PicError):
        exitfiles.check_cleanup([item], ['/s'])


@pytest.mark.parametrize('text', ['tor --verify-config -f %s', '/usr/bin/tor -f', '/usr/bin/tor;id %s',
                                  '/usr/bin/tor $(id) %s', '/usr/bin/tor %s %s', '/usr/bin/tor\n%s'])
def test_bad_validate_is_refused(text):
    with pytest.raises(PicError) as err:
        exitfiles.check_files([{'path': '/s/t/a', 'content': '', 'instance': 'pic-x', 'validate': text}], ['/s'])
    assert err.value.field == 'files[0].validate'


def test_a_content_its_check_refuses_is_not_written_and_the_check_sees_a_copy(tmp_path):
    root = str(tmp_path)
    wanted = exitfiles.check_files([{'path': root + '/tor/torrc', 'content': 'SocksPort 9050\n', 'instance': 'pic-tor',
                                     'validate': '/usr/bin/tor --verify-config -f %s'}], [root])
    runner = Recorder(rc=1, out=b'[warn] Failed to parse/validate config')
    ef = exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=runner)
    planned = ef.plan(DOC, wanted)
    with pytest.raises(PicError) as err:
        ef.check(planned)
    assert 'fails its check /usr/bin/tor' in err.value.msg and 'Failed to parse' in err.value.msg
    checked = runner.calls[0][-1]
    assert runner.calls[0][:3] == ['/usr/bin/tor', '--verify-config', '-f'] and checked != root + '/tor/torrc'
    assert not os.path.exists(checked) and not os.path.exists(root + '/tor/torrc')
    runner.rc = 0
    ef.check(planned)   # a content the check accepts passes


def test_a_check_program_that_cannot_run_is_a_clear_error(tmp_path):
    root = str(tmp_path)
    wanted = exitfiles.check_files([{'path': root + '/tor/torrc', 'content': 'SocksPort 9050\n', 'instance': 'pic-tor',
                                     'validate': '/nonexistent/tor --verify-config -f %s'}], [root])
    ef = exitfiles.ExitFiles(root, 'none', None)    # the real runner
    with pytest.raises(PicError) as err:
        ef.check(ef.plan(DOC, wanted))
    assert '/nonexistent/tor cannot run' in err.value.msg


def test_a_removed_connection_whose_id_is_not_a_slug_is_refused(tmp_path):
    root = str(tmp_path)
    ef = exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=Recorder())
    with pytest.raises(PicError):
        ef.plan(DOC, [], cleanup(root), [{'id': '../../victim', 'type': 'proxy'}])


def test_a_file_several_instances_run_restarts_them_all(tmp_path):
    root = str(tmp_path)
    wanted = exitfiles.check_files([{'path': root + '/sshuttle/pic-sshuttle', 'content': 'v2', 'instance': 'pic-sshuttle-a',
                                     'also': ['pic-sshuttle-b'], 'mode': '0644'}], [root])
    assert exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=Recorder()).plan(DOC, wanted)[2] == \
        ['pic-sshuttle-a', 'pic-sshuttle-b']


def test_a_directory_the_role_makes_is_made_first_restarts_its_instance_and_stays(tmp_path):
    """Tor's DataDirectory: tor refuses to start without it. Made (root, its mode) before the
    files, its instance restarted when it was missing; a later run without it keeps it."""
    root = str(tmp_path)
    wanted = exitfiles.check_files([
        {'path': root + '/tor/torrc', 'content': 'DataDirectory %s/tor/data\n' % root, 'instance': 'pic-tor'},
        {'path': root + '/tor/data', 'directory': True, 'mode': '0700', 'instance': 'pic-tor'}], [root])
    runner = Recorder()
    ef = exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=runner)
    planned = ef.plan(DOC, wanted)
    assert planned[0][0][:2] == (root + '/tor/data', None) and planned[2] == ['pic-tor']
    ef.apply(wanted, planned)
    st = os.stat(root + '/tor/data')
    assert (st.st_mode & 0o7777, st.st_uid) == (0o700, 0)
    assert ef.plan(DOC, wanted)[:3] == ([], [], [])
    os.chmod(root + '/tor/data', 0o777)
    assert ef.plan(DOC, wanted)[2] == ['pic-tor']       # a directory others may write is put back
    ef.apply([], ef.plan(DOC, []))
    assert os.path.isdir(root + '/tor/data')            # (the role keeps Tor's data for a later connection)


def test_a_directory_must_be_a_real_one_of_a_directory_mode(tmp_path):
    root = str(tmp_path)
    with pytest.raises(PicError):
        exitfiles.check_files([{'path': root + '/tor/data', 'directory': True, 'mode': '0644', 'instance': 'pic-tor'}],
                              [root])
    with pytest.raises(PicError):
        exitfiles.check_files([{'path': root + '/secrets', 'directory': True, 'mode': '0700', 'instance': 'pic-tor'}],
                              [root])
    os.makedirs(root + '/elsewhere')
    os.symlink(root + '/elsewhere', root + '/tor')
    wanted = exitfiles.check_files([{'path': root + '/tor', 'directory': True, 'mode': '0700', 'instance': 'pic-tor'}],
                                   [root])
    ef = exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=Recorder())
    with pytest.raises(PicError):
        ef.apply(wanted, ef.plan(DOC, wanted))


def test_a_new_program_is_waited_for_until_it_leaves_starting(tmp_path, monkeypatch):
    """supervisorctl update starts a new program without waiting: the run waits until
    supervisord no longer reports it STARTING (as the role's restart waits)."""
    monkeypatch.setattr(exitfiles.time, 'sleep', lambda _s: None)
    answers = [b'pic-proxy-socks STARTING\n', b'pic-proxy-socks STARTING\n', b'pic-proxy-socks RUNNING pid 7\n']
    runner = Recorder()

    def run(argv, check=True, daemon=False):
        proc = runner(argv, check, daemon)
        if 'status' in argv:
            proc.stdout = answers.pop(0)
        return proc
    root = str(tmp_path)
    ef = exitfiles.ExitFiles(root, 'supervisord', root + '/sup', runner=run)
    wanted = files(root)
    ef.apply(wanted, ef.plan(DOC, wanted))
    assert answers == [] and sum('status' in c for c in runner.calls) == 3
