# -*- coding: utf-8 -*-
"""The nftables table proven with the real ``nft``: for registries built through the
public planners (settings, connections, peers, services, links) from generated
addresses, networks, DNS servers and interface names, ``nft -c`` accepts the rendered
table, and committed in a throwaway network namespace (its own nftables), ``nft -j``
reads back every set and map element as exactly one intended, canonical token.
A hostile string in any of those inputs is refused by the planners, naming the field,
before anything is rendered."""
import ipaddress
import json
import os
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from ansible_collections.pic.connectivity.plugins.module_utils import connections, links, model, peers, runner, services
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.plugins.module_utils.validation import slugify

REAL = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ['AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=', 'AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=']
# What the kernel reports of the peer interface (dataplane facts): disjoint from every pool below.
PEER_NETWORKS = ['10.0.0.0/16', 'fd00:1::/64']
# Put before or after a value: each must be refused, or change nothing.
HOSTILE = ['"', '\n', '\r', '\x00', ';', ' ', '{', '}', '#', '%eth0', '%1', '\u2028', '\x85', ',', '@x', '*',
           '\\', "'", '$x', '\t', 'é', ' : accept', '}\ntable ip x {', '" accept', '/0', '\ufeff']
SLOTS = ['peer_interface', 'local_networks', 'peer_address', 'service_address', 'service_interface',
         'link_interface', 'dns', 'remote_dns', 'link_cell']


def v6_text(draw, addr):
    """An IPv6 address as a person may write it: compressed, exploded, any case."""
    text = draw(st.sampled_from([addr.compressed, addr.exploded]))
    return text.upper() if draw(st.booleans()) else text


@st.composite
def net_in(draw, base, index, v6):
    """A network of pool ``base`` (its ``index``-th /24 or /64), host bits clear."""
    if v6:
        prefix = draw(st.integers(64, 128))
        addr = ipaddress.ip_address(base) + (index << 64) + draw(st.integers(0, 2 ** 64 - 1))
        net = ipaddress.ip_network((addr, prefix), strict=False)
        text = v6_text(draw, net.network_address)
    else:
        prefix = draw(st.integers(24, 32))
        addr = ipaddress.ip_address(base) + (index << 8) + draw(st.integers(0, 255))
        net = ipaddress.ip_network((addr, prefix), strict=False)
        text = str(net.network_address)
    return text if prefix == net.max_prefixlen and draw(st.booleans()) else '%s/%d' % (text, prefix)


def networks(draw, base4, base6, indexes):
    """One network per index (odd: IPv4, even: IPv6): distinct indexes never overlap."""
    return [draw(net_in(base4 if i % 2 else base6, i, not i % 2)) for i in indexes]


@st.composite
def network_lists(draw, base4, base6, count):
    """``count`` lists of 1-3 networks of a pool, none overlapping another."""
    indexes = draw(st.lists(st.integers(0, 255), min_size=3 * count, max_size=3 * count, unique=True))
    sizes = [draw(st.integers(1, 3)) for _i in range(count)]
    return [networks(draw, base4, base6, indexes[3 * i:3 * i + size]) for i, size in enumerate(sizes)]


def ifname(first):
    return st.from_regex(r'%s[A-Za-z0-9_.-]{0,%d}' % (first, 15 - len(first)), fullmatch=True)


UNICAST4 = st.integers(0x01000000, 0xdfffffff).map(ipaddress.IPv4Address).filter(
    lambda a: not (a.is_loopback or a.is_link_local))
UNICAST6 = st.integers(0x20010db8 << 96, (0x20010db9 << 96) - 1).map(ipaddress.IPv6Address)


@st.composite
def dns_servers(draw):
    servers = [str(draw(UNICAST4))] if draw(st.booleans()) else []
    if draw(st.booleans()):
        servers.append(v6_text(draw, draw(UNICAST6)))
    return servers


@st.composite
def specs(draw):
    cells = draw(st.lists(st.from_regex(r'[a-z][a-z0-9-]{0,10}', fullmatch=True), max_size=2, unique_by=slugify))
    names = draw(st.lists(st.from_regex(r'[A-Za-z0-9][A-Za-z0-9 ._-]{0,40}[A-Za-z0-9]', fullmatch=True), min_size=1,
                          max_size=3, unique_by=slugify))
    conns = [n for n in names if slugify(n) not in [slugify(c) for c in cells] + ['default']]
    peer_nets = draw(network_lists('10.0.0.0', 'fd00:1::', draw(st.integers(1, 3))))
    service_nets = draw(network_lists('10.1.0.0', 'fd00:2::', draw(st.integers(0, 2)) if conns else 0))
    interfaces = draw(st.lists(ifname('S'), min_size=len(service_nets), max_size=len(service_nets)))
    link_ifnames = [draw(ifname('L%d' % i)) for i in range(len(cells))]     # distinct
    return {
        'peer_interface': draw(ifname('P')),
        'local_networks': networks(draw, '192.168.0.0', 'fd10::',
                                   draw(st.lists(st.integers(0, 255), min_size=1, max_size=4, unique=True))),
        'conns': [(name, draw(dns_servers()), ctype) for name, ctype in zip(conns, connection_types(draw, len(conns)))],
        'peers': [(nets, draw(st.sampled_from(conns + ['default'])), draw(st.none() | st.booleans()))
                  for nets in peer_nets],
        'services': [(nets, ifn, draw(st.sampled_from(conns))) for nets, ifn in zip(service_nets, interfaces)],
        'links': [(cell, ifn, draw(st.booleans()), draw(st.booleans()), draw(dns_servers()))
                  for cell, ifn in zip(cells, link_ifnames)],
    }


# The settings of each connection type (what the table holds of them does not depend on them).
CONFIGS = {'wireguard_ext': {'private_key': KEYS[0], 'address': ['10.200.0.2/32'], 'peer_public_key': KEYS[1],
                             'endpoint': '192.0.2.1:51820'},
           'proxy': {'host': '192.0.2.9', 'port': 1080}, 'sshuttle': {'host': 'ssh.example'}, 'tor': {}}


def connection_types(draw, count):
    """A type for each connection: at most one tor (the cell runs one tor instance)."""
    types = [draw(st.sampled_from(['wireguard_ext', 'wireguard_ext', 'proxy', 'sshuttle', 'tor'])) for _i in range(count)]
    return [t if t != 'tor' or t not in types[:i] else 'wireguard_ext' for i, t in enumerate(types)]


MUTATION = st.none() | st.tuples(st.sampled_from(SLOTS), st.sampled_from(HOSTILE), st.booleans())


def mutate(value, slot, mutation):
    """``value`` with the hostile string of ``mutation`` when it is for ``slot``."""
    if not mutation or mutation[0] != slot:
        return value
    if isinstance(value, list):
        return [mutate(value[0], slot, mutation)] + value[1:] if value else [mutate('', slot, mutation)]
    return mutation[1] + value if mutation[2] else value + mutation[1]


# -- the registry, through the public planners --------------------------------------------------------
def build(spec, mutation):
    doc = runner.merge_settings(empty(), {'peer_interface': mutate(spec['peer_interface'], 'peer_interface', mutation),
                                          'local_networks': mutate(spec['local_networks'], 'local_networks', mutation)})
    for name, dns, ctype in spec['conns']:
        config = dict(CONFIGS[ctype])
        if ctype == 'wireguard_ext':
            config['dns'] = mutate(dns, 'dns', mutation)
        doc = connections.plan(doc, {'name': name, 'type': ctype, 'config': config})[0]
    link_items = [{'cell': mutate(cell, 'link_cell', mutation), 'interface': mutate(ifn, 'link_interface', mutation),
                   'offer_exit': offer, 'remote_offers_exit': remote, 'remote_dns': mutate(dns, 'remote_dns', mutation)}
                  for cell, ifn, offer, remote, dns in spec['links']]
    doc = links.plan(doc, link_items)[0]
    items = [{'peer': 'peer-%d' % i, 'address': mutate(nets, 'peer_address', mutation), 'connection': conn,
              'fail_open': fail_open} for i, (nets, conn, fail_open) in enumerate(spec['peers'])]
    doc = peers.plan(doc, items, bulk=True)[0]
    for i, (nets, ifn, conn) in enumerate(spec['services']):
        doc = services.plan(doc, {'service': 'svc-%d' % i, 'connection': conn, 'manifest': {'has_egress': True},
                                  'address': mutate(nets, 'service_address', mutation),
                                  'interface': mutate(ifn, 'service_interface', mutation)})[0]
    return doc


def canonical(text):
    return str(ipaddress.ip_network(text, strict=False))


def first_of_family(servers):
    out = set()
    for version in (4, 6):
        same = [canonical(s).split('/', maxsplit=1)[0] for s in servers if ipaddress.ip_address(s).version == version]
        out.update(same[:1])
    return out


def intended(spec, doc):
    """The elements the table must hold, from the spec (the chain of each connection by its id)."""
    conn_ids = dict((name, slugify(name)) for name, _dns, _t in spec['conns'])
    fail_open = dict((cid, c['fail_open']) for cid, c in doc['connections'].items())
    maps = {}
    users = list(spec['peers']) + [(nets, conn, None) for nets, _i, conn in spec['services']]
    for nets, conn, peer_fail_open in users:
        if conn == 'default':
            continue
        cid = conn_ids[conn]
        closed = not (peer_fail_open if peer_fail_open is not None else fail_open[cid])
        for net in nets:
            maps[canonical(net)] = 'c_%s_%s' % (cid.replace('-', '_'), 'closed' if closed else 'open')
    dnat = set()
    for _name, dns, ctype in spec['conns']:
        dnat |= first_of_family(dns) if ctype == 'wireguard_ext' else set()
    for _cell, _ifn, _offer, remote, dns in spec['links']:
        if remote:
            dnat |= first_of_family(dns)
    return {
        'ingress': set([spec['peer_interface']] + [ifn for _n, ifn, _c in spec['services']]),
        'local': set(canonical(n) for n in PEER_NETWORKS + spec['local_networks']),
        'peer': maps,
        'dnat': dnat,
        'link_ifnames': set(ifn for _c, ifn, _o, _r, _d in spec['links']),
        'proxy_ports': sorted(c[key] for c in doc['connections'].values() if c['type'] in model.PROXY_TYPES
                              for key in ('local_port', 'dns_port') if c.get(key)),
    }


# -- the real nft, in a network namespace of its own ------------------------------------------------------
@pytest.fixture(scope='module')
def netns():
    for program in ('ip', 'nft'):
        if shutil.which(program) is None:
            pytest.fail('%s is missing: install nftables and iproute2 to prove the rendered table with the real nft'
                        % program)
    if os.geteuid() != 0:
        pytest.fail('root is needed to make a network namespace for nft')
    name = 'picp-nft%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    yield name
    subprocess.run(['ip', 'netns', 'del', name], check=False)


def nft(namespace, *args):
    return subprocess.run(['ip', 'netns', 'exec', namespace, 'nft'] + list(args), capture_output=True, text=True,
                          check=False, timeout=60)


def element_text(elem):
    if isinstance(elem, dict) and 'elem' in elem:
        elem = elem['elem']['val']
    if isinstance(elem, dict):
        assert set(elem) == {'prefix'}, elem     # one prefix, never a range or a concatenation
        return canonical('%s/%d' % (elem['prefix']['addr'], elem['prefix']['len']))
    return canonical(elem) if isinstance(elem, str) and re.fullmatch(r'[0-9a-f:.]+', elem) else elem


def read_table(namespace):
    """Sets, maps and the addresses and interface names of the rules, as nft -j lists them."""
    proc = nft(namespace, '-j', 'list', 'table', model.NFT_FAMILY, model.NFT_TABLE)
    assert proc.returncode == 0, proc.stderr
    out = {'sets': {}, 'maps': {}, 'dnat': set(), 'ifnames': set()}
    for obj in json.loads(proc.stdout)['nftables']:
        if 'set' in obj:
            out['sets'][obj['set']['name']] = [element_text(e) for e in obj['set'].get('elem', [])]
        elif 'map' in obj:
            out['maps'][obj['map']['name']] = [(element_text(k), v['jump']['target']) for k, v in obj['map'].get('elem', [])]
        elif 'rule' in obj:
            for expr in obj['rule']['expr']:
                if 'dnat' in expr:
                    out['dnat'].add(expr['dnat']['addr'])
                match = expr.get('match', {})
                if match.get('left', {}).get('meta', {}).get('key') in ('iifname', 'oifname'):
                    if isinstance(match['right'], str) and not match['right'].startswith('@'):
                        out['ifnames'].add(match['right'])
    return out


def check_refusal(exc, mutation):
    assert mutation, ('a registry built of valid values was refused', str(exc))
    word = {'peer_address': 'address', 'service_address': 'address', 'service_interface': 'interface',
            'link_interface': 'interface', 'link_cell': 'cell'}.get(mutation[0], mutation[0])
    assert word in exc.field, (mutation, str(exc))


def assert_reads_back(table, want, doc):
    sets, maps = table['sets'], table['maps']
    assert sorted(sets['ingress']) == sorted(want['ingress'])
    assert sorted(sets['local4'] + sets['local6']) == sorted(want['local'])
    assert sorted(maps['peer4'] + maps['peer6'] + maps['net4'] + maps['net6']) == sorted(want['peer'].items())
    assert table['dnat'] == want['dnat']
    assert sorted(sets['proxy_ports']) == want['proxy_ports']
    conn_ifnames = set(c['interface'] for c in doc['connections'].values() if c.get('interface'))
    assert want['link_ifnames'] <= table['ifnames'] <= want['link_ifnames'] | conn_ifnames | {'lo'}


def rendered_elements(text):
    """Each element of each set and map of the rendered script, as the text gives it."""
    out = []
    for line in re.findall(r'^\t\telements = \{ (.*) \}$', text, re.M):
        out.extend(item.split(' : ')[0] for item in line.split(', '))
    return out


def assert_one_canonical_token(element):
    """A quoted interface name of the grammar, a number, or an address/network in canonical form."""
    if element.startswith('"'):
        assert re.fullmatch(r'"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"', element), element
    elif re.fullmatch(r'(?:0x)?[0-9a-f]+', element):
        return
    else:
        assert canonical(element) in (element, element + ('/32' if '.' in element else '/128')), element


@REAL
@given(spec=specs(), mutation=MUTATION)
def test_rendered_table_is_refused_or_read_back_by_nft(netns, tmp_path_factory, spec, mutation):
    try:
        doc = build(spec, mutation)
    except PicError as exc:
        event('refused')
        check_refusal(exc, mutation)
        return
    event('read back by nft')
    path = tmp_path_factory.mktemp('nft') / 'table.nft'
    text = model.desired(doc, {'peer_networks': PEER_NETWORKS}).render_nft()
    elements = rendered_elements(text)
    assert '"%s"' % spec['peer_interface'] in elements
    for element in elements:
        assert_one_canonical_token(element)
    path.write_text(text)
    proc = nft(netns, '-c', '-f', str(path))
    assert proc.returncode == 0, proc.stderr
    proc = nft(netns, '-f', str(path))
    assert proc.returncode == 0, proc.stderr
    assert_reads_back(read_table(netns), intended(spec, doc), doc)


@pytest.mark.parametrize('slot', SLOTS)
@pytest.mark.parametrize('hostile', ['"', '\n', '}\ntable ip x {', '%eth0', '\u2028'])
def test_hostile_strings_are_refused_before_anything_is_rendered(slot, hostile):
    spec = {'peer_interface': 'wg0', 'local_networks': ['192.168.1.0/24'], 'conns': [('Exit', ['192.0.2.53'], 'wireguard_ext')],
            'peers': [(['10.0.0.2'], 'Exit', None)], 'services': [(['10.1.0.1'], 'svc0', 'Exit')],
            'links': [('cell-b', 'cl-b', True, True, ['10.9.0.53'])]}
    with pytest.raises(PicError) as err:
        build(spec, (slot, hostile, False))
    check_refusal(err.value, (slot, hostile, False))
