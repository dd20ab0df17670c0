# -*- coding: utf-8 -*-
"""The documented data plane settings agree with the code (doc fragment and pic_connection)."""
import re

import pytest
import yaml

from ansible_collections.pic.connectivity.plugins.doc_fragments.cell import ModuleDocFragment
from ansible_collections.pic.connectivity.plugins.module_utils import model
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.plugins.modules import pic_connection

WORDS = {'two': 2, 'three': 3, 'four': 4}


def options(doc_text):
    return yaml.safe_load(doc_text)['options']


def text(option):
    return ' '.join(option['description'])


def test_documented_minimum_mask_bits_is_the_code_minimum():
    doc = text(options(ModuleDocFragment.DOCUMENTATION)['mark_mask'])
    minimum = WORDS[re.search(r'at least (\w+) bits', doc).group(1)]
    below = ((1 << (minimum - 1)) - 1) << 8
    smallest = ((1 << minimum) - 1) << 8
    with pytest.raises(PicError) as err:
        model.normalize_settings({'mark_mask': below})
    assert err.value.field == 'mark_mask'
    settings, layout = model.normalize_settings({'mark_mask': smallest})
    assert layout.max_conn_index == 2
    assert 'three bits, allows 2' in doc


def test_documented_default_layout_is_the_code_layout():
    settings, layout = model.normalize_settings({})
    doc = text(options(ModuleDocFragment.DOCUMENTATION)['mark_mask'])
    assert 'allows %d connections' % layout.max_conn_index in doc
    assert 'C(0x%08x)-C(0x%08x)' % (layout.mark(1, False), layout.mark(layout.max_conn_index, False)) in doc
    assert 'direct mark C(0x%08x)' % layout.direct in doc
    assert 'kill bit C(0x%08x)' % layout.kill in doc
    table_doc = text(options(ModuleDocFragment.DOCUMENTATION)['table_base'])
    low, high = model.owned_table_range(settings, layout)
    assert '%d-%d with the defaults' % (low, high) in table_doc
    assert model.guard_table(settings, layout) == high


def test_pic_connection_pins_document_the_reserved_mark_and_table():
    settings, layout = model.normalize_settings({})
    opts = options(pic_connection.DOCUMENTATION)
    assert 'C(0x%08x)-C(0x%08x)' % (layout.mark(1, False), layout.mark(layout.max_conn_index, False)) \
        in text(opts['mark'])
    assert 'C(0x%08x) is the direct mark' % layout.direct in text(opts['mark'])
    assert 'I(table_base)+%d with the default mask' % layout.max_conn_index in text(opts['table'])
    assert '(I(table_base)+%d with the default mask) is the kill switch' % layout.max_index in text(opts['table'])


def test_the_documented_reserved_mark_and_table_are_refused_as_pins():
    doc = empty()
    settings, layout = model.normalize_settings({})
    with pytest.raises(PicError, match='direct mark'):
        model.allocate(doc, layout, settings, 'x', pinned_mark=layout.direct)
    with pytest.raises(PicError, match='guard'):
        model.allocate(doc, layout, settings, 'x', pinned_table=model.guard_table(settings, layout))
    assert model.allocate(doc, layout, settings, 'x', pinned_mark=layout.mark(layout.max_conn_index, False),
                          pinned_table=settings['table_base'] + layout.max_conn_index) \
        == (layout.max_conn_index, settings['table_base'] + layout.max_conn_index)


def test_pic_peer_exit_documents_the_code_address_rules():
    from ansible_collections.pic.connectivity.plugins.module_utils import validation
    from ansible_collections.pic.connectivity.plugins.modules import pic_peer_exit
    doc = text(options(pic_peer_exit.DOCUMENTATION)['address'])
    limits = validation.PEER_MIN_PREFIX
    assert 'at most a /%d for IPv4 and a /%d for IPv6' % (limits[4], limits[6]) in doc
    validation.parse_network('10.1.0.0/%d' % limits[4], 'a', peer=True)
    validation.parse_network('fd00:1::/%d' % limits[6], 'a', peer=True)
    for value in ('10.0.0.0/%d' % (limits[4] - 1), 'fd00::/%d' % (limits[6] - 1), '0.0.0.0/0', '::/0',
                  'fd00::1%eth0', '::ffff:10.0.0.5', '10.0.0.1/24'):
        with pytest.raises(PicError):
            validation.parse_network(value, 'a', peer=True)
