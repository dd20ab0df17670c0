# -*- coding: utf-8 -*-
"""wireguard_ext configurations proven with the real ``wg``: what the validators accept,
``wg setconf`` on a wireguard-go interface (in a throwaway network namespace) reads
back as exactly the intended keys, endpoint, AllowedIPs, keepalive and listen port,
with exactly one peer. Hostile strings in any field are refused, naming the field
and never a secret.

Both forms are generated: the flat keys (private_key, address, peer_public_key, ...)
and the text of a wg-quick file (``wg_config``), with comments, blank lines, CRLF,
tabs and any case of the keys."""
import base64
import ipaddress
import os
import re
import shutil
import subprocess
import time

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from ansible_collections.pic.connectivity.plugins.module_utils import connections, wgconf, wgiface
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError

REAL = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
PURE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Host names the namespace's /etc/hosts maps (ip netns exec binds /etc/netns/<ns>/hosts there).
HOSTS = {'vpn.example': '192.0.2.80', 'exit-1.vpn.example': '2001:db8::80', 'a': '198.51.100.7'}
# Appended to, or put before, a value: each must be refused, or change nothing.
HOSTILE = ['\n', '\r', '\x00', '\u2028', '\u2029', '\x85', '\x0b', '\x1b', '\ufeff', '\u200b', '%eth0', '%1',
           '=', '==', '#', ' #x', '\n[Peer]', '\n[Peer]\nPublicKey = ', '\n[Interface]', '\nPostUp = id',
           '\nTable = off', '"', "'", ';', '\\', '/', ':', ',', ', ', ' ', '\t', 'é', '\uff10']


def key_of(raw):
    return base64.b64encode(raw).decode('ascii')


KEY = st.integers(1, 2 ** 256 - 1).map(lambda n: key_of(n.to_bytes(32, 'big')))   # the zero key: see below
V4 = st.integers(1, 0xdfffffff).map(lambda n: str(ipaddress.IPv4Address(n)))
V6 = st.integers(0x20010db8 << 96, (0x20010db9 << 96) - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
NET4 = st.tuples(V4, st.integers(0, 32)).map('%s/%d'.__mod__)
NET6 = st.tuples(V6, st.integers(0, 128)).map('%s/%d'.__mod__)
PORT = st.integers(1, 65535)
ENDPOINT = st.one_of(
    st.tuples(V4.filter(lambda a: not ipaddress.ip_address(a).is_loopback and
                        not ipaddress.ip_address(a).is_link_local and a != '0.0.0.0'), PORT).map('%s:%d'.__mod__),
    st.tuples(V6, PORT).map('[%s]:%d'.__mod__),
    st.tuples(st.sampled_from(sorted(HOSTS)), PORT).map('%s:%d'.__mod__))
INTENDED = st.fixed_dictionaries({
    'private_key': KEY, 'peer_public_key': KEY,
    'preshared_key': st.none() | KEY,
    'endpoint': ENDPOINT,
    'allowed_ips': st.lists(NET4 | NET6, min_size=1, max_size=5),
    'persistent_keepalive': st.none() | st.integers(0, 65535),
    'listen_port': st.none() | PORT,
    'address': st.lists(st.sampled_from(['10.200.0.2/32', '10.200.0.3/24', 'fd00:200::2/128', '192.0.2.9']),
                        min_size=1, max_size=2, unique=True),
    'dns': st.lists(st.sampled_from(['192.0.2.53', '2001:db8::53']), max_size=2, unique=True),
    'mtu': st.none() | st.integers(1280, 9000),
})
FIELDS = ['private_key', 'peer_public_key', 'preshared_key', 'endpoint', 'allowed_ips', 'persistent_keepalive',
          'listen_port', 'address', 'dns', 'mtu']
MUTATION = st.none() | st.tuples(st.sampled_from(FIELDS), st.sampled_from(HOSTILE), st.booleans())


def need(program):
    path = shutil.which(program)
    if path is None:
        pytest.fail('%s is missing: install wireguard-tools, wireguard-go and iproute2 to prove the WireGuard '
                    'configurations with the real wg' % program)
    return path


class WgNamespace(object):
    """A wireguard-go interface in a namespace of its own, read and written with the real wg."""

    def __init__(self):
        for program in ('ip', 'wg', 'wireguard-go'):
            need(program)
        if os.geteuid() != 0:
            pytest.fail('root is needed to make a network namespace for wireguard-go')
        self.ns = 'picp-wg%d' % os.getpid()
        self.ifname = 'picp%d' % (os.getpid() % 1000)
        self.etc = '/etc/netns/%s' % self.ns
        os.makedirs(self.etc, exist_ok=True)
        with open(os.path.join(self.etc, 'hosts'), 'w') as handle:
            handle.write(''.join('%s %s\n' % (addr, name) for name, addr in sorted(HOSTS.items())))
        subprocess.run(['ip', 'netns', 'add', self.ns], check=True)
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD='1', LOG_LEVEL='error')
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns, 'wireguard-go', '-f', self.ifname],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env)
        deadline = time.time() + 10
        while self.wg('show', self.ifname).returncode != 0:
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                pytest.fail('wireguard-go did not bring up %s' % self.ifname)
            time.sleep(0.05)

    def wg(self, *args):
        return subprocess.run(['ip', 'netns', 'exec', self.ns, 'wg'] + list(args), capture_output=True, text=True,
                              check=False, timeout=30)

    def setconf(self, path):
        proc = self.wg('setconf', self.ifname, path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == '', proc.stderr      # wg warns of a host part in an AllowedIP, for one
        return self.dump()

    def dump(self):
        """``wg show IF dump``, wireguard-tools' own tab-separated output."""
        proc = self.wg('show', self.ifname, 'dump')
        assert proc.returncode == 0, proc.stderr
        rows = [line.split('\t') for line in proc.stdout.splitlines()]
        return {'private_key': rows[0][0], 'listen_port': int(rows[0][2]),
                'peers': [{'public_key': r[0], 'preshared_key': None if r[1] == '(none)' else r[1],
                           'endpoint': r[2], 'allowed_ips': set(r[3].split(',')),
                           'persistent_keepalive': None if r[7] == 'off' else int(r[7])} for r in rows[1:]]}

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        subprocess.run(['ip', 'netns', 'del', self.ns], check=False)
        shutil.rmtree(self.etc, ignore_errors=True)


@pytest.fixture(scope='module')
def real_wg():
    namespace = WgNamespace()
    yield namespace
    namespace.close()


# -- the intended values and the two forms of the configuration ---------------------------------------
def clamped(key):
    """A private key as WireGuard keeps it (X25519 clamping: the same key)."""
    raw = bytearray(base64.b64decode(key))
    raw[0], raw[31] = raw[0] & 248, (raw[31] & 127) | 64
    return key_of(bytes(raw))


def expected(values):
    """What wg must read back: the private key clamped, canonical networks (host bits
    cleared), the endpoint as an address."""
    host, port = values['endpoint'].rsplit(':', 1)
    host = HOSTS.get(host, host.strip('[]'))
    host = '[%s]' % host if ':' in host else host
    return {
        'private_key': clamped(values['private_key']),
        'public_key': values['peer_public_key'],
        'preshared_key': values['preshared_key'],
        'endpoint': '%s:%s' % (host, port),
        'allowed_ips': set(str(ipaddress.ip_network(n, strict=False)) for n in values['allowed_ips']),
        'persistent_keepalive': values['persistent_keepalive'] or None,
        'listen_port': values['listen_port'],
    }


def flat_config(values, mutation):
    config = dict((k, v) for k, v in values.items() if v is not None)
    if mutation:
        field, hostile, before = mutation
        value = config.get(field, '')
        text = ', '.join(value) if isinstance(value, list) else str(value)
        config[field] = hostile + text if before else text + hostile
    return config


def text_line(draw, key, value):
    """One 'Key = value' line as a person or a provider writes it."""
    name = draw(st.sampled_from([key, key.lower(), key.upper()]))
    sep = draw(st.sampled_from(['=', ' = ', '\t=\t', ' =']))
    comment = draw(st.sampled_from(['', ' # note', '\t#', '#x=y']))
    return '%s%s%s%s' % (name, sep, value, comment)


WG_KEYS = [('Interface', 'PrivateKey', 'private_key'), ('Interface', 'Address', 'address'),
           ('Interface', 'ListenPort', 'listen_port'), ('Interface', 'MTU', 'mtu'), ('Interface', 'DNS', 'dns'),
           ('Peer', 'PublicKey', 'peer_public_key'), ('Peer', 'PresharedKey', 'preshared_key'),
           ('Peer', 'Endpoint', 'endpoint'), ('Peer', 'AllowedIPs', 'allowed_ips'),
           ('Peer', 'PersistentKeepalive', 'persistent_keepalive')]


@st.composite
def wg_quick_text(draw, values, mutation):
    if mutation and mutation[1].lstrip(' ').startswith('#'):
        mutation = (mutation[0], mutation[1], False)    # '#' before a value comments it out, as it should
    config = flat_config(values, mutation)
    lines = []
    for section in ('Interface', 'Peer'):
        lines.append(draw(st.sampled_from(['[%s]' % section, '[%s]' % section.lower(), ' [%s] ' % section])))
        for _section, key, field in (k for k in WG_KEYS if k[0] == section):
            if field in config:
                lines.append(text_line(draw, key, config[field] if not isinstance(config[field], list)
                                       else ', '.join(config[field])))
            if draw(st.booleans()):
                lines.append(draw(st.sampled_from(['', '# comment', '  ', '#[Peer]'])))
    return draw(st.sampled_from(['\n', '\r\n'])).join(lines) + '\n'


def validate(config):
    """connections.validate_config, as pic_connection calls it: (normalized, error)."""
    try:
        _public, payload, secrets, _routes = connections.validate_config('wireguard_ext', config)
    except PicError as exc:
        return None, exc
    assert secrets == [s for s in (payload['private_key'], payload['peers'][0]['preshared_key']) if s]
    return payload, None


def check_refusal(exc, values, config, mutation):
    """A refusal names the field (the whole text for wg_config) and never a secret."""
    secrets = [s for s in (values['private_key'], values['preshared_key']) if s]
    for secret in (s for s in secrets if s != values['peer_public_key']):    # the same bytes, drawn twice
        assert secret not in str(exc) and secret not in repr(exc.value), str(exc)
    if 'wg_config' in config:
        assert exc.field.startswith('config.wg_config'), str(exc)
    elif mutation:
        name = {'peer_public_key': 'public_key'}.get(mutation[0], mutation[0])
        assert re.sub(r'\[[0-9]+\]', '', exc.field).endswith('.' + name), (mutation, str(exc))
    assert mutation, ('a clean configuration was refused', str(exc))


def read_back(real_wg, tmp_path, normalized):
    path = tmp_path / 'setconf.conf'
    path.write_text(wgconf.render_setconf(normalized))
    path.chmod(0o600)
    return real_wg.setconf(str(path))


def assert_reads_back(running, values):
    want = expected(values)
    assert running['private_key'] == want['private_key']
    if want['listen_port']:
        assert running['listen_port'] == want['listen_port']
    assert len(running['peers']) == 1, running
    peer = running['peers'][0]
    assert peer == {'public_key': want['public_key'], 'preshared_key': want['preshared_key'],
                    'endpoint': want['endpoint'], 'allowed_ips': want['allowed_ips'],
                    'persistent_keepalive': want['persistent_keepalive']}


def check_config(real_wg, tmp_path, values, config, mutation):
    normalized, exc = validate(config)
    event('refused' if exc else 'read back by wg')
    if exc is not None:
        check_refusal(exc, values, config, mutation)
        return
    assert_reads_back(read_back(real_wg, tmp_path, normalized), values)
    # what the module compares before configuring again (an unclamped key never matched)
    assert wgiface.config_matches(wgiface.dump(real_wg.ifname), normalized)


@REAL
@given(values=INTENDED, mutation=MUTATION)
def test_flat_keys_are_refused_or_read_back_by_wg(real_wg, tmp_path_factory, values, mutation):
    check_config(real_wg, tmp_path_factory.mktemp('wg'), values, flat_config(values, mutation), mutation)


@REAL
@given(data=st.data(), values=INTENDED, mutation=MUTATION)
def test_wg_quick_text_is_refused_or_read_back_by_wg(real_wg, tmp_path_factory, data, values, mutation):
    text = data.draw(wg_quick_text(values, mutation))
    check_config(real_wg, tmp_path_factory.mktemp('wg'), values, {'wg_config': text}, mutation)


@pytest.mark.parametrize('endpoint', ['0x7f000001:51820', '0xa.0.0.0x1:51820', '0x7f.1:51820', '127.1:51820',
                                      '[::ffff:127.0.0.1]:51820', '[fe80::1%eth0]:51820', '[::1]:51820',
                                      '192.0.2.1:51820\n[Peer]', '192.0.2.1:0', '192.0.2.1:65536'])
def test_endpoints_wg_would_read_as_another_address_are_refused(endpoint, keys):
    """'0x7f000001' passed the host name grammar, and wg setconf connected to 127.0.0.1."""
    with pytest.raises(PicError) as err:
        connections.validate_config('wireguard_ext', {'private_key': keys[0], 'address': ['10.200.0.2/32'],
                                                      'peer_public_key': keys[1], 'endpoint': endpoint})
    assert err.value.field == 'config.peers[0].endpoint'


def test_the_all_zero_key_is_refused_as_wg_reads_it_as_no_key(real_wg, tmp_path, keys):
    """wg read an all-zero PrivateKey or PresharedKey (accepted before) as none at all."""
    zero = key_of(bytes(32))
    base = {'private_key': keys[0], 'address': ['10.200.0.2/32'], 'peer_public_key': keys[1],
            'endpoint': '192.0.2.1:51820', 'preshared_key': keys[2]}
    for field, path in (('private_key', 'config.private_key'), ('preshared_key', 'config.peers[0].preshared_key')):
        with pytest.raises(PicError) as err:
            connections.validate_config('wireguard_ext', dict(base, **{field: zero}))
        assert err.value.field == path and 'all-zero' in str(err.value) and zero not in str(err.value)
    normalized, _exc = validate(base)
    normalized['private_key'] = zero
    normalized['peers'][0]['preshared_key'] = zero
    running = read_back(real_wg, tmp_path, normalized)
    assert running['private_key'] == '(none)' and running['peers'][0]['preshared_key'] is None


@REAL
@given(private=KEY)
def test_public_key_of_is_what_wg_pubkey_prints(private):
    proc = subprocess.run([need('wg'), 'pubkey'], input=private + '\n', capture_output=True, text=True, check=True,
                          timeout=30)
    assert wgconf.public_key_of(private) == proc.stdout.strip()


def test_a_peer_with_the_own_public_key_is_refused_as_wg_drops_it(real_wg, tmp_path, keys):
    """Accepted before: wg setconf took the file and the interface had no peer at all."""
    own = wgconf.public_key_of(keys[0])
    base = {'private_key': keys[0], 'address': ['10.200.0.2/32'], 'peer_public_key': keys[1],
            'endpoint': '192.0.2.1:51820'}
    with pytest.raises(PicError) as err:
        connections.validate_config('wireguard_ext', dict(base, peer_public_key=own))
    assert err.value.field == 'config.peers[0].public_key' and keys[0] not in str(err.value)
    normalized, _exc = validate(base)
    normalized['peers'][0]['public_key'] = own
    assert read_back(real_wg, tmp_path, normalized)['peers'] == []


# -- pure: the rendered file has exactly the intended lines ---------------------------------------------
def intended_lines(values):
    want = expected(values)
    lines = ['[Interface]', 'PrivateKey = %s' % values['private_key']]
    if want['listen_port']:
        lines.append('ListenPort = %d' % want['listen_port'])
    lines.extend(['', '[Peer]', 'PublicKey = %s' % want['public_key']])
    if want['preshared_key']:
        lines.append('PresharedKey = %s' % want['preshared_key'])
    lines.append('Endpoint = %s' % values['endpoint'])
    nets = []
    for net in values['allowed_ips']:
        canonical = str(ipaddress.ip_network(net, strict=False))
        if canonical not in nets:
            nets.append(canonical)
    lines.append('AllowedIPs = %s' % ', '.join(nets))
    if want['persistent_keepalive']:
        lines.append('PersistentKeepalive = %d' % want['persistent_keepalive'])
    return lines


@PURE
@given(data=st.data(), values=INTENDED, mutation=MUTATION, text=st.booleans())
def test_rendered_setconf_has_exactly_the_intended_lines(data, values, mutation, text):
    config = flat_config(values, mutation)
    if text:
        config = {'wg_config': data.draw(wg_quick_text(values, mutation))}
    normalized, exc = validate(config)
    if exc is not None:
        check_refusal(exc, values, config, mutation)
        return
    rendered = wgconf.render_setconf(normalized)
    assert rendered.split('\n') == intended_lines(values) + ['']
    assert normalized['address'] == [str(ipaddress.ip_interface(a).ip) for a in values['address']]
    assert normalized['dns'] == values['dns'] and normalized['mtu'] == values['mtu']
