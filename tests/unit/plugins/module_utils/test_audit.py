# -*- coding: utf-8 -*-
"""audit: the cell's journal of changes (append, read back, rotation by size, appends of
concurrent writers, masking, what a record shows)."""
import json
import os
import stat
import threading

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import audit
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry, empty


def test_entries_are_appended_one_json_line_each_0600_and_read_back_oldest_first(tmp_path):
    journal = audit.Journal(str(tmp_path))
    for i in range(3):
        journal.append(audit.entry('pic_peer_exit', 'alice@laptop', None, None, ['change %d' % i], now=1000 + i))
    lines = open(journal.path).read().splitlines()
    assert len(lines) == 3 and all(json.loads(line)['source'] == 'pic_peer_exit' for line in lines)
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
    recent = journal.recent(2)
    assert [e['changes'] for e in recent] == [['change 1'], ['change 2']]
    assert recent[0]['time'] == '1970-01-01T00:16:41Z' and recent[0]['actor'] == 'alice@laptop'
    assert journal.recent(0) == [] and audit.Journal(str(tmp_path / 'none')).recent(5) == []


def test_rotation_by_size_keeps_n_files_and_recent_reads_across_them(tmp_path):
    journal = audit.Journal(str(tmp_path), max_bytes=400, keep=2)
    for i in range(40):
        journal.append(audit.entry('monitor', None, None, None, ['pass %d' % i]))
    names = sorted(os.listdir(str(tmp_path)))
    assert 'audit.jsonl' in names and 'audit.jsonl.1' in names and 'audit.jsonl.2' in names
    assert 'audit.jsonl.3' not in names
    assert all(os.path.getsize(str(tmp_path / n)) < 400 + 400 for n in names if n.startswith('audit.jsonl'))
    recent = journal.recent(5)
    assert [e['changes'][0] for e in recent] == ['pass %d' % i for i in range(35, 40)]
    older = journal.recent(1000)
    assert older[-1]['changes'] == ['pass 39'] and len(older) < 40   # the oldest were dropped


def test_concurrent_writers_under_the_registry_lock_and_without_it_lose_no_line(tmp_path):
    state = str(tmp_path)
    journal = audit.Journal(state, max_bytes=2000, keep=50)
    Registry(state).ensure_dirs()

    def locked(n):
        for i in range(25):
            with Registry(state):
                journal.append(audit.entry('pic_peer_exit', 'w%d' % n, None, None, ['%d-%d' % (n, i)]))

    def monitor():
        for i in range(25):
            journal.append(audit.entry('monitor', None, None, None, ['m-%d' % i]))
    threads = [threading.Thread(target=locked, args=(n,)) for n in range(3)] + [threading.Thread(target=monitor)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = [e['changes'][0] for e in journal.recent(1000)]
    assert len(seen) == 100 and len(set(seen)) == 100


def test_records_show_before_and_after_without_fingerprint_keys():
    before = empty()
    after = empty()
    after['connections']['tor'] = {'id': 'tor', 'name': 'Tor', 'type': 'tor', 'fingerprint_key': 'k' * 32}
    after['peers']['a'] = {'name': 'a', 'address': ['10.0.0.2/32'], 'connection': 'tor', 'fail_open': None}
    changed = audit.registry_changes(before, after)
    assert sorted(changed) == ['connections.tor', 'peers.a']
    assert changed['peers.a']['before'] is None and changed['peers.a']['after']['connection'] == 'tor'
    assert 'fingerprint_key' not in changed['connections.tor']['after']
    undone = audit.registry_changes(before=after, after=before)
    assert undone['peers.a']['after'] is None


def test_secrets_are_masked_wherever_they_appear(tmp_path):
    journal = audit.Journal(str(tmp_path))
    line = audit.entry('pic_connection', 'x', None, None, ['set key s3cret-Key-material on pic-x'])
    line['changed'] = {'connections.x': {'before': None, 'after': {'note': 's3cret-Key-material'}}}
    journal.append(line, ['s3cret-Key-material'])
    text = open(journal.path).read()
    assert 's3cret-Key-material' not in text and audit.MASK in text


@pytest.mark.parametrize('bad', ['a\nb', 'x' * 201, 'tab\there', 5])
def test_an_actor_must_be_printable_text(bad):
    with pytest.raises(PicError) as err:
        audit.check_actor(bad)
    assert err.value.field == 'audit_actor'


def test_an_empty_actor_is_none_and_a_good_one_is_kept():
    assert audit.check_actor(None) is None and audit.check_actor('') is None
    assert audit.check_actor('alice@laptop (ops)') == 'alice@laptop (ops)'


def test_render_shows_who_what_and_when():
    line = audit.entry('pic_peer_exit', 'alice@laptop', None, None, ['replace nftables table'], now=0)
    line['changed'] = {'peers.a': {'before': {'connection': 'tor'}, 'after': None}}
    line['secrets_changed'] = ['Home VPN']
    text = audit.render([line])
    assert '1970-01-01T00:00:00Z  pic_peer_exit  by alice@laptop' in text
    assert 'peers.a: {"connection":"tor"} -> (none)' in text
    assert 'secrets of connection Home VPN changed' in text and '- replace nftables table' in text
    assert audit.render([]) == 'no audit entries\n'
