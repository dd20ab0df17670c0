# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard exit interfaces: kernel WireGuard where the kernel has it,
wireguard-go otherwise. The configuration is applied with ``wg setconf`` from
a 0600 file; addresses are host addresses (/32, /128) so no route lands in
the main table. Routes are the data plane's business (the connection's table).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import shutil
import signal
import subprocess
import time

from .errors import PicError
from .routing import NetlinkError, FAMILIES
from .wgconf import clamped_private_key

USERSPACE_ENV = 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD'
DEFAULT_MTU = 1420


def _wg(*args, **kwargs):
    wg = shutil.which('wg')
    if not wg:
        raise PicError("the 'wg' command is required on the cell (Debian: wireguard-tools)")
    return subprocess.run([wg] + list(args), capture_output=True, text=True, check=False, **kwargs)


def _peer(row):
    return {
        'public_key': row[0],
        'preshared_key': None if row[1] == '(none)' else row[1],
        'endpoint': None if row[2] == '(none)' else row[2],
        'allowed_ips': sorted(x for x in row[3].split(',') if x and x != '(none)'),
        'latest_handshake': int(row[4]),
        'rx': int(row[5]),
        'tx': int(row[6]),
        'persistent_keepalive': None if row[7] == 'off' else int(row[7]),
    }


def dump(ifname):
    """``wg show IF dump`` (wireguard-tools' tab-separated machine format) as a dict, or None."""
    proc = _wg('show', ifname, 'dump')
    if proc.returncode != 0:
        return None
    lines = [line.split('\t') for line in proc.stdout.splitlines() if line]
    if not lines:
        return None
    head = lines[0]
    out = {'private_key': head[0], 'public_key': head[1], 'listen_port': head[2], 'peers': []}
    out['peers'].extend(_peer(row) for row in lines[1:])
    return out


def dump_all():
    """``wg show all dump``: every WireGuard interface at once, {ifname: dict as dump()}."""
    proc = _wg('show', 'all', 'dump')
    out = {}
    if proc.returncode != 0:
        return out
    for line in proc.stdout.splitlines():
        row = line.split('\t')
        if len(row) == 5:
            out[row[0]] = {'private_key': row[1], 'public_key': row[2], 'listen_port': row[3], 'peers': []}
        elif len(row) == 9 and row[0] in out:
            out[row[0]]['peers'].append(_peer(row[1:]))
    return out


def config_matches(running, wg):
    if running is None or running['private_key'] != clamped_private_key(wg['private_key']):
        return False
    if wg['listen_port'] and str(wg['listen_port']) != running['listen_port']:
        return False
    have = dict((p['public_key'], p) for p in running['peers'])
    if set(have) != set(p['public_key'] for p in wg['peers']):
        return False
    for peer in wg['peers']:
        run = have[peer['public_key']]
        if run['preshared_key'] != peer['preshared_key']:
            return False
        if run['allowed_ips'] != sorted(str(ipaddress.ip_network(n)) for n in peer['allowed_ips']):
            return False
        if (run['persistent_keepalive'] or None) != (peer['persistent_keepalive'] or None):
            return False
    return True


class WgInterface(object):
    """One exit interface on the cell."""

    def __init__(self, routing, ifname, run_dir):
        self.routing = routing
        self.ipr = routing.ipr
        self.ifname = ifname
        self.run_dir = run_dir

    @property
    def pidfile(self):
        return os.path.join(self.run_dir, '%s.pid' % self.ifname)

    def exists(self, fresh=True):
        if fresh:
            self.routing.forget_links()
        return self.ifname in self.routing.links()

    def create(self):
        try:
            self.ipr.link('add', ifname=self.ifname, kind='wireguard')
            return 'kernel'
        except NetlinkError:
            pass
        binary = shutil.which('wireguard-go')
        if not binary:
            raise PicError("the kernel has no WireGuard and wireguard-go is not installed on the cell")
        if not os.path.isdir(self.run_dir):
            os.makedirs(self.run_dir, 0o700)
        env = dict(os.environ)
        env[USERSPACE_ENV] = '1'
        env.setdefault('LOG_LEVEL', 'error')
        log = open(os.path.join(self.run_dir, '%s.log' % self.ifname), 'ab')
        proc = subprocess.Popen([binary, '-f', self.ifname], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, start_new_session=True, close_fds=True)
        log.close()
        with open(self.pidfile, 'w') as handle:
            handle.write('%d\n' % proc.pid)
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                raise PicError("wireguard-go exited at once for %s; see %s" % (self.ifname, log.name))
            if self.exists() and _wg('show', self.ifname).returncode == 0:
                return 'wireguard-go'
            time.sleep(0.05)
        raise PicError("wireguard-go did not bring up %s within 10s" % self.ifname)

    def ensure(self, wg, setconf_path, running=None):
        """Bring the interface to ``wg``; returns a list of what changed.

        ``running``: the interface's ``dump()`` when the caller already read it
        (with the links of ``routing`` fresh), to save a ``wg`` call per exit."""
        changes = []
        if not self.exists(fresh=running is None):
            changes.append('created %s (%s)' % (self.ifname, self.create()))
            running = None
        if not config_matches(running if running is not None else dump(self.ifname), wg):
            proc = _wg('setconf', self.ifname, setconf_path)
            if proc.returncode != 0:
                raise PicError("wg setconf %s failed: %s" % (self.ifname, proc.stderr.strip()))
            changes.append('configured %s' % self.ifname)
        index = self.routing.links()[self.ifname]
        want = set()
        for addr in wg['address']:
            ip = ipaddress.ip_address(addr)
            want.add((ip.version, str(ip)))
        have = set()
        for msg in list(self.routing.addresses(index)):
            local = msg.get_attr('IFA_ADDRESS')
            ip = ipaddress.ip_address(local)
            if ip.is_link_local:
                continue
            have.add((ip.version, str(ip)))
            if (ip.version, str(ip)) not in want or msg['prefixlen'] != ip.max_prefixlen:
                self.ipr.addr('del', index=index, address=local, prefixlen=msg['prefixlen'],
                              family=FAMILIES[ip.version])
                have.discard((ip.version, str(ip)))
                changes.append('removed address %s from %s' % (local, self.ifname))
        for version, addr in sorted(want - have):
            self.ipr.addr('add', index=index, address=addr, prefixlen=32 if version == 4 else 128,
                          family=FAMILIES[version])
            changes.append('added address %s to %s' % (addr, self.ifname))
        if changes:
            self.routing.forget_addresses()
        link = self.routing.link(self.ifname)
        mtu = wg['mtu'] or DEFAULT_MTU
        if link.get_attr('IFLA_MTU') != mtu:
            self.ipr.link('set', index=index, mtu=mtu)
            changes.append('mtu %d on %s' % (mtu, self.ifname))
        if not link['flags'] & 1:
            self.ipr.link('set', index=index, state='up')
            changes.append('set %s up' % self.ifname)
        rp_path = '/proc/sys/net/ipv4/conf/%s/rp_filter' % self.ifname
        if os.path.exists(rp_path):
            with open(rp_path) as handle:
                current = handle.read().strip()
            if current != '2':
                with open(rp_path, 'w') as handle:
                    handle.write('2\n')
        return changes

    def remove(self):
        changes = []
        if self.exists():
            try:
                self.ipr.link('del', index=self.routing.links()[self.ifname])
            except NetlinkError as exc:
                raise PicError("could not delete interface %s: %s" % (self.ifname, exc))
            changes.append('deleted %s' % self.ifname)
        if os.path.exists(self.pidfile):
            try:
                with open(self.pidfile) as handle:
                    pid = int(handle.read().strip())
                os.kill(pid, signal.SIGTERM)
            except (ValueError, OSError):
                pass
            os.unlink(self.pidfile)
        self.routing.forget_links()
        return changes


def handshake_age(ifname, now=None):
    """Seconds since the newest handshake of any peer; None when never or no interface."""
    info = dump(ifname)
    if info is None:
        return None
    latest = max([p['latest_handshake'] for p in info['peers']] or [0])
    if not latest:
        return None
    return max(0, int((now or time.time()) - latest))
