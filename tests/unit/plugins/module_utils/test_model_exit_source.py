# -*- coding: utf-8 -*-
"""The exits' source addresses stay in their exits (model.add_exit_source_guard).

The cell answers by itself what arrives by an exit for the exit's own address
when conntrack no longer knows the flow (the exit's interface went away, which
flushed its masquerade's connections, and came back while the far end still
answers a user's flow): a TCP reset or an ICMP error, unmarked, so routed by the
main table to the WAN, with the flow's ports, to the user's destination. That is
the one packet the lab counted on cell1's WAN for the relay's fail-closed service.
The ``input`` chain learns the exits' addresses, the ``output`` chain drops what
leaves with one of them by another interface. Proven here with the real kernel
in two network namespaces: the reset leaves by the WAN without the guard, and is
dropped with it."""
import json
import os
import subprocess

from ansible_collections.pic.connectivity.plugins.module_utils import connections, links, model, nft, peers
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.tests.unit.helpers import _unshare_net, in_netns, keys_wg_text

FACTS = {'peer_networks': ['10.0.0.0/24', 'fd00:10::/64'], 'interfaces': ['pic-exit-wg'], 'down': []}
LEARN = 'iifname @exit_ifs fib daddr . iif type local update @exit_src%d { %s daddr }'
GUARD = '%s saddr @exit_src%d fib saddr . oif type != local counter drop'


def cell(keys, interface_exits=True):
    """A Tor exit (and, with ``interface_exits``, a wireguard_ext exit and a relay), a fail-closed peer on each."""
    doc = connections.plan(empty(), {'name': 'Tor', 'type': 'tor', 'config': {}})[0]
    items = [{'peer': 'a', 'address': ['10.0.0.2'], 'connection': 'tor'}]
    if interface_exits:
        doc = connections.plan(doc, {'name': 'Exit WG', 'type': 'wireguard_ext',
                                     'config': {'wg_config': keys_wg_text(keys)}})[0]
        doc = links.plan(doc, [{'cell': 'cell-b', 'interface': 'cl-b', 'remote_offers_exit': True}])[0]
        items += [{'peer': 'c', 'address': ['10.0.0.4', 'fd00:10::4'], 'connection': 'exit-wg', 'fail_open': False},
                  {'peer': 'd', 'address': ['10.0.0.5'], 'connection': 'cell-b'}]
    return peers.plan(doc, items)[0]


def texts(want, chain):
    return [text for text, _comment in want.chains.get(chain, {'rules': []})['rules']]


def test_every_interface_exit_keeps_its_source_addresses(keys):
    want = model.desired(cell(keys), FACTS)
    assert want.sets['exit_ifs'] == {'type': 'ifname', 'flags': [], 'elements': {'pic-exit-wg', 'cl-b'}}
    for family in (4, 6):
        assert want.sets['exit_src%d' % family] == {'type': 'ipv%d_addr' % family, 'flags': ['dynamic'],
                                                    'elements': set()}
    assert want.chains['output']['base'] == {'type': 'filter', 'hook': 'output', 'priority': 'filter'}
    assert texts(want, 'output') == [GUARD % ('ip', 4), GUARD % ('ip6', 6)]
    assert [LEARN % (4, 'ip'), LEARN % (6, 'ip6')] == [t for t in texts(want, 'input') if '@exit_ifs' in t]
    # the learning comes before the input guard of the proxy ports (whose drop would end the chain)
    assert texts(want, 'input')[-3:][0] == 'iifname "lo" accept'
    # held down, or its interface missing: the guard stays
    down = model.desired(cell(keys), dict(FACTS, interfaces=[], down=['exit-wg', 'cell-b']))
    assert texts(down, 'output') == texts(want, 'output') and down.sets['exit_ifs'] == want.sets['exit_ifs']


def test_a_cell_without_interface_exits_has_no_output_chain(keys):
    for doc in (cell(keys, interface_exits=False), empty()):
        want = model.desired(doc, FACTS)
        assert 'output' not in want.chains and 'exit_ifs' not in want.sets
        assert not [t for t in texts(want, 'input') if '@exit_ifs' in t]


def _learned_and_listed(want):
    table = nft.Nft()
    table.replace(want.render_nft())
    table.cmd('add element inet pic_connectivity exit_src4 { 10.200.0.11 }\n'
              'add element inet pic_connectivity exit_src6 { fd00:200::11 }')
    return table.list_table()


def test_what_the_kernel_learned_is_not_a_difference_from_the_model(keys, libnftables):
    want = model.desired(cell(keys), FACTS)
    listed = in_netns(_learned_and_listed, want)
    elems = dict((o['set']['name'], o['set'].get('elem')) for o in listed if 'set' in o)
    assert elems['exit_src4'] == ['10.200.0.11'] and elems['exit_src6'] == ['fd00:200::11']
    assert nft.summary(listed) == want.nft_summary()          # no converge, no "changed" for it
    assert nft.LEARNED_SETS == ('exit_src4', 'exit_src6')


# -- the kernel: a reset for the exit's address, with and without the guard -----------
EXIT_IF, WAN_IF = 'pic-exit-wg', 'wan0'
EXIT_ADDR, FAR_ADDR, REMOTE = '10.9.0.1', '10.9.0.2', '198.51.100.5'
_COUNT = """table inet count {
    chain post {
        type filter hook postrouting priority 400; policy accept;
        oifname "%s" tcp flags rst counter
    }
}
""" % WAN_IF


def _sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def _far_end(ready, go):
    """Namespace B, behind the exit: connect from a remote address to the exit's address (no listener)."""
    import socket
    try:
        _unshare_net()
        os.write(ready, b'x')
        os.read(go, 1)
        for cmd in (['link', 'set', 'far0', 'up'], ['addr', 'add', FAR_ADDR + '/24', 'dev', 'far0'],
                    ['addr', 'add', REMOTE + '/32', 'dev', 'lo'], ['route', 'add', 'default', 'dev', 'far0']):
            _sh('ip', *cmd)
        for _attempt in range(3):
            sock = socket.socket()
            sock.bind((REMOTE, 0))
            sock.settimeout(0.5)
            try:
                sock.connect((EXIT_ADDR, 80))
            except OSError:
                pass
            sock.close()
    finally:
        os._exit(0)


def _counter(chain):
    out = subprocess.run(['nft', '-j', 'list', 'chain'] + chain, check=True, capture_output=True, text=True).stdout
    return sum(e['counter']['packets'] for o in json.loads(out)['nftables'] if 'rule' in o
               for e in o['rule']['expr'] if 'counter' in e)


def _resets(script):
    """Namespace A, the cell: (resets out of the WAN interface, packets the output chain dropped)."""
    _sh('ip', 'link', 'add', EXIT_IF, 'type', 'veth', 'peer', 'name', 'far0')
    _sh('ip', 'link', 'add', WAN_IF, 'type', 'veth', 'peer', 'name', 'wanp')
    for cmd in (['link', 'set', EXIT_IF, 'up'], ['link', 'set', WAN_IF, 'up'], ['link', 'set', 'wanp', 'up'],
                ['addr', 'add', EXIT_ADDR + '/24', 'dev', EXIT_IF], ['addr', 'add', '203.0.113.10/24', 'dev', WAN_IF],
                ['route', 'add', 'default', 'via', '203.0.113.1', 'dev', WAN_IF]):
        _sh('ip', *cmd)
    nft.Nft(use_binding=False).cmd(script + _COUNT)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _far_end(ready_w, go_r)
    os.read(ready_r, 1)
    _sh('ip', 'link', 'set', 'far0', 'netns', str(pid))
    os.write(go_w, b'x')
    os.waitpid(pid, 0)
    dropped = _counter(['inet', 'pic_connectivity', 'output']) if 'chain output' in script else 0
    return _counter(['inet', 'count', 'post']), dropped


def test_the_reset_for_an_exit_address_never_leaves_by_the_wan(keys):
    want = model.desired(cell(keys), FACTS)
    wan, dropped = in_netns(_resets, want.render_nft())
    assert wan == 0 and dropped >= 1, (wan, dropped)
    # without the guard's rules the same resets leave by the WAN (the leak the lab saw)
    want.chains['output']['rules'] = []
    wan, dropped = in_netns(_resets, want.render_nft())
    assert wan >= 1 and dropped == 0, (wan, dropped)
