# -*- coding: utf-8 -*-
"""nft: the collection's table through libnftables (Debian's binding, as on a cell) and the
nft command fallback, in a throwaway network namespace: no table reads as None, a rendered
table replaces atomically and reads back (summary) as the model's own summary, a refused
script is a PicError and leaves the table as it was; summary of nft's JSON, pure."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, model, nft, peers
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns

FACTS = {'peer_networks': ['10.0.0.0/24', 'fd00:10::/64'], 'interfaces': []}


def desired():
    """The data plane of a cell with a tor exit, a proxy exit and three peers."""
    doc = empty()
    doc = connections.plan(doc, {'name': 'Tor', 'type': 'tor', 'config': {}})[0]
    doc = connections.plan(doc, {'name': 'Proxy', 'type': 'proxy', 'config': {'host': '192.0.2.10', 'port': 1080}})[0]
    items = [{'peer': 'alice', 'address': ['10.0.0.2'], 'connection': 'tor', 'fail_open': None},
             {'peer': 'bob', 'address': ['10.0.0.3', 'fd00:10::3'], 'connection': 'proxy', 'fail_open': True},
             {'peer': 'carol', 'address': ['10.0.0.4'], 'connection': 'default', 'fail_open': None}]
    doc = peers.plan(doc, items)[0]
    return model.desired(doc, FACTS)


def _round_trip():
    table = nft.Nft()
    before = table.list_table()
    want = desired()
    table.replace(want.render_nft())
    table.replace(want.render_nft())        # a second replace: the same table, no error
    listed = table.list_table()
    table.delete_table()
    table.delete_table()                    # no table: nothing to delete, no error
    return before, nft.summary(listed), want.nft_summary(), table.list_table()


def test_a_rendered_table_reads_back_as_the_model_summary(libnftables):
    before, have, want, after = in_netns(_round_trip)
    assert before is None and after is None
    assert have == want
    assert have['maps'] and have['sets'] and have['chains']


def test_the_command_fallback_gives_the_same_answer(monkeypatch):
    monkeypatch.setattr(nft, 'HAS_LIBNFTABLES', False)
    before, have, want, after = in_netns(_round_trip)
    assert before is None and after is None and have == want


def test_a_refused_script_is_a_pic_error_and_changes_nothing(libnftables):
    def scenario():
        table = nft.Nft()
        want = desired()
        table.replace(want.render_nft())
        broken = want.render_nft().replace('\tchain ', '\tchain bad chain ', 1)
        try:
            table.replace(broken)
        except PicError as exc:
            return str(exc), nft.summary(table.list_table()), want.nft_summary()
        return None, None, None
    message, have, want = in_netns(scenario)
    assert message.startswith('nftables refused the change')
    assert have == want


@pytest.mark.parametrize('elem, key', [
    ('10.0.0.2', '10.0.0.2/32'),
    ('fd00:10::3', 'fd00:10::3/128'),
    ({'prefix': {'addr': '10.0.0.0', 'len': 24}}, '10.0.0.0/24'),
    ({'prefix': {'addr': 'fd00::', 'len': 64}}, 'fd00::/64'),
    ({'elem': {'val': '10.0.0.9', 'timeout': 3}}, '10.0.0.9/32'),
    ({'range': ['10.0.0.1', '10.0.0.9']}, 'range:10.0.0.1-10.0.0.9'),
    (0x00010000, 0x00010000),
    ('wg0', 'wg0'),
])
def test_element_keys(elem, key):
    assert nft._elem_key(elem) == key


def test_summary_of_listed_objects():
    objects = [
        {'metainfo': {'version': '1.0.6'}},
        {'table': {'family': 'inet', 'name': 'pic_connectivity'}},
        {'set': {'name': 'closed4', 'elem': ['10.0.0.2', {'prefix': {'addr': '10.1.0.0', 'len': 16}}]}},
        {'set': {'name': 'empty'}},
        {'map': {'name': 'peer_v4', 'elem': [
            ['10.0.0.2', {'jump': {'target': 'c_tor_open'}}],
            ['10.0.0.3', {'goto': {'target': 'c_x_closed'}}],
            ['10.0.0.4', {'accept': None}],
        ]}},
        {'chain': {'name': 'empty_chain'}},
        {'rule': {'chain': 'prerouting', 'comment': 'pic:a'}},
        {'rule': {'chain': 'prerouting', 'comment': 'pic:b'}},
    ]
    assert nft.summary(objects) == {
        'sets': {'closed4': {'10.0.0.2/32', '10.1.0.0/16'}, 'empty': set()},
        'maps': {'peer_v4': {'10.0.0.2/32': 'jump c_tor_open', '10.0.0.3/32': 'goto c_x_closed',
                             '10.0.0.4/32': '{"accept": null}'}},
        'chains': {'empty_chain': [], 'prerouting': ['pic:a', 'pic:b']},
    }
    assert nft.summary(None) is None
