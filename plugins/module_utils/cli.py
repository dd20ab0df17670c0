# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cell-side entry point (installed as ``pic-connectivity`` by the
connectivity role, with this directory copied as ``pic_connectivity_lib``):

* ``restore``: re-apply the registry (boot, before forwarding starts);
* ``monitor``: keep exit interfaces and their routes up, probe exits, and hold
  fail-open peers of a dead exit on the default gateway by changing one
  nftables set (never by rewriting the ruleset);
* ``status``: the connections, their health and what carries each peer
  now, as tables (``--json`` for scripts; see status.py);
* ``audit``: the recent entries of the audit journal (``-n N``, ``--json``;
  see audit.py);
* ``openvpn-up``: the up/down hook of an OpenVPN exit instance (addresses
  from OpenVPN's environment, then the connection's routes);
* ``revert``: the timer of a confirmed commit (pic_commit).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
from concurrent.futures import ThreadPoolExecutor
import json
import os
import signal
import subprocess
import sys
import threading
import time

from . import audit, egress, exits, model, openvpn
from .commits import wait_and_revert
from .dataplane import Cell, install_kill_switch, last_good_path, registry_signature, converged_signature
from .errors import PicError
from .exitguard import parent_death_signal
from .exits.base import InterfaceExit
from .health import (NO_PING, ping_through, link_exists, tcp_connect, HealthCache, cache_entry, check_all,
                     handshake_max_age)
from .registry import Registry, DEFAULT_STATE_DIR
from .routing import watch_deletions
from .wgiface import handshake_age


RESTORED = 0
KILL_SWITCH_ONLY = 3    # the kill switch holds, the registry's state is not restored
NO_KILL_SWITCH = 1
# The monitor asks a connection's echo URL (egress proof) at most this often (seconds).
EGRESS_EVERY = 10


def checked_registry(registry):
    """The registry document for a restore: a missing one is an error here (the
    cell had a state: its last good kill switch exists), and ``load()`` refuses
    what the collection never writes (``{}``, ``[]``, ``null``, a string,
    missing or mistyped sections), whose restore would send every peer to the WAN."""
    if not os.path.exists(registry.path):
        raise PicError("the registry %s is missing" % registry.path)
    return registry.load()


def restore(state_dir, peer_interface='wg0'):
    """Boot restore, fail-closed: first the kill switch (the last good compiled
    state, or a block of the peer interface), then the registry's state with its
    exits. Exit code 0 when restored, 3 when only the kill switch holds (the
    reason on stderr), 1 when not even the kill switch could be installed."""
    registry = Registry(state_dir)
    fresh = not os.path.exists(registry.path) and not os.path.exists(last_good_path(state_dir))
    if fresh:
        print('nothing to restore: no registry in %s' % state_dir)  # pylint: disable=ansible-bad-function
        return RESTORED
    try:
        shield = install_kill_switch(state_dir, peer_interface)
    except PicError as exc:
        print('pic-connectivity restore: NO kill switch could be installed: %s' % exc,  # pylint: disable=ansible-bad-function
              file=sys.stderr)
        return NO_KILL_SWITCH
    print('kill switch: %s' % shield)  # pylint: disable=ansible-bad-function
    try:
        with registry:
            doc = checked_registry(registry)
            cell = Cell(registry)
            try:
                changes = cell.converge(doc)
            finally:
                cell.close()
    except Exception as exc:  # pylint: disable=broad-except
        # whatever went wrong, the kill switch installed above stays
        print('pic-connectivity restore: the state was not restored, peers stay blocked by %s: %s'  # pylint: disable=ansible-bad-function
              % (shield, exc), file=sys.stderr)
        return KILL_SWITCH_ONLY
    for change in changes:
        print(change)  # pylint: disable=ansible-bad-function
    return RESTORED


class StateGuard(object):
    """Keeps the nftables table, the ip rules and the fixed routes in place.

    Woken by events (``nft monitor destroy`` for the table, its chains and
    rules; rtnetlink for ip rule and route deletions) and every ``interval``
    seconds anyway; checks cheaply what is missing and then re-converges the
    whole data plane from the registry, the same code path as the modules,
    under the registry lock (never waiting for it: a run that holds it
    converges itself, and the next pass looks again). A registry that changed
    since the last pass (say a run killed between its registry write and its
    apply) is converged once too, and so is everything every ``full_every``
    seconds.
    """

    def __init__(self, state_dir, interval=1.0, full_every=60.0, log=None):
        self.registry = Registry(state_dir)
        self.interval = interval
        self.full_every = full_every
        self.log = log or _log
        self.wake = threading.Event()
        self.stopping = False
        self.nft_proc = None
        self.last_full = 0.0
        self.cache = (None, None, None)   # (registry signature, document, desired)

    def _desired(self, sig, cell):
        """The registry document and its desired state, computed again only
        when the registry changed (what is checked does not depend on the
        monitor's runtime state)."""
        if self.cache[0] != sig:
            doc = self.registry.load()
            self.cache = (sig, doc, model.desired(doc, cell.facts(doc)))
        return self.cache[1], self.cache[2]

    def lost(self, why):
        self.log('guard: %s' % why)
        self.wake.set()

    def check(self):
        """One pass; returns the changes made (empty when all was in place or the lock was busy)."""
        sig = registry_signature(self.registry.path)
        if sig is None:
            return []   # nothing configured on this cell
        cell = Cell(self.registry)
        try:
            doc, want = self._desired(sig, cell)
            losses = cell.losses(doc, want)
            drift = converged_signature(self.registry.state_dir) != sig
            if not losses and not drift and time.time() - self.last_full < self.full_every:
                return []
            try:
                self.registry.lock(timeout=0)
            except PicError:
                return []   # a run converges now; look again at the next pass
            try:
                # (relist: a repair never trusts the generation record)
                changes = cell.converge(checked_registry(self.registry), relist=True)
            finally:
                self.registry.unlock()
        finally:
            cell.close()
        self.last_full = time.time()
        if losses or drift:
            self.log('guard: %s: %s' % ('; '.join(losses) or 'the registry changed without a converge',
                                        '; '.join(changes) or 'no change'))
        elif changes:
            self.log('guard: converged drift: %s' % '; '.join(changes))
        return changes

    def _nft_events(self):
        try:
            # (gets SIGTERM when the monitor dies, even by SIGKILL)
            self.nft_proc = subprocess.Popen(['nft', 'monitor', 'destroy'], stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                             stderr=subprocess.DEVNULL, text=True,
                                             preexec_fn=parent_death_signal)
        except OSError as exc:
            self.log('guard: no nftables events (%s); polling only' % exc)
            return
        for line in self.nft_proc.stdout:
            if ' %s %s' % (model.NFT_FAMILY, model.NFT_TABLE) in line:
                self.lost(line.strip())

    def _netlink_events(self, table_range):
        try:
            watch_deletions(self.lost, table_range, lambda: self.stopping)
        except Exception as exc:  # pylint: disable=broad-except
            self.log('guard: no netlink events (%s); polling only' % exc)

    def start(self):
        try:
            settings = self.registry.load().get('settings')
        except PicError as exc:
            # a damaged registry at start: events for the default ranges meanwhile;
            # every pass says what is wrong until it is mended
            self.log('guard: %s' % exc)
            settings = None
        settings, layout = model.normalize_settings(settings)
        for target, args in ((self._nft_events, ()),
                             (self._netlink_events, (model.owned_table_range(settings, layout),)),
                             (self._loop, ())):
            threading.Thread(target=target, args=args, daemon=True).start()

    def _loop(self):
        while not self.stopping:
            woken = self.wake.wait(self.interval)
            self.wake.clear()
            if woken:
                time.sleep(0.02)     # one pass for a burst of events (a flushed ruleset)
                self.wake.clear()
            try:
                self.check()
            except Exception as exc:  # pylint: disable=broad-except
                # say it, then look again in 5 s (or at the next event), not twice a second
                self.log('guard: %s' % exc)
                self.wake.wait(5.0)

    def close(self):
        self.stopping = True
        self.wake.set()
        if self.nft_proc is not None and self.nft_proc.poll() is None:
            self.nft_proc.terminate()
            self.nft_proc.wait()


def _log(msg):
    print(msg)  # pylint: disable=ansible-bad-function
    sys.stdout.flush()


class Monitor(object):
    """One pass per ``interval``; hysteresis by consecutive probe counts."""

    def __init__(self, state_dir, interval=1.0, fail_after=2, recover_after=2):
        self.registry = Registry(state_dir)
        self.interval = interval
        self.fail_after = fail_after
        self.recover_after = recover_after
        self.fails = {}
        self.oks = {}
        self.no_handshake_since = {}   # {conn id: when this monitor first saw its interface without a handshake}
        self.egress_seen = {}          # {conn id: (when, address, why, url) of its last egress probe}
        self.stop = False

    def _count(self, cid, ok):
        self.fails[cid] = 0 if ok else self.fails.get(cid, 0) + 1
        self.oks[cid] = self.oks.get(cid, 0) + 1 if ok else 0

    def verdict(self, conn, layout):
        """(down: bool, reason) for one exit; down None = decide by the probe counts.
        What is probed is the provider's (exits/): a proxy kind's instance port, an
        interface kind's interface, deep probe, then its liveness; then the egress
        proof (an exit leaving from outside ``expect_egress`` is down at once)."""
        down, reason = self._liveness(conn, layout)
        return self._egress_verdict(conn, layout, down, reason)

    def _egress_verdict(self, conn, layout, down, reason):
        """The egress proof of a connection with ``expect_egress``, asked at most every
        EGRESS_EVERY seconds (the echo URL is someone's server): wrong is down."""
        config = conn.get('config') or {}
        if down or not config.get('expect_egress') or not config.get('egress_url'):
            return down, reason
        now, cid = time.time(), conn['id']
        last = self.egress_seen.get(cid)
        if last is None or now - last[0] >= EGRESS_EVERY or last[3] != config['egress_url']:
            address, why = egress.probe(conn, layout, self.registry.state_dir, 2.0)
            self.egress_seen[cid] = last = (now, address, why, config['egress_url'])
        ok, text = egress.verdict(last[1], config['expect_egress'], last[2])
        if ok is False:
            return True, '%s; it %s' % (reason, text)
        return down, '%s; %s' % (reason, text)

    def _liveness(self, conn, layout):
        """``verdict`` without the egress proof."""
        # a type this library does not know (a newer collection's): its interface, if any
        provider = exits.get(conn['type']) or InterfaceExit
        if provider.kind == exits.PROXY:
            return self._proxy_verdict(provider, conn)
        if not link_exists(conn.get('interface')):
            reason = 'interface %s is missing' % conn.get('interface')
            # e.g. deleted under a running OpenVPN, which never recovers by itself
            restarted = provider.restart_orphaned(self.registry.state_dir, conn)
            reason += '; %s' % restarted if restarted else ''
            return True, reason
        target = (conn.get('config') or {}).get('health_target')
        cid = conn['id']
        ok = ping_through(target, model.conn_mark(conn, layout, True)) if target else None
        if ok is not None:
            self._count(cid, ok)
            return None, ('probe of %s %s' % (target, 'answered' if ok else 'failed %d times' % self.fails[cid]))
        # no health_target, or no ping to probe it with: the type's own check decides
        unprobed = '; deep probe of %s not run: %s' % (target, NO_PING) if target else ''
        if provider.liveness == 'link':
            return False, 'interface %s present%s' % (conn['interface'], unprobed)
        return self._handshake_verdict(conn, unprobed)

    def _proxy_verdict(self, provider, conn):
        """A proxy kind: its instance port answers, then the provider's deep check
        (Tor's circuits, a request through the instance to ``health_target``); counted."""
        ok, why = tcp_connect('127.0.0.1', conn['local_port'], timeout=0.5)
        reason = 'instance port %d: %s' % (conn['local_port'], why)
        deep = provider.deep_check(conn, self.registry.state_dir, 2.0) if ok else None
        if deep is not None:
            ok, why = deep
            reason = '%s; %s' % (reason, why)
        self._count(conn['id'], ok)
        return None, reason

    def _handshake_verdict(self, conn, unprobed=''):
        """The guide's rule: down when the newest handshake is older than the connection's
        ``health_handshake_max_age`` (180 s), or when there was none for that long since
        this monitor first saw the interface (a server that never answers)."""
        cid, max_age, now = conn['id'], handshake_max_age(conn), time.time()
        age = handshake_age(conn['interface'], now)
        if age is None:
            since = now - self.no_handshake_since.setdefault(cid, now)
            if since > max_age:
                return True, 'no handshake in the %ds since the monitor saw %s (more than %ds)%s' % (
                    since, conn['interface'], max_age, unprobed)
            return False, 'handshake never%s' % unprobed
        self.no_handshake_since.pop(cid, None)
        if age > max_age:
            return True, 'last handshake %ds ago (more than %ds)%s' % (age, max_age, unprobed)
        return False, 'handshake %ds ago%s' % (age, unprobed)

    def tick(self):
        # Probe without the lock (the registry is replaced atomically, so a
        # plain read is consistent); decide and act under it.
        doc = self.registry.load()
        if not doc['connections']:
            return
        _settings, layout = model.normalize_settings(doc.get('settings'))
        conns = list(doc['connections'].values())
        with ThreadPoolExecutor(max_workers=min(32, len(conns))) as pool:
            verdicts = dict(zip([c['id'] for c in conns], pool.map(lambda c: self.verdict(c, layout), conns)))
        with self.registry:
            doc = self.registry.load()
            runtime = self.registry.load_runtime()
            down = set(runtime.get('down') or [])
            was_down = sorted(down)
            reasons = runtime.get('reasons') or {}
            cell = Cell(self.registry)
            try:
                healed = cell.heal(doc)
                for cid, (is_down, reason) in verdicts.items():
                    if cid not in doc['connections']:
                        continue
                    if is_down is None:   # probe with hysteresis
                        config = doc['connections'][cid].get('config') or {}
                        fail_after = config.get('health_fail_after') or self.fail_after
                        recover_after = config.get('health_recover_after') or self.recover_after
                        if cid in down and self.oks.get(cid, 0) >= recover_after:
                            is_down = False
                        elif cid not in down and self.fails.get(cid, 0) >= fail_after:
                            is_down = True
                        else:
                            is_down = cid in down
                    reasons[cid] = reason
                    (down.add if is_down else down.discard)(cid)
                for cid in list(down):
                    if cid not in doc['connections']:
                        down.discard(cid)
                changed = cell.set_down(doc, sorted(down))
                new_runtime = {'down': sorted(down), 'reasons': dict((k, v) for k, v in reasons.items()
                                                                     if k in doc['connections']),
                               'monitor_at': time.time()}
                self.registry.save_runtime(new_runtime)
                if changed or healed:
                    journal_monitor(self.registry.state_dir, was_down, sorted(down), healed + changed)
                    for line in healed + changed:
                        print(line)  # pylint: disable=ansible-bad-function
                    sys.stdout.flush()
                    # Refresh the shared health cache right away.
                    cache = HealthCache(self.registry.state_dir)
                    stored = cache.load()
                    conns = list(doc['connections'].values())
                    seen = {}
                    results = check_all(conns, new_runtime, layout=layout, state_dir=self.registry.state_dir,
                                        egress_out=seen)
                    for conn, (status, why) in zip(conns, results):
                        stored[conn['id']] = cache_entry(conn, status, why, time.time(), seen)
                    cache.save(stored)
            finally:
                cell.close()

    def run(self):
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, 'stop', True))
        guard = StateGuard(self.registry.state_dir)
        try:
            guard.start()
        except PicError as exc:
            print('monitor: the state guard did not start: %s' % exc, file=sys.stderr)  # pylint: disable=ansible-bad-function
        try:
            while not self.stop:
                started = time.time()
                try:
                    self.tick()
                except PicError as exc:
                    print('monitor: %s' % exc, file=sys.stderr)  # pylint: disable=ansible-bad-function
                end = started + max(0.05, self.interval)
                while not self.stop and time.time() < end:
                    time.sleep(min(0.1, max(0.0, end - time.time())))
        finally:
            guard.close()
        return 0


def journal_monitor(state_dir, was_down, down, lines):
    """The monitor's changes to the audit journal: the exits it marked down or up
    again (fail-open peers moved) and what it put back in place."""
    line = audit.entry('monitor', None, None, None, lines)
    if was_down != down:
        line['changed'] = {'runtime.down': {'before': was_down, 'after': down}}
    try:
        audit.Journal(state_dir).append(line)
    except (OSError, PicError) as exc:
        print('monitor: the audit journal was not written: %s' % exc, file=sys.stderr)  # pylint: disable=ansible-bad-function


def _state_dir(cmd):
    cmd.add_argument('--state-dir', default=DEFAULT_STATE_DIR,
                     help='the cell\'s state directory (default: %(default)s)')


def _add_restore_monitor(sub):
    cmd = sub.add_parser('restore', help='boot restore: the kill switch first, then the registry\'s state',
                         description='Re-apply the registry at boot, fail-closed: first the kill switch (the last '
                                     'good state, or a block of the peer interface), then the registry\'s state. '
                                     'Exit code 0: restored; 3: only the kill switch holds; 1: not even that.')
    _state_dir(cmd)
    cmd.add_argument('--peer-interface', default='wg0',
                     help='blocked when there is no last good state to restore first (default: %(default)s)')
    cmd = sub.add_parser('monitor', help='keep the data plane in place and probe the exits (runs until stopped)',
                         description='Probe every exit each interval and hold the fail-open peers of a dead exit '
                                     'on the default gateway; put back a removed nftables table, ip rule or route.')
    _state_dir(cmd)
    cmd.add_argument('--interval', type=float, default=1.0, help='seconds between passes (default: %(default)s)')
    cmd.add_argument('--fail-after', type=int, default=2,
                     help='failed probes before an exit is down (default: %(default)s)')
    cmd.add_argument('--recover-after', type=int, default=2,
                     help='answered probes before a down exit is up again (default: %(default)s)')


def _add_status(sub):
    cmd = sub.add_parser('status', help='connections, their health, what carries each peer, the monitor',
                         description='What the cell does now: each connection and its health (from the shared '
                                     'cache when fresh, probed otherwise), the address its exit interface holds, '
                                     'what carries each peer and service (its exit, the WAN as fail-open fallback '
                                     'or default gateway, or nothing: blocked), and the monitor\'s state.')
    _state_dir(cmd)
    cmd.add_argument('--json', action='store_true', help='print the status as JSON, for scripts')
    cmd.add_argument('--probe', action='store_true', help='probe every connection now (not from the cache)')
    cmd.add_argument('--max-age', type=int, default=30,
                     help='seconds a cached health result may be reused (default: %(default)s)')
    cmd.add_argument('--allow-empty', action='store_true',
                     help='report a state directory that holds no cell as an empty cell instead of failing')


def _add_audit(sub):
    cmd = sub.add_parser('audit', help='the recent entries of the audit journal (who changed what, when)',
                         description='The last entries of the cell\'s audit journal (audit.jsonl in the state '
                                     'directory, rotated by size): each change a pic module, a commit revert or '
                                     'the monitor made, when, the actor the controller gave, the user on the '
                                     'cell, and the records before and after (never secrets). Oldest first.')
    _state_dir(cmd)
    cmd.add_argument('--json', action='store_true', help='print the entries as JSON, for scripts')
    cmd.add_argument('-n', '--entries', type=int, default=20, metavar='N',
                     help='how many of the most recent entries (default: %(default)s)')


def print_audit(args):
    entries = audit.Journal(args.state_dir).recent(args.entries)
    if args.json:
        print(json.dumps(entries, indent=1, sort_keys=True))  # pylint: disable=ansible-bad-function
    else:
        sys.stdout.write(audit.render(entries))
    return 0


def _add_hooks(sub):
    # OpenVPN's up/down hook: the connection's addresses and routes (OpenVPN's
    # environment), then OpenVPN's own arguments, which are ignored.
    cmd = sub.add_parser('openvpn-up', help='OpenVPN up/down hook of an exit instance (run by OpenVPN)',
                         description='Set the connection\'s addresses and routes from OpenVPN\'s environment.')
    _state_dir(cmd)
    cmd.add_argument('--connection', required=True, help='the connection id')
    cmd.add_argument('openvpn_args', nargs='*', help='OpenVPN\'s own arguments (ignored)')
    # The timer of a confirmed commit (pic_commit): reverts unless confirmed in time.
    cmd = sub.add_parser('revert', help='the timer of a confirmed commit (pic_commit): revert unless confirmed',
                         description='Wait until the deadline, then revert the commit unless it was confirmed.')
    _state_dir(cmd)
    cmd.add_argument('--commit', required=True, help='the commit id')
    cmd.add_argument('--deadline', type=float, required=True, help='when to revert (seconds since the epoch)')


def build_parser():
    parser = argparse.ArgumentParser(prog='pic-connectivity',
                                     description='Cell side of pic.connectivity: boot restore, exit monitor, '
                                                 'status, audit journal. Give a command\'s --help for its options.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    _add_restore_monitor(sub)
    _add_status(sub)
    _add_audit(sub)
    _add_hooks(sub)
    return parser


def print_status(args):
    from .status import gather, render
    status = gather(args.state_dir, max_age=args.max_age, force=args.probe, allow_empty=args.allow_empty)
    if args.json:
        print(json.dumps(status, indent=1, sort_keys=True))  # pylint: disable=ansible-bad-function
    else:
        sys.stdout.write(render(status))
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == 'restore':
            return restore(args.state_dir, args.peer_interface)
        if args.command == 'monitor':
            return Monitor(args.state_dir, args.interval, args.fail_after, args.recover_after).run()
        if args.command == 'revert':
            for line in wait_and_revert(Registry(args.state_dir), args.commit, args.deadline):
                print('revert %s: %s' % (args.commit, line))  # pylint: disable=ansible-bad-function
            return 0
        if args.command == 'status':
            return print_status(args)
        if args.command == 'audit':
            return print_audit(args)
        if args.command == 'openvpn-up':
            for line in openvpn.run_hook(Registry(args.state_dir), args.connection, os.environ):
                print('openvpn-up %s: %s' % (args.connection, line))  # pylint: disable=ansible-bad-function
            return 0
    except PicError as exc:
        print('pic-connectivity: %s' % exc, file=sys.stderr)  # pylint: disable=ansible-bad-function
        return 1
    parser.print_help()
    return 2


if __name__ == '__main__':
    sys.exit(main())  # pylint: disable=ansible-bad-function
