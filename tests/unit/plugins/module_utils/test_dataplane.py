# -*- coding: utf-8 -*-
"""dataplane: the Cell converging a registry onto a throwaway network namespace (nftables
through libnftables, rules and routes through netlink): once, then nothing; what the state
guard sees lost; the monitor's down set; teardown; boot restore's kill switch. The change
lines and the state files, pure."""
import os
import subprocess

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import dataplane, model, nft
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns, kernel_state, saved_registry

TOR = {'name': 'Tor', 'type': 'tor', 'config': {}}
PROXY = {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}, 'fail_open': False}


@pytest.fixture
def registry(tmp_path, libnftables):
    return saved_registry(str(tmp_path / 'state'), TOR, PROXY, alice=('10.0.0.2', 'Tor'), bob=('10.0.0.3', 'Proxy'))


def on_cell(registry, steps):
    """``steps(cell, doc)`` with a Cell of ``registry`` in a new namespace; its result."""
    def scenario():
        cell = dataplane.Cell(registry)
        try:
            return steps(cell, registry.load())
        finally:
            cell.close()
    return in_netns(scenario)


def test_converge_once_then_nothing_and_nothing_lost(registry):
    def steps(cell, doc):
        first = cell.converge(doc)
        again = cell.converge(doc)
        return first, again, cell.losses(doc, model.desired(doc, cell.facts(doc))), kernel_state()
    first, again, lost, kernel = on_cell(registry, steps)
    assert 'create nftables table inet pic_connectivity' in first
    assert any(change.startswith('add ipv4 rule pref 10000 fwmark 0x10000/') for change in first)
    assert again == [] and lost == []
    assert kernel['table'] is not None and 'lookup 10002' in kernel['rules']


def test_check_mode_reports_and_changes_nothing(registry):
    def steps(cell, doc):
        cell.check(doc)
        return cell.converge(doc, check_mode=True), kernel_state()
    changes, kernel = on_cell(registry, steps)
    assert 'create nftables table inet pic_connectivity' in changes
    assert kernel['table'] is None and 'lookup 10001' not in kernel['rules']


def test_losses_name_what_was_deleted_and_converge_brings_it_back(registry):
    def steps(cell, doc):
        cell.converge(doc)
        want = model.desired(doc, cell.facts(doc))
        subprocess.run(['ip', 'rule', 'del', 'pref', '10000', 'fwmark', '0x10000/0x7f0000', 'lookup', '10001'],
                       check=True)
        one_rule = cell.losses(doc, want)
        subprocess.run(['nft', 'delete', 'table', 'inet', 'pic_connectivity'], check=True)
        no_table = cell.losses(doc, want)
        cell.converge(doc)
        return one_rule, no_table, cell.losses(doc, want)
    one_rule, no_table, after = on_cell(registry, steps)
    assert one_rule == ['missing ipv4 rule pref 10000 fwmark 0x10000/0x7f0000 lookup 10001']
    assert no_table == ['nftables table inet pic_connectivity missing']
    assert after == []


def counting_listings(cell):
    """Count the table listings of ``cell`` (in a list it returns)."""
    calls = []
    listing = cell.nft.list_table

    def counted():
        calls.append(1)
        return listing()
    cell.nft.list_table = counted
    return calls


def test_a_no_op_after_a_converge_skips_the_listing_until_something_commits(registry):
    """The generation id: a no-op right after a converge does not list the table; any
    commit in the namespace (a drift, the monitor, anyone) makes the next run list and
    repair it."""
    def steps(cell, doc):
        calls = counting_listings(cell)
        cell.converge(doc)
        first = len(calls)
        again = cell.converge(doc)
        skipped = len(calls) == first
        # a drift made by a commit: one peer's map element deleted
        peer = doc['peers']['alice']['address'][0].split('/')[0]
        subprocess.run(['nft', 'delete', 'element', 'inet', 'pic_connectivity', 'peer4', '{ %s }' % peer], check=True)
        repaired = cell.converge(doc)
        listed = len(calls) > first
        return again, skipped, repaired, listed, cell.converge(doc)
    again, skipped, repaired, listed, last = on_cell(registry, steps)
    assert again == [] and skipped
    assert listed and repaired and 'update nftables elements' in repaired[0], repaired
    assert last == []


def test_a_no_op_leaves_the_records_as_they_were(registry):
    """The generation record, the converged record and the last good state are written when
    they change, not by every run (no write on a no-op)."""
    names = (dataplane.GENERATION, dataplane.CONVERGED, dataplane.LAST_GOOD)

    def stats():
        paths = [os.path.join(registry.state_dir, name) for name in names]
        return [(os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in paths]

    def steps(cell, doc):
        cell.converge(doc)
        before = stats()
        cell.converge(doc)
        return before, stats()
    before, after = on_cell(registry, steps)
    assert before == after


def test_without_a_generation_id_every_run_lists_the_table(registry, monkeypatch):
    monkeypatch.setattr(nft, 'generation', lambda: None)

    def steps(cell, doc):
        calls = counting_listings(cell)
        cell.converge(doc)
        cell.converge(doc)
        return len(calls), os.path.exists(os.path.join(registry.state_dir, dataplane.GENERATION))
    listings, recorded = on_cell(registry, steps)
    assert listings == 2 and not recorded


def test_a_record_of_another_namespace_or_table_is_not_trusted(registry):
    def steps(cell, doc):
        cell.converge(doc)
        script = model.desired(doc, cell.facts(doc)).render_nft()
        here = dataplane.generation_unchanged(registry.state_dir, script)
        other_table = dataplane.generation_unchanged(registry.state_dir, script + '\n')
        return here, other_table, nft.generation(), script
    here, other_table, current, script = on_cell(registry, steps)
    assert here == current and other_table is None
    # the same record read in another namespace (another generation counter) is not trusted
    assert in_netns(lambda: dataplane.generation_unchanged(registry.state_dir, script)) is None


def test_the_down_set_changes_once(registry):
    def steps(cell, doc):
        before = cell.set_down(doc, ['tor'])      # no table yet: nothing to change
        cell.converge(doc)
        return before, cell.set_down(doc, ['tor']), cell.set_down(doc, ['tor']), cell.set_down(doc, [])
    before, down, again, up = on_cell(registry, steps)
    assert before == []
    assert down == ['down connections now: tor'] and again == []
    assert up == ['down connections now: none']


def test_teardown_removes_everything_of_the_collection(registry):
    def steps(cell, doc):
        cell.converge(doc)
        dataplane.save_last_good(registry.state_dir, model.desired(doc, cell.facts(doc)))
        changes = cell.teardown(doc)
        return changes, kernel_state(), os.path.exists(dataplane.last_good_path(registry.state_dir))
    changes, kernel, last_good = on_cell(registry, steps)
    assert 'deleted nftables table' in changes
    assert any(change.startswith('delete ipv4 rule pref 10000') for change in changes)
    assert kernel['table'] is None and 'lookup 1000' not in kernel['rules']
    assert last_good is False


def test_boot_restore_installs_the_last_good_state_or_the_block(registry, tmp_path):
    def steps(cell, doc):
        logged = []
        empty_dir = str(tmp_path / 'empty')
        block = dataplane.install_kill_switch(empty_dir, 'wg0', log=logged.append)
        block_table = kernel_state()['table']
        cell.converge(doc)
        dataplane.save_last_good(registry.state_dir, model.desired(doc, cell.facts(doc)))
        cell.teardown(doc)
        dataplane.save_last_good(registry.state_dir, model.desired(doc, cell.facts(doc)))
        good = dataplane.install_kill_switch(registry.state_dir, 'wg0', log=logged.append)
        return block, block_table, good, kernel_state(), logged
    block, block_table, good, kernel, logged = on_cell(registry, steps)
    assert block == 'a block of everything forwarded from wg0'
    assert nft.BOOT_BLOCK_COMMENT in str(block_table)
    assert good.startswith('the last good state of ')
    assert 'lookup 10002' in kernel['rules'] and 'unreachable' in kernel['rules']   # the saved rules are back
    assert logged == []


@pytest.mark.parametrize('rule, line', [
    ({'family': 4, 'priority': 10000, 'fwmark': 0x10000, 'fwmask': 0x7f0000, 'action': 'table', 'table': 10001},
     'ipv4 rule pref 10000 fwmark 0x10000/0x7f0000 lookup 10001'),
    ({'family': 6, 'priority': 10001, 'fwmark': 0x800000, 'fwmask': 0x800000, 'action': 'unreachable',
      'table': None}, 'ipv6 rule pref 10001 fwmark 0x800000/0x800000 unreachable'),
    ({'family': 4, 'priority': 0, 'fwmark': 0, 'fwmask': 0, 'action': 'unreachable', 'table': None, 'iif': 'wg0',
      'ipproto': 17, 'dport': 53}, 'ipv4 rule pref 0 iif wg0 ipproto udp dport 53 fwmark 0x0/0x0 unreachable'),
])
def test_rule_lines(rule, line):
    assert dataplane._fmt_rule(rule) == line


@pytest.mark.parametrize('route, line', [
    ({'family': 4, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': 'pic-x', 'table': 10001},
     'ipv4 route 0.0.0.0/0 dev pic-x table 10001'),
    ({'family': 6, 'dst': '::/0', 'type': 'unreachable', 'oif': None, 'table': 10001},
     'ipv6 route ::/0 unreachable table 10001'),
])
def test_route_lines(route, line):
    assert dataplane._fmt_route(route) == line


def test_the_converged_signature_follows_the_registry(registry):
    assert dataplane.converged_signature(registry.state_dir) is None
    dataplane.record_converged(registry)
    recorded = dataplane.converged_signature(registry.state_dir)
    assert recorded == dataplane.registry_signature(registry.path)
    registry.save(registry.load())           # a new file (atomic replace): a new signature
    assert dataplane.registry_signature(registry.path) != recorded
    assert dataplane.registry_signature(registry.path + '.missing') is None


def test_last_good_is_rewritten_only_when_it_changed(registry):
    doc = registry.load()
    want = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': []})
    assert dataplane.save_last_good(registry.state_dir, want) is True
    assert dataplane.save_last_good(registry.state_dir, want) is False
    script, rules = dataplane.load_last_good(registry.state_dir)
    assert script == want.render_nft()
    assert [dataplane._fmt_rule(r) for r in rules] == [dataplane._fmt_rule(r) for r in want.rules]


# -- the generation record against a commit between the listing and the apply (fakes: the
# race needs a foreign commit at one exact moment) -------------------------------------------
class _Routing(object):
    def forget_links(self):
        pass

    def rules(self, *_args):
        return []

    def routes(self, *_args):
        return []

    def put_local_last(self, _family):
        return False


class _Kernel(object):
    """nftables' generation counter of one namespace, and a foreign commit right after a listing."""

    def __init__(self, foreign):
        self.gen, self.listings, self.foreign = 10, 0, foreign

    def list_table(self):
        self.listings += 1
        if self.foreign:      # an operator's `nft delete rule ...` lands right after our listing
            self.foreign = False
            self.gen += 1
        return {'fake': 'listing'}

    def json_cmd(self, _commands):
        self.gen += 1         # our element batch: one commit


def _fake_cell(tmp_path, kernel):
    from ansible_collections.pic.connectivity.plugins.module_utils import registry as registry_mod
    cell = object.__new__(dataplane.Cell)
    cell.registry, cell.routing, cell.nft = registry_mod.Registry(str(tmp_path)), _Routing(), kernel
    cell.run_dir = str(tmp_path / 'run')
    cell._held_facts, cell._held_listing = None, None
    cell.facts = lambda doc: {'peer_networks': [], 'interfaces': [], 'down': [], 'present': ['wg0']}
    return cell, registry_mod.empty()


@pytest.mark.parametrize('foreign, listings', [(True, 2), (False, 1)])
def test_a_foreign_commit_after_the_listing_is_never_recorded_as_the_table(tmp_path, monkeypatch, foreign, listings):
    """The element batch planned from a listing that a foreign commit made stale: the
    generation after the batch is not recorded (the next run lists and repairs); without
    the foreign commit it is (the next run skips the listing)."""
    kernel = _Kernel(foreign)
    monkeypatch.setattr(dataplane.nft, 'generation', lambda: kernel.gen)
    monkeypatch.setattr(dataplane.nft, 'element_batch', lambda elements, shapes: [])
    cell, doc = _fake_cell(tmp_path, kernel)
    doc['settings'] = {'peer_interface': 'wg0', 'local_networks': ['192.168.1.0/24']}
    cell._nft_plan = lambda want, listing, *_: ({'stale': True}, {'peer4': (set(), {'10.0.0.2'})})
    cell.converge(doc)
    cell._nft_plan = lambda want, listing, *_: (want.nft_summary(), None)
    cell.converge(doc)
    assert kernel.listings == listings
    cell.converge(doc, relist=True)      # the state guard's repairs never trust the record
    assert kernel.listings == listings + 1
