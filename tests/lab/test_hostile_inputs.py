# -*- coding: utf-8 -*-
"""Hostile inputs through the public modules, on a throwaway cell: refused, named, and nothing changed.

Needs root but not the lab: the fixture makes its own network namespace with a
dummy peer interface (wg0: 10.0.0.1/24, fd00::1/64), a WAN, a service network
and two cell-link interfaces, and a private /run/wireguard. The cell is
populated with connections of every type that needs no daemon at plan time
(wireguard_ext through wireguard-go, openvpn, tor, sshuttle, proxy), peers, a
service and links; then every case of the table below runs the module as
Ansible would (a process with ANSIBLE_MODULE_ARGS) and must fail with a message
that starts with the field and holds the value (never a secret), and change
nothing: registry bytes, every file under state_dir (bytes and mode), the
nftables ruleset, IPv4 and IPv6 rules, routes of every table and the links.
"""
import base64
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import ROOT, ansible_pythonpath

NS = 'picg-hostile-%d' % os.getpid()
PRIV = base64.b64encode(hashlib.sha256(b'hostile-priv').digest()).decode()
PUB = base64.b64encode(hashlib.sha256(b'hostile-pub').digest()).decode()
PSK = base64.b64encode(hashlib.sha256(b'hostile-psk').digest()).decode()
PROXY_PASSWORD = 'Pr0xy-Secret-Pass'
SECRETS = [PRIV, PSK, PROXY_PASSWORD]


def noncanonical(key):
    """The same 32 bytes for a lenient decoder, but not the text `wg` prints (it refuses it)."""
    return key[:42] + chr(ord(key[42]) + 1) + '='


def _wg(**over):
    config = {'private_key': PRIV, 'address': ['10.200.0.2/32', 'fd00:200::2/128'], 'peer_public_key': PUB,
              'preshared_key': PSK, 'endpoint': '198.51.100.7:51820', 'allowed_ips': ['0.0.0.0/0', '::/0']}
    config.update(over)
    return {'name': 'Exit WG', 'type': 'wireguard_ext', 'config': config}


def _ssh(**over):
    config = {'host': 'ssh.example.org', 'user': 'deploy', 'dns': '192.0.2.53', 'python': '/usr/bin/python3'}
    config.update(over)
    return {'name': 'SSH Exit', 'type': 'sshuttle', 'config': config}


def _proxy(**over):
    config = {'host': '203.0.113.50', 'port': 1080, 'proxy_type': 'socks5', 'username': 'puser',
              'password': PROXY_PASSWORD}
    config.update(over)
    return {'name': 'Proxy A', 'type': 'proxy', 'config': config}


def _tor(**over):
    return {'name': 'Tor', 'type': 'tor', 'config': dict(over)}


OVPN = 'client\ndev tun\nproto udp\nremote vpn.example.net 1194\nnobind\n'
POPULATE = [
    ('pic_connection', _wg()),
    ('pic_connection', _tor()),
    ('pic_connection', _ssh()),
    ('pic_connection', _proxy()),
    ('pic_connection', {'name': 'VPN', 'type': 'openvpn', 'config': {'ovpn_config': OVPN}}),
    ('pic_cell_link', {'links': [{'cell': 'cell-b', 'interface': 'cl-b', 'remote_offers_exit': True},
                                 {'cell': 'cell-c', 'interface': 'cl-c', 'offer_exit': True}]}),
    ('pic_peer_exit', {'peers': [
        {'peer': 'alice', 'address': ['10.0.0.2', 'fd00::2'], 'connection': 'Exit WG'},
        {'peer': 'bob', 'address': ['10.0.0.3'], 'connection': 'Tor'},
        {'peer': 'carol', 'address': ['10.0.0.4', 'fd00::4'], 'connection': 'Proxy A', 'fail_open': True},
        {'peer': 'dave', 'address': ['10.0.0.5'], 'connection': 'SSH Exit'},
        {'peer': 'erin', 'address': ['10.0.0.6'], 'connection': 'cell-b'},
        {'peer': 'frank', 'address': ['10.0.0.7'], 'connection': 'VPN'}]}),
    ('pic_service_egress', {'service': 'mail', 'address': ['10.50.0.2'], 'interface': 'svc0',
                            'connection': 'Proxy A', 'manifest': {'has_egress': True}}),
]

# -- the table: (module, args, field the message starts with, value it shows or None when secret) ----------

BAD_ADDRESSES = ['fd00::9%eth0', 'fd00::9%\n--ssh-cmd=touch /tmp/x', '10.0.0.9\n', ' 10.0.0.9', '10.0.0.9 ',
                 '::ffff:10.0.0.9', '::10.0.0.9', '0.0.0.0/0', '::/0', '10.0.0.0/8', 'fd00::/16', '127.0.0.1', '::1',
                 'fe80::9', '224.0.0.9', '10.0.0.9/24', '10.0.0.256', '010.0.0.9', '\uff46d00::9', '10.0.0.9/33',
                 '10.0.0.9\x00', 'fd00::9\u2028']
BAD_TARGETS = ['192.0.2.1%x', 'fd00::1%\nx', '::ffff:192.0.2.1', '0.0.0.0', '127.0.0.1', 'ff02::1', 'fe80::1',
               '192.0.2.1\n', '192.0.2.0/24', 'example.org', '192.0.2.1 ', '255.255.255.255']
BAD_NAMES = ['eve\n', '-eve', 'eve bob', 'eve;id', 'e\u2028ve', 'e\x00ve', '@eve', 'a' * 65, '', '\u00e8ve']
BAD_EXIT_IFNAMES = ['wg0', 'eth0', 'lo', 'svc0', 'cl-b', 'pic-x\n', 'pic-UP', 'pic-abcdefghijkl', 'pic-', '-pic',
                    'pic-a b', 'pic-exit\u2028']
BAD_HOSTS = ['-oProxyCommand=sh', '@/etc/shadow', 'ssh.example\n', 'ssh..example', 'a-.example', 'ex\u00e4mple.org',
             'user@host', 'host name', 'fd00::1%eth0', '1.2.3', 'a' * 64 + '.org', '127.0.0.1', 'ssh.example;id']
BAD_USERS = ['-oProxyCommand=sh', 'root:pw', 'root\n', 'root@x', 'ro ot', "ro'ot", 'a' * 33, '1root']
BAD_PYTHONS = ['python3 -c x', '-c', '/usr/bin/../bin/sh', 'py\n', 'usr/bin/python', '/usr/bin/py thon', "py'",
               '/usr/bin/python3;id']
BAD_KEYS = [noncanonical(PUB), PUB[:-1], PUB + '=', ' ' + PUB, PUB + '\n', PUB[:43] + '!']
BAD_ENDPOINTS = ['198.51.100.7:51820\n', '[fd00::1%x]:51820', '-h.example:51820', 'h.example:0', 'h.example:99999',
                 '@h:1', 'h.example', 'fd00::1:51820', '198.51.100.7:51820,x']


def _cases():
    cases = []
    for addr in BAD_ADDRESSES:
        cases.append(('pic_peer_exit', {'peer': 'eve', 'address': [addr], 'connection': 'Tor'}, 'address[0]', addr))
        cases.append(('pic_peer_exit', {'peers': [{'peer': 'alice', 'address': ['10.0.0.2', 'fd00::2'],
                                                   'connection': 'Exit WG'},
                                                  {'peer': 'eve', 'address': ['10.0.0.8', addr]}]},
                      'peers[1].address[1]', addr))
        cases.append(('pic_service_egress', {'service': 'mail', 'address': [addr], 'interface': 'svc0',
                                             'connection': 'Proxy A', 'manifest': {'has_egress': True}},
                      'address[0]', addr))
    for target in BAD_TARGETS:
        cases.append(('pic_connection', _tor(health_target=target), 'config.health_target', target))
        cases.append(('pic_connection', _ssh(dns=target), 'config.dns', target))
    for name in BAD_NAMES:
        cases.append(('pic_peer_exit', {'peer': name, 'address': ['10.0.0.9']}, 'peer', name))
        cases.append(('pic_peer_exit', {'peers': [{'peer': 'bob', 'connection': 'Tor'},
                                                  {'peer': name, 'address': ['10.0.0.9']}]}, 'peers[1].peer', name))
        cases.append(('pic_service_egress', {'service': name, 'address': ['10.50.0.9'], 'interface': 'svc0'},
                      'service', name))
        cases.append(('pic_cell_link', {'links': [{'cell': 'cell-b', 'interface': 'cl-b', 'remote_offers_exit': True},
                                                  {'cell': name, 'interface': 'cl-c'}]}, 'links[1].cell', name))
    for ifname in BAD_EXIT_IFNAMES:
        cases.append(('pic_connection', _wg(interface=ifname), 'config.interface', ifname))
    for ifname in ['wg0', 'cl-x\n', '-cl', 'a' * 16, 'pic-exit-wg', 'cl x']:
        cases.append(('pic_cell_link', {'links': [{'cell': 'cell-b', 'interface': ifname}]}, 'links[0].interface',
                      ifname))
    for ifname in ['svc0\n', '-svc', 'a' * 16, 'svc 0', 'svc0\u2028']:
        cases.append(('pic_service_egress', {'service': 'mail', 'interface': ifname}, 'interface', ifname))
    for host in BAD_HOSTS:
        cases.append(('pic_connection', _ssh(host=host), 'config.host', host))
    for user in BAD_USERS:
        cases.append(('pic_connection', _ssh(user=user), 'config.user', user))
    for python in BAD_PYTHONS:
        cases.append(('pic_connection', _ssh(python=python), 'config.python', python))
    for host in ['proxy.example', '2001:db8::1', '203.0.113.50\n', '203.0.113.50%x', '0.0.0.0', '224.0.0.1',
                 '203.0.113.256']:
        cases.append(('pic_connection', _proxy(host=host), 'config.host', host))
    for port in ['1080\n', ' 1080', '0', '70000', '10_80', 'x', '0o17']:
        cases.append(('pic_connection', _proxy(port=port), 'config.port', port))
    for user in ['u"x', '-u', 'u x', 'u\n', 'u\\x', "u'x"]:
        cases.append(('pic_connection', _proxy(username=user), 'config.username', user))
    for password in ['p"w-Secret-1', 'p\\w-Secret-2', 'p\nw-Secret-3', "p'w-Secret-4", 'p\x00w-Secret-5']:
        cases.append(('pic_connection', _proxy(password=password), 'config.password', None))
    for key in BAD_KEYS:
        cases.append(('pic_connection', _wg(peer_public_key=key), 'config.peers[0].public_key', key))
    cases.append(('pic_connection', _wg(private_key=noncanonical(PRIV)), 'config.private_key', None))
    cases.append(('pic_connection', _wg(private_key=PRIV + '\n'), 'config.private_key', None))
    cases.append(('pic_connection', _wg(preshared_key=noncanonical(PSK)), 'config.peers[0].preshared_key', None))
    for endpoint in BAD_ENDPOINTS:
        cases.append(('pic_connection', _wg(endpoint=endpoint), 'config.peers[0].endpoint', endpoint))
    for net in ['0.0.0.0/0%\n[Peer]', 'fd00::/8%x', '10.0.0.0/8\n', '::/0 ', '10.0.0.0/33']:
        cases.append(('pic_connection', _wg(allowed_ips=['0.0.0.0/0', net]), 'config.peers[0].allowed_ips[1]', net))
    for dns in ['fd00::53%\nPostUp=sh', '10.0.0.53\n', 'resolver.example', '::ffff:1.1.1.1', '127.0.0.53']:
        cases.append(('pic_connection', _wg(dns=[dns]), 'config.dns[0]', dns))
    for addr in ['10.200.0.2%x/32', '10.200.0.2/32\n', '0.0.0.0/0', 'fe80::2/64', '10.200.0.2/40']:
        cases.append(('pic_connection', _wg(address=[addr]), 'config.address[0]', addr))
    for mtu in ['1420\n', ' 1420', '1420;', '100']:
        cases.append(('pic_connection', _wg(mtu=mtu), 'config.mtu', mtu))
    for line in ['PrivateKey: %s' % PSK, 'PresharedKey: %s' % PSK, PSK, 'Private Key = %s' % PSK,
                 'AllowedIPs = 0.0.0.0/0\x0b[Peer]', 'PrivateKey = %s\x0cPostUp = sh' % PSK]:
        text = ('[Interface]\nPrivateKey = %s\nAddress = 10.200.0.2/32\n%s\n[Peer]\nPublicKey = %s\n'
                'Endpoint = 198.51.100.7:51820\nAllowedIPs = 0.0.0.0/0\n' % (PRIV, line, PUB))
        cases.append(('pic_connection', {'name': 'Exit WG', 'type': 'wireguard_ext', 'config': {'wg_config': text}},
                      'config.wg_config', None))
    for name in ['Exit\nWG', 'Exit\u2028WG', 'a;b', '$(id)', 'x' * 65, 'exit wg', 'EXIT-WG', 'Tor\n']:
        cases.append(('pic_connection', {'name': name, 'type': 'tor' if name == 'Tor\n' else 'proxy', 'config':
                                         {'host': '203.0.113.9', 'port': 8080} if name != 'Tor\n' else {}},
                      'name', name))
    for nets, i in ((['0.0.0.0/0'], 0), (['::/0'], 0), (['192.168.0.0/16', '10.0.0.0/16'], 1), (['fd00::/48'], 0),
                    (['192.168.0.0/16', '192.168.1.0/24'], 1), (['192.168.1.0/24\n'], 0), (['fd00::1%x/128'], 0),
                    (['10.0.0.128/25'], 0), (['10.50.0.0/24'], 0)):
        cases.append(('pic_peer_exit', {'peer': 'bob', 'connection': 'Tor', 'local_networks': nets},
                      'local_networks[%d]' % i, nets[i]))
    for ifname in ['wg0\n', '-wg0', 'a' * 16, 'wg 0']:
        cases.append(('pic_peer_exit', {'peer': 'bob', 'connection': 'Tor', 'peer_interface': ifname},
                      'peer_interface', ifname))
    return cases


CASES = _cases()


# -- the throwaway cell ------------------------------------------------------------------------------

class Cell(object):
    def __init__(self, tmp):
        self.tmp = tmp
        self.state_dir = os.path.join(tmp, 'state')
        self.wgdir = os.path.join(tmp, 'wireguard')
        os.makedirs(self.wgdir)
        self.env = dict(os.environ, PYTHONPATH=ansible_pythonpath(), WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD='1')

    def argv(self, *cmd):
        # a private /run/wireguard, as lab/nsexec gives each lab node
        return ['ip', 'netns', 'exec', NS, 'sh', '-c', 'mount --bind "$0" /run/wireguard && exec "$@"',
                self.wgdir] + list(cmd)

    def sh(self, script):
        return subprocess.run(self.argv('sh', '-c', script), capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def module(self, name, args):
        payload = dict(args, state_dir=self.state_dir, _ansible_check_mode=False, _ansible_diff=False)
        fd, path = tempfile.mkstemp(suffix='.json', dir=self.tmp)
        with os.fdopen(fd, 'w') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        try:
            proc = subprocess.run(self.argv('/usr/bin/python3', os.path.join(ROOT, 'plugins', 'modules',
                                                                             name + '.py'), path),
                                  capture_output=True, text=True, env=self.env, timeout=120)
        finally:
            os.unlink(path)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return {'failed': True, 'crashed': True, 'msg': 'no JSON: %s %s' % (proc.stdout, proc.stderr)}

    def snapshot(self):
        """Everything a module may change, in one process for the namespace and one walk of state_dir."""
        running = self.sh('nft list ruleset; echo ==; ip rule; echo ==; ip -6 rule; echo ==; '
                          'ip route show table all; echo ==; ip -6 route show table all; echo ==; '
                          'ip -br link; echo ==; ip -br addr')
        files = {}
        for base, _dirs, names in os.walk(self.state_dir):
            for name in names:
                path = os.path.join(base, name)
                with open(path, 'rb') as handle:
                    files[path] = (os.stat(path).st_mode, hashlib.sha256(handle.read()).hexdigest())
        return running, files


@pytest.fixture(scope='module')
def cell():
    if os.geteuid() != 0:
        pytest.fail('needs root (a network namespace)')
    tmp = tempfile.mkdtemp(prefix='picg-hostile-')
    subprocess.run(['ip', 'netns', 'add', NS], check=True)
    try:
        # veth pairs (no dummy module on every kernel), both ends up
        setup = ['link set lo up']
        for ifname, addrs in (('wg0', ['10.0.0.1/24', 'fd00::1/64']), ('eth0', ['198.51.100.2/24', '2001:db8:5::2/64']),
                              ('svc0', ['10.50.0.1/24']), ('cl-b', ['10.60.0.1/30']), ('cl-c', ['10.60.0.5/30'])):
            setup += ['link add %s type veth peer name %sp' % (ifname, ifname), 'link set %sp up' % ifname,
                      'link set %s up' % ifname]
            setup += ['addr add %s dev %s%s' % (a, ifname, ' nodad' if ':' in a else '') for a in addrs]
        setup += ['route add default via 198.51.100.1', 'route add ::/0 via 2001:db8:5::1']
        subprocess.run(['ip', '-n', NS, '-batch', '-'], input='\n'.join(setup) + '\n', text=True, check=True)
        result = Cell(tmp)
        for name, args in POPULATE:
            out = result.module(name, args)
            assert not out.get('failed'), (name, out.get('msg'))
        yield result
    finally:
        pids = subprocess.run(['ip', 'netns', 'pids', NS], capture_output=True, text=True).stdout.split()
        for pid in pids:   # wireguard-go of the exit, started in this namespace by the fixture's modules
            subprocess.run(['kill', pid], check=False)
        subprocess.run(['ip', 'netns', 'del', NS], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _problem(case, out):
    """What is wrong with the module's answer to a bad case, or None."""
    module, _args, field, value = case
    msg = out.get('msg') or ''
    if not out.get('failed'):
        return 'accepted'
    if out.get('crashed') or 'Traceback' in msg or out.get('exception'):
        return 'crashed: %s' % msg[-300:]
    if not msg.startswith(field + ':'):
        return 'field not named first: %s' % msg
    if value is not None and repr(value) not in msg:
        return 'value %r not shown: %s' % (value, msg)
    if value is not None and '********' in msg:
        return 'over-masked (a short no_log value?): %s' % msg
    for secret in SECRETS + [p for _m, a, _f, _v in CASES for p in [a.get('config', {}).get('password')] if p]:
        if secret and secret in json.dumps(out):
            return 'secret in the result: %s' % msg
    return None


def test_at_least_200_distinct_cases():
    keys = set(json.dumps([m, a], sort_keys=True) for m, a, _f, _v in CASES)
    assert len(keys) == len(CASES) >= 200, len(keys)


def test_every_hostile_input_is_refused_and_changes_nothing(cell):
    problems = []
    batch = 12
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(CASES), batch):
            chunk = CASES[start:start + batch]
            before = cell.snapshot()
            outs = list(pool.map(lambda case: cell.module(case[0], case[1]), chunk))
            after = cell.snapshot()
            for case, out in zip(chunk, outs):
                problem = _problem(case, out)
                if problem:
                    problems.append('%s %r: %s' % (case[0], case[1], problem))
            if after != before:
                changed = [k for k in before[1] if before[1][k] != after[1].get(k)] + sorted(
                    set(after[1]) - set(before[1]))
                problems.append('cases %d-%d changed the cell (files %s; running state %s)' % (
                    start, start + len(chunk) - 1, changed, 'changed' if before[0] != after[0] else 'same'))
    assert not problems, '%d problems:\n%s' % (len(problems), '\n'.join(problems))


def test_good_inputs_are_stored_in_canonical_form_and_long_names_do_not_collide(cell):
    """After the hostile table: the same cell still takes good input (the grammar refuses no valid value)."""
    out = cell.module('pic_peer_exit', {'peer': 'gina', 'address': ['10.0.0.20', 'FD00:0::20'], 'connection': 'Tor'})
    assert not out.get('failed'), out.get('msg')
    with open(os.path.join(cell.state_dir, 'registry.json')) as handle:
        doc = json.load(handle)
    assert doc['peers']['gina']['address'] == ['10.0.0.20/32', 'fd00::20/128']
    names = ['Commercial provider exit number one A', 'Commercial provider exit number one B']
    ids = []
    for i, name in enumerate(names):
        out = cell.module('pic_connection', {'name': name, 'type': 'proxy',
                                             'config': {'host': '203.0.113.%d' % (60 + i), 'port': 1080}})
        assert not out.get('failed'), out.get('msg')
        ids.append(out['connection']['id'])
    assert ids[0] != ids[1] and all(len(i) <= 32 for i in ids)
    with open(os.path.join(cell.state_dir, 'registry.json')) as handle:
        conns = json.load(handle)['connections']
    assert [conns[i]['config']['host'] for i in ids] == ['203.0.113.60', '203.0.113.61']
    out = cell.module('pic_connection', {'name': 'exit wg', 'type': 'tor'})
    assert out.get('failed') and "'Exit WG'" in out['msg'], out
