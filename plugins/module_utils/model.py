# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure model: from the registry to the desired data plane. No I/O.

Everything a cell runs for the collection is computed here: the marks and
routing tables of connections, the ``ip rule`` entries, the routes of each
connection's table and the single nftables table. ``desired()`` takes the
registry document and a few facts (the peer interface's networks, which exit
interfaces exist, which connections the monitor found down) and returns a
``Desired`` value that can be rendered offline or compared with the running
state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import json

from . import exits, nft
from .errors import PicError
from .validation import parse_int, check_ifname, check_local_networks

# The table's name lives with its rendering and parsing (nft.py); callers read it here too.
NFT_FAMILY, NFT_TABLE = nft.NFT_FAMILY, nft.NFT_TABLE

# Derived from the exit providers (exits/), live views of its registry.
TYPES = exits.TYPES
CREATABLE_TYPES = exits.CREATABLE_TYPES
INTERFACE_TYPES = exits.INTERFACE_TYPES
PROXY_TYPES = exits.PROXY_TYPES
SINGLETON_TYPES = exits.SINGLETON_TYPES
DEFAULT_FAIL_OPEN = exits.DEFAULT_FAIL_OPEN
DEFAULT = 'default'

DEFAULT_SETTINGS = {
    'peer_interface': 'wg0',
    'local_networks': [],
    'mark_mask': 0x00ff0000,
    'table_base': 10000,
    'priority_base': 10000,
    'port_base': 12300,
}
RESERVED_TABLES = (0, 253, 254, 255)


class MarkLayout(object):
    """How connection indexes map to packet marks inside ``mark_mask``.

    The mask must be one contiguous run of at least three bits. Its highest
    bit is the kill bit (set on fail-closed peers); the bits below carry the
    connection index, so index N has mark ``N << shift``.

    The highest index (all index bits set) is never a connection's: it is the
    ``direct`` mark, which the nftables table gives every packet from an
    ingress interface that it classified and sent to no exit. So every packet
    the table has seen carries a non-zero value in the mask, and a packet from
    a peer interface with none (the table is gone: flushed, deleted, replaced
    by a firewall manager) is caught by the guard rule (see ``desired()``).
    """

    def __init__(self, mask):
        self.mask = mask
        self.shift = (mask & -mask).bit_length() - 1
        self.bits = bin(mask).count('1')
        self.kill = 1 << (self.shift + self.bits - 1)
        self.index_mask = mask & ~self.kill
        self.max_index = (1 << (self.bits - 1)) - 1
        self.direct = self.max_index << self.shift
        self.max_conn_index = self.max_index - 1

    def mark(self, index, closed):
        return (index << self.shift) | (self.kill if closed else 0)

    def index_of(self, mark):
        return (mark & self.index_mask) >> self.shift


# Settings already normalized in this process, by their canonical JSON text: a
# module run reads the same settings in the registry's load, its planner and
# every step of the data plane, and validates them once (the result depends on
# nothing but the settings). Kept small: a process sees one or two.
_NORMALIZED = {}
_NORMALIZED_MAX = 8


def normalize_settings(settings, field_prefix=''):
    """Validate settings (merging defaults) and return (settings, MarkLayout).
    The same settings are validated once per process (``_NORMALIZED``); each
    caller gets its own copy of the dict."""
    try:
        key = json.dumps(settings, sort_keys=True)
    except (TypeError, ValueError):
        return _normalize_settings(settings, field_prefix)
    if key not in _NORMALIZED:
        if len(_NORMALIZED) >= _NORMALIZED_MAX:
            _NORMALIZED.clear()
        _NORMALIZED[key] = _normalize_settings(settings, field_prefix)
        # normalized settings normalize to themselves (what the registry stores)
        _NORMALIZED[json.dumps(_NORMALIZED[key][0], sort_keys=True)] = _NORMALIZED[key]
    out, layout = _NORMALIZED[key]
    return dict(out, local_networks=list(out['local_networks'])), layout


def _normalize_settings(settings, field_prefix):
    out = dict(DEFAULT_SETTINGS)
    out.update(dict((k, v) for k, v in (settings or {}).items() if v is not None))
    mask = parse_int(out['mark_mask'], field_prefix + 'mark_mask', 1, 0xffffffff)
    low = mask & -mask
    if (mask + low) & mask or bin(mask).count('1') < 3:
        raise PicError("must be one contiguous run of at least 3 bits (for example 0x00ff0000)",
                       field_prefix + 'mark_mask', settings.get('mark_mask') if settings else mask)
    out['mark_mask'] = mask
    layout = MarkLayout(mask)
    out['table_base'] = parse_int(out['table_base'], field_prefix + 'table_base', 1, 0xffffffff - layout.max_index)
    for table in RESERVED_TABLES:
        if out['table_base'] < table <= out['table_base'] + layout.max_index:
            raise PicError("the table range %d-%d would include the kernel's table %d"
                           % (out['table_base'] + 1, out['table_base'] + layout.max_index, table),
                           field_prefix + 'table_base', out['table_base'])
    out['priority_base'] = parse_int(out['priority_base'], field_prefix + 'priority_base', 1, 32764)
    out['port_base'] = parse_int(out['port_base'], field_prefix + 'port_base', 1024,
                                 65535 - 2 * (layout.max_index + 1))
    check_ifname(out['peer_interface'], field_prefix + 'peer_interface')
    out['local_networks'] = check_local_networks(out['local_networks'] or [], field_prefix)
    return out, layout


def proxy_ports(settings, index):
    """(local TCP port, DNS port) of the instance of proxy connection ``index``."""
    base = settings['port_base'] + 2 * index
    return base, base + 1


def effective_fail_open(peer, conn):
    if peer.get('fail_open') is not None:
        return bool(peer['fail_open'])
    return bool(conn['fail_open'])


def _ver(addr):
    return ipaddress.ip_network(addr).version


def _chain(cid, closed):
    return 'c_%s_%s' % (cid.replace('-', '_'), 'closed' if closed else 'open')


class Desired(object):
    """The desired data plane: nftables table, ip rules and per-table routes."""

    def __init__(self):
        self.sets = {}      # name -> {'type':..., 'flags': [...], 'elements': set()}
        self.maps = {}      # name -> {'type':..., 'flags': [...], 'elements': {key: verdict}}
        self.chains = {}    # name -> {'base': dict or None, 'rules': [(text, comment)]}
        self.chain_order = []
        self.rules = []     # dicts: family, priority, fwmark, fwmask, action, table
        self.routes = {}    # table -> list of dicts: family, dst, type, oif

    # -- nftables --------------------------------------------------------------
    def add_chain(self, name, base=None):
        self.chains[name] = {'base': base, 'rules': []}
        self.chain_order.append(name)

    def add_rule(self, chain, text):
        digest = hashlib.sha1(('%s|%s' % (chain, text)).encode('utf-8')).hexdigest()[:12]
        self.chains[chain]['rules'].append((text, 'pic:%s' % digest))

    def render_nft(self):
        """The whole table as one nft script (``nft.render_table``)."""
        return nft.render_table(self)

    def nft_summary(self):
        """The comparable shape of the table (what ``nft.summary()`` reads back)."""
        return nft.desired_summary(self)

    def nft_shapes(self):
        """The types and flags of its sets and maps (what ``nft.shapes()`` reads back)."""
        return nft.desired_shapes(self)


def allocate(doc, layout, settings, conn_id, pinned_mark=None, pinned_table=None, field_prefix=''):
    """Pick (index, table) for a new or updated connection, honouring pins."""
    others = dict((cid, c) for cid, c in doc['connections'].items() if cid != conn_id)
    used_idx = set(c['index'] for c in others.values())
    used_tables = set(c['table'] for c in others.values())
    current = doc['connections'].get(conn_id)
    base = settings['table_base']
    if pinned_mark is not None:
        mark = parse_int(pinned_mark, field_prefix + 'mark', 1, 0xffffffff)
        if mark & ~layout.index_mask or not mark & layout.index_mask or mark == layout.direct:
            raise PicError("must be a non-zero value inside the reserved mark bits 0x%08x (kill bit 0x%08x "
                           "and the peers' direct mark 0x%08x excluded); valid marks are 0x%08x-0x%08x in "
                           "steps of 0x%x"
                           % (layout.mask, layout.kill, layout.direct, layout.mark(1, False),
                              layout.mark(layout.max_conn_index, False), 1 << layout.shift),
                           field_prefix + 'mark', pinned_mark)
        index = layout.index_of(mark)
        if index in used_idx:
            owner = [c['name'] for c in others.values() if c['index'] == index][0]
            raise PicError("is already used by connection %r" % owner, field_prefix + 'mark', pinned_mark)
    elif current is not None:
        index = current['index']
    else:
        free = [i for i in range(1, layout.max_conn_index + 1) if i not in used_idx]
        if not free:
            raise PicError("no free connection slot: the mark mask 0x%08x allows %d connections"
                           % (layout.mask, layout.max_conn_index))
        index = free[0]
    if pinned_table is not None:
        table = parse_int(pinned_table, field_prefix + 'table', 0, 0xffffffff)
        if not base < table <= base + layout.max_index:
            raise PicError("must be inside the reserved table range %d-%d" % (base + 1, base + layout.max_index),
                           field_prefix + 'table', pinned_table)
        if table == guard_table(settings, layout):
            raise PicError("is the table of the kill switch's guard; use %d-%d"
                           % (base + 1, base + layout.max_conn_index), field_prefix + 'table', pinned_table)
        if table in used_tables:
            owner = [c['name'] for c in others.values() if c['table'] == table][0]
            raise PicError("is already used by connection %r" % owner, field_prefix + 'table', pinned_table)
    elif current is not None and current['index'] == index:
        table = current['table']
    else:
        table = base + index
        if table in used_tables:
            table = [t for t in range(base + 1, base + layout.max_conn_index + 1) if t not in used_tables][0]
    return index, table


def interface_name(doc, conn_id, index, override=None):
    if override:
        return override
    name = 'pic-%s' % conn_id
    taken = set(c.get('interface') for cid, c in doc['connections'].items() if cid != conn_id)
    if len(name) > 15 or name in taken:
        name = 'pic-c%d' % index
    return name


def exit_dns(conn):
    """The DNS servers of an interface exit: the configured ones (``dns``: a
    WireGuard ``DNS =`` line, the remote cell's resolver of a relay), else
    those its server pushed (``pushed_dns``, stored by the OpenVPN up hook)."""
    return list(conn.get('dns') or []) or list(conn.get('pushed_dns') or [])


def pin_dns(want, conn, is_conn):
    """DNS of an interface exit's peers never reaches the cell's resolver, which
    resolves through the WAN. A query to the cell is DNATed to the exit's DNS
    server of its family (routed through the exit like any other packet of the
    peer, so a fail-closed peer's DNS is unreachable while the exit is down);
    without one it is refused (TCP reset, ICMP port unreachable) so that the
    peer's resolver moves on to a server it reaches through the tunnel. A
    fail-open peer held on the default gateway has lost its mark here and uses
    the cell's resolver, as the rest of its traffic uses the WAN."""
    servers = exit_dns(conn)
    for family, proto in ((4, 'ip'), (6, 'ip6')):
        same = [d for d in servers if (':' in d) == (family == 6)]
        if same:
            want.add_rule('dstnat', '%s %s daddr @local%d meta l4proto { tcp, udp } th dport 53 dnat %s to %s'
                          % (is_conn, proto, family, proto, same[0]))
    want.add_rule('input', '%s meta l4proto tcp th dport 53 reject with tcp reset' % is_conn)
    want.add_rule('input', '%s meta l4proto udp th dport 53 reject with icmpx port-unreachable' % is_conn)


def desired(doc, facts, cell_settings=None):
    """Compute the desired data plane, stage by stage: who is an ingress and
    what is local, connection -> mark (chains), peer address -> mark (maps),
    what each exit does with its marked packets (proxy redirects, DNS pinning,
    kill switch; the cell's own marked TCP redirected too), mark -> table (policy rules) -> route (exit routes), cell
    links, and the guards of the kill switch.

    ``facts``: ``peer_networks`` (list of networks of the peer interface),
    ``interfaces`` (names of exit interfaces that exist now), ``down``
    (ids of connections the monitor holds down) and ``present`` (whether the
    peer interface exists: ``[name]`` or ``[]``; assumed when absent).
    ``cell_settings``: ``normalize_settings(doc['settings'])`` when the caller
    has it already.
    """
    settings, layout = cell_settings or normalize_settings(doc.get('settings'))
    conns = sorted(doc['connections'].values(), key=lambda c: c['index'])
    want = Desired()
    add_address_sets(want, doc, facts, settings)
    add_mark_chains(want, conns, layout, facts.get('down'))
    add_carriers(want, doc, layout, facts.get('down'))
    add_classifier(want, layout)
    add_hook_chains(want)
    add_exit_rules(want, conns, layout)
    add_mss_clamp(want, conns)
    add_exit_source_guard(want, conns)
    add_local_redirects(want, conns, layout)
    add_input_guard(want, conns)
    add_peer_maps(want, doc)
    add_policy_rules(want, conns, layout, settings)
    add_exit_routes(want, conns, facts.get('interfaces'))
    add_orphan_chain(want, layout)
    add_link_rules(want, doc.get('links', {}))
    add_kill_rules(want, conns, layout, settings)
    if has_closed_users(want):
        add_guard_rules(want, layout, settings)
        add_dns_guard(want, layout, guard_table(settings, layout))
        add_guard_route(want, settings, layout, facts.get('present'))
    return want


def conn_mark(conn, layout, closed=False):
    """The mark of a connection's packets: the one stored in its record (the
    registry checks on load that it is its index's, see ``registry.check_shape``),
    with the kill bit for its fail-closed users."""
    return conn['mark'] | (layout.kill if closed else 0)


def _set_mark(layout, mark):
    """The nft statement that puts ``mark`` into the mask's bits, keeping the others."""
    return 'meta mark set meta mark & 0x%08x | 0x%08x' % (0xffffffff & ~layout.mask, mark)


def _is_conn(conn, layout):
    """The nft match of a connection's packets, whatever their fail mode."""
    return 'meta mark & 0x%08x == 0x%08x' % (layout.index_mask, conn_mark(conn, layout))


def add_address_sets(want, doc, facts, settings):
    """The sets of the table: the ingress interfaces (the peer interface and the
    services'), the local networks (never an exit's), the marks of the
    connections held down (filled by ``add_mark_chains`` and the monitor), and
    the empty peer maps (``add_peer_maps``)."""
    local = {4: set(), 6: set()}
    for net in list(facts.get('peer_networks') or []) + settings['local_networks']:
        local[_ver(net)].add(str(ipaddress.ip_network(net, strict=False)))
    ingress = set([settings['peer_interface']])
    for svc in doc.get('services', {}).values():
        if svc.get('interface'):
            ingress.add(svc['interface'])
    want.sets['ingress'] = {'type': 'ifname', 'flags': [], 'elements': ingress}
    want.sets['local4'] = {'type': 'ipv4_addr', 'flags': ['interval'], 'elements': local[4]}
    want.sets['local6'] = {'type': 'ipv6_addr', 'flags': ['interval'], 'elements': local[6]}
    want.sets['down_open'] = {'type': 'mark', 'flags': [], 'elements': set()}
    want.sets['down_closed'] = {'type': 'mark', 'flags': [], 'elements': set()}
    want.maps['carry'] = {'type': 'mark', 'flags': [], 'elements': {}}
    # host addresses in hash maps (an element added or deleted in O(1), by the kernel and
    # by nft, which loads every element of an interval set to change one), networks apart
    want.maps['peer4'] = {'type': 'ipv4_addr', 'flags': [], 'elements': {}}
    want.maps['peer6'] = {'type': 'ipv6_addr', 'flags': [], 'elements': {}}
    want.maps['net4'] = {'type': 'ipv4_addr', 'flags': ['interval'], 'elements': {}}
    want.maps['net6'] = {'type': 'ipv6_addr', 'flags': ['interval'], 'elements': {}}


def add_mark_chains(want, conns, layout, down):
    """Connection -> mark: two chains per connection (``c_<id>_closed`` sets
    its mark with the kill bit, ``c_<id>_open`` without); the open marks of the
    connections the monitor holds ``down`` go to the ``down_open`` set."""
    down = set(down or [])
    for conn in conns:
        for closed in (True, False):
            want.add_chain(_chain(conn['id'], closed))
            want.add_rule(_chain(conn['id'], closed), _set_mark(layout, conn_mark(conn, layout, closed)))
        if conn['id'] in down:
            want.sets['down_open']['elements'].add(conn_mark(conn, layout))


def fallback_ids(conn):
    """The ids of a connection's fallbacks, in order (``fallback`` in its record)."""
    return [cid for cid in (conn.get('fallback') or []) if isinstance(cid, str)]


def carriers(doc, down):
    """{connection id: id of the connection that carries its users now} for the
    connections held ``down`` whose list of fallbacks names one that exists and
    is not down: the first such. Not transitive (a fallback's own fallbacks are
    not followed). A down connection without one is missing: its fail mode applies."""
    down = set(down or [])
    out = {}
    for cid in sorted(down):
        conn = doc['connections'].get(cid)
        if conn is None:
            continue
        for fid in fallback_ids(conn):
            if fid != cid and fid in doc['connections'] and fid not in down:
                out[cid] = fid
                break
    return out


def carry_elements(doc, layout, down):
    """The ``carry`` map: a down connection's marks (fail-closed and fail-open)
    -> a jump to its carrier's chain of the same fail mode."""
    elements = {}
    for cid, fid in carriers(doc, down).items():
        for closed in (True, False):
            elements[conn_mark(doc['connections'][cid], layout, closed)] = 'jump %s' % _chain(fid, closed)
    return elements


def held_closed(doc, layout, down):
    """The ``down_closed`` set: the fail-closed marks of the connections held ``down``
    that no fallback carries. Their users are blocked (dropped before routing), not
    only left to a dead exit: an exit held down because it leaves from a wrong
    address (the egress proof) still carries packets."""
    carried = carriers(doc, down)
    return set(conn_mark(doc['connections'][cid], layout, True) for cid in set(down or [])
               if cid in doc['connections'] and cid not in carried)


def add_carriers(want, doc, layout, down):
    """Ordered failover: while a connection is held down, its users take the
    marks of the first working fallback (the ``carry`` map, which the monitor
    changes together with ``down_open`` in one transaction). From there on they
    are that connection's packets in every stage: its DNS pinning or proxy
    redirect, its policy rule and table, its kill switch (a fail-closed user
    leaves by the fallback's interface or not at all)."""
    want.maps['carry']['elements'].update(carry_elements(doc, layout, down))
    want.sets['down_closed']['elements'].update(held_closed(doc, layout, down))


def add_classifier(want, layout):
    """Peer address -> mark (the ``prerouting`` chain): every packet of an
    ingress interface first gets the direct mark ("no exit, but seen by this
    table", see MarkLayout), then its source's verdict in the peer maps, then
    the mark of its connection's carrier while that connection is down and a
    fallback works (``carry``); the fail-open peers of a connection held down
    (without a carrier) and local destinations go back to the direct mark.
    Replies of connections that came in from elsewhere (a port forward from
    the WAN to a service, say) keep the direct mark: they follow their
    connection back, never into an exit (see ``INBOUND_REPLIES``)."""
    unmark = _set_mark(layout, layout.direct)
    want.add_chain('prerouting', {'type': 'filter', 'hook': 'prerouting', 'priority': 'mangle'})
    want.add_rule('prerouting', 'iifname != @ingress return')
    want.add_rule('prerouting', unmark)
    want.add_rule('prerouting', INBOUND_REPLIES)
    want.add_rule('prerouting', 'ip saddr vmap @peer4')
    want.add_rule('prerouting', 'ip6 saddr vmap @peer6')
    # (no address is in both: the planners refuse overlapping addresses of peers and services)
    want.add_rule('prerouting', 'ip saddr vmap @net4')
    want.add_rule('prerouting', 'ip6 saddr vmap @net6')
    want.add_rule('prerouting', 'meta mark & 0x%08x vmap @carry' % layout.mask)
    want.add_rule('prerouting', 'meta mark & 0x%08x @down_open %s' % (layout.mask, unmark))
    # the fail-closed users of a connection held down without a carrier: blocked
    # (their DNS too, which pin_dns would send to the exit), local destinations aside
    held = 'meta mark & 0x%08x @down_closed' % layout.mask
    want.add_rule('prerouting', '%s meta l4proto { tcp, udp } th dport 53 drop' % held)
    # DNS keeps its mark even towards the cell's own resolver, so that it can be
    # pinned to the exit (pin_dns); every other local destination is never an exit's.
    want.add_rule('prerouting', 'meta l4proto { tcp, udp } th dport 53 return')
    want.add_rule('prerouting', 'ip daddr @local4 %s' % unmark)
    want.add_rule('prerouting', 'ip6 daddr @local6 %s' % unmark)
    want.add_rule('prerouting', '%s drop' % held)


# A packet from an ingress interface in the reply direction of its connection
# answers a connection that someone else opened to the peer or service (a WAN
# port forward to the email service's SMTP, a peer's own listener): it goes
# back the way the connection came, by the default gateway. Marked with the
# user's exit, it would leave by the exit (the other end drops it: it expects
# the cell's WAN address) or hit the kill switch. It reveals nothing: the
# other end reached the cell by that address. Only connections the cell
# itself translated on the way in (a port forward: ``ct status dnat``) count:
# someone on the WAN segment who sends straight to a peer's private address
# (no translation) cannot make the peer's answers leave by the WAN. What the
# user opens itself is always the original direction; packets conntrack does
# not track (no direction) keep their mark.
INBOUND_REPLIES = 'ct direction reply ct status dnat return'


def add_hook_chains(want):
    """The base chains the exits' rules go to, in this order."""
    want.add_chain('dstnat', {'type': 'nat', 'hook': 'prerouting', 'priority': 'dstnat'})
    want.add_chain('input', {'type': 'filter', 'hook': 'input', 'priority': 'filter'})
    want.add_chain('forward', {'type': 'filter', 'hook': 'forward', 'priority': 'filter'})
    want.add_chain('postrouting', {'type': 'nat', 'hook': 'postrouting', 'priority': 'srcnat'})


def add_exit_rules(want, conns, layout):
    """What each exit does with its marked packets, connection by connection:
    a proxy-kind exit redirects them to its local instance, an interface exit
    pins their DNS and drops what would leave by another interface."""
    for conn in conns:
        if exits.is_proxy(conn['type']):
            add_proxy_redirects(want, conn, layout)
        else:
            pin_dns(want, conn, _is_conn(conn, layout))
            add_exit_kill_switch(want, conn, layout)


def add_proxy_redirects(want, conn, layout):
    """A proxy-kind exit: TCP (and DNS) redirected to its instance's local ports."""
    is_conn = _is_conn(conn, layout)
    want.add_rule('dstnat', '%s meta l4proto tcp redirect to :%d' % (is_conn, conn.get('local_port')))
    if conn.get('dns_port'):
        want.add_rule('dstnat', '%s udp dport 53 redirect to :%d' % (is_conn, conn['dns_port']))
    # what the exit cannot carry (UDP, QUIC, ICMP, ...) never reaches the WAN
    # while the exit is up, whatever the fail mode
    want.add_rule('forward', '%s reject with icmpx admin-prohibited' % is_conn)


def add_exit_kill_switch(want, conn, layout):
    """An interface exit: its fail-closed packets leave by its interface or not
    at all (the forward chain's kill switch), masqueraded there."""
    closed_mark = conn_mark(conn, layout, True)
    if exits.is_interface(conn['type']) and conn.get('interface'):
        want.add_rule('forward', 'meta mark & 0x%08x == 0x%08x oifname != "%s" counter drop'
                      % (layout.mask, closed_mark, conn['interface']))
        want.add_rule('postrouting', 'oifname "%s" masquerade' % conn['interface'])
    else:
        want.add_rule('forward', 'meta mark & 0x%08x == 0x%08x counter drop' % (layout.mask, closed_mark))


def add_mss_clamp(want, conns):
    """TCP MSS clamped on what is forwarded into an interface exit (its own
    ``mss`` chain: forward hook, priority mangle): the MSS option of a SYN
    (or SYN-ACK) leaving by an exit interface is lowered to what that route's
    MTU carries (``rt mtu``: the interface's MTU, or a smaller path MTU the
    kernel learned for the destination), so the far end never sends segments
    larger than the tunnel. A peer's interface MTU (1420 on WireGuard, 1500 on
    a service's LAN) is often larger than its exit's (a WireGuard or OpenVPN
    tunnel, a cell link, nested tunnels of a relay whose remote cell exits
    through a tunnel), and where ICMP "fragmentation needed"/"packet too big"
    is blackholed behind the exit, PMTUD cannot repair that: large transfers
    stall. When the path behind an exit is narrower than its tunnel, lower the
    exit's MTU (``mtu`` of wireguard_ext, ``tun-mtu`` of OpenVPN, the link's
    MTU) and every peer's TCP follows. Proxy-kind exits forward no TCP: the
    peer's connection ends at the local instance (whose SYN-ACK already
    carries the MSS of the peer's route) and the instance's own upstream
    connection uses the cell's stack (its route's MTU and PMTU)."""
    ifnames = []
    for conn in conns:
        if exits.is_interface(conn['type']) and conn.get('interface') and conn['interface'] not in ifnames:
            ifnames.append(conn['interface'])
    if not ifnames:
        return
    want.add_chain('mss', {'type': 'filter', 'hook': 'forward', 'priority': 'mangle'})
    for ifname in ifnames:
        want.add_rule('mss', 'oifname "%s" %s' % (ifname, MSS_CLAMP))


# A SYN (not a reset) gets the MSS its route's MTU carries; the kernel only ever lowers it.
MSS_CLAMP = 'tcp flags syn / syn,rst tcp option maxseg size set rt mtu'


def add_exit_source_guard(want, conns):
    """What the cell itself sends from an exit interface's address leaves by that
    interface or not at all: the output counterpart of the forward kill switch.

    The packets it guards are the kernel's own answers to what arrives by an exit
    for the exit's address when conntrack no longer knows the flow: a TCP reset
    (a late SYN-ACK or segment of a user's connection) or an ICMP error (a late
    UDP answer). That happens when the exit interface goes away (the exit's
    masquerade forgets its connections with it) and comes back while the far end
    still answers the users' flows. Nothing marks those answers (they come from
    an exit, not from an ingress interface), so the main table routes them to the
    WAN: a packet with the flow's ports to the user's destination, from the cell.

    The exits' own addresses are learned by the ``input`` chain from what arrives
    by an exit interface for an address of that same interface (``fib daddr . iif
    type local``: an address of another interface is never learned, whatever the
    far end sends), always before the kernel answers it; the ``output`` chain drops
    what leaves with such a source address by an interface that does not hold it
    (``fib saddr . oif type``), the exit interface gone included. The sets'
    contents are the kernel's (``nft.LEARNED_SETS``: never compared with the model)."""
    ifnames = sorted(set(c['interface'] for c in conns if exits.is_interface(c['type']) and c.get('interface')))
    if not ifnames:
        return
    want.sets['exit_ifs'] = {'type': 'ifname', 'flags': [], 'elements': set(ifnames)}
    want.add_chain('output', {'type': 'filter', 'hook': 'output', 'priority': 'filter'})
    for family, proto in ((4, 'ip'), (6, 'ip6')):
        learned = 'exit_src%d' % family
        want.sets[learned] = {'type': 'ipv%d_addr' % family, 'flags': ['dynamic'], 'elements': set()}
        want.add_rule('input', 'iifname @exit_ifs fib daddr . iif type local update @%s { %s daddr }'
                      % (learned, proto))
        want.add_rule('output', '%s saddr @%s fib saddr . oif type != local counter drop' % (proto, learned))


def add_local_redirects(want, conns, layout):
    """The cell's own TCP with a proxy-kind exit's mark (SO_MARK; only root sets one)
    takes the redirect its peers' TCP takes in ``dstnat`` (which sees forwarded
    packets only): to the instance's ``local_port``, whose transparent proxy reads
    the original destination (SO_ORIGINAL_DST) and carries it. What the health
    check and the monitor use to ask a transparent instance (sshuttle) for
    ``health_target`` and ``egress_url`` as a peer would (its own chain: output
    hook, nat). The open mark: the kill bit's rule makes it unreachable before any
    redirect."""
    proxies = [c for c in conns if exits.is_proxy(c['type']) and c.get('local_port')]
    if not proxies:
        return
    want.add_chain('local_redirect', {'type': 'nat', 'hook': 'output', 'priority': '-100'})
    for conn in proxies:
        redirect = '%s meta l4proto tcp redirect to :%d' % (_is_conn(conn, layout), conn['local_port'])
        want.add_rule('local_redirect', redirect)


def add_input_guard(want, conns):
    """The proxy instances listen on every address: only redirected traffic may reach them."""
    ports = set()
    for conn in conns:
        if exits.is_proxy(conn['type']):
            ports.update(p for p in (conn.get('local_port'), conn.get('dns_port')) if p)
    want.sets['proxy_ports'] = {'type': 'inet_service', 'flags': [], 'elements': ports}
    want.add_rule('input', 'iifname "lo" accept')
    want.add_rule('input', 'meta l4proto { tcp, udp } th dport @proxy_ports ct status dnat accept')
    want.add_rule('input', 'meta l4proto { tcp, udp } th dport @proxy_ports drop')


def add_peer_maps(want, doc):
    """Peer (and service) address -> the chain of its connection and fail mode
    (``peer4``/``peer6`` for host addresses, ``net4``/``net6`` for networks);
    users of the default gateway are not in the maps."""
    users = list(doc['peers'].values()) + list(doc.get('services', {}).values())
    for user in users:
        cid = user.get('connection') or DEFAULT
        if cid == DEFAULT:
            continue
        if cid not in doc['connections']:
            # Its connection went away (a cell stopped offering its exit): blocked,
            # never silently moved to the default gateway.
            verdict = 'jump orphan'
        else:
            verdict = 'jump %s' % _chain(cid, not effective_fail_open(user, doc['connections'][cid]))
        # The registry holds addresses in canonical form (str(ip_network)),
        # validated when they were stored: no need to parse them again.
        for addr in user.get('address', []):
            want.maps[peer_map(addr)]['elements'][addr] = verdict


PEER_MAPS = ('peer4', 'peer6', 'net4', 'net6')


def peer_map(addr):
    """The map of a user's address (canonical): ``peer4``/``peer6`` for one host, ``net4``/``net6`` for a network."""
    if ':' in addr:
        return 'peer6' if addr.endswith('/128') else 'net6'
    return 'peer4' if addr.endswith('/32') else 'net4'


def _has_orphans(want):
    return any(verdict == 'jump orphan' for name in PEER_MAPS
               for verdict in want.maps[name]['elements'].values())


def add_policy_rules(want, conns, layout, settings):
    """Mark -> table: one ``ip rule`` per connection and family at ``priority_base``."""
    for conn in conns:
        for family in (4, 6):
            want.rules.append({'family': family, 'priority': settings['priority_base'],
                               'fwmark': conn_mark(conn, layout), 'fwmask': layout.index_mask,
                               'action': 'table', 'table': conn['table'], 'iif': None})


def add_exit_routes(want, conns, interfaces):
    """Table -> route: an interface exit's table routes what it carries through
    its interface (while it exists); a family it does not carry is unreachable.
    A proxy-kind exit's table is empty (its packets are redirected locally)."""
    interfaces = set(interfaces or [])
    for conn in conns:
        routes = want.routes.setdefault(conn['table'], [])
        carried = conn.get('routes') or {'4': [], '6': []}
        for family in (4, 6):
            nets = carried.get(str(family)) or []
            if exits.is_interface(conn['type']) and nets:
                if conn.get('interface') in interfaces:
                    for net in nets:
                        routes.append({'family': family, 'dst': net, 'type': 'unicast', 'oif': conn['interface']})
            elif exits.is_interface(conn['type']):
                # The exit carries nothing of this family: block it for every
                # peer of the connection rather than leak it to the WAN.
                routes.append({'family': family, 'dst': '0.0.0.0/0' if family == 4 else '::/0',
                               'type': 'unreachable', 'oif': None})


def add_orphan_chain(want, layout):
    """Users of a connection that went away get the bare kill bit: never forwarded."""
    want.add_chain('orphan')
    want.add_rule('orphan', _set_mark(layout, layout.kill))
    want.add_rule('forward', 'meta mark & 0x%08x == 0x%08x counter drop' % (layout.mask, layout.kill))


def add_link_rules(want, links):
    """Cell links: relayed traffic from a linked cell goes out this cell's WAN only
    while this cell offers its exit to that cell; what it relays is masqueraded."""
    for remote in sorted(links):
        ifname = links[remote]['interface']
        if links[remote].get('offer'):
            want.add_rule('postrouting', 'iifname "%s" oifname != "%s" ip daddr != @local4 masquerade'
                          % (ifname, ifname))
            want.add_rule('postrouting', 'iifname "%s" oifname != "%s" ip6 daddr != @local6 masquerade'
                          % (ifname, ifname))
        else:
            want.add_rule('forward', 'iifname "%s" ip daddr != @local4 counter drop' % ifname)
            want.add_rule('forward', 'iifname "%s" ip6 daddr != @local6 counter drop' % ifname)


def add_kill_rules(want, conns, layout, settings):
    """Kill bit -> unreachable (``priority_base + 1``), while some connection or
    orphaned user exists: a fail-closed packet its table does not route goes nowhere."""
    if conns or _has_orphans(want):
        for family in (4, 6):
            want.rules.append({'family': family, 'priority': settings['priority_base'] + 1,
                               'fwmark': layout.kill, 'fwmask': layout.kill, 'action': 'unreachable',
                               'table': None, 'iif': None})


def has_closed_users(want):
    """Does any address jump to a fail-closed chain (or the orphan chain)?
    The guards of the kill switch exist only then."""
    for name in PEER_MAPS:
        for verdict in want.maps[name]['elements'].values():
            if verdict.endswith('_closed') or verdict == 'jump orphan':
                return True
    return False


def add_guard_rules(want, layout, settings):
    """The guard of the kill switch against a lost nftables table.

    Every packet the table classifies leaves prerouting with a non-zero value
    in the mark mask (a connection, the kill bit, or the direct mark). When the
    table is gone (``nft flush ruleset``, a firewall manager's reload, a
    deleted table), packets from the ingress interfaces carry none, and this
    rule sends them to ``unreachable`` (IPv6) or back to the peer interface
    (IPv4, see below) before the main table could send them to the WAN. One
    rule per ingress interface and family, whatever the number of peers; never
    matched while the table is in place. Reverse-path filtering must be loose
    (2, Debian's systemd default, and what the collection sets on its exits)
    or off on the WAN: a strict one would refuse replies to peers. Local destinations (the
    cell itself) are found by the ``local`` table at priority 0 first.

    During such a gap (until the monitor has restored the table, within a
    second) the fail-open and default peers of the interface are blocked too:
    without the table nothing tells them apart from the fail-closed ones. The
    guard exists only while some peer or service is fail-closed.

    The other way round, while the ip rules are missing the forward chain of
    the table drops what carries a fail-closed mark (the kill switch).
    """
    base, table = settings['priority_base'], guard_table(settings, layout)
    for ifname in sorted(want.sets['ingress']['elements']):
        # IPv4: a table whose only route leads back to the peer interface, where
        # no peer takes the packet (the WireGuard server has no peer for an
        # internet address): an "unreachable" here would also answer the
        # reverse-path lookups (rp_filter) of replies from the WAN and the exits
        # to peers, which ask exactly "from the peer, by the peer interface,
        # unmarked?", and drop every reply.
        want.rules.append({'family': 4, 'priority': base + 1, 'fwmark': 0, 'fwmask': layout.mask,
                           'action': 'table', 'table': table, 'iif': ifname})
        want.rules.append({'family': 6, 'priority': base + 1, 'fwmark': 0, 'fwmask': layout.mask,
                           'action': 'unreachable', 'table': None, 'iif': ifname})


def add_guard_route(want, settings, layout, present):
    """The guard table's only route: IPv4 back out the peer interface, which exists
    only while the interface does (``present``: ``[name]`` or ``[]``; assumed when None)."""
    peer_if = settings['peer_interface']
    present = [peer_if] if present is None else present
    want.routes[guard_table(settings, layout)] = \
        [{'family': 4, 'dst': '0.0.0.0/0', 'type': 'unicast', 'oif': peer_if}] if peer_if in present else []


# The priority of the DNS guard: the kernel's ``local`` rule has it too, and the
# guard's rules must come before that one (Routing.put_local_last).
DNS_GUARD_PRIORITY = 0
DNS_PORT = 53
IPPROTO_TCP = 6
IPPROTO_UDP = 17


def add_dns_guard(want, layout, table):
    """The guard of DNS queries to the cell itself while the table is gone.

    The ``local`` rule (priority 0) finds the cell's own addresses before any
    rule of ``add_guard_rules``: without the table, nothing pins a peer's query to
    the cell's resolver to its exit (the dstnat chain), and the cell's resolver
    would resolve it through the WAN, a DNS leak of a fail-closed peer. These
    rules have priority 0 and come before the ``local`` rule in the kernel's
    list; they take unmarked queries (TCP and UDP, port 53) from the ingress
    interfaces: IPv4 to the guard table (back out the peer interface, where no
    peer takes them), IPv6 to ``unreachable``. While the table is in place every
    packet from an ingress interface carries a mark (prerouting sets the direct
    mark first) and they never match; replies to peers (source port 53, from
    other interfaces) never match either.
    """
    for ifname in sorted(want.sets['ingress']['elements']):
        for proto in (IPPROTO_UDP, IPPROTO_TCP):
            want.rules.append({'family': 4, 'priority': DNS_GUARD_PRIORITY, 'fwmark': 0, 'fwmask': layout.mask,
                               'action': 'table', 'table': table, 'iif': ifname,
                               'ipproto': proto, 'dport': DNS_PORT})
            want.rules.append({'family': 6, 'priority': DNS_GUARD_PRIORITY, 'fwmark': 0, 'fwmask': layout.mask,
                               'action': 'unreachable', 'table': None, 'iif': ifname,
                               'ipproto': proto, 'dport': DNS_PORT})


def guard_table(settings, layout):
    """The routing table of the IPv4 guard: the last of the reserved range (the
    direct mark's index, never a connection's)."""
    return settings['table_base'] + layout.max_index


def owned_priorities(settings):
    """The rule priorities the collection owns; of priority 0 (the DNS guard's,
    shared with the kernel's ``local`` rule) only rules with a destination
    port are read (Routing.rules), never the ``local`` rule."""
    return (DNS_GUARD_PRIORITY, settings['priority_base'], settings['priority_base'] + 1)


def owned_table_range(settings, layout):
    return (settings['table_base'] + 1, settings['table_base'] + layout.max_index)
