# -*- coding: utf-8 -*-
"""routing: the collection's rules and routes through netlink, in a throwaway network
namespace (pyroute2 against a real kernel): added, read back as the model writes them,
deleted, and nothing outside the reserved priorities and tables is read; the pure diff."""
import subprocess

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import routing
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.tests.unit.helpers import in_netns

RULES = [
    {'family': 4, 'priority': 10000, 'fwmark': 0x10000, 'fwmask': 0x7f0000, 'action': 'table', 'table': 10001,
     'iif': None},
    {'family': 6, 'priority': 10001, 'fwmark': 0x800000, 'fwmask': 0x800000, 'action': 'unreachable',
     'table': None, 'iif': None},
    {'family': 4, 'priority': 10002, 'fwmark': 0, 'fwmask': 0, 'action': 'table', 'table': 10002, 'iif': 'lo'},
]
ROUTES = [
    {'family': 4, 'table': 10001, 'dst': '0.0.0.0/0', 'type': 'unreachable', 'oif': None},
    {'family': 6, 'table': 10001, 'dst': '::/0', 'type': 'unreachable', 'oif': None},
    {'family': 4, 'table': 10002, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': 'dummy0'},
]
PRIORITIES = range(10000, 10010)


def _with_dummy():
    subprocess.run(['ip', 'link', 'add', 'dummy0', 'type', 'veth', 'peer', 'name', 'dummy1'], check=True)
    subprocess.run(['ip', 'addr', 'add', '192.0.2.1/24', 'dev', 'dummy0'], check=True)
    subprocess.run(['ip', 'addr', 'add', 'fd00:5::1/64', 'dev', 'dummy0', 'nodad'], check=True)
    for ifname in ('dummy0', 'dummy1'):   # a veth pair: up only with both ends up
        subprocess.run(['ip', 'link', 'set', ifname, 'up'], check=True)
    return routing.Routing()


def test_rules_are_read_back_as_added_and_deleted():
    def scenario():
        net = _with_dummy()
        foreign = subprocess.run(['ip', 'rule', 'add', 'pref', '20000', 'lookup', '100'], check=True)
        for rule in RULES + RULES:     # adding twice is no error (EEXIST)
            net.add_rule(rule)
        added = net.rules(PRIORITIES)
        for rule in RULES + RULES:     # deleting twice neither
            net.del_rule(rule)
        left = net.rules(PRIORITIES)
        net.close()
        return added, left, foreign.returncode
    added, left, _rc = in_netns(scenario)
    key = routing.rule_key
    assert sorted(map(key, added)) == sorted(map(key, RULES))
    assert left == []


def test_routes_are_read_back_as_added_and_deleted():
    def scenario():
        net = _with_dummy()
        done = [net.add_route(route) for route in ROUTES]
        missing = net.add_route(dict(ROUTES[2], oif='nosuch0'))
        added = net.routes((10000, 10100))
        main_only = net.routes((1, 9999))   # the namespace's own tables are not the collection's
        for route in ROUTES:
            net.del_route(route)
        left = net.routes((10000, 10100))
        net.close()
        return done, missing, added, main_only, left
    done, missing, added, main_only, left = in_netns(scenario)
    assert done == [True, True, True] and missing is False
    assert sorted(map(routing.route_key, added)) == sorted(map(routing.route_key, ROUTES))
    assert all(route['table'] < 10000 for route in main_only)
    assert left == []


@pytest.mark.parametrize('route', ROUTES,
                         ids=['v4-unreachable', 'v6-unreachable', 'v4-unicast'])
def test_deleting_a_route_already_gone_is_no_error(route):
    def scenario():
        net = _with_dummy()
        net.add_route(route)
        net.del_route(route)
        net.del_route(route)
        return net.routes((10000, 10100))
    assert in_netns(scenario) == []


def test_links_and_their_networks():
    def scenario():
        net = _with_dummy()
        return net.links(), net.networks_of('dummy0'), net.networks_of('nosuch0'), net.link('nosuch0')
    links, nets, none, link = in_netns(scenario)
    assert set(links) == {'lo', 'dummy0', 'dummy1'}
    assert sorted(nets) == ['192.0.2.0/24', 'fd00:5::/64']     # no link-local address
    assert none == [] and link is None


def test_a_route_the_kernel_refuses_is_a_pic_error():
    def scenario():
        net = routing.Routing()
        net.add_route({'family': 4, 'table': 10001, 'dst': '192.0.2.0/33', 'type': 'unreachable', 'oif': None})
    with pytest.raises(PicError) as err:
        in_netns(scenario)
    assert 'netlink refused' in str(err.value)


@pytest.mark.parametrize('have, want, add, delete', [
    ([], [], [], []),
    ([{'k': 1}], [{'k': 1}], [], []),
    ([{'k': 1}], [{'k': 2}], [{'k': 2}], [{'k': 1}]),
    ([{'k': 2}, {'k': 1}], [{'k': 3}, {'k': 1}], [{'k': 3}], [{'k': 2}]),
])
def test_diff_by_key(have, want, add, delete):
    assert routing.diff(have, want, lambda x: x['k']) == (add, delete)


def test_rule_key_tells_actions_and_marks_apart():
    base = RULES[0]
    others = [dict(base, fwmark=0x20000), dict(base, table=10002), dict(base, family=6), dict(base, priority=10003)]
    keys = set(routing.rule_key(rule) for rule in [base] + others)
    assert len(keys) == len(others) + 1
