# -*- coding: utf-8 -*-
"""Service egress through every exit type (issue 13 item 7), proven with packets.

cell1 runs one fail-closed connection of every type at once (the leak matrix's
connections: wireguard_ext, openvpn, tor, sshuttle, a SOCKS5 and an HTTP proxy,
and the relay through cell2). Its service namespace (``cell1-svc``, behind the
cell's service network ``svc0``) holds one service per type, each with an
address of its own (pic_service_egress, ``has_egress: true``), routed through
that type's connection:

* the internet's echo server sees each service's requests from its exit's
  address (the proxies carry IPv4 TCP only: their IPv6 is refused);
* a sender in the service namespace (conftest.Senders: TCP, UDP, ICMP, DNS to
  the internet and to the cell, both families, every 0.25 s, a destination of
  its own per service) runs through faults applied to every exit at once (the
  leak matrix's: exit servers stopped; instances killed; exit interfaces
  deleted); the internet counts per flow (conftest.FlowCounter) and the cell
  counts what leaves by its WAN interface: no packet of a fail-closed service
  reaches the WAN, at any time, and every service is carried again after the
  repair. Two more services, through the WireGuard and the SOCKS5 exits with
  ``fail_open: true``, show that the faults are real: they reach the WAN while
  their exit is down (the monitor reports it down), and the fail-closed ones
  never do.

A service on an exit still answers what comes in from the WAN (a port
forward to its address, the email service's SMTP, say): the replies follow
their connection back by the WAN, not into the exit, for every type.

Services are forwarded traffic (they arrive by their service network, an
ingress interface of the classifier like the peers' interface): the same
stages carry them for every type (redirects for the proxy kinds, routes and
the kill switch for the interface kinds).
"""
import json
import os
import sys
import time

import pytest

from conftest import (ROOT, Cell, FlowCounter, Senders, VirtualPeer, piclab, reset_cell, wait_for)
from exit_helpers import inventory_dir, playbook, server_plugin
from test_leak_matrix import NAMES, TYPES, connections, exit_server_stopped, instance_killed, interface_deleted, link

OVPN, SSHD, PROXIES, TORNET = (server_plugin(n) for n in ('openvpn', 'sshd', 'proxies', 'tor'))
sys.path.insert(0, os.path.join(ROOT, 'lab', 'servers'))
import services as labsvc  # noqa: E402

SVC_NODE = labsvc.node('cell1')
SEND_INTERVAL = 0.25
HOLD = 6.0            # seconds a fault is held before it is repaired
RECOVER = 60.0        # at most this long for every service to be carried again
TIMEOUT = {'tor': 5}  # seconds per request (a Tor circuit is slower than a tunnel)
OPEN_TYPES = ('wireguard_ext', 'proxy_socks5')     # a fail-open service too: the faults are real
FAULTS = {'exit_server_stopped': exit_server_stopped, 'instance_killed': instance_killed,
          'interface_deleted': interface_deleted}


def exit_sources(ctype):
    """(IPv4, IPv6) the internet sees for traffic through an exit of CTYPE (None: not carried)."""
    if ctype == 'wireguard_ext':
        return piclab.exit_address(4), piclab.exit_address(6)
    if ctype == 'openvpn':
        return OVPN.address(4), OVPN.address(6)
    if ctype == 'tor':
        return TORNET.exit_address(4), TORNET.exit_address(6)
    if ctype == 'sshuttle':
        return SSHD.address(4), SSHD.address(6)
    if ctype == 'proxy_socks5':
        return PROXIES.address(PROXIES.SOCKS_NODE, 4), None     # redsocks 0.5 is IPv4 only
    if ctype == 'proxy_http':
        return PROXIES.address(PROXIES.HTTP_NODE, 4), None
    assert ctype == 'cell_relay', ctype
    return piclab.wan_address('cell2', 4), piclab.wan_address('cell2', 6)


class Service(VirtualPeer):
    """A cell service in the service namespace: one more address there (its own
    source), a destination of its own on the internet, routed through CTYPE's connection."""

    def __init__(self, index, ctype, fail_open=False):
        VirtualPeer.__init__(self, 70 + index, 'cell1', 'p1',
                             'svc-' + ctype.replace('_', '-') + ('-open' if fail_open else ''))
        self.ctype, self.fail_open, self.node, self.lab_peer = ctype, fail_open, SVC_NODE, 'svc'
        self.src4, self.src6 = '172.31.0.%d' % (20 + index), 'fd00:31::%d' % (20 + index)

    def module_args(self, connection=None):
        args = {'service': self.name, 'address': self.addresses(), 'interface': labsvc.INTERFACE,
                'connection': connection or NAMES[self.ctype],
                'manifest': {'name': self.name, 'has_egress': True}}
        if self.fail_open:
            args['fail_open'] = True
        return args

    def sources(self):
        """(IPv4, IPv6): the source the echo server saw for a request from this service (None: no answer)."""
        timeout = TIMEOUT.get(self.ctype, 3)
        return tuple(_fetch(src, family, timeout) for family, src in ((4, self.src4), (6, self.src6)))


def _fetch(source, family, timeout):
    cp = piclab.run(SVC_NODE, 'curl', '-s', '-g', '--noproxy', '*', '--interface', source, '--max-time',
                    str(timeout), piclab.server_url(family), check=False, timeout=timeout + 10)
    return cp.stdout.strip() if cp.returncode == 0 and cp.stdout.strip() else None


def service_addresses(services, op='replace'):
    lines = []
    for svc in services:
        lines += ['addr %s %s/32 dev eth0' % (op, svc.src4),
                  'addr %s %s/128 dev eth0%s' % (op, svc.src6, ' nodad' if op == 'replace' else '')]
    piclab.ipbatch(SVC_NODE, lines, check=op == 'replace')


# What leaves cell1 by its WAN interface towards a service's destination.
_CELL_WAN = """table inet svc_wan {
    set out4 { type ipv4_addr; flags dynamic; counter; size 64; }
    set out6 { type ipv6_addr; flags dynamic; counter; size 64; }
    chain postrouting {
        type filter hook postrouting priority 400; policy accept;
        oifname "%s" update @out4 { ip daddr }
        oifname "%s" update @out6 { ip6 daddr }
    }
}
""" % (piclab.WAN_IF, piclab.WAN_IF)


def wan_out():
    """{destination: packets} cell1 sent out of its WAN interface so far."""
    cp = piclab.run('cell1', 'nft', '-j', 'list', 'table', 'inet', 'svc_wan', check=False)
    out = {}
    for item in json.loads(cp.stdout or '{}').get('nftables', []):
        for elem in (item.get('set') or {}).get('elem', []):
            inner = elem.get('elem', {})
            out[inner.get('val')] = (inner.get('counter') or {}).get('packets', 0)
    return out


def by_wan(source):
    """A source the internet sees for a packet that left cell1 by its WAN: its
    WAN address, or unmasqueraded the service network's (or the peer network's)."""
    return source in (piclab.wan_address('cell1', 4), piclab.wan_address('cell1', 6)) or \
        source.startswith(('172.31.', 'fd00:31:', '10.0.0.', 'fd00:10:'))


class Count(object):
    """Per service: packets by the WAN (at the internet and out of the cell's WAN
    interface) and packets through an exit, since the last mark."""

    def __init__(self, counter, services):
        self.counter, self.services, self.base = counter, services, None

    def totals(self):
        flows, wan = self.counter.sample(), wan_out()
        out = {}
        for svc in self.services:
            dsts = (svc.dst4, svc.dst6)
            mine = [(src, n) for (src, dst), n in flows.items() if dst in dsts]
            out[svc.name] = {'wan': sum(n for src, n in mine if by_wan(src)),
                             'exit': sum(n for src, n in mine if not by_wan(src)),
                             'wan_if': sum(wan.get(d, 0) for d in dsts)}
        return out

    def mark(self):
        self.base = self.totals()

    def since(self):
        now = self.totals()
        return dict((name, dict((k, v - self.base[name][k]) for k, v in counts.items())) for name, counts in now.items())


@pytest.fixture(scope='module')
def lab_services(lab):
    cells = dict((name, Cell(name)) for name in ('cell1', 'cell2', 'cell3'))
    reset_cell(cells['cell1'])
    services = [Service(i, ctype) for i, ctype in enumerate(TYPES)] + \
        [Service(len(TYPES) + i, ctype, True) for i, ctype in enumerate(OPEN_TYPES)]
    service_addresses(services)
    TORNET.start()
    TORNET.wait_ready(60)
    link(cells)
    inventory = inventory_dir()
    playbook(inventory, {'pic_connections': connections('cell1', False), 'pic_peers': [],
                         'pic_service_egress': [svc.module_args() for svc in services],
                         'pic_install_packages': False, 'tor_dir_authorities': TORNET.authority_lines(),
                         'tor_extra_settings': ['TestingTorNetwork 1']})
    try:
        yield {'cells': cells, 'services': services, 'inventory': inventory}
    finally:
        reset_cell(cells['cell1'])
        link(cells, offer=False)
        service_addresses(services, 'del')
        TORNET.stop()


@pytest.mark.parametrize('ctype', TYPES)
def test_a_service_leaves_by_its_exit(lab_services, ctype):
    svc = [s for s in lab_services['services'] if s.ctype == ctype and not s.fail_open][0]
    record = lab_services['cells']['cell1'].module('pic_service_egress', svc.module_args())
    assert not record['changed'] and record['service']['connection'] != 'default'
    want = exit_sources(ctype)
    assert wait_for(lambda: svc.sources() == want, 30, 1), (svc.sources(), want)


INBOUND_PORT = 2525     # a listener in the service namespace; the cell forwards 2500+i of its WAN to service i
_PORT_FORWARD = """table ip svc_inbound {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
%s
    }
}
"""


@pytest.fixture(scope='module')
def inbound(lab_services):
    services = lab_services['services']
    rules = ['        iifname "%s" tcp dport %d dnat to %s:%d' % (piclab.WAN_IF, 2500 + i, svc.src4, INBOUND_PORT)
             for i, svc in enumerate(services)]
    piclab.nft_replace('cell1', 'ip svc_inbound', _PORT_FORWARD % '\n'.join(rules))
    piclab.spawn(SVC_NODE, 'inbound', [piclab.PYTHON, '-m', 'http.server', str(INBOUND_PORT), '--bind', '0.0.0.0'])
    assert wait_for(lambda: ':%d ' % INBOUND_PORT in piclab.run(SVC_NODE, 'ss', '-lnt', check=False).stdout, 10)
    try:
        yield dict((svc, 2500 + i) for i, svc in enumerate(services))
    finally:
        piclab.stop(SVC_NODE, 'inbound')
        piclab.run('cell1', 'nft', 'delete', 'table', 'ip', 'svc_inbound', check=False)


@pytest.mark.parametrize('ctype', TYPES)
def test_a_service_on_an_exit_answers_a_port_forward_from_the_wan(inbound, ctype):
    port = [p for svc, p in inbound.items() if svc.ctype == ctype and not svc.fail_open][0]
    url = 'http://%s:%d/' % (piclab.wan_address('cell1', 4), port)
    cp = piclab.run('inet', 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', url,
                    check=False, timeout=15)
    assert cp.stdout.strip() == '200', (cp.returncode, cp.stdout)


@pytest.fixture(scope='module')
def traffic(lab_services):
    services = lab_services['services']
    counter = FlowCounter(services)
    counter.install()
    piclab.nft_replace('cell1', 'inet svc_wan', _CELL_WAN)
    senders = Senders(services, SEND_INTERVAL)
    count = Count(counter, services)
    try:
        yield count
    finally:
        senders.stop()
        counter.remove()
        piclab.run('cell1', 'nft', 'delete', 'table', 'inet', 'svc_wan', check=False)


def carried(count, window=2.0):
    """The services not carried by their exit: nothing through an exit in the last WINDOW seconds."""
    count.mark()
    time.sleep(window)
    return [name for name, n in count.since().items() if n['exit'] == 0]


@pytest.mark.parametrize('fault', sorted(FAULTS))
def test_a_fail_closed_service_never_reaches_the_wan_while_its_exit_is_down(lab_services, traffic, fault):
    assert wait_for(lambda: not carried(traffic), RECOVER, 0.5), carried(traffic)
    traffic.mark()
    repair = FAULTS[fault](lab_services)
    try:
        time.sleep(HOLD)
        during = traffic.since()
        down = exits_down(lab_services['cells']['cell1']) if fault == 'exit_server_stopped' else None
    finally:
        repair()
    recovered = wait_for(lambda: not carried(traffic), RECOVER, 0.5)
    closed = [svc.name for svc in lab_services['services'] if not svc.fail_open]
    leaked = dict((name, n) for name, n in traffic.since().items() if name in closed and (n['wan'] or n['wan_if']))
    print('%s: %s; the cell\'s own answers from an exit address kept off other interfaces: %d'
          % (fault, json.dumps(during, sort_keys=True), guarded()))
    # (the relay's service once had one packet here under instance_killed and interface_deleted:
    # the cell's own reset for a late answer through the link, see model.add_exit_source_guard)
    assert leaked == {}
    assert recovered, carried(traffic)
    if down is not None:
        # the exits were down, and a service without the kill switch did reach the WAN
        assert down == dict((NAMES[t], 'down') for t in OPEN_TYPES), down
        fell_back = [svc.name for svc in lab_services['services'] if svc.fail_open and during[svc.name]['wan']]
        assert len(fell_back) == len(OPEN_TYPES), during


def guarded():
    """Packets cell1's output chain dropped so far (model.add_exit_source_guard)."""
    cp = piclab.run('cell1', 'nft', '-j', 'list', 'chain', 'inet', 'pic_connectivity', 'output', check=False)
    return sum(expr['counter']['packets'] for item in json.loads(cp.stdout or '{}').get('nftables', [])
               for expr in (item.get('rule') or {}).get('expr', []) if 'counter' in expr)


def exits_down(cell):
    """{connection: health status} of the fail-open services' connections, probed now."""
    return dict((NAMES[t], cell.health(NAMES[t])['status']) for t in OPEN_TYPES)
