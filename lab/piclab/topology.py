"""The lab's topology: namespaces, veth pairs and bridges, addresses and
routes (as `ip -batch` lines), the nft tables of the internet router and NATs."""

import os

from .addresses import (ACCESS_PREFIX4, ACCESS_V4, CELL_TUN_V4, CELL_TUN_V6, EXIT_TUN_V4,
                        EXIT_TUN_V6, INET_PREFIX4, INET_PREFIX6, INET_V4, INET_V6, PEER_INDEX,
                        PEERS, PKG_DIR, SERVER_NET4, SERVER_NET6, SERVER_ROUTER4, SERVER_ROUTER6,
                        SERVER_V4, SERVER_V6, WAN_IF, WG_IF, LIGHT_PEER_IF, cell_names,
                        light_peer_node, mac, netns_path, node_dir, ns, peer_address,
                        peer_underlay, wan_address, wan_host)
from .commands import ipbatch, links, nft_replace, sh

NFT_DIR = os.path.join(PKG_DIR, "nft")


def nft_text(name):
    """The nft table NAME (nft/NAME.nft) with the lab's addresses filled in."""
    with open(os.path.join(NFT_DIR, name + ".nft")) as f:
        return f.read() % {"server_net4": SERVER_NET4, "server_net6": SERVER_NET6,
                           "wan_if": WAN_IF}


# --------------------------------------------------------------------------
# Namespaces and links
# --------------------------------------------------------------------------
def set_sysctls(node, router):
    kv = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
          "net.ipv6.conf.default.accept_ra=0", "net.ipv6.conf.all.accept_ra=0"]
    if router:
        kv += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
               "net.ipv6.conf.default.forwarding=1"]
    # direct `ip netns exec` (no /run/wireguard involved), one process per node
    sh(["ip", "netns", "exec", ns(node), "sysctl", "-q", "-w"] + kv)


def ensure_ns(node, router):
    """Create NODE's namespace unless present; set its sysctls.  True if created."""
    created = not os.path.exists(netns_path(node))
    if created:
        sh(["ip", "netns", "add", ns(node)])
    os.makedirs(os.path.join(node_dir(node), "wireguard"), exist_ok=True)
    set_sysctls(node, router)
    return created


def ensure_veth(node, name, far_node, far_name, have=None, mac=None):   # pylint: disable=redefined-outer-name
    """Make sure veth NAME in NODE is paired with FAR_NAME in FAR_NODE.  A half left
    over from a deleted namespace (kept alive by a process) is removed first."""
    have = links(node) if have is None else have
    far = far_name in links(far_node)
    if name in have and far:
        return
    if name in have:
        ipbatch(node, ["link del %s" % name], check=False)
    if far:
        ipbatch(far_node, ["link del %s" % far_name], check=False)
    # fixed MACs on the addressed ends: a re-created node keeps its neighbours' ARP valid
    ipbatch(node, ["link add %s%s type veth peer name %s netns %s" % (
        name, " address %s" % mac if mac else "", far_name, ns(far_node))])


def _create_inet_links():
    have = links("inet")
    if "br0" not in have:
        # fixed MAC: a bridge otherwise takes its lowest port MAC, which changes when
        # a port is re-created and leaves stale ARP entries in the neighbours
        ipbatch("inet", ["link add br0 address 02:00:cb:00:71:01 type bridge "
                         "stp_state 0 mcast_snooping 0"])
    if "srv0" not in have or "srv1" not in have:
        # the server networks live on srv0, one end of a veth pair kept inside inet
        # (a dummy would do, but loading the dummy module adds dummy0 to the root
        # namespace on some kernels, and this one has no dummy at all)
        ipbatch("inet", ["link del srv0"], check=False)
        ipbatch("inet", ["link add srv0 type veth peer name srv1"])


def _create_cell_links(k):
    c = "cell%d" % k
    have = links(c)
    ensure_veth(c, WAN_IF, "inet", c, have, mac=mac(0xcb, wan_host(k)))
    if "acc0" not in have:
        ipbatch(c, ["link add acc0 address 02:00:ac:1e:00:01 type bridge "
                    "stp_state 0 mcast_snooping 0"])
    for p in PEERS:
        ensure_veth("%s-%s" % (c, p), "eth0", c, p, mac=mac(0xac, PEER_INDEX[p]))


def _create_light_cell_links(k):
    """A light cell: its WAN, and wg0 as one end of a veth pair whose other end
    (eth0) holds the cell's peers in node cellK-peers (no WireGuard, no daemon)."""
    c = "cell%d" % k
    have = links(c)
    ensure_veth(c, WAN_IF, "inet", c, have, mac=mac(0xcb, wan_host(k)))
    ensure_veth(c, WG_IF, light_peer_node(k), LIGHT_PEER_IF, have, mac=mac(0x0a, 1))


def create_links(ncells, light=False):
    """Every bridge and veth pair of the lab (created straight into both namespaces)."""
    _create_inet_links()
    for k in range(1, ncells + 1):
        if light:
            _create_light_cell_links(k)
        else:
            _create_cell_links(k)
    ensure_veth("wgexit", WAN_IF, "inet", "wgexit", mac=mac(0xcb, 20))


# --------------------------------------------------------------------------
# Addresses and routes (`ip -batch` lines)
# --------------------------------------------------------------------------
def inet_lines(ncells):
    lines = ["link set lo up", "link set br0 up", "link set srv1 up", "link set srv0 up",
             "addr replace %s/%d dev br0" % (INET_V4, INET_PREFIX4),
             "addr replace %s/%d dev br0 nodad" % (INET_V6, INET_PREFIX6),
             "addr replace %s/24 dev srv0" % SERVER_ROUTER4,
             "addr replace %s/32 dev srv0" % SERVER_V4,
             "addr replace %s/64 dev srv0 nodad" % SERVER_ROUTER6,
             "addr replace %s/128 dev srv0 nodad" % SERVER_V6,
             "link set wgexit master br0 up"]
    lines += ["link set %s master br0 up" % c for c in cell_names(ncells)]
    return lines


def wan_lines(a4, a6):
    return ["link set lo up", "link set %s up" % WAN_IF,
            "addr replace %s/%d dev %s" % (a4, INET_PREFIX4, WAN_IF),
            "addr replace %s/%d dev %s nodad" % (a6, INET_PREFIX6, WAN_IF),
            "route replace 0.0.0.0/0 via %s dev %s" % (INET_V4, WAN_IF),
            "route replace ::/0 via %s dev %s" % (INET_V6, WAN_IF)]


def wg_lines(addrs):
    out = []
    for a, plen in addrs:
        out.append("addr replace %s/%d dev %s%s" % (a, plen, WG_IF, " nodad" if ":" in a else ""))
    out.append("link set %s up" % WG_IF)
    return out


def cell_lines(k):
    lines = wan_lines(wan_address(k, 4), wan_address(k, 6))
    lines += ["link set acc0 up", "addr replace %s/%d dev acc0" % (ACCESS_V4, ACCESS_PREFIX4)]
    lines += ["link set %s master acc0 up" % p for p in PEERS]
    lines += wg_lines([(CELL_TUN_V4, 24), (CELL_TUN_V6, 64)])
    return lines


def light_cell_lines(k):
    """A light cell: WAN, and wg0 (a veth) with the cell's tunnel addresses."""
    return wan_lines(wan_address(k, 4), wan_address(k, 6)) + \
        wg_lines([(CELL_TUN_V4, 24), (CELL_TUN_V6, 64)])


def light_peers_lines():
    """The peers of a light cell, all on eth0 (the far end of the cell's wg0), routed
    through the cell: a request bound to a peer's address enters the cell on wg0
    from that address, as it would out of the peer's WireGuard tunnel."""
    lines = ["link set lo up", "link set %s up" % LIGHT_PEER_IF]
    for p in PEERS:
        lines += ["addr replace %s/24 dev %s" % (peer_address(p, 4), LIGHT_PEER_IF),
                  "addr replace %s/64 dev %s nodad" % (peer_address(p, 6), LIGHT_PEER_IF)]
    return lines + ["route replace 0.0.0.0/0 via %s dev %s" % (CELL_TUN_V4, LIGHT_PEER_IF),
                    "route replace ::/0 via %s dev %s" % (CELL_TUN_V6, LIGHT_PEER_IF)]


def peer_lines(peer):
    return ["link set lo up", "link set eth0 up",
            "addr replace %s/%d dev eth0" % (peer_underlay(peer), ACCESS_PREFIX4)] + \
        wg_lines([(peer_address(peer, 4), 32), (peer_address(peer, 6), 128)]) + \
        ["route replace 0.0.0.0/0 dev %s" % WG_IF, "route replace ::/0 dev %s" % WG_IF]


def exit_wg_lines():
    # /16: the IPv4-only clients live in 10.200.1.0/24
    return wg_lines([(EXIT_TUN_V4, 16), (EXIT_TUN_V6, 64)])


# --------------------------------------------------------------------------
# nftables
# --------------------------------------------------------------------------
def public_nat(node):
    """Masquerade what NODE forwards out of its public interface (an exit server)."""
    nft_replace(node, "inet lab_nat", nft_text("lab_nat"))


def reset_labcount():
    """(Re)create the internet router's packet counters (zeroes them)."""
    nft_replace("inet", "inet labcount", nft_text("labcount"))
