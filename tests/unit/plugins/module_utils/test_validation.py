# -*- coding: utf-8 -*-
"""The input grammar (module_utils/validation.py): cases as data, and property-based fuzzing.

Every validator either returns a value that matches its grammar in full (no
control character, canonical form) or raises a PicError naming the field and
the value (never the value of a secret).
"""
import base64
import ipaddress
import re

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.pic.connectivity.plugins.module_utils import validation as v
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.tests.unit.helpers import CONTROL, HOSTILE

KEY = base64.b64encode(bytes(range(32))).decode()
# A non-canonical twin of KEY: same bytes for a lenient decoder, but its last
# character carries bits that are not zero; `wg` refuses it.
KEY_NONCANONICAL = KEY[:42] + chr(ord(KEY[42]) + 1) + '='

# (validator, extra args, value, the words the message must hold)
REFUSED = [
    # addresses: scope ids, blanks, control characters, mapped IPv6, specials
    (v.parse_address, (), 'fd00::1%eth0', 'scope id'),
    (v.parse_address, (), 'fd00::1%\n--ssh-cmd=sh', 'control'),
    (v.parse_address, (), '10.0.0.1\n', 'control'),
    (v.parse_address, (), ' 10.0.0.1', 'no blanks'),
    (v.parse_address, (), '10.0.0.1 ', 'no blanks'),
    (v.parse_address, (), '::ffff:10.0.0.5', 'IPv4-mapped'),
    (v.parse_address, (), '::10.0.0.5', 'IPv4-compatible'),
    (v.parse_address, (), '0.0.0.0', 'unicast'),
    (v.parse_address, (), '::', 'unicast'),
    (v.parse_address, (), '127.0.0.1', 'non-loopback'),
    (v.parse_address, (), '::1', 'non-loopback'),
    (v.parse_address, (), '224.0.0.1', 'unicast'),
    (v.parse_address, (), 'ff02::1', 'unicast'),
    (v.parse_address, (), 'fe80::1', 'link-local'),
    (v.parse_address, (), '169.254.1.1', 'link-local'),
    (v.parse_address, (), '255.255.255.255', 'broadcast'),
    (v.parse_address, (), '010.0.0.1', 'not a valid'),
    (v.parse_address, (), '10.0.0.256', 'not a valid'),
    (v.parse_address, (), '10.0.0.1/32', 'IP address'),
    (v.parse_address, (), 'ｆd00::1', 'IP address'),
    (v.parse_address, (4,), 'fd00::1', 'IPv4'),
    (v.parse_network, (), '0.0.0.0/0', '/0'),
    (v.parse_network, (), '::/0', '/0'),
    (v.parse_network, (), '10.0.0.2/24', 'host bits'),
    (v.parse_network, (), 'fd00::2%x/128', 'scope id'),
    (v.parse_network, (), '10.0.0.2/32\n', 'control'),
    (v.parse_network, (), '::ffff:10.0.0.5/128', 'IPv4-mapped'),
    (v.parse_network, (), '127.0.0.0/8', 'loopback'),
    (v.parse_interface_address, (), 'fd00::2%1/64', 'scope id'),
    (v.parse_interface_address, (), '10.0.0.2/24 ', 'no blanks'),
    (v.parse_route, (), '0.0.0.0/0\n[Peer]', 'control'),
    (v.parse_route, (), '0.0.0.0/0,::/0', 'network'),
    # names and interfaces: a trailing newline was accepted by '$'
    (v.check_peer_name, (), 'alice\n', 'control'),
    (v.check_peer_name, (), '-alice', 'starting with'),
    (v.check_peer_name, (), 'a' * 65, '1-64'),
    (v.check_ifname, (), 'wg0\n', 'control'),
    (v.check_ifname, (), 'a' * 16, 'interface name'),
    (v.check_ifname, (), '-wg0', 'interface name'),
    (v.check_owned_ifname, (), 'eth0', "'pic-'"),
    (v.check_owned_ifname, (), 'wg0', "'pic-'"),
    (v.check_owned_ifname, (), 'lo', "'pic-'"),
    (v.check_owned_ifname, (), 'pic-', "'pic-'"),
    (v.check_owned_ifname, (), 'pic-abcdefghijkl', "'pic-'"),
    (v.check_owned_ifname, (), 'pic-Upper', "'pic-'"),
    (v.check_owned_ifname, (), 'pic-x\n', 'control'),
    (v.check_display_name, (), 'Home VPN\n', 'control'),
    (v.check_display_name, (), 'Home\u2028VPN', 'control'),
    (v.check_display_name, (), 'Home\x85VPN', 'control'),
    (v.check_display_name, (), 'Home\u202eNPV', 'control'),
    (v.check_display_name, (), 'a;b', 'forbidden'),
    # hosts
    (v.check_host, (), '-oProxyCommand=sh', 'host name'),
    (v.check_host, (), '@/etc/shadow', 'host name'),
    (v.check_host, (), 'ssh.example\n', 'control'),
    (v.check_host, (), 'ssh..example', 'host name'),
    (v.check_host, (), 'a-.example', 'host name'),
    (v.check_host, (), '-a.example', 'host name'),
    (v.check_host, (), 'a' * 64 + '.example', 'host name'),
    (v.check_host, (), ('a' * 63 + '.') * 4 + 'a', '253'),
    (v.check_host, (), 'host name', 'host name'),
    (v.check_host, (), 'user@host', 'host name'),
    (v.check_host, (), '1.2.3', 'IP address'),
    (v.check_host, (), '192.0.2.1.', 'IP address'),
    (v.check_host, (), 'fd00::1%eth0', 'scope id'),
    (v.check_host, (), 'exämple.org', 'host name'),
    # getaddrinfo read these host names as 127.0.0.1 and 10.0.0.1 (wg setconf did)
    (v.check_host, (), '0x7f000001', 'dotted decimal'),
    (v.check_host, (), '0xa.0.0.0x1', 'dotted decimal'),
    # ssh user, proxy user, python
    (v.check_user, (), '-oProxyCommand=sh', 'user name'),
    (v.check_user, (), 'root\n', 'control'),
    (v.check_user, (), 'user:password', 'user name'),
    (v.check_user, (), 'user@host', 'user name'),
    (v.check_user, (), 'root -l x', 'user name'),
    (v.check_user, (), 'a' * 33, 'user name'),
    (v.check_word, (), '-u', 'starting with'),
    (v.check_word, (), 'a"b', 'letters'),
    (v.check_word, (), 'a\\b', 'letters'),
    (v.check_word, (), 'a b', 'letters'),
    (v.check_command, (), '-c', 'command name'),
    (v.check_command, (), 'python3 -c x', 'command name'),
    (v.check_command, (), '/usr/bin/../bin/sh', "'..'"),
    (v.check_command, (), 'usr/bin/python3', 'command name'),
    (v.check_command, (), '/usr/bin/python3\n', 'control'),
    (v.check_command, (), '/usr/bin/py thon', 'absolute path'),
    # integers
    (v.parse_int, (), ' 22', 'integer'),
    (v.parse_int, (), '22\n', 'integer'),
    (v.parse_int, (), '2_2', 'integer'),
    (v.parse_int, (), '-1', 'integer'),
    (v.parse_int, (), '0o17', 'integer'),
]


@pytest.mark.parametrize('func,args,value,words', REFUSED,
                         ids=['%s-%r' % (c[0].__name__, c[2][:40]) for c in REFUSED])
def test_refused_names_field_and_value(func, args, value, words):
    with pytest.raises(PicError) as err:
        func(value, 'x.f[2]', *args)
    assert err.value.field == 'x.f[2]'
    assert err.value.value == value
    assert str(err.value).startswith('x.f[2]: ')
    assert repr(value) in str(err.value)
    assert words in str(err.value), str(err.value)


ACCEPTED = [
    (v.parse_address, (), '10.0.0.5', '10.0.0.5'),
    (v.parse_address, (), 'FD00:0::5', 'fd00::5'),
    (v.parse_address, (), '2001:db8:0:0:0:0:0:1', '2001:db8::1'),
    (v.parse_network, (), 'FD00::2/128', ipaddress.ip_network('fd00::2/128')),
    (v.parse_route, (), '10.1.2.3/8', '10.0.0.0/8'),
    (v.parse_route, (), '::/0', '::/0'),
    (v.check_host, (), 'ssh.example.org', 'ssh.example.org'),
    (v.check_host, (), 'xn--bcher-kva.example', 'xn--bcher-kva.example'),
    (v.check_host, (), '2001:DB8::1', '2001:db8::1'),
    (v.check_host, (), '192.0.2.10', '192.0.2.10'),
    (v.check_host, (), 'a' * 63, 'a' * 63),
    (v.check_host, (), 'vpn.0x1', 'vpn.0x1'),
    (v.check_user, (), 'deploy_user-2', 'deploy_user-2'),
    (v.check_word, (), 'alice@example.org', 'alice@example.org'),
    (v.check_command, (), '/usr/bin/python3.11', '/usr/bin/python3.11'),
    (v.check_command, (), 'python3', 'python3'),
    (v.check_owned_ifname, (), 'pic-home-vpn', 'pic-home-vpn'),
    (v.parse_int, (), '0x00ff0000', 0x00ff0000),
    (v.parse_int, (), '51820', 51820),
]


@pytest.mark.parametrize('func,args,value,expect', ACCEPTED)
def test_accepted_in_canonical_form(func, args, value, expect):
    assert func(value, 'x', *args) == expect


@pytest.mark.parametrize('value,prefix', [('10.0.0.0/8', 16), ('fd00::/32', 48)])
def test_peer_networks_are_not_over_wide(value, prefix):
    assert v.parse_network(value, 'address[0]') == ipaddress.ip_network(value)
    with pytest.raises(PicError) as err:
        v.parse_network(value, 'address[0]', peer=True)
    assert 'at most /%d' % prefix in str(err.value)


def test_wireguard_keys_must_be_canonical():
    assert v.check_wg_key(KEY, 'k', False) == KEY
    for bad in (KEY_NONCANONICAL, KEY[:-1], KEY + '=', ' ' + KEY, KEY + '\n', KEY[:43] + 'A',
                base64.b64encode(b'x' * 31).decode(), base64.urlsafe_b64encode(b'\xff' * 32).decode(),
                base64.b64encode(bytes(32)).decode()):    # wg read the all-zero key as no key at all
        with pytest.raises(PicError) as err:
            v.check_wg_key(bad, 'k', True)
        assert err.value.value is None and bad not in str(err.value) and 'hidden' in str(err.value)
        with pytest.raises(PicError) as err:
            v.check_wg_key(bad, 'k', False)
        assert err.value.value == bad


def test_secret_is_never_shown():
    for bad in ('pa"ss', "pa'ss", 'pa\\ss', 'pa\nss', 'pa\x00ss', '', 'x' * 257):
        with pytest.raises(PicError) as err:
            v.check_secret(bad, 'config.password')
        assert err.value.value is None and err.value.field == 'config.password'
        assert 'hidden' in str(err.value)
        if bad:
            assert bad not in str(err.value)


@pytest.mark.parametrize('name,slug', [
    ('Home VPN', 'home-vpn'),
    ('a' * 32, 'a' * 32),
    ('Exit ' + 'x' * 27, 'exit-' + 'x' * 27),
])
def test_short_ids_are_stable(name, slug):
    assert v.slugify(name) == slug


def test_long_ids_cannot_collide():
    one, two = 'Provider exit number one in Frankfurt A', 'Provider exit number one in Frankfurt B'
    assert v.slugify(one)[:24] == v.slugify(two)[:24]
    assert v.slugify(one) != v.slugify(two)
    assert len(v.slugify(one)) <= v.ID_MAX
    assert re.fullmatch(r'[a-z0-9-]{1,23}-[0-9a-f]{8}', v.slugify(one))


def test_local_networks():
    assert v.check_local_networks(['10.1.0.0/16', 'FD10::/48'], '') == ['10.1.0.0/16', 'fd10::/48']
    for nets, field in ((['0.0.0.0/0'], 'local_networks[0]'), (['10.1.0.0/16', '::/0'], 'local_networks[1]'),
                        (['10.1.0.0/16', '10.1.2.0/24'], 'local_networks[1]'),
                        (['10.1.0.0/16', 'fd00::1%x/128'], 'local_networks[1]')):
        with pytest.raises(PicError) as err:
            v.check_local_networks(nets, '')
        assert err.value.field == field, str(err.value)
    with pytest.raises(PicError) as err:
        v.check_local_against_peers(['192.168.1.0/24', '10.0.0.0/16'], ['10.0.0.1/24', 'fd00::1/64'])
    assert err.value.field == 'local_networks[1]' and '10.0.0.0/24' in str(err.value)
    v.check_local_against_peers(['192.168.1.0/24'], ['10.0.0.1/24'])


# -- property-based: hostile strings (helpers.HOSTILE) ---------------------------------------------


def _check(func, value, grammar, *args, **kwargs):
    """func(value) is either refused, naming field and value, or accepted and in the grammar."""
    secret = kwargs.pop('secret', False)
    try:
        out = func(value, 'p.q[1]', *args)
    except PicError as exc:
        assert exc.field == 'p.q[1]'
        assert exc.value == (None if secret else value)
        assert str(exc).startswith('p.q[1]: ')
        if secret and len(value) >= 8:
            assert value not in str(exc)
        return None
    text = str(out)
    assert not CONTROL.search(text)
    assert grammar(text), (value, text)
    return out


def _is_address(text):
    addr = ipaddress.ip_address(text)
    return (str(addr) == text and '%' not in text and not addr.is_loopback and not addr.is_link_local
            and not addr.is_multicast and not addr.is_unspecified)


# No example database: nothing written into the work tree (or a built collection).
FUZZ = settings(max_examples=300, deadline=None, database=None)


@FUZZ
@given(HOSTILE)
def test_fuzz_address(value):
    _check(v.parse_address, value, _is_address)


@FUZZ
@given(HOSTILE)
def test_fuzz_peer_network(value):
    def grammar(text):
        net = ipaddress.ip_network(text)
        return str(net) == text and net.prefixlen >= v.PEER_MIN_PREFIX[net.version] and '%' not in text
    _check(lambda val, f: str(v.parse_network(val, f, peer=True)), value, grammar)


@FUZZ
@given(HOSTILE)
def test_fuzz_route(value):
    _check(v.parse_route, value, lambda t: str(ipaddress.ip_network(t)) == t and '%' not in t)


@FUZZ
@given(HOSTILE)
def test_fuzz_interface_address(value):
    _check(lambda val, f: str(v.parse_interface_address(val, f)), value,
           lambda t: '%' not in t and str(ipaddress.ip_interface(t)) == t)


@FUZZ
@given(HOSTILE)
def test_fuzz_host(value):
    def grammar(text):
        if ':' in text or re.fullmatch(r'[0-9.]+', text):
            return _is_address(text)
        return (len(text) <= 253 and text[0] not in '-@' and
                all(re.fullmatch(r'[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?', label)
                    for label in text.rstrip('.').split('.')))
    _check(v.check_host, value, grammar)


@FUZZ
@given(HOSTILE)
def test_fuzz_names(value):
    _check(v.check_peer_name, value, lambda t: re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}', t))
    _check(v.check_ifname, value, lambda t: re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,14}', t))
    _check(v.check_owned_ifname, value, lambda t: re.fullmatch(r'pic-[a-z0-9-]{1,11}', t))
    _check(v.check_user, value, lambda t: re.fullmatch(r'[A-Za-z_][A-Za-z0-9_.-]{0,31}', t))
    _check(v.check_word, value, lambda t: re.fullmatch(r'[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}', t))
    _check(v.check_command, value, lambda t: re.fullmatch(r'(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]*)+|[A-Za-z0-9_]'
                                                          r'[A-Za-z0-9_.+-]*', t) and '/../' not in t + '/')


@FUZZ
@given(HOSTILE)
def test_fuzz_display_name(value):
    out = _check(v.check_display_name, value, lambda t: t == t.strip() and 0 < len(t) <= 64)
    if out is not None:
        assert not set(out) & set(';&|$`<>\\\'"*?{}[]!#~%^=')
        assert v.slugify(out) == '' or re.fullmatch(r'[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?', v.slugify(out))


@FUZZ
@given(HOSTILE)
def test_fuzz_secret_and_key(value):
    _check(v.check_secret, value, lambda t: not set(t) & set('"\'\\'), secret=True)
    _check(lambda val, f: v.check_wg_key(val, f, True), value,
           lambda t: base64.b64encode(base64.b64decode(t)).decode() == t and len(t) == 44, secret=True)


@FUZZ
@given(st.one_of(HOSTILE, st.integers()))
def test_fuzz_int(value):
    _check(lambda val, f: v.parse_int(val, f, 0, 65535), value, lambda t: 0 <= int(t) <= 65535)
