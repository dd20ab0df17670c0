# -*- coding: utf-8 -*-
"""The kill switch's guard against a lost nftables table, the direct mark, and
reading back IPv6 unreachable routes (issue 11: fail-safety findings)."""
import socket

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import connections, model, peers, routing
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty


def wg_text(keys, allowed='0.0.0.0/0, ::/0', address='10.200.0.11/32, fd00:200::11/128'):
    return ('[Interface]\nPrivateKey = %s\nAddress = %s\n\n[Peer]\nPublicKey = %s\n'
            'Endpoint = 203.0.113.20:51820\nAllowedIPs = %s\n' % (keys[0], address, keys[1], allowed))


def cell(keys, users, allowed='0.0.0.0/0, ::/0', address='10.200.0.11/32, fd00:200::11/128'):
    doc, _record, _p, _s, _r = connections.plan(empty(), {'name': 'Exit WG', 'type': 'wireguard_ext',
                                                          'config': {'wg_config': wg_text(keys, allowed, address)}})
    doc, _dummy = peers.plan(doc, users)
    return doc


def guards(want):
    """The guard of forwarded packets (not the DNS guard's rules of priority 0)."""
    return [r for r in want.rules if r.get('iif') and r['priority'] != 0]


def dns_guards(want):
    return [r for r in want.rules if r['priority'] == 0]


class FakeIpr(object):
    def __init__(self, routes):
        self._routes = routes

    def get_routes(self, family):
        return [r for r in self._routes if r['family'] == family]


def fake_route(family, table, rtype, oif):
    return {'family': family, 'table': 252, 'dst_len': 0, 'type': rtype,
            'attrs': [('RTA_TABLE', table), ('RTA_OIF', oif)]}


def test_ipv6_unreachable_route_reads_back_as_desired():
    """The kernel reports an IPv6 unreachable route with dev lo: read back as no
    interface, so that a v4-only exit's ``unreachable ::/0`` is neither re-added
    nor deleted on every run."""
    routes = routing.Routing.__new__(routing.Routing)
    routes.ipr = FakeIpr([fake_route(socket.AF_INET6, 10001, routing.RTN_UNREACHABLE, 1),
                          fake_route(socket.AF_INET, 10001, routing.RTN_UNICAST, 7)])
    routes._names = {'lo': 1, 'pic-exit-wg': 7}
    routes._links = {}
    have = routes.routes((10001, 10127))
    assert {'family': 6, 'table': 10001, 'dst': '::/0', 'type': 'unreachable', 'oif': None} in have
    assert {'family': 4, 'table': 10001, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': 'pic-exit-wg'} in have


def test_v4_only_exit_has_no_route_diff_after_apply(keys):
    doc = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg', 'fail_open': True}],
               allowed='0.0.0.0/0', address='10.200.0.11/32')
    want = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg']})
    assert {'family': 6, 'dst': '::/0', 'type': 'unreachable', 'oif': None} in want.routes[10001]
    want_routes = [dict(r, table=t) for t, rs in want.routes.items() for r in rs]
    routes = routing.Routing.__new__(routing.Routing)
    routes.ipr = FakeIpr([fake_route(socket.AF_INET6, 10001, routing.RTN_UNREACHABLE, 1),
                          fake_route(socket.AF_INET, 10001, routing.RTN_UNICAST, 7)])
    routes._names = {'lo': 1, 'pic-exit-wg': 7}
    routes._links = {}
    assert routing.diff(routes.routes((10001, 10127)), want_routes, routing.route_key) == ([], [])


def test_direct_mark_is_reserved():
    layout = model.MarkLayout(0x00ff0000)
    assert layout.direct == 0x007f0000 and layout.max_conn_index == 126
    with pytest.raises(PicError) as err:
        model.allocate(empty(), layout, model.normalize_settings({})[0], 'x', pinned_mark=0x007f0000)
    assert str(err.value).startswith('mark:')


def test_two_bit_mask_is_refused_now():
    with pytest.raises(PicError) as err:
        model.normalize_settings({'mark_mask': 0x00030000})
    assert 'mark_mask' in str(err.value) and '3 bits' in str(err.value)


def test_every_classified_packet_leaves_prerouting_with_a_mark(keys):
    doc = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg'}])
    want = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg']})
    rules = [text for text, _c in want.chains['prerouting']['rules']]
    direct = 'meta mark set meta mark & 0xff00ffff | 0x007f0000'
    assert rules[0] == 'iifname != @ingress return'
    assert rules[1] == direct
    # every way of taking the exit's mark away gives the direct mark instead of none
    assert all(direct in r for r in rules if 'meta mark set' in r)


def test_replies_to_inbound_connections_keep_the_direct_mark(keys):
    """A user's reply to a connection opened to it (a port forward to a service) goes back by the
    default gateway: right after the direct mark, before the peer maps could give it an exit's."""
    doc = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg'}])
    want = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg']})
    rules = [text for text, _c in want.chains['prerouting']['rules']]
    assert rules[2] == model.INBOUND_REPLIES == 'ct direction reply ct status dnat return'
    assert rules.index('ip saddr vmap @peer4') > 2


def test_guard_rule_per_ingress_interface_and_family_only_with_closed_users(keys):
    closed = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg'}])
    want = model.desired(closed, {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg']})
    assert guards(want) == [
        {'family': 4, 'priority': 10001, 'fwmark': 0, 'fwmask': 0x00ff0000, 'action': 'table',
         'table': 10127, 'iif': 'wg0'},
        {'family': 6, 'priority': 10001, 'fwmark': 0, 'fwmask': 0x00ff0000, 'action': 'unreachable',
         'table': None, 'iif': 'wg0'}]
    assert want.routes[10127] == [{'family': 4, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': 'wg0'}]
    assert model.owned_priorities(model.normalize_settings({})[0]) == (0, 10000, 10001)
    opened = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg', 'fail_open': True}])
    assert guards(model.desired(opened, {'peer_networks': [], 'interfaces': []})) == []


def test_guard_costs_the_same_at_ten_thousand_peers(keys):
    users = [{'peer': 'p%d' % i, 'address': ['10.%d.%d.%d/32' % (1 + i // 62500, i // 250 % 250, i % 250 + 1)],
              'connection': 'exit-wg'} for i in range(10000)]
    few = model.desired(cell(keys, users[:1]), {'peer_networks': [], 'interfaces': []})
    many = model.desired(cell(keys, users), {'peer_networks': [], 'interfaces': []})
    assert len(many.rules) == len(few.rules)
    assert dict((n, len(c['rules'])) for n, c in many.chains.items()) == \
        dict((n, len(c['rules'])) for n, c in few.chains.items())


def test_rule_key_tells_interfaces_apart():
    base = {'family': 4, 'priority': 10001, 'fwmark': 0, 'fwmask': 0x00ff0000, 'action': 'unreachable',
            'table': None}
    assert routing.rule_key(dict(base, iif='wg0')) != routing.rule_key(dict(base, iif=None))
    assert routing.rule_key(dict(base, iif=None)) == routing.rule_key(base)


def test_guard_table_cannot_be_pinned(keys):
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'Exit WG', 'type': 'wireguard_ext', 'table': 10127,
                                   'config': {'wg_config': wg_text(keys)}})
    assert str(err.value).startswith('table:') and 'guard' in str(err.value)


def test_last_good_state_round_trip_and_refusal(tmp_path, keys):
    from ansible_collections.pic.connectivity.plugins.module_utils import dataplane
    doc = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg'}])
    want = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': []})
    assert dataplane.load_last_good(str(tmp_path)) is None
    assert dataplane.save_last_good(str(tmp_path), want) is True
    assert dataplane.save_last_good(str(tmp_path), want) is False     # unchanged: not rewritten
    path = dataplane.last_good_path(str(tmp_path))
    assert oct(__import__('os').stat(path).st_mode & 0o777) == '0o600'
    script, rules = dataplane.load_last_good(str(tmp_path))
    assert script == want.render_nft() and rules == want.rules
    with open(path, 'w') as handle:
        handle.write('{"nft": "flush ruleset\\n", "rules": []}')
    with pytest.raises(PicError) as err:
        dataplane.load_last_good(str(tmp_path))
    assert 'last good state' in str(err.value)


def test_boot_block_refuses_a_bad_interface_name():
    from ansible_collections.pic.connectivity.plugins.module_utils import dataplane
    assert 'iifname "wg0" oifname != "wg0" counter drop' in dataplane.boot_block_script('wg0')
    with pytest.raises(PicError) as err:
        dataplane.boot_block_script('wg0"; flush ruleset')
    assert str(err.value).startswith('peer_interface:')


@pytest.mark.parametrize('text', ['{}', '[]', 'null', '"x"', '{"version": 1, "connections": []}', 'garbage'])
def test_restore_refuses_what_the_collection_never_writes(tmp_path, text):
    from ansible_collections.pic.connectivity.plugins.module_utils import cli
    from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
    (tmp_path / 'registry.json').write_text(text)
    with pytest.raises(PicError) as err:
        cli.checked_registry(Registry(str(tmp_path)))
    assert 'registry' in str(err.value)


def test_guard_route_only_while_the_peer_interface_exists(keys):
    doc = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg'}])
    gone = model.desired(doc, {'peer_networks': [], 'interfaces': [], 'present': []})
    assert gone.routes[10127] == [] and len(guards(gone)) == 2
    there = model.desired(doc, {'peer_networks': [], 'interfaces': [], 'present': ['wg0']})
    assert there.routes[10127] == [{'family': 4, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': 'wg0'}]


def test_dns_guard_rules_per_ingress_interface_before_the_local_rule(keys):
    """Unmarked DNS queries (TCP and UDP port 53) from an ingress interface, at
    priority 0: IPv4 back to the peer interface (the guard table), IPv6
    unreachable; only while some user is fail-closed."""
    closed = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg'}])
    want = model.desired(closed, {'peer_networks': ['10.0.0.0/24'], 'interfaces': ['pic-exit-wg']})
    common = {'priority': 0, 'fwmark': 0, 'fwmask': 0x00ff0000, 'iif': 'wg0', 'dport': 53}
    assert dns_guards(want) == [
        dict(common, family=4, action='table', table=10127, ipproto=17),
        dict(common, family=6, action='unreachable', table=None, ipproto=17),
        dict(common, family=4, action='table', table=10127, ipproto=6),
        dict(common, family=6, action='unreachable', table=None, ipproto=6)]
    opened = cell(keys, [{'peer': 'p', 'address': ['10.0.0.11/32'], 'connection': 'exit-wg', 'fail_open': True}])
    assert dns_guards(model.desired(opened, {'peer_networks': [], 'interfaces': []})) == []


def test_dns_guard_rule_key_and_format():
    from ansible_collections.pic.connectivity.plugins.module_utils import dataplane
    base = {'family': 4, 'priority': 0, 'fwmark': 0, 'fwmask': 0x00ff0000, 'action': 'table',
            'table': 10127, 'iif': 'wg0'}
    udp, tcp = dict(base, ipproto=17, dport=53), dict(base, ipproto=6, dport=53)
    assert len(set(routing.rule_key(r) for r in (base, udp, tcp))) == 3
    assert dataplane._fmt_rule(udp) == 'ipv4 rule pref 0 iif wg0 ipproto udp dport 53 fwmark 0x0/0xff0000 lookup 10127'


class FakeRuleIpr(object):
    """Rule messages in the kernel's list order; add appends after the last
    rule of the same priority, del removes the first match (as the kernel)."""

    def __init__(self, rules):
        self.list = rules

    def get_rules(self, family):
        return [r for r in self.list if r['family'] == family]

    def rule(self, op, family, priority, table, protocol=0):
        if op == 'add':
            new = fake_rule(family, priority, table, FRA_PROTOCOL=protocol)
            if any(r['attrs'] == new['attrs'] for r in self.list):
                return    # EEXIST (swallowed by Routing._nl)
            at = max([i + 1 for i, r in enumerate(self.list) if r['family'] == family and
                      dict(r['attrs']).get('FRA_PRIORITY', 0) <= priority] or [0])
            self.list.insert(at, new)
        else:
            self.list.remove([r for r in self.list if routing._is_local_rule(r) and r['family'] == family][0])


def fake_rule(family, priority, table, **attrs):
    out = {'family': family, 'table': table if table < 256 else 252, 'action': routing.FR_ACT_TO_TBL,
           'attrs': [('FRA_TABLE', table)] + ([('FRA_PRIORITY', priority)] if priority else []) +
           list(attrs.items())}
    return out


def test_local_rule_is_moved_behind_the_dns_guard_without_a_gap():
    ipr = FakeRuleIpr([fake_rule(socket.AF_INET, 0, 255, FRA_PROTOCOL=2),
                       fake_rule(socket.AF_INET, 0, 10127, FRA_IIFNAME='wg0', FRA_FWMARK=0, FRA_FWMASK=0xff0000,
                                 FRA_IP_PROTO=17, FRA_DPORT_RANGE='53:53'),
                       fake_rule(socket.AF_INET, 32766, 254)])
    routes = routing.Routing.__new__(routing.Routing)
    routes.ipr = ipr
    assert routes.local_rule_first(4) is True
    ipr.list.append(fake_rule(socket.AF_INET, 0, 100, FRA_IIFNAME='eth9', FRA_IP_PROTO=17, FRA_DPORT_RANGE='53:53'))
    # only the guard's, never the local rule or an administrator's rule without fwmark 0/<mask>
    assert [(r['priority'], r['table']) for r in routes.rules((0,))] == [(0, 10127)]
    ipr.list.pop()
    assert routes.put_local_last(4) is True
    tables = [dict(r['attrs'])['FRA_TABLE'] for r in ipr.list]
    assert tables == [10127, 255, 254]
    assert routes.local_rule_first(4) is False and routes.put_local_last(4) is False
    # a second guard rule lands after the (moved) local rule: moved again, by another protocol
    ipr.list.insert(2, fake_rule(socket.AF_INET, 0, 10127, FRA_IIFNAME='wg0', FRA_FWMARK=0, FRA_FWMASK=0xff0000,
                                 FRA_IP_PROTO=6, FRA_DPORT_RANGE='53:53'))
    assert routes.put_local_last(4) is True
    assert [dict(r['attrs']).get('FRA_IP_PROTO') for r in ipr.list] == [17, 6, None, None]
    assert dict(ipr.list[2]['attrs'])['FRA_PROTOCOL'] == 2


def test_local_rule_never_deleted_without_a_second_one():
    class Refusing(FakeRuleIpr):
        def rule(self, op, family, priority, table, protocol=0):
            assert op == 'add', 'deleted the only local rule'
    ipr = Refusing([fake_rule(socket.AF_INET, 0, 255, FRA_PROTOCOL=2),
                    fake_rule(socket.AF_INET, 0, 10127, FRA_IIFNAME='wg0', FRA_FWMARK=0, FRA_FWMASK=0xff0000,
                              FRA_IP_PROTO=17, FRA_DPORT_RANGE='53:53')])
    routes = routing.Routing.__new__(routing.Routing)
    routes.ipr = ipr
    with pytest.raises(PicError):
        routes.put_local_last(4)
    assert len(ipr.list) == 2
