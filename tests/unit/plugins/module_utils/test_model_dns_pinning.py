# -*- coding: utf-8 -*-
"""DNS of interface exits' peers never reaches the cell's resolver (issue 11, Deliver 7):
model.pin_dns, the OpenVPN hook's pushed DNS, the relay's remote resolver."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import links, model, openvpn, validation
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

from ansible_collections.pic.connectivity.tests.unit.helpers import keys_wg_text as wg_text, new_cell

FACTS = {'peer_networks': ['10.0.0.0/24', 'fd00:10::/64'], 'interfaces': []}
IS_CONN = 'meta mark & 0x007f0000 == 0x00010000'


def rules(want, chain):
    return [text for text, _comment in want.chains[chain]['rules']]


def dnat_rules(want):
    return [r for r in rules(want, 'dstnat') if 'dnat' in r]


def rejects(want):
    return [r for r in rules(want, 'input') if 'dport 53 reject' in r]


def test_wireguard_without_dns_line_refuses_dns_to_the_cell(keys):
    doc, record = new_cell(keys)
    assert record['dns'] == []
    want = model.desired(doc, FACTS)
    assert dnat_rules(want) == []
    assert rejects(want) == ['%s meta l4proto tcp th dport 53 reject with tcp reset' % IS_CONN,
                             '%s meta l4proto udp th dport 53 reject with icmpx port-unreachable' % IS_CONN]


def test_wireguard_dns_line_pins_its_family_and_refuses_the_other(keys):
    doc, record = new_cell(keys, config={'wg_config': wg_text(keys, extra='DNS = 10.200.0.1')})
    want = model.desired(doc, FACTS)
    assert dnat_rules(want) == ['%s ip daddr @local4 meta l4proto { tcp, udp } th dport 53 dnat ip to 10.200.0.1'
                                % IS_CONN]
    # an AAAA query over IPv6 to the cell is not DNATed: refused in input, never the cell's resolver
    assert len(rejects(want)) == 2


def test_openvpn_pushed_dns_is_used_when_no_dns_is_configured(keys):
    doc, record = new_cell(keys)
    record = doc['connections'][record['id']]
    record['pushed_dns'] = ['10.201.0.53', 'fd00:201::53']
    want = model.desired(doc, FACTS)
    assert [r.rsplit(' ', 1)[1] for r in dnat_rules(want)] == ['10.201.0.53', 'fd00:201::53']
    record['dns'] = ['10.200.0.1']          # a configured server wins
    assert [r.rsplit(' ', 1)[1] for r in dnat_rules(model.desired(doc, FACTS))] == ['10.200.0.1']


def test_fail_open_peer_held_down_keeps_the_cell_resolver(keys):
    """The down_open unmark precedes dstnat: DNAT and reject match the index bits only."""
    doc, record = new_cell(keys)
    want = model.desired(doc, dict(FACTS, down=[record['id']]))
    pre = rules(want, 'prerouting')
    assert any('@down_open' in r for r in pre)
    assert all(r.startswith(IS_CONN) for r in rejects(want))


@pytest.mark.parametrize('env, expect', [
    ({'foreign_option_1': 'dhcp-option DNS 10.201.0.53'}, ['10.201.0.53']),
    ({'foreign_option_2': 'dhcp-option DNS 10.201.0.54', 'foreign_option_1': 'dhcp-option DNS 10.201.0.53',
      'foreign_option_3': 'dhcp-option DNS6 fd00:201::53'}, ['10.201.0.53', 'fd00:201::53']),
    ({'foreign_option_10': 'dhcp-option DNS 10.0.0.10', 'foreign_option_9': 'dhcp-option DNS 10.0.0.9'},
     ['10.0.0.9']),
    ({'dns_server_0_address_1': 'fd00:201::53'}, ['fd00:201::53']),
    ({'foreign_option_1': 'dhcp-option DOMAIN example.com'}, []),
    ({'foreign_option_1': 'dhcp-option DNS fd00::1%eth0\nup /bin/sh'}, []),
    ({'foreign_option_1': 'dhcp-option DNS 127.0.0.1'}, []),
    ({'foreign_option_1': 'dhcp-option DNS 0.0.0.0'}, []),
    ({'foreign_option_1': 'dhcp-option DNS ::ffff:10.0.0.1'}, []),
    ({'foreign_option_1': 'dhcp-option DNS fe80::1'}, []),
    ({'foreign_option_1': 'dhcp-option DNS 10.0.0.1 extra'}, []),
    ({'foreign_option_x': 'dhcp-option DNS 10.0.0.1'}, []),
    ({}, []),
])
def test_pushed_dns_from_the_hook_environment(env, expect):
    assert openvpn.pushed_dns(env) == expect


@pytest.mark.parametrize('value', ['fd00::1%eth0', '10.0.0.1\n', ' 10.0.0.1', '224.0.0.1', '::', '::1', 'dns.example',
                                   None, 5, '10.0.0.256'])
def test_dns_address_is_strict(value):
    with pytest.raises(PicError) as err:
        validation.parse_address(value, 'links[0].remote_dns[0]')
    assert 'links[0].remote_dns[0]' in str(err.value)


def test_relay_takes_the_remote_cell_resolver():
    link = {'cell': 'cell2', 'interface': 'cl-cell2', 'remote_offers_exit': True,
            'remote_dns': ['10.254.0.2', 'fd00:254:0::2']}
    doc, relays, _orphans = links.plan(empty(), [link])
    assert doc['connections']['cell2']['dns'] == ['10.254.0.2', 'fd00:254::2']
    want = model.desired(doc, FACTS)
    assert [r.rsplit(' ', 1)[1] for r in dnat_rules(want)] == ['10.254.0.2', 'fd00:254::2']
    doc, relays, _orphans = links.plan(doc, [dict(link, remote_dns=None)])
    assert doc['connections']['cell2']['dns'] == []
    assert dnat_rules(model.desired(doc, FACTS)) == [] and len(rejects(model.desired(doc, FACTS))) == 2


@pytest.mark.parametrize('bad', [['10.254.0.2', '10.254.0.3'], ['10.254.0.2\nx'], 'x', ['a', 'b', 'c']])
def test_relay_remote_dns_errors(bad):
    before = empty()
    with pytest.raises(PicError) as err:
        links.plan(before, [{'cell': 'cell2', 'interface': 'cl-cell2', 'remote_offers_exit': True,
                             'remote_dns': bad}])
    assert 'links[0].remote_dns' in str(err.value)
    assert before == empty()
