# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Policy routing through netlink (pyroute2 ``IPRoute``): facts and changes.

Only the rule priorities and table numbers reserved for the collection are
read or changed; every other rule, route and table on the cell is left alone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import socket
import sys

from .errors import PicError


def _import_pyroute2():
    """Return ``(IPRoute, NetlinkError)``, importing as little of pyroute2 as works.

    ``import pyroute2`` runs the package's ``__init__``, which loads every
    entry point of the distribution (NDB, IPDB, IPSet, NetNS, the lab, ...):
    about 60 ms of a module run that needs only ``IPRoute``, a third of a no-op
    run's fixed cost. When nothing has imported pyroute2 yet, the package
    object is created without running its ``__init__`` and only
    ``pyroute2.iproute.linux`` is loaded. Any failure of that path (another
    pyroute2 layout) undoes it and falls back to the documented import.
    """
    if 'pyroute2' not in sys.modules:
        try:
            spec = importlib.util.find_spec('pyroute2')
            if spec is None or not spec.submodule_search_locations:
                raise ImportError('no pyroute2 package')
            sys.modules['pyroute2'] = importlib.util.module_from_spec(spec)
            from pyroute2.iproute.linux import IPRoute as iproute
            from pyroute2.netlink.exceptions import NetlinkError as netlink_error
            return iproute, netlink_error
        except Exception:  # pylint: disable=broad-except
            for name in [n for n in sys.modules if n == 'pyroute2' or n.startswith('pyroute2.')]:
                del sys.modules[name]
    from pyroute2 import IPRoute as iproute
    from pyroute2.netlink.exceptions import NetlinkError as netlink_error
    return iproute, netlink_error


try:
    IPRoute, NetlinkError = _import_pyroute2()
    HAS_PYROUTE2 = True
except ImportError:  # pragma: no cover - depends on the cell
    IPRoute = None
    NetlinkError = Exception
    HAS_PYROUTE2 = False

FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
FR_ACT_TO_TBL = 1
FR_ACT_UNREACHABLE = 7
RTN_UNICAST = 1
RTN_UNREACHABLE = 7
RTPROT_PIC = 0x70   # a protocol number of our own, so `ip route` shows who added the route
RT_TABLE_MAIN = 254


def _attr(msg, name, default=None):
    return msg.get_attr(name, default) if hasattr(msg, 'get_attr') else dict(msg['attrs']).get(name, default)


RT_TABLE_LOCAL = 255
RTPROT_KERNEL = 2
RTPROT_BOOT = 3


def _rule_key(rule):
    return (rule['family'], rule['priority'], rule['fwmark'], rule['fwmask'], rule['action'], rule['table'],
            rule.get('iif'), rule.get('ipproto'), rule.get('dport'))


def _dport(msg):
    """The single destination port of a rule message (None: none or a range)."""
    value = _attr(msg, 'FRA_DPORT_RANGE')
    if value is None:
        return None
    start, _sep, end = str(value).partition(':')
    return int(start) if start == end and start.isdigit() else None


def _is_local_rule(msg):
    """The kernel's ``pref 0 lookup local`` rule (or one just like it)."""
    return (_attr(msg, 'FRA_PRIORITY', 0) == 0 and msg['action'] == FR_ACT_TO_TBL and
            (_attr(msg, 'FRA_TABLE') or msg['table']) == RT_TABLE_LOCAL and
            not any(_attr(msg, name) for name in ('FRA_IIFNAME', 'FRA_OIFNAME', 'FRA_FWMARK', 'FRA_IP_PROTO',
                                                  'FRA_DPORT_RANGE', 'FRA_SPORT_RANGE', 'FRA_SRC', 'FRA_DST')))


def _is_guard_at_zero(msg):
    """A rule of priority 0 the collection owns: one of the DNS guard (an
    input interface, ``fwmark 0/<mask>`` and a destination port); anything
    else there (the ``local`` rule, an administrator's rule) is never read as
    ours."""
    return bool(_attr(msg, 'FRA_IIFNAME')) and _dport(msg) is not None and \
        bool(_attr(msg, 'FRA_FWMASK')) and not _attr(msg, 'FRA_FWMARK')


def _route_key(route):
    return (route['family'], route['table'], route['dst'], route['type'], route['oif'])


class Routing(object):
    def __init__(self):
        if not HAS_PYROUTE2:
            raise PicError("the Python library pyroute2 is required on the cell (Debian: python3-pyroute2)")
        self.ipr = IPRoute()
        self._names = None      # ifname -> index
        self._links = None      # ifname -> link message (the same dump)
        self._addrs = None      # index -> address messages (one dump, see addresses())

    def close(self):
        self.ipr.close()

    # -- links -----------------------------------------------------------------
    def links(self):
        """{ifname: index} of every interface in the namespace."""
        if self._names is None:
            self._links = dict((_attr(link, 'IFLA_IFNAME'), link) for link in self.ipr.get_links())
            self._names = dict((name, link['index']) for name, link in self._links.items())
        return self._names

    def link(self, ifname):
        """The link message of ``ifname`` from the same dump as links() (None if absent)."""
        self.links()
        return self._links.get(ifname)

    def addresses(self, index):
        """Address messages of interface ``index``. One dump of every address in
        the namespace serves all interfaces (pyroute2 filters a per-interface
        request in userspace after a full dump anyway)."""
        if self._addrs is None:
            self._addrs = {}
            for msg in self.ipr.get_addr():
                self._addrs.setdefault(msg['index'], []).append(msg)
        return self._addrs.get(index, [])

    def forget_addresses(self):
        self._addrs = None

    def forget_links(self):
        """Read links and addresses again at the next question."""
        self._names = None
        self._links = None
        self._addrs = None

    def networks_of(self, ifname):
        """The connected networks of an interface (its addresses with their prefixes)."""
        index = self.links().get(ifname)
        if index is None:
            return []
        import ipaddress
        nets = []
        for addr in self.addresses(index):
            local = _attr(addr, 'IFA_ADDRESS')
            if local is None:
                continue
            net = ipaddress.ip_interface('%s/%d' % (local, addr['prefixlen'])).network
            if not net.is_link_local:
                nets.append(str(net))
        return nets

    # -- facts -------------------------------------------------------------------
    def rules(self, priorities):
        out = []
        for family, af in FAMILIES.items():
            for rule in self.ipr.get_rules(family=af):
                prio = _attr(rule, 'FRA_PRIORITY', 0)
                if prio not in priorities or (prio == 0 and not _is_guard_at_zero(rule)):
                    continue
                action = 'table' if rule['action'] == FR_ACT_TO_TBL else (
                    'unreachable' if rule['action'] == FR_ACT_UNREACHABLE else 'other:%d' % rule['action'])
                out.append({'family': family, 'priority': prio, 'fwmark': _attr(rule, 'FRA_FWMARK', 0),
                            'fwmask': _attr(rule, 'FRA_FWMASK', 0), 'action': action,
                            'table': (_attr(rule, 'FRA_TABLE') or rule['table']) if action == 'table' else None,
                            'iif': _attr(rule, 'FRA_IIFNAME')})
                if _dport(rule) is not None:
                    out[-1].update(ipproto=_attr(rule, 'FRA_IP_PROTO'), dport=_dport(rule))
        return out

    def local_rule_first(self, family):
        """Does the ``local`` rule come before a DNS guard rule (priority 0) in
        the kernel's list of ``family``? Then the guard never sees the cell's
        own addresses."""
        local = False
        for rule in self.ipr.get_rules(family=FAMILIES[family]):
            if _is_local_rule(rule):
                local = True
            elif local and _attr(rule, 'FRA_PRIORITY', 0) == 0 and _is_guard_at_zero(rule):
                return True
        return False

    def put_local_last(self, family):
        """Move the ``local`` rule behind the DNS guard rules of priority 0 (the
        kernel puts a new rule after those of its priority): add a second one
        (after them), then delete the first. A local lookup is in place at
        every moment; nothing is deleted unless the second one is there.
        Returns True when it moved."""
        if not self.local_rule_first(family):
            return False
        before = [r for r in self.ipr.get_rules(family=FAMILIES[family]) if _is_local_rule(r)]
        # The kernel refuses a rule identical to one it has (EEXIST): the
        # second one differs by its protocol (kernel <-> boot), which only
        # tells who added it.
        protocol = RTPROT_BOOT if _attr(before[0], 'FRA_PROTOCOL') == RTPROT_KERNEL else RTPROT_KERNEL
        self._nl(self.ipr.rule, 'add', family=FAMILIES[family], priority=0, table=RT_TABLE_LOCAL, protocol=protocol)
        locals_now = [r for r in self.ipr.get_rules(family=FAMILIES[family]) if _is_local_rule(r)]
        if len(locals_now) <= len(before):
            raise PicError("could not add a second local rule (IPv%d) to put it behind the DNS guard" % family)
        self._nl(self.ipr.rule, 'del', family=FAMILIES[family], priority=0, table=RT_TABLE_LOCAL)
        if self.local_rule_first(family):
            raise PicError("the local rule (IPv%d) still comes before the DNS guard" % family)
        return True

    def routes(self, table_range):
        low, high = table_range
        names = dict((v, k) for k, v in self.links().items())
        out = []
        for family, af in FAMILIES.items():
            for route in self.ipr.get_routes(family=af):
                table = _attr(route, 'RTA_TABLE', route['table'])
                if not low <= table <= high:
                    continue
                dst = _attr(route, 'RTA_DST')
                dst = '%s/%d' % (dst, route['dst_len']) if dst else ('0.0.0.0/0' if family == 4 else '::/0')
                rtype = {RTN_UNICAST: 'unicast', RTN_UNREACHABLE: 'unreachable'}.get(
                    route['type'], 'other:%d' % route['type'])
                # The kernel gives an IPv6 unreachable route the device lo: an
                # output interface means something only for a unicast route.
                oif = _attr(route, 'RTA_OIF') if rtype == 'unicast' else None
                out.append({'family': family, 'table': table, 'dst': dst, 'type': rtype,
                            'oif': names.get(oif, oif) if oif else None})
        return out

    # -- changes -------------------------------------------------------------------
    @staticmethod
    def _rule_args(rule):
        kwargs = {'family': FAMILIES[rule['family']], 'priority': rule['priority'],
                  'fwmark': rule['fwmark'], 'fwmask': rule['fwmask']}
        if rule.get('iif'):
            kwargs['iifname'] = rule['iif']
        if rule.get('dport'):
            kwargs['ip_proto'] = rule['ipproto']
            kwargs['dport_range'] = '%d:%d' % (rule['dport'], rule['dport'])
        return kwargs

    def add_rule(self, rule):
        kwargs = self._rule_args(rule)
        if rule['action'] == 'table':
            kwargs['table'] = rule['table']
        else:
            kwargs['action'] = 'FR_ACT_UNREACHABLE'
        self._nl(self.ipr.rule, 'add', **kwargs)
        if rule['priority'] == 0:
            self.put_local_last(rule['family'])

    def del_rule(self, rule):
        kwargs = self._rule_args(rule)
        if rule['action'] == 'table':
            kwargs['table'] = rule['table']
        elif rule['action'] == 'unreachable':
            kwargs['action'] = 'FR_ACT_UNREACHABLE'
        self._nl(self.ipr.rule, 'del', **kwargs)

    def add_route(self, route):
        kwargs = {'family': FAMILIES[route['family']], 'dst': route['dst'], 'table': route['table'],
                  'proto': RTPROT_PIC}
        if route['type'] == 'unreachable':
            kwargs['type'] = 'unreachable'
        else:
            index = self.links().get(route['oif'])
            if index is None:
                return False
            kwargs['oif'] = index
        try:
            self.ipr.route('replace', **kwargs)
        except NetlinkError as exc:
            if exc.code == 100 and route['type'] != 'unreachable':
                # ENETDOWN: the interface exists but is not up yet (an OpenVPN
                # device before its up hook, which adds the route itself)
                return False
            raise PicError("netlink refused replace %s: %s" % (kwargs, exc))
        return True

    def del_route(self, route):
        kwargs = {'family': FAMILIES[route['family']], 'dst': route['dst'], 'table': route['table']}
        if route['type'] == 'unreachable':
            kwargs['type'] = 'unreachable'
        elif route['oif'] in self.links():
            kwargs['oif'] = self.links()[route['oif']]
        try:
            self.ipr.route('del', **kwargs)
        except NetlinkError as exc:
            if exc.code not in (2, 3, 19):   # ENOENT (IPv6) / ESRCH / ENODEV: already gone
                raise PicError("netlink refused to delete route %r: %s" % (route, exc))

    @staticmethod
    def _nl(func, op, **kwargs):
        try:
            func(op, **kwargs)
        except NetlinkError as exc:
            if op == 'add' and exc.code == 17:   # EEXIST
                return
            if op == 'del' and exc.code in (2, 3):
                return
            raise PicError("netlink refused %s %s: %s" % (op, kwargs, exc))


# rtnetlink multicast groups (linux/rtnetlink.h RTMGRP_*): rule and route changes
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV4_RULE = 0x80
RTMGRP_IPV6_ROUTE = 0x400
RTMGRP_IPV6_RULE = 1 << (19 - 1)


def watch_deletions(on_loss, table_range, stopped):
    """Call ``on_loss(what)`` for every ip rule deleted, and every route deleted
    from a table in ``table_range``, until ``stopped()`` (netlink events: no
    polling). Runs in the caller's thread; returns when stopped or on error."""
    if not HAS_PYROUTE2:
        raise PicError("the Python library pyroute2 is required on the cell (Debian: python3-pyroute2)")
    low, high = table_range
    ipr = IPRoute()
    try:
        ipr.bind(groups=RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)
        while not stopped():
            for msg in ipr.get():
                event = msg.get('event')
                if event == 'RTM_DELRULE':
                    on_loss('ip rule deleted (priority %s)' % _attr(msg, 'FRA_PRIORITY', 0))
                elif event == 'RTM_DELROUTE' and low <= _attr(msg, 'RTA_TABLE', msg['table']) <= high:
                    on_loss('route deleted from table %s' % _attr(msg, 'RTA_TABLE', msg['table']))
    finally:
        ipr.close()


def diff(have, want, key):
    """(to_add, to_delete) between two lists of dicts, by ``key``."""
    have_keys = dict((key(x), x) for x in have)
    want_keys = dict((key(x), x) for x in want)
    to_add = [want_keys[k] for k in sorted(want_keys, key=repr) if k not in have_keys]
    to_del = [have_keys[k] for k in sorted(have_keys, key=repr) if k not in want_keys]
    return to_add, to_del


def rule_key(rule):
    return _rule_key(rule)


def route_key(route):
    return _route_key(route)
