# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health of connections: the guide's per-type checks, a probe through the
exit, and a cache on the cell shared by every caller."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import selectors
import shutil
import socket
import subprocess
import time

from . import egress, exits, model
from .exits.base import HANDSHAKE_MAX_AGE, InterfaceExit, ProxyExit
from .registry import write_atomic

WORKING, DOWN, UNKNOWN = 'working', 'down', 'unknown'
# the reason of a connection the monitor holds down (its own checks said up)
HELD = 'monitor: '


def link_exists(ifname):
    return bool(ifname) and os.path.exists('/sys/class/net/%s' % ifname)


NO_PING = 'no ping command on the cell (Debian package iputils-ping, which the connectivity role installs)'


def ping_through(target, mark, timeout=1.0):
    """One ICMP echo to ``target`` with SO_MARK ``mark`` (routes it through the
    connection's table). True when answered, False when not, None when the cell
    has no ``ping`` (nothing was probed: neither up nor down)."""
    ping = shutil.which('ping')
    if not ping:
        return None
    proc = subprocess.run([ping, '-n', '-q', '-c', '1', '-W', str(max(1, int(timeout))), '-m', str(mark), target],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return proc.returncode == 0


def tcp_connect(host, port, timeout=1.0):
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.timeout) as exc:
        return False, str(exc)
    sock.close()
    return True, 'connected to %s:%d' % (host, port)


def tcp_connect_many(targets, timeout=1.0):
    """A TCP connect to every (host, port) of ``targets`` at once, in this thread
    (non-blocking sockets and one selector: no thread per probe, so probing many
    stays cheap on a busy cell). Returns {(host, port): (ok, reason)}."""
    out, waiting = {}, {}
    selector = selectors.DefaultSelector()
    try:
        for target in set(targets):
            host, port = target
            if not _is_address(host):      # a name: try each of its addresses, as create_connection does
                out[target] = tcp_connect(host, port, timeout)
                continue
            try:
                family, stype, proto, _name, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
                sock = socket.socket(family, stype, proto)
            except (OSError, socket.gaierror) as exc:
                out[target] = (False, str(exc))
                continue
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                selector.register(sock, selectors.EVENT_WRITE, target)
                waiting[target] = sock
                continue
            out[target] = _connected(target, err)
            sock.close()
        deadline = time.time() + timeout
        while waiting:
            left = deadline - time.time()
            if left <= 0:
                break
            for key, _events in selector.select(left):
                target = key.data
                out[target] = _connected(target, key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                selector.unregister(key.fileobj)
                waiting.pop(target).close()
        for target, sock in waiting.items():
            out[target] = (False, 'timed out')
            sock.close()
    finally:
        selector.close()
    return out


def _is_address(host):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            continue
    return False


def _connected(target, err):
    if err == 0:
        return True, 'connected to %s:%d' % target
    return False, '[Errno %d] %s' % (err, os.strerror(err))


class Probes(object):
    """TCP connect results of one health pass: ``prefetch`` many targets at once,
    then ``connect(host, port, timeout)`` answers from them (probing what is missing)."""

    def __init__(self):
        self.results = {}

    def prefetch(self, targets, timeout=1.0):
        todo = [t for t in targets if t not in self.results]
        if todo:
            self.results.update(tcp_connect_many(todo, timeout))

    def connect(self, host, port, timeout=1.0):
        self.prefetch([(host, port)], timeout)
        return self.results[(host, port)]


# The file each service role writes for a proxy-type connection's instance
# (docs/exit-services.md): present = the roles installed the instance. From the providers.
INSTANCE_FILES = exits.INSTANCE_FILES
# A TCP connect from the cell to a proxy-type exit's upstream server (the SSH
# server, the proxy): short, so that probing many connections stays quick.
UPSTREAM_TIMEOUT = 0.8
# A request through a proxy-type exit (or Tor's control socket): longer, it crosses the exit.
DEEP_TIMEOUT = 3.0


def instance_file(state_dir, conn):
    """Path of the file the service role writes for ``conn``'s instance, or None."""
    spec = INSTANCE_FILES.get(conn['type'])
    if not spec or not state_dir:
        return None
    name = spec[1] % conn['id'] if '%s' in spec[1] else spec[1]
    return os.path.join(state_dir, spec[0], name)


def upstream(conn):
    """(host, port) a proxy-type exit's instance depends on, or None (Tor: its network)."""
    provider = exits.get(conn['type'])
    return provider.upstream(conn) if provider is not None and provider.kind == exits.PROXY else None


def _provider(conn):
    """The provider of ``conn``'s type; a type this library does not know (a registry
    written by a newer collection) is checked as a proxy type without an upstream."""
    return exits.get(conn['type']) or ProxyExit


def _instance_port(conn):
    """The port of the guide's check: Tor's SOCKS port, the instance's ``local_port`` otherwise."""
    return _provider(conn).instance_port(conn)


def _second_target(conn):
    """((host, port), timeout) a proxy-type exit needs besides its instance port, or None."""
    return _provider(conn).second_target(conn, UPSTREAM_TIMEOUT)


def _proxy_check(conn, state_dir, connect=tcp_connect):
    """Proxy types: the guide's TCP connect to the instance's port, then
    what the port alone cannot tell (the provider's second target).

    * not listening: ``unknown`` when the roles never installed the instance (no
      configuration file), ``down`` when installed but not answering;
    * the provider's second target must answer too (``second_target``): Tor's
      TransPort (``local_port``, where peers are redirected); by default the
      upstream (``upstream``: the SSH server, the proxy), which must accept a TCP
      connection from the cell, as the exit guard checks: redsocks keeps listening
      when its proxy is gone, and sshuttle listens before its SSH session exists;
    * then the provider's deep check (``deep_check``): Tor must have a circuit (its
      control socket), a proxy must carry a request to ``health_target``.
    """
    provider = _provider(conn)
    port = provider.instance_port(conn)
    if not port:
        return UNKNOWN, 'no local port known for this %s connection' % conn['type']
    ok, why = connect('127.0.0.1', port, 1.0)
    if not ok:
        path = instance_file(state_dir, conn)
        if path and not os.path.exists(path):
            return UNKNOWN, 'instance of %s not installed (no %s); port %d: %s' % (conn['id'], path, port, why)
        return DOWN, 'instance port %d does not answer: %s' % (port, why)
    second = provider.second_target(conn, UPSTREAM_TIMEOUT)
    if not second:
        return _deep(provider, conn, state_dir, 'instance port %d answers' % port)
    (host, sport), timeout = second
    ok, why = connect(host, sport, timeout)
    working, reason = provider.second_verdict(ok, port, host, sport, why)
    return _deep(provider, conn, state_dir, reason) if working else (DOWN, reason)


def _deep(provider, conn, state_dir, reason):
    """The provider's deep check once the ports answered (``reason``): Tor's circuits,
    a request through the instance to ``health_target``."""
    deep = provider.deep_check(conn, state_dir, DEEP_TIMEOUT)
    if deep is None:
        return WORKING, reason
    working, why = deep
    return (WORKING if working else DOWN), '%s; %s' % (reason, why)


def handshake_verdict(age, max_age=HANDSHAKE_MAX_AGE, ifname=None):
    """The guide's rule for a WireGuard exit: (status, reason) of the newest handshake's
    ``age`` in seconds (None: never, unknown). Down when older than ``max_age`` (180 s
    unless the connection's ``health_handshake_max_age`` says otherwise)."""
    if age is None:
        return UNKNOWN, 'no handshake yet on %s' % ifname
    if age > max_age:
        return DOWN, 'last handshake %ds ago (more than %ds)' % (age, max_age)
    return WORKING, 'last handshake %ds ago' % age


def handshake_max_age(conn):
    """The connection's ``health_handshake_max_age``, 180 s by default."""
    return InterfaceExit.handshake_max_age(conn)


def _handshake_check(conn, now):
    """A WireGuard interface: present, with a handshake younger than its max age."""
    from .wgiface import handshake_age
    if not link_exists(conn.get('interface')):
        return DOWN, 'interface %s is missing' % conn.get('interface')
    return handshake_verdict(handshake_age(conn['interface'], now or time.time()), handshake_max_age(conn),
                             conn['interface'])


def _link_check(conn):
    """An interface whose presence is its health (OpenVPN's tun device)."""
    if link_exists(conn.get('interface')):
        return WORKING, 'interface %s present' % conn['interface']
    return DOWN, 'interface %s is missing' % conn.get('interface')


def guide_check(conn, now=None, state_dir=None, connect=tcp_connect):
    """The admin guide's check for one connection type: (status, reason).
    ``state_dir`` (the cell's) lets proxy types tell a missing instance (unknown)
    from a dead one (down); ``connect(host, port, timeout)`` makes their TCP probes."""
    provider = _provider(conn)
    if provider.kind == exits.PROXY:
        return _proxy_check(conn, state_dir, connect)
    if provider.liveness == 'link':
        return _link_check(conn)
    return _handshake_check(conn, now)


def check(conn, runtime=None, now=None, layout=None, state_dir=None, connect=tcp_connect, egress_out=None):
    """Health of one connection: the guide's check, the monitor's verdict, the
    deep probe (a ping to ``health_target`` through the exit, with the
    connection's kill mark so it can never leave by the WAN) when configured,
    then the egress proof (``egress_url``, ``expect_egress``): the address the
    echo URL saw through the exit goes to ``egress_out[conn id]`` (a dict)."""
    status, reason = _check(conn, runtime or {}, now, layout, state_dir, connect)
    if status == DOWN and reason.startswith(HELD):
        # held down by the monitor, its exit up: the address it gives is still reported
        egress_check(conn, status, reason, layout, state_dir, egress_out)
        return status, reason
    if status == DOWN or (status == UNKNOWN and exits.is_proxy(conn['type'])):
        return status, reason
    return egress_check(conn, status, reason, layout, state_dir, egress_out)


def egress_check(conn, status, reason, layout, state_dir, egress_out=None):
    """The egress proof once the other checks did not say down: down when the exit
    leaves from outside ``expect_egress``, unknown when that cannot be proven (no
    answer), the address only reported without ``expect_egress``."""
    config = conn.get('config') or {}
    if not config.get('egress_url'):
        return status, reason
    address, why = egress.probe(conn, layout, state_dir, DEEP_TIMEOUT)
    if egress_out is not None:
        egress_out[conn['id']] = address
    ok, text = egress.verdict(address, config.get('expect_egress'), why)
    if ok is False:
        return DOWN, '%s, but it %s' % (reason, text)
    if ok is None and config.get('expect_egress') and status == WORKING:
        return UNKNOWN, '%s; %s' % (reason, text)
    return status, '%s; %s' % (reason, text)


def _check(conn, runtime, now, layout, state_dir, connect):
    """``check`` without the egress proof."""
    status, reason = guide_check(conn, now, state_dir, connect)
    if status == DOWN or (status == UNKNOWN and exits.is_proxy(conn['type'])):
        return status, reason
    if conn['id'] in (runtime.get('down') or []):
        return DOWN, HELD + runtime.get('reasons', {}).get(conn['id'], 'holds it down')
    target = (conn.get('config') or {}).get('health_target')
    if target and layout is not None and exits.is_interface(conn['type']):
        answered = ping_through(target, model.conn_mark(conn, layout, True))
        if answered is None:
            return UNKNOWN, '%s, but the deep probe to %s was not run: %s' % (reason, target, NO_PING)
        if not answered:
            return DOWN, '%s, but the deep probe to %s through the exit got no answer' % (reason, target)
        return WORKING, '%s; deep probe to %s answered' % (reason, target)
    return status, reason


def check_all(conns, runtime=None, now=None, layout=None, state_dir=None, egress_out=None):
    """``check`` of every connection in ``conns`` at once. Returns [(status, reason)]
    (the egress addresses to ``egress_out``, see ``check``).

    The types that read WireGuard state or ping through the exit run in a thread
    each; meanwhile the TCP probes of the proxy types run together in this thread
    (every instance port at once, then every TransPort and upstream at once, each
    distinct target once). Probing many takes about as long as the slowest probe."""
    from concurrent.futures import ThreadPoolExecutor
    conns = list(conns)
    others = [c for c in conns if not exits.is_proxy(c['type'])]
    pool = ThreadPoolExecutor(max_workers=min(64, len(others))) if others else None
    try:
        pending = dict((id(c), pool.submit(check, c, runtime, now, layout, state_dir, tcp_connect, egress_out))
                       for c in others)
        probes = Probes()
        proxies = [c for c in conns if exits.is_proxy(c['type']) and _instance_port(c)]
        probes.prefetch([('127.0.0.1', _instance_port(c)) for c in proxies])
        seconds = {}
        for conn in proxies:
            second = _second_target(conn)
            if second and probes.results[('127.0.0.1', _instance_port(conn))][0]:
                seconds.setdefault(second[1], []).append(second[0])
        for timeout, targets in seconds.items():
            probes.prefetch(targets, timeout)
        return [pending[id(c)].result() if id(c) in pending
                else check(c, runtime, now, layout, state_dir, probes.connect, egress_out) for c in conns]
    finally:
        if pool is not None:
            pool.shutdown()


class HealthCache(object):
    """``health.json`` under the state dir: {conn_id: {status, reason, checked_at}}."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, 'health.json')

    def load(self):
        try:
            with open(self.path) as handle:
                return json.load(handle)
        except (IOError, ValueError):
            return {}

    def save(self, data):
        if os.path.isdir(os.path.dirname(self.path)):
            write_atomic(self.path, json.dumps(data, sort_keys=True) + '\n')


def cache_entry(conn, status, reason, now, seen):
    """One connection's entry of the cache: with ``egress`` (the address its exit
    leaves from, None when not answered) when it has an ``egress_url``."""
    entry = {'status': status, 'reason': reason, 'checked_at': now}
    if (conn.get('config') or {}).get('egress_url'):
        entry['egress'] = seen.get(conn['id'])
    return entry


def report(doc, runtime, cache, conn_ids, max_age=30, force=False, now=None, write=True, timing=None):
    """Health of ``conn_ids``, from the cache when fresh enough. Returns {id: result}.
    ``timing`` (a dict) receives ``probe_seconds``: how long probing took (0 when
    every result came from the cache)."""
    timing = {} if timing is None else timing
    timing['probe_seconds'] = 0.0
    now = now or time.time()
    stored = cache.load()
    out, todo = {}, []
    for cid in conn_ids:
        entry = stored.get(cid)
        if not force and entry and now - entry.get('checked_at', 0) <= max_age:
            out[cid] = dict(entry, cached=True)
        else:
            todo.append(cid)
    if todo:
        _settings, layout = model.normalize_settings(doc.get('settings'))
        started = time.time()
        seen = {}
        results = check_all([doc['connections'][cid] for cid in todo], runtime, now, layout,
                            cache.state_dir, seen)
        timing['probe_seconds'] = round(time.time() - started, 3)
        for cid, (status, reason) in zip(todo, results):
            entry = cache_entry(doc['connections'][cid], status, reason, now, seen)
            stored[cid] = entry
            out[cid] = dict(entry, cached=False)
        for cid in list(stored):
            if cid not in doc['connections']:
                stored.pop(cid)
        if write:
            cache.save(stored)
    return out


def carrier(doc, user, health_status, runtime):
    """What carries a peer's or service's traffic now: 'exit', 'default' or 'blocked'."""
    cid = user.get('connection') or model.DEFAULT
    if cid == model.DEFAULT or cid not in doc['connections']:
        return 'default' if cid == model.DEFAULT else 'blocked'
    conn = doc['connections'][cid]
    up = health_status != DOWN
    if up:
        return 'exit'
    return 'default' if model.effective_fail_open(user, conn) else 'blocked'
