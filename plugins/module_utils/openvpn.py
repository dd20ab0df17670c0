# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenVPN exits: validation of the user's ``.ovpn`` text and the ``up`` hook.

The instance's configuration (rendered by the ``openvpn_client`` role) is the
user's file with these directives forced by the collection:
``pull-filter ignore "redirect-gateway"`` and ``"redirect-private"`` (first, so
that no later ``pull-filter accept`` can win), ``dev <interface>``,
``dev-type tun``, ``route-noexec``, ``ifconfig-noexec``, ``script-security 2``,
``up``/``down`` calling ``pic-connectivity openvpn-up``, ``writepid`` and,
when a username and password are given, ``auth-user-pass <0600 file>``.

What the user's file may not contain (refused with the line number):
directives that run commands on the cell (``up``, ``down``, ``route-up``,
``script-security``, ``plugin``, ...), that detach from the supervisor
(``daemon``), include other files (``config``), make a server, or a layer-2
(``tap``) device. ``dev tun``/``dev-type tun``, ``writepid`` and (with
credentials) ``auth-user-pass`` lines are accepted and replaced by ours.

The ``up`` hook gets OpenVPN's environment (``dev``, ``ifconfig_local``,
``ifconfig_ipv6_local``, ``tun_mtu``, ``script_type``): it sets the addresses
as /32 and /128 ``noprefixroute`` (nothing lands in ``main``), no IPv6
link-local address, the MTU, loose reverse-path filtering and the link up,
then puts the connection's routes into its table (``Cell.heal``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import re
import shutil
import signal
import subprocess

from .errors import PicError

# Directives refused in the user's file, with the reason shown to the user.
_RUNS_COMMANDS = "runs a command on the cell; pic.connectivity runs its own up/down hook and no other script"
REFUSED = {
    'up': _RUNS_COMMANDS, 'down': _RUNS_COMMANDS, 'route-up': _RUNS_COMMANDS, 'route-pre-down': _RUNS_COMMANDS,
    'ipchange': _RUNS_COMMANDS, 'learn-address': _RUNS_COMMANDS, 'client-connect': _RUNS_COMMANDS,
    'client-disconnect': _RUNS_COMMANDS, 'auth-user-pass-verify': _RUNS_COMMANDS, 'tls-verify': _RUNS_COMMANDS,
    'tls-crypt-v2-verify': _RUNS_COMMANDS, 'plugin': _RUNS_COMMANDS, 'iproute': _RUNS_COMMANDS,
    'script-security': "is set by pic.connectivity (2, for its own up hook only)",
    'daemon': "the instance runs in the foreground under the cell's supervisor",
    'inetd': "the instance runs in the foreground under the cell's supervisor",
    'config': "include files are not supported; put everything in ovpn_config (certificates inline)",
    'server': "a connection is an OpenVPN client", 'server-bridge': "a connection is an OpenVPN client",
    'mode': "a connection is an OpenVPN client", 'tls-server': "a connection is an OpenVPN client",
    'dev-node': "the device is created by pic.connectivity",
}
# Accepted, and replaced by the collection's own line.
REPLACED = ('dev', 'dev-type', 'writepid')
_TUN_RE = re.compile(r'^tun[0-9]*$')
_BLOCK_OPEN = re.compile(r'^<([A-Za-z0-9-]+)>$')
_BLOCK_CLOSE = re.compile(r'^</([A-Za-z0-9-]+)>$')


def _words(line):
    """OpenVPN's own splitting, near enough: whitespace, '...' and "..." quotes."""
    out = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|(\S+)', line):
        out.append(match.group(1) if match.group(1) is not None else (
            match.group(2) if match.group(2) is not None else match.group(3)))
    return out


def directives(text):
    """[(line number, directive, [args])] of an .ovpn text, outside inline
    blocks (``<ca>`` ...) but inside ``<connection>`` blocks. Raises PicError
    on an inline block that is never closed."""
    out = []
    block = None
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if block is not None:
            close = _BLOCK_CLOSE.match(line)
            if close and close.group(1) == block:
                block = None
            continue
        if not line or line[0] in '#;':
            continue
        opened = _BLOCK_OPEN.match(line)
        if opened:
            if opened.group(1) != 'connection':
                block, start = opened.group(1), number
            continue
        if _BLOCK_CLOSE.match(line):
            continue
        words = _words(line)
        name = words[0]
        if name.startswith('--'):
            name = name[2:]
        out.append((number, name, words[1:]))
    if block is not None:
        raise PicError("the inline block <%s> opened on line %d is never closed (</%s>)" % (block, start, block))
    return out


def validate(config, field='config'):
    """Check an openvpn connection's ``ovpn_config``, ``username`` and
    ``password``. Returns the list of ``remote`` hosts. Raises PicError naming
    the field and the line."""
    text = config.get('ovpn_config')
    tfield = field + '.ovpn_config'
    if not isinstance(text, str) or not text.strip():
        raise PicError("an openvpn connection needs ovpn_config (the text of the .ovpn file)", tfield)
    try:
        found = directives(text)
    except PicError as exc:
        raise PicError(exc.msg, tfield)
    username, password = config.get('username'), config.get('password')
    for key, value in (('username', username), ('password', password)):
        if value is not None and (not isinstance(value, str) or not value or '\n' in value or '\r' in value):
            raise PicError("must be a non-empty string on one line", '%s.%s' % (field, key))
    if (username is None) != (password is None):
        raise PicError("username and password go together", field + ('.password' if password is None else '.username'))
    remotes = []
    for number, name, args in found:
        if name in REFUSED:
            raise PicError("line %d: '%s' is not allowed: %s" % (number, name, REFUSED[name]), tfield)
        if name == 'dev' and args and not _TUN_RE.match(args[0]):
            raise PicError("line %d: 'dev %s': only tun devices are supported (an exit is a layer-3 interface)"
                           % (number, args[0]), tfield)
        if name == 'dev-type' and args and args[0] != 'tun':
            raise PicError("line %d: 'dev-type %s': only tun devices are supported (an exit is a layer-3 "
                           "interface)" % (number, args[0]), tfield)
        if name == 'auth-user-pass' and not args and username is None:
            raise PicError("line %d: 'auth-user-pass' without a file needs username and password in the "
                           "connection's config (the instance cannot prompt)" % number, tfield)
        if name == 'remote':
            if not args:
                raise PicError("line %d: 'remote' needs a host" % number, tfield)
            remotes.append(args[0])
    if not remotes:
        raise PicError("the OpenVPN configuration has no 'remote' line (the server to connect to)", tfield)
    return remotes


# -- the up hook -----------------------------------------------------------------
def hook_plan(env, ifname):
    """The ``ip`` commands (argv lists, without ``ip``) the up hook runs for
    OpenVPN's environment ``env``. Raises PicError when ``env`` is not for
    ``ifname`` or carries no usable address."""
    dev = env.get('dev')
    if dev != ifname:
        raise PicError("OpenVPN's device is %r, but the connection's interface is %r" % (dev, ifname))
    script_type = env.get('script_type', 'up')
    if script_type != 'up':
        return []
    plan = [['link', 'set', 'dev', ifname, 'addrgenmode', 'none']]
    mtu = env.get('tun_mtu')
    if mtu:
        if not str(mtu).isdigit() or not 68 <= int(mtu) <= 65535:
            raise PicError("OpenVPN gave an invalid tun_mtu %r" % mtu)
        plan.append(['link', 'set', 'dev', ifname, 'mtu', str(int(mtu))])
    plan.append(['-4', 'addr', 'flush', 'dev', ifname])
    plan.append(['-6', 'addr', 'flush', 'dev', ifname, 'scope', 'global'])
    have = False
    for key, family, bits in (('ifconfig_local', '-4', 32), ('ifconfig_ipv6_local', '-6', 128)):
        value = env.get(key)
        if not value:
            continue
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise PicError("OpenVPN gave an invalid %s %r" % (key, value))
        if addr.max_prefixlen != bits:
            raise PicError("OpenVPN gave %s %r of the wrong family" % (key, value))
        plan.append([family, 'addr', 'replace', '%s/%d' % (addr, bits), 'dev', ifname, 'noprefixroute'])
        have = True
    if not have:
        raise PicError("OpenVPN gave no address for %s (neither ifconfig_local nor ifconfig_ipv6_local)" % ifname)
    plan.append(['link', 'set', 'dev', ifname, 'up'])
    return plan


def run_hook(registry, conn_id, env):
    """Carry out the up hook for connection ``conn_id``: returns the list of changes."""
    from .dataplane import Cell
    if env.get('script_type', 'up') != 'up':
        return []   # down: the kernel removes the device and the routes through it
    doc = registry.load()
    conn = doc['connections'].get(conn_id)
    if conn is None or conn['type'] != 'openvpn':
        raise PicError("no openvpn connection %r in %s" % (conn_id, registry.state_dir))
    plan = hook_plan(env, conn['interface'])
    if not plan:
        return []
    ip = shutil.which('ip') or '/sbin/ip'
    changes = []
    for argv in plan:
        proc = subprocess.run([ip] + argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PicError("ip %s failed: %s" % (' '.join(argv), proc.stderr.strip()))
        changes.append('ip ' + ' '.join(argv))
    rp_path = '/proc/sys/net/ipv4/conf/%s/rp_filter' % conn['interface']
    if os.path.exists(rp_path):
        with open(rp_path, 'w') as handle:
            handle.write('2\n')
    with registry:
        cell = Cell(registry)
        try:
            changes.extend(store_pushed_dns(registry, cell, conn_id, pushed_dns(env)))
            changes.extend(cell.heal(registry.load()))
        finally:
            cell.close()
    return changes


_FOREIGN_OPTION_RE = re.compile(r'foreign_option_[0-9]{1,4}')
_DNS_SERVER_RE = re.compile(r'dns_server_[0-9]{1,3}_address_[0-9]{1,3}')


def pushed_dns(env):
    """The DNS servers the server pushed, at most one per family, in push order:
    ``dhcp-option DNS``/``DNS6`` (``foreign_option_N``) and OpenVPN 2.6's
    ``dns server N address`` (``dns_server_N_address_M``). Whatever is not a
    plain unicast address is left out (its peers' DNS is then refused, never
    sent to the cell's resolver)."""
    from .model import parse_dns_address
    found = []
    keys = sorted((k for k in env if _FOREIGN_OPTION_RE.fullmatch(k)), key=lambda k: int(k.rsplit('_', 1)[1]))
    for key in keys:
        words = str(env[key]).split()
        if len(words) == 3 and words[0] == 'dhcp-option' and words[1] in ('DNS', 'DNS6'):
            found.append(words[2])
    found.extend(str(env[k]) for k in sorted(env) if _DNS_SERVER_RE.fullmatch(k))
    out = []
    for value in found:
        try:
            addr = parse_dns_address(value, 'pushed DNS')
        except PicError:
            continue
        if all((':' in addr) != (':' in have) for have in out):
            out.append(addr)
    return out


def store_pushed_dns(registry, cell, conn_id, servers):
    """Keep the pushed DNS servers in the connection's record (``pushed_dns``,
    read by model.pin_dns) and, when they changed, put the nftables table
    that pins the peers' DNS to them in place. Runs under the registry lock."""
    from . import model
    from .nft import summary as nft_summary
    doc = registry.load()
    conn = doc['connections'].get(conn_id)
    if conn is None or list(conn.get('pushed_dns') or []) == servers:
        return []
    conn['pushed_dns'] = servers
    registry.save(doc)
    want = model.desired(doc, cell.facts(doc))
    if nft_summary(cell.nft.list_table()) != want.nft_summary():
        cell.nft.replace(want.render_nft())
    return ['pushed DNS of %s: %s' % (conn_id, ', '.join(servers) or 'none')]


# -- the instance, seen by the monitor ---------------------------------------------
def pid_path(state_dir, conn_id):
    return os.path.join(state_dir, 'openvpn', '%s.pid' % conn_id)


def _holds_tun(pid):
    try:
        for fd in os.listdir('/proc/%d/fd' % pid):
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)) == '/dev/net/tun':
                return True
    except OSError:
        return False
    return False


def orphaned_pid(state_dir, conn_id):
    """The pid of the connection's OpenVPN instance when it holds a tun device
    although the connection's interface is gone (deleted under it: OpenVPN
    then spins on the dead descriptor and never recovers by itself)."""
    try:
        with open(pid_path(state_dir, conn_id)) as handle:
            pid = int(handle.read().strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
    except (IOError, OSError, ValueError):
        return None
    if not argv or not os.path.basename(argv[0]).startswith(b'openvpn'):
        return None
    return pid if _holds_tun(pid) else None


def restart_orphaned(state_dir, conn):
    """SIGHUP (full restart: a new device) the instance of ``conn`` when its
    interface was deleted under it. Returns a change line or None."""
    pid = orphaned_pid(state_dir, conn['id'])
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return None
    return 'restarted OpenVPN instance %d of %s: its interface %s was deleted' % (pid, conn['id'], conn['interface'])
