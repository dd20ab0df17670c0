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
         'program': True, 'mode': '0600'}], [root])


@pytest.mark.parametrize('item', [
    {'path': '/etc/passwd', 'content': '', 'instance': 'pic-x'},
    {'path': '/s/../etc/passwd', 'content': '', 'instance': 'pic-x'},
    {'path': '/s/a', 'content': '', 'instance': 'x; reboot'},
    {'path': '/s/a', 'content': '', 'instance': 'pic-x', 'mode': 0o4777},
])
def test_bad_files_are_refused(item):
    with pytest.raises(PicError):
        exitfiles.check_files([item], ['/s'])


def test_files_are_written_once_and_only_changed_instances_restart(tmp_path):
    root = str(tmp_path)
    calls = []

    class Done(object):
        returncode = 0

    def runner(argv, check=True, daemon=False):
        if argv[-1] != 'pid':   # supervisord runs
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
