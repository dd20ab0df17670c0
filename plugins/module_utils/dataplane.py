# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring the running cell to the registry: facts, diff, apply.

Order of changes (so that no in-between state lets a fail-closed peer reach
the WAN): exit interfaces, routes added, rules added, the nftables table
changed in one transaction (only the set and map elements that differ from
the running table when nothing else differs, else the whole table replaced),
then stale rules and routes deleted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import socket
import sys

from . import model, nft, wgconf
from .errors import PicError
from .nft import Nft, boot_block_script, list_terse, render_down_set, summary as nft_summary
from .exits import cell_runs_wireguard
from .routing import Routing, diff, rule_key, route_key
from .wgiface import WgInterface, config_matches, dump_all


def _fmt_rule(rule):
    iif = ' iif %s' % rule['iif'] if rule.get('iif') else ''
    if rule.get('dport'):
        iif += ' ipproto %s dport %d' % ({6: 'tcp', 17: 'udp'}.get(rule.get('ipproto'), rule.get('ipproto')),
                                         rule['dport'])
    if rule['action'] == 'table':
        return 'ipv%d rule pref %d%s fwmark 0x%x/0x%x lookup %d' % (
            rule['family'], rule['priority'], iif, rule['fwmark'], rule['fwmask'], rule['table'])
    return 'ipv%d rule pref %d%s fwmark 0x%x/0x%x %s' % (rule['family'], rule['priority'], iif, rule['fwmark'],
                                                         rule['fwmask'], rule['action'])


def _fmt_route(route):
    target = ('dev %s' % route['oif']) if route['type'] == 'unicast' else route['type']
    return 'ipv%d route %s %s table %d' % (route['family'], route['dst'], target, route['table'])


class Cell(object):
    """The running data plane of one cell (one network namespace)."""

    def __init__(self, registry, hold_facts=False):
        """``hold_facts``: one module run; the facts of a document are read once
        (``facts()``) and again only after this cell changed an exit interface."""
        self.registry = registry
        self.routing = Routing()
        self.nft = Nft()
        self.run_dir = os.path.join(registry.state_dir, 'run')
        self._held_facts = {} if hold_facts else None
        self._held_listing = None

    def close(self):
        self.routing.close()

    # -- secrets of interface exits ---------------------------------------------
    def store_wg(self, conn_id, wg):
        self.registry.write_secret(conn_id, json.dumps(wg, sort_keys=True))
        path = self.registry.secret_path(conn_id) + '.setconf'
        from .registry import write_atomic
        write_atomic(path, wgconf.render_setconf(wg), 0o600)

    def load_wg(self, conn_id):
        text = self.registry.read_secret(conn_id)
        if text is None:
            raise PicError("the secrets of connection %r are missing from %s; run pic_connection again with its "
                           "config" % (conn_id, self.registry.secrets_dir))
        return json.loads(text)

    def drop_wg(self, conn_id, ifname):
        changes = WgInterface(self.routing, ifname, self.run_dir).remove() if ifname else []
        self._forget_facts()
        self.registry.remove_secret(conn_id)
        path = self.registry.secret_path(conn_id) + '.setconf'
        if os.path.exists(path):
            os.unlink(path)
        return changes

    # -- facts ---------------------------------------------------------------------
    def facts(self, doc):
        """What ``model.desired`` needs to know of the running cell for ``doc``."""
        if self._held_facts is None:
            return self._read_facts(doc)
        key = _facts_key(doc)
        if key not in self._held_facts:
            self._held_facts = {key: self._read_facts(doc)}
        return self._held_facts[key]

    def _forget_facts(self):
        if self._held_facts is not None:
            self._held_facts = {}

    def _read_facts(self, doc):
        settings, _layout = model.normalize_settings(doc.get('settings'))
        self.routing.forget_links()
        links = self.routing.links()
        local_ifaces = [settings['peer_interface']]
        local_ifaces += [s['interface'] for s in doc.get('services', {}).values() if s.get('interface')]
        local_ifaces += [link['interface'] for link in doc.get('links', {}).values()]
        networks = []
        for ifname in sorted(set(local_ifaces)):
            networks.extend(n for n in self.routing.networks_of(ifname) if n not in networks)
        return {
            'peer_networks': networks,
            'interfaces': sorted(c['interface'] for c in doc['connections'].values()
                                 if c.get('interface') in links),
            'down': self.registry.load_runtime().get('down', []),
            'present': [settings['peer_interface']] if settings['peer_interface'] in links else [],
        }

    # -- converge ------------------------------------------------------------------
    def converge(self, doc, check_mode=False, pending=None, relist=False):
        """Make the running state match ``doc``; returns the list of changes.

        ``pending``: WireGuard settings given in this run and not stored yet
        (check mode), by connection id. ``relist``: list the table even when
        the generation record says it is unchanged (the state guard's repairs).
        """
        settings, layout = model.normalize_settings(doc.get('settings'))
        changes = self._ensure_wg_exits(doc, check_mode, pending)
        want = model.desired(doc, self.facts(doc), (settings, layout))
        have_rules = self.routing.rules(model.owned_priorities(settings))
        have_routes = self.routing.routes(model.owned_table_range(settings, layout))
        want_routes = [dict(r, table=t) for t, rs in want.routes.items() for r in rs]
        add_routes, del_routes = diff(have_routes, want_routes, route_key)
        add_rules, del_rules = diff(have_rules, want.rules, rule_key)
        script = want.render_nft()
        seen_at = None if relist else generation_unchanged(self.registry.state_dir, script)
        want_nft = want.nft_summary()
        if seen_at is not None:
            # no nftables commit in this namespace since the one that made it this very table
            have_nft, elements = want_nft, None
        else:
            seen_at, listing = self._take_listing()
            have_nft, elements = self._nft_plan(want, listing, want_nft)
        nft_changed = have_nft != want_nft

        for route in add_routes:
            changes.append('add ' + _fmt_route(route))
            if not check_mode:
                self.routing.add_route(route)
        for rule in add_rules:
            changes.append('add ' + _fmt_rule(rule))
            if not check_mode:
                self.routing.add_rule(rule)
        changes.extend(self._order_dns_guard(want, check_mode))
        if nft_changed:
            before = nft.generation()
            changes.extend(self._apply_nft(want, have_nft, elements, check_mode))
            # recorded only when this apply was the one commit since the listing it was planned from
            after = nft.generation()
            seen_at = after if None not in (seen_at, before, after) and before == seen_at and after == before + 1 \
                else None
        for rule in del_rules:
            changes.append('delete ' + _fmt_rule(rule))
            if not check_mode:
                self.routing.del_rule(rule)
        for route in del_routes:
            changes.append('delete ' + _fmt_route(route))
            if not check_mode:
                self.routing.del_route(route)
        if not check_mode:
            save_last_good(self.registry.state_dir, want, script)
            record_converged(self.registry)
            record_generation(self.registry.state_dir, seen_at, script)
        return changes

    def _take_listing(self):
        """(the ruleset's generation read just before the listing, the running table)
        as listed by ``check()`` earlier in this run (then forgotten: read once), else
        as listed now. A listing that went stale in between (the monitor changed a
        down set) only costs a table replace: an element batch made from it is
        refused as a whole (see ``_apply_nft``)."""
        held, self._held_listing = self._held_listing, None
        return held if held is not None else self._list_with_generation()

    def _list_with_generation(self):
        generation = nft.generation()
        return generation, self.nft.list_table()

    @staticmethod
    def _nft_plan(want, listing, want_nft=None):
        """(summary of the running table, element diff or None): None when the
        table is missing or differs in more than set and map elements, or in
        so many elements of interval sets that a replace costs less.
        ``want_nft``: ``want.nft_summary()`` when the caller has it already."""
        have_nft = nft_summary(listing)
        if want_nft is None:
            want_nft = want.nft_summary()
        shapes = want.nft_shapes()
        if have_nft != want_nft and nft.same_structure(have_nft, nft.shapes(listing), want_nft, shapes):
            elements = nft.element_diff(have_nft, want_nft)
            if nft.interval_changes(elements, shapes) <= nft.INTERVAL_CHANGES_MAX:
                return have_nft, elements
        return have_nft, None

    def _apply_nft(self, want, have_nft, elements, check_mode):
        """Change the table to ``want``: only the differing set and map
        ``elements`` when that is all that differs, else the whole table; one
        transaction either way (no packet sees a half-made change). Returns the
        changes."""
        table = '%s %s' % (model.NFT_FAMILY, model.NFT_TABLE)
        if elements is not None:
            line = 'update nftables elements of %s: %s' % (table, nft.describe_diff(elements))
            if check_mode:
                return [line]
            try:
                self.nft.json_cmd(nft.element_batch(elements, want.nft_shapes()))
                return [line]
            except PicError as exc:
                # nothing of the batch was made (one transaction): replace the table instead
                changes = ['replace nftables table %s (%s)' % (table, exc.msg)]
        else:
            changes = ['%s nftables table %s' % ('create' if have_nft is None else 'replace', table)]
        if not check_mode:
            self.nft.replace(want.render_nft())
        return changes

    def _ensure_wg_exits(self, doc, check_mode, pending):
        """The WireGuard exit interfaces of ``doc``, created and configured
        (check mode: what would be). Returns the changes."""
        changes = []
        wg_exits = sorted((c for c in doc['connections'].values() if cell_runs_wireguard(c['type'])),
                          key=lambda c: c['index'])
        self.routing.forget_links()
        running = dump_all() if wg_exits else {}
        for conn in wg_exits:
            iface = WgInterface(self.routing, conn['interface'], self.run_dir)
            if check_mode:
                wg = (pending or {}).get(conn['id']) or self.load_wg(conn['id'])
                if not iface.exists(fresh=False):
                    changes.append('create %s' % conn['interface'])
                elif not config_matches(running.get(conn['interface']), wg):
                    changes.append('configure %s' % conn['interface'])
            else:
                wg = self.load_wg(conn['id'])
                changes.extend(iface.ensure(wg, self.registry.secret_path(conn['id']) + '.setconf',
                                            running=running.get(conn['interface'])))
        if changes and not check_mode:
            self._forget_facts()   # an exit interface came or changed
        return changes

    def _order_dns_guard(self, want, check_mode=False):
        """Put the kernel's ``local`` rule behind the DNS guard's rules of
        priority 0 where it comes first (model.add_dns_guard)."""
        changes = []
        for family in sorted(set(r['family'] for r in want.rules if r['priority'] == model.DNS_GUARD_PRIORITY)):
            if check_mode and self.routing.local_rule_first(family) or \
                    not check_mode and self.routing.put_local_last(family):
                changes.append('move the ipv%d local rule behind the DNS guard' % family)
        return changes

    # -- before saving: would the kernel take it? ---------------------------------
    def check(self, doc, pending=None):
        """Dry-run the data plane of ``doc`` before anything is saved: the
        WireGuard settings of every exit render, and the kernel accepts the
        nftables change (the element batch, or the whole table when more than
        elements differ; validated in a transaction that is not committed)."""
        for conn in doc['connections'].values():
            if cell_runs_wireguard(conn['type']):
                wgconf.render_setconf((pending or {}).get(conn['id']) or self.load_wg(conn['id']))
        want = model.desired(doc, self.facts(doc))
        held = self._list_with_generation()
        _have, elements = self._nft_plan(want, held[1])
        if elements is None:
            self.nft.check(want.render_nft())
        elif elements:
            self.nft.check_json(nft.element_batch(elements, want.nft_shapes()))
        if self._held_facts is not None:
            self._held_listing = held   # converge() plans from it

    # -- rollback: back to the previous document after a failed apply -------------
    def roll_back(self, previous, failed):
        """Converge to ``previous`` (the registry before the failed run; None:
        there was none, so nothing of the collection ran) and remove the exit
        interfaces only ``failed`` had. Returns the changes."""
        if previous is None:
            return self.teardown(failed)
        changes = []
        self._forget_facts()
        for cid, conn in failed['connections'].items():
            old = previous['connections'].get(cid)
            if cell_runs_wireguard(conn['type']) and conn.get('interface') and \
                    (old is None or old.get('interface') != conn['interface']):
                changes.extend(WgInterface(self.routing, conn['interface'], self.run_dir).remove())
        changes.extend(self.converge(previous))
        return changes

    def losses(self, doc, want):
        """What of the table's chains and rules, the ip rules and the fixed
        (unreachable) routes of ``want`` is missing or changed now. Cheap enough
        to run twice a second at 10,000 peers: the table is listed without set
        and map contents, rules and routes come from netlink dumps."""
        settings, layout = model.normalize_settings(doc.get('settings'))
        lost = []
        have = nft_summary(list_terse())
        if have is None:
            return ['nftables table %s %s missing' % (model.NFT_FAMILY, model.NFT_TABLE)]
        wanted = want.nft_summary()
        for name, comments in sorted(wanted['chains'].items()):
            if have['chains'].get(name) != comments:
                lost.append('nftables chain %s changed' % name)
        for kind in ('sets', 'maps'):
            lost.extend('nftables %s %s missing' % (kind[:-1], n) for n in sorted(set(wanted[kind]) - set(have[kind])))
        add_rules, _del = diff(self.routing.rules(model.owned_priorities(settings)), want.rules, rule_key)
        lost.extend('missing ' + _fmt_rule(rule) for rule in add_rules)
        lost.extend('the ipv%d local rule comes before the DNS guard' % family
                    for family in sorted(set(r['family'] for r in want.rules
                                             if r['priority'] == model.DNS_GUARD_PRIORITY))
                    if self.routing.local_rule_first(family))
        fixed = [dict(r, table=t) for t, rs in want.routes.items() for r in rs if r['type'] != 'unicast']
        if fixed:
            add_routes, _del = diff(self.routing.routes(model.owned_table_range(settings, layout)), fixed, route_key)
            lost.extend('missing ' + _fmt_route(route) for route in add_routes
                        if route['type'] != 'unicast')
        return lost

    def heal(self, doc):
        """What the monitor does each pass: bring back missing exit interfaces and
        the routes of their tables (the kernel drops them with the interface).
        Never deletes anything and never touches the nftables table."""
        settings, layout = model.normalize_settings(doc.get('settings'))
        changes = []
        for conn in doc['connections'].values():
            if cell_runs_wireguard(conn['type']):
                iface = WgInterface(self.routing, conn['interface'], self.run_dir)
                if not iface.exists():
                    changes.extend(iface.ensure(self.load_wg(conn['id']),
                                                self.registry.secret_path(conn['id']) + '.setconf'))
        want = model.desired(doc, self.facts(doc), (settings, layout))
        have_routes = self.routing.routes(model.owned_table_range(settings, layout))
        want_routes = [dict(r, table=t) for t, rs in want.routes.items() for r in rs]
        add_routes, _del = diff(have_routes, want_routes, route_key)
        for route in add_routes:
            if self.routing.add_route(route):
                changes.append('add ' + _fmt_route(route))
        return changes

    def set_down(self, doc, down):
        """Hold the users of the ``down`` connections: on the first working
        fallback (the ``carry`` map), else the fail-open ones on the default
        gateway (the ``down_open`` set) and the fail-closed ones blocked (the
        ``down_closed`` set); all changed in one transaction."""
        _settings, layout = model.normalize_settings(doc.get('settings'))
        want = sorted(model.conn_mark(doc['connections'][cid], layout) for cid in down
                      if cid in doc['connections'])
        want_carry = model.carry_elements(doc, layout, down)
        table = self.nft.list_table()
        if table is None:
            return []
        have = nft_summary(table)
        # (a table of a version before the carry map or the down_closed set: converged by the next run or the guard)
        has_carry = 'carry' in have['maps']
        has_closed = 'down_closed' in have['sets']
        want_closed = sorted(model.held_closed(doc, layout, down))
        if sorted(have['sets'].get('down_open', [])) == want and \
                (not has_carry or have['maps']['carry'] == want_carry) and \
                (not has_closed or sorted(have['sets']['down_closed']) == want_closed):
            return []
        self.nft.cmd(render_down_set(want, want_carry if has_carry else None, want_closed if has_closed else None))
        carried = model.carriers(doc, down) if has_carry else {}
        return ['down connections now: %s' % (', '.join(down) or 'none')] + \
            ['%s carried by %s' % (cid, carried[cid]) for cid in sorted(carried)]

    def teardown(self, doc):
        """Remove everything the collection runs (not the registry)."""
        settings, layout = model.normalize_settings(doc.get('settings'))
        changes = []
        self._forget_facts()
        for conn in doc['connections'].values():
            if cell_runs_wireguard(conn['type']) and conn.get('interface'):
                changes.extend(WgInterface(self.routing, conn['interface'], self.run_dir).remove())
        if self.nft.list_table() is not None:
            self.nft.delete_table()
            changes.append('deleted nftables table')
        for rule in self.routing.rules(model.owned_priorities(settings)):
            self.routing.del_rule(rule)
            changes.append('delete ' + _fmt_rule(rule))
        for route in self.routing.routes(model.owned_table_range(settings, layout)):
            self.routing.del_route(route)
            changes.append('delete ' + _fmt_route(route))
        if os.path.exists(last_good_path(self.registry.state_dir)):
            os.unlink(last_good_path(self.registry.state_dir))   # boot restore must not bring it back
        return changes


def _facts_key(doc):
    """What of ``doc`` the facts depend on: the interfaces they look at."""
    return json.dumps([(doc.get('settings') or {}).get('peer_interface'),
                       sorted(str(s.get('interface')) for s in doc.get('services', {}).values()),
                       sorted(str(link.get('interface')) for link in doc.get('links', {}).values()),
                       sorted(str(c.get('interface')) for c in doc['connections'].values())])


# -- the last good compiled state (boot restore's first step) ----------------------
LAST_GOOD = 'last-good.json'


CONVERGED = 'converged.json'
GENERATION = 'nft-generation.json'


SO_NETNS_COOKIE = 71   # (linux/socket.h; Linux 5.14+)


def _namespace_identity():
    """This boot and this network namespace (its cookie, never reused within a boot,
    unlike its inode number): a generation id counts within one. None when unknown."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as handle:
            boot = handle.read().strip()
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            cookie = int.from_bytes(probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), 'little')
        finally:
            probe.close()
        return [boot, cookie] if boot and cookie else None
    except (IOError, OSError):
        return None


def _generation_record(generation, script):
    identity = _namespace_identity()
    if generation is None or identity is None:
        return None
    return {'identity': identity, 'generation': generation,
            'table': hashlib.sha256(script.encode('utf-8')).hexdigest()}


def record_generation(state_dir, generation, script):
    """Note that the running table was ``script`` at ``generation`` of this namespace's
    ruleset (None: not known; the next run lists the table)."""
    path = os.path.join(state_dir, GENERATION)
    record = _generation_record(generation, script)
    if record is None:
        if os.path.exists(path):
            os.unlink(path)
        return
    write_when_changed(path, json.dumps(record, sort_keys=True) + '\n')


def write_when_changed(path, text):
    """Write ``text`` to ``path`` (atomically, 0600) unless the file holds it already
    (a no-op run writes nothing); True when written."""
    from .registry import write_atomic
    if _read_record(path) == text:
        return False
    write_atomic(path, text, 0o600)
    return True


def _read_record(path):
    """The text of the record file ``path``, or None (missing, a link, unreadable)."""
    from .registry import read_nofollow_bytes
    try:
        data = read_nofollow_bytes(path)
        return data.decode('utf-8') if data else None
    except (IOError, OSError, ValueError, PicError):
        return None


def generation_unchanged(state_dir, script):
    """The current generation when no nftables commit has happened in this namespace
    since the one recorded with the table ``script`` (a run may then skip listing
    the table), else None."""
    text = _read_record(os.path.join(state_dir, GENERATION))
    try:
        recorded = json.loads(text) if text else None
    except ValueError:
        return None
    if recorded is None:
        return None
    current = _generation_record(nft.generation(), script)
    return current['generation'] if current is not None and recorded == current else None


def registry_signature(path):
    """(inode, mtime, size) of the registry file (replaced atomically: a new
    inode for every write), or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def record_converged(registry):
    """Note which registry the running state was last converged to (a run
    killed between its registry write and its apply leaves them different)."""
    write_when_changed(os.path.join(registry.state_dir, CONVERGED),
                       json.dumps({'registry': registry_signature(registry.path)}) + '\n')


def converged_signature(state_dir):
    try:
        with open(os.path.join(state_dir, CONVERGED)) as handle:
            return json.load(handle).get('registry')
    except (IOError, OSError, ValueError, AttributeError):
        return None


def last_good_path(state_dir):
    return os.path.join(state_dir, LAST_GOOD)


def save_last_good(state_dir, want, script=None):
    """Keep the compiled nftables table and ip rules of a successful apply beside
    the registry (0600), rewritten only when they changed. Boot restore loads it
    before anything else: it needs no secret, exit daemon or interface."""
    data = json.dumps({'version': 1, 'nft': script or want.render_nft(), 'rules': want.rules}, sort_keys=True) + '\n'
    return write_when_changed(last_good_path(state_dir), data)


def load_last_good(state_dir):
    """The saved state as (nft script, rules), or None when there is none.
    A file that is not what save_last_good() wrote raises PicError."""
    path = last_good_path(state_dir)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            data = json.load(handle)
        script, rules = data['nft'], data['rules']
        if not isinstance(script, str) or not isinstance(rules, list):
            raise ValueError('unexpected types')
        keys = ('family', 'priority', 'fwmark', 'fwmask', 'action', 'table', 'iif')
        rules = [dict([(k, rule.get(k)) for k in keys] +
                      [(k, rule[k]) for k in ('ipproto', 'dport') if rule.get(k) is not None])
                 for rule in rules]
        if not script.startswith('table %s %s\n' % (model.NFT_FAMILY, model.NFT_TABLE)):
            raise ValueError('not a script of table %s' % model.NFT_TABLE)
    except (IOError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PicError("the last good state %s is unreadable (%s)" % (path, exc))
    return script, rules


def install_kill_switch(state_dir, peer_interface, log=None):
    """Boot restore's first step: the last good compiled table and ip rules, or,
    without a usable one, the minimal block of the peer interface. Needs no
    secret, registry, exit daemon or interface. Returns what was installed;
    raises PicError only when not even the block could be installed."""
    log = log or (lambda msg: sys.stderr.write('pic-connectivity restore: %s\n' % msg))
    nft = Nft()
    try:
        saved = load_last_good(state_dir)
    except PicError as exc:
        log('%s; blocking forwarding from %s instead' % (exc, peer_interface))
        saved = None
    if saved is not None:
        try:
            nft.cmd(saved[0])
            _install_rules(saved[1], log)
            return 'the last good state of %s' % last_good_path(state_dir)
        except PicError as exc:
            log('the last good state could not be installed (%s); blocking forwarding from %s instead'
                % (exc, peer_interface))
    nft.cmd(boot_block_script(peer_interface))
    return 'a block of everything forwarded from %s' % peer_interface


def _install_rules(rules, log):
    """Add the saved ip rules (the guard and the fail-closed unreachable rules)."""
    try:
        routing = Routing()
    except PicError as exc:
        log('ip rules not restored: %s (the nftables kill switch holds)' % exc)
        return
    try:
        for rule in rules:
            routing.add_rule(rule)
    finally:
        routing.close()
