# -*- coding: utf-8 -*-
"""WireGuard files and keys (module_utils/wgconf.py): no secret in an error, canonical values.

Regressions of issue 11: each case was accepted (or echoed a secret) before the grammar was made strict.
"""
import re

import pytest
from hypothesis import given, settings

from ansible_collections.pic.connectivity.plugins.module_utils import connections, wgconf
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

from ansible_collections.pic.connectivity.tests.unit.helpers import HOSTILE, PSK, keyed, refused, wg_text


def test_a_misspelt_secret_line_masks_the_key_not_its_separator():
    found = connections.secrets_in({'wg_config': wg_text(extra_iface='PrivateKey: %s' % PSK)})
    assert PSK in found and ':' not in found
    assert all(len(s) >= 8 for s in found)


@pytest.mark.parametrize('line', ['PrivateKey: %s' % PSK, 'PrivateKey %s' % PSK, '%s' % PSK,
                                  'Private-Key = %s' % PSK, 'PresharedKey: %s' % PSK, 'Privatekey_ = %s' % PSK])
def test_misspelt_key_line_is_not_echoed(line):
    for text in (wg_text(extra_iface=line), wg_text(extra_peer=line)):
        err = refused('wireguard_ext', {'wg_config': text})
        assert err.field == 'config.wg_config' and 'line ' in str(err)
        assert PSK not in str(err) and PSK[:20] not in str(err)


def test_unknown_word_key_is_named_with_its_line():
    err = refused('wireguard_ext', {'wg_config': wg_text(extra_iface='Wat = 1')})
    assert 'line 4: unknown key Wat' in str(err)


@pytest.mark.parametrize('sep', ['\x0b', '\x0c', '\x1c', '\x85', '\u2028', '\x00'])
def test_wg_config_line_separators_are_refused(sep):
    err = refused('wireguard_ext', {'wg_config': wg_text(allowed='0.0.0.0/0%s[Peer]' % sep)})
    assert err.field == 'config.wg_config' and 'control character' in str(err)


def test_wg_values_are_stored_canonical():
    _doc, record, payload, _s, _r = connections.plan(empty(), {'name': 'X', 'type': 'wireguard_ext', 'config': keyed(
        endpoint='[2001:DB8:0::1]:51820', allowed_ips=['10.9.9.9/8', '::/0'], dns=['FD00::53'])})
    assert payload['peers'][0]['endpoint'] == '[2001:db8::1]:51820'
    assert payload['peers'][0]['allowed_ips'] == ['10.0.0.0/8', '::/0']
    assert record['dns'] == ['fd00::53']
    rendered = wgconf.render_setconf(payload)
    assert rendered.count('[Peer]') == 1 and '%' not in rendered


@settings(max_examples=300, deadline=None, database=None)
@given(HOSTILE)
def test_fuzz_endpoint(value):
    try:
        out = wgconf.check_endpoint(value, 'e')
    except PicError as exc:
        assert exc.field == 'e' and exc.value == value
        return
    assert re.fullmatch(r'(\[[0-9a-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}', out) and not out.startswith('-')
