# -*- coding: utf-8 -*-
"""nft: the fallback to the ``nft`` command (no python3-nftables), proven with the
real ``nft`` in a throwaway network namespace: a missing table is None (``nft -j -f -``
prints nothing for a listing, so a listing goes as arguments), a replaced table
reads back, a deleted one is gone; and a host without the command says so."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import nft
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError

SCRIPT = r'''
import json, sys
from ansible_collections.pic.connectivity.plugins.module_utils import nft
from ansible_collections.pic.connectivity.plugins.module_utils.model import NFT_FAMILY, NFT_TABLE
steps = {}
tables = nft.Nft(use_binding=False)
assert tables._lib is None
steps['missing'] = tables.list_table()
tables.delete_table()   # a missing table: nothing to delete, no error
tables.replace('table %s %s {\n set ingress { type ifname; elements = { "wg0" } }\n'
               ' chain pre { type filter hook prerouting priority -150; comment "pre"; }\n}\n' % (NFT_FAMILY, NFT_TABLE))
summary = nft.summary(tables.list_table())
steps['present'] = {'sets': dict((k, sorted(v)) for k, v in summary['sets'].items()), 'chains': summary['chains']}
tables.delete_table()
steps['deleted'] = tables.list_table()
try:
    tables.cmd('add rule %s %s nochain accept' % (NFT_FAMILY, NFT_TABLE))
except nft.PicError as exc:
    steps['refused'] = str(exc)
tables.check('table %s %s {\n set s { type ipv4_addr; }\n}\n' % (NFT_FAMILY, NFT_TABLE))
steps['dry_run_left'] = tables.list_table()
try:
    tables.check('table %s %s {\n set s { type nosuchtype; }\n}\n' % (NFT_FAMILY, NFT_TABLE))
except nft.PicError as exc:
    steps['dry_run_refused'] = str(exc)
print(json.dumps(steps))
'''


@pytest.fixture(scope='module')
def netns():
    for program in ('ip', 'nft'):
        if shutil.which(program) is None:
            pytest.fail('%s is missing: install nftables and iproute2 to test the nft command fallback' % program)
    if os.geteuid() != 0:
        pytest.fail('root is needed to make a network namespace for nft')
    name = 'picp-nftcmd%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    yield name
    subprocess.run(['ip', 'netns', 'del', name], check=False)


def test_the_command_fallback_lists_replaces_and_deletes_the_table(netns):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(['ip', 'netns', 'exec', netns, sys.executable, '-c', SCRIPT], capture_output=True,
                          text=True, env=env, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)
    assert steps['missing'] is None
    assert steps['present'] == {'sets': {'ingress': ['wg0']}, 'chains': {'pre': []}}
    assert steps['deleted'] is None
    assert steps['refused'].startswith('nftables refused the change: ')
    assert steps['dry_run_left'] is None     # nft -c checks and commits nothing
    assert steps['dry_run_refused'].startswith('nftables refuses the new ruleset')


def test_a_host_without_the_binding_or_the_command_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))
    tables = nft.Nft(use_binding=False)
    with pytest.raises(PicError) as err:
        tables.list_table()     # not "no table": the error says what is missing
    assert 'no nft command in PATH' in str(err.value)
    assert 'python3-nftables' in str(err.value)


def test_a_listing_that_is_not_json_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(nft, '_nft_command', lambda text, json_out: (0, '', ''))
    with pytest.raises(PicError) as err:
        nft.Nft(use_binding=False).list_table()
    assert 'something else than JSON' in str(err.value)
