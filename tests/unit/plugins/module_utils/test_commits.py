# -*- coding: utf-8 -*-
"""commits: the confirmed commit's snapshot, pending record and timer on a state dir; the
revert (a converge) in a throwaway network namespace."""
import json
import os
import time

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import commits
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, saved_registry

TOR = {'name': 'Tor', 'type': 'tor', 'config': {}}
PROXY = {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}}


@pytest.fixture
def registry(tmp_path):
    registry = saved_registry(str(tmp_path / 'state'), TOR)
    registry.write_secret('tor', 'secret-one')
    return registry


def begin(registry, commit_id='r1', timeout=60, entry_point='/bin/true'):
    with registry:
        return commits.Commits(registry).begin(commit_id, timeout, entry_point)


def test_begin_snapshots_and_records_the_pending_commit(registry):
    deadline = begin(registry)
    book = commits.Commits(registry)
    pending = book.pending()
    assert pending['id'] == 'r1' and pending['deadline'] == deadline and pending['pid'] > 0
    assert time.time() < deadline <= time.time() + 60
    snap = book.snapshot_dir('r1')
    assert sorted(os.listdir(snap)) == ['registry.json', 'secrets']
    with open(os.path.join(snap, 'registry.json')) as handle, open(registry.path) as current:
        assert handle.read() == current.read()


def test_a_second_begin_is_refused_naming_the_pending_one(registry):
    begin(registry)
    with pytest.raises(PicError) as err:
        begin(registry, 'r2')
    assert err.value.field == 'id' and "'r1'" in err.value.msg


def test_begin_needs_the_entry_point(registry, tmp_path):
    with pytest.raises(PicError) as err:
        begin(registry, entry_point=str(tmp_path / 'missing'))
    assert err.value.field == 'entry_point'
    assert commits.Commits(registry).pending() is None


def test_confirm_only_the_pending_commit(registry):
    begin(registry)
    book = commits.Commits(registry)
    assert book.confirm('other') is False and book.pending()['id'] == 'r1'
    assert book.confirm('r1') is True
    assert book.pending() is None and not os.path.exists(book.snapshot_dir('r1'))
    assert book.confirm('r1') is False


def test_restore_puts_registry_and_secrets_back(registry):
    begin(registry)
    before = open(registry.path).read()
    saved_registry(registry.state_dir, TOR, PROXY)
    registry.write_secret('tor', 'secret-two')
    registry.write_secret('proxy', 'secret-three')
    book = commits.Commits(registry)
    book.restore('r1')
    assert open(registry.path).read() == before
    assert registry.read_secret('tor') == 'secret-one' and registry.read_secret('proxy') is None
    assert book.pending() is None
    with pytest.raises(PicError) as err:
        book.restore('r1')
    assert err.value.field == 'id' and 'no snapshot' in err.value.msg


def test_an_expired_commit_refuses_further_changes_until_cleared(registry):
    book = commits.Commits(registry)
    book.check_not_expired()
    os.makedirs(book.dir, exist_ok=True)
    with open(book.expired_path, 'w') as handle:
        json.dump({'id': 'r1', 'at': time.time()}, handle)
    with pytest.raises(PicError) as err:
        book.check_not_expired()
    assert err.value.details == {'expired_commit': book.expired()} and "'r1'" in err.value.msg
    book.clear_expired()
    book.check_not_expired()


def test_the_timer_stops_when_the_commit_is_confirmed(registry):
    assert commits.wait_and_revert(registry, 'r1', time.time() + 30) == []   # nothing pending: returns at once


def test_the_timer_reverts_an_unconfirmed_commit(registry, libnftables):
    def scenario():
        begin(registry, timeout=60)
        saved_registry(registry.state_dir, TOR, PROXY)
        changes = commits.wait_and_revert(registry, 'r1', time.time() + 0.2)
        return changes, sorted(Registry(registry.state_dir).load()['connections']), \
            commits.Commits(registry).expired()
    changes, conns, expired = in_netns(scenario)
    assert conns == ['tor']
    assert any('nftables' in change for change in changes)
    assert expired['id'] == 'r1'
