# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health of connections: the guide's per-type checks, a probe through the
exit, and a cache on the cell shared by every caller."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import socket
import subprocess
import time

from . import model
from .registry import write_atomic

HANDSHAKE_MAX_AGE = 180
WORKING, DOWN, UNKNOWN = 'working', 'down', 'unknown'


def link_exists(ifname):
    return bool(ifname) and os.path.exists('/sys/class/net/%s' % ifname)


def ping_through(target, mark, timeout=1.0):
    """One ICMP echo to ``target`` with SO_MARK ``mark`` (routes it through the
    connection's table). True when answered."""
    ping = shutil.which('ping')
    if not ping:
        return False
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


def guide_check(conn, now=None):
    """The admin guide's check for one connection type: (status, reason)."""
    from .wgiface import handshake_age
    ctype = conn['type']
    if ctype in ('wireguard_ext', 'cell_relay'):
        if not link_exists(conn.get('interface')):
            return DOWN, 'interface %s is missing' % conn.get('interface')
        age = handshake_age(conn['interface'], now or time.time())
        if age is None:
            return UNKNOWN, 'no handshake yet on %s' % conn['interface']
        if age > HANDSHAKE_MAX_AGE:
            return DOWN, 'last handshake %ds ago (more than %ds)' % (age, HANDSHAKE_MAX_AGE)
        return WORKING, 'last handshake %ds ago' % age
    if ctype == 'openvpn':
        if link_exists(conn.get('interface')):
            return WORKING, 'interface %s present' % conn['interface']
        return DOWN, 'interface %s is missing' % conn.get('interface')
    config = conn.get('config') or {}
    port = config.get('socks_port') if ctype == 'tor' else conn.get('local_port')
    if not port:
        return UNKNOWN, 'no local port known for this %s connection' % ctype
    ok, reason = tcp_connect('127.0.0.1', port)
    return (WORKING if ok else DOWN), reason


def check(conn, runtime=None, now=None, layout=None):
    """Health of one connection: the guide's check, the monitor's verdict, and
    the deep probe (a ping to ``health_target`` through the exit, with the
    connection's kill mark so it can never leave by the WAN) when configured."""
    runtime = runtime or {}
    status, reason = guide_check(conn, now)
    if status == DOWN:
        return status, reason
    if conn['id'] in (runtime.get('down') or []):
        return DOWN, 'monitor: %s' % runtime.get('reasons', {}).get(conn['id'], 'holds it down')
    target = (conn.get('config') or {}).get('health_target')
    if target and layout is not None and conn['type'] in model.INTERFACE_TYPES:
        if not ping_through(target, layout.mark(conn['index'], True)):
            return DOWN, '%s, but the deep probe to %s through the exit got no answer' % (reason, target)
        return WORKING, '%s; deep probe to %s answered' % (reason, target)
    return status, reason


class HealthCache(object):
    """``health.json`` under the state dir: {conn_id: {status, reason, checked_at}}."""

    def __init__(self, state_dir):
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


def report(doc, runtime, cache, conn_ids, max_age=30, force=False, now=None, write=True):
    """Health of ``conn_ids``, from the cache when fresh enough. Returns {id: result}."""
    from concurrent.futures import ThreadPoolExecutor
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
        with ThreadPoolExecutor(max_workers=min(64, len(todo))) as pool:
            results = list(pool.map(lambda cid: check(doc['connections'][cid], runtime, now, layout), todo))
        for cid, (status, reason) in zip(todo, results):
            entry = {'status': status, 'reason': reason, 'checked_at': now}
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
