# -*- coding: utf-8 -*-
"""nft.py renders the collection's table and parses it back into the same shape."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import model, nft
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


def small_table():
    want = model.Desired()
    want.sets['ingress'] = {'type': 'ifname', 'flags': [], 'elements': {'wg0', 'svc0'}}
    want.sets['down_open'] = {'type': 'mark', 'flags': [], 'elements': {0x00020000}}
    want.maps['peer4'] = {'type': 'ipv4_addr', 'flags': ['interval'],
                          'elements': {'10.0.0.10/32': 'jump c_a_open', '10.0.0.9/32': 'jump c_a_closed'}}
    want.add_chain('c_a_open')
    want.add_rule('c_a_open', 'meta mark set meta mark & 0xff00ffff | 0x00010000')
    want.add_chain('forward', {'type': 'filter', 'hook': 'forward', 'priority': 'filter'})
    want.add_rule('forward', 'meta mark & 0x00ff0000 == 0x00810000 counter drop')
    return want


def test_render_table_replaces_the_table_in_one_script():
    text = nft.render_table(small_table())
    lines = text.splitlines()
    assert lines[:3] == ['table inet pic_connectivity', 'delete table inet pic_connectivity',
                         'table inet pic_connectivity {']
    assert lines[-1] == '}' and text.endswith('}\n')
    # sets, then maps, sorted by name; elements sorted by address, not by text
    assert [l.strip() for l in lines if l.startswith('\tset ') or l.startswith('\tmap ')] == \
        ['set down_open {', 'set ingress {', 'map peer4 {']
    assert '\t\telements = { 0x00020000 }' in lines
    assert '\t\telements = { "svc0", "wg0" }' in lines
    assert '\t\telements = { 10.0.0.9/32 : jump c_a_closed, 10.0.0.10/32 : jump c_a_open }' in lines
    assert '\t\ttype filter hook forward priority filter; policy accept;' in lines
    assert text == small_table().render_nft()


def test_a_listing_parses_back_into_the_rendered_shape():
    want = small_table()
    rules = want.chains
    listed = [{'table': {'family': 'inet', 'name': 'pic_connectivity'}},
              {'set': {'name': 'ingress', 'type': 'ifname', 'elem': ['svc0', 'wg0']}},
              {'set': {'name': 'down_open', 'type': 'mark', 'elem': [0x00020000]}},
              {'map': {'name': 'peer4', 'elem': [[{'prefix': {'addr': '10.0.0.10', 'len': 32}},
                                                  {'jump': {'target': 'c_a_open'}}],
                                                 ['10.0.0.9', {'jump': {'target': 'c_a_closed'}}]]}},
              {'chain': {'name': 'c_a_open'}}, {'chain': {'name': 'forward'}},
              {'rule': {'chain': 'c_a_open', 'comment': rules['c_a_open']['rules'][0][1]}},
              {'rule': {'chain': 'forward', 'comment': rules['forward']['rules'][0][1]}}]
    assert nft.summary(listed) == nft.desired_summary(want) == want.nft_summary()
    listed.pop()
    assert nft.summary(listed) != want.nft_summary()
    assert nft.summary(None) is None


def test_render_down_set():
    assert nft.render_down_set([]) == 'flush set inet pic_connectivity down_open\n'
    assert nft.render_down_set([0x00010000, 0x00030000]) == (
        'flush set inet pic_connectivity down_open\n'
        'add element inet pic_connectivity down_open { 0x00010000, 0x00030000 }\n')


def test_boot_block_script_checks_its_interface():
    assert 'iifname "wg0" oifname != "wg0" counter drop comment "pic:boot-block"' in nft.boot_block_script('wg0')
    with pytest.raises(PicError):
        nft.boot_block_script('wg0" accept')


def test_model_reexports_the_table_name():
    assert (model.NFT_FAMILY, model.NFT_TABLE) == (nft.NFT_FAMILY, nft.NFT_TABLE) == ('inet', 'pic_connectivity')
