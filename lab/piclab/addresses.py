"""Addresses, names and paths of the lab (documentation ranges only).

Nothing here touches the system: every function computes a name, an address or
a path under the run dir from the environment (PICLAB_PREFIX, PICLAB_RUN).
"""

import json
import os

PKG_DIR = os.path.dirname(os.path.abspath(__file__))
LAB_DIR = os.path.dirname(PKG_DIR)
NSEXEC = os.path.join(LAB_DIR, "nsexec")
PYTHON = "/usr/bin/python3"

INET_V4 = "203.0.113.1"            # the internet router, on br0
INET_V6 = "2001:db8:1::1"
INET_PREFIX4 = 24
INET_PREFIX6 = 64
SERVER_NET4 = "198.51.100.0/24"    # the "internet" behind the router (srv0)
SERVER_NET6 = "2001:db8:ff::/64"
SERVER_ROUTER4 = "198.51.100.1"
SERVER_ROUTER6 = "2001:db8:ff::1"
SERVER_V4 = "198.51.100.80"        # HTTP echo server, port 80
SERVER_V6 = "2001:db8:ff::80"
SERVER_PORT = 80

EXIT_V4 = "203.0.113.20"           # wgexit public address (on br0)
EXIT_V6 = "2001:db8:1::20"
EXIT_TUN_V4 = "10.200.0.1"         # wgexit tunnel address (/24, /64)
EXIT_TUN_V6 = "fd00:200::1"
WG_PORT = 51820

CELL_TUN_V4 = "10.0.0.1"           # every cell's wg0 (/24, /64)
CELL_TUN_V6 = "fd00:10::1"
ACCESS_V4 = "172.30.0.1"           # every cell's acc0 (/24): the peers' underlay
ACCESS_PREFIX4 = 24

PEERS = ("p1", "p2", "p3")
PEER_INDEX = {"p1": 11, "p2": 12, "p3": 13}   # 10.0.0.1X, fd00:10::1X, 172.30.0.1X
MAX_CELLS = 200

WAN_IF = "wan0"
WG_IF = "wg0"
KEEPALIVE = 5
# light cells (up --light): the far end of the cell's wg0 veth, in node "cellK-peers"
LIGHT_PEERS = "peers"
LIGHT_PEER_IF = "eth0"


# --------------------------------------------------------------------------
# Names and paths
# --------------------------------------------------------------------------
def prefix():
    return os.environ.get("PICLAB_PREFIX", "picl")


def run_dir():
    return os.path.abspath(os.environ.get("PICLAB_RUN", "/run/piclab"))


def ns(node):
    """Namespace name of a lab node ("inet", "wgexit", "cell1", "cell1-p1")."""
    return "%s-%s" % (prefix(), node)


def run_path(*parts):
    """A path under the run dir."""
    return os.path.join(run_dir(), *parts)


def node_dir(node):
    return run_path("nodes", node)


def netns_path(node):
    return "/run/netns/%s" % ns(node)


def cell_index(cell):
    """1.. from "cellK" or K."""
    if isinstance(cell, int):
        k = cell
    else:
        if not str(cell).startswith("cell"):
            raise ValueError("not a cell name: %r" % (cell,))
        k = int(str(cell)[4:])
    if not 1 <= k <= MAX_CELLS:
        raise ValueError("cell index out of range: %r" % (cell,))
    return k


def cell_name(cell):
    return "cell%d" % cell_index(cell)


def cell_names(ncells):
    return ["cell%d" % k for k in range(1, ncells + 1)]


def peer_nodes(ncells, light_cells=False):
    """Every peer node of a lab of NCELLS cells ("cell1-p1", ...; "cell1-peers", ...
    for light cells: one node holding every peer of its cell)."""
    if light_cells:
        return ["%s-%s" % (c, LIGHT_PEERS) for c in cell_names(ncells)]
    return ["%s-%s" % (c, p) for c in cell_names(ncells) for p in PEERS]


def wan_host(k):
    """Host number of cell K on the internet bridge."""
    # cells 1..10 -> .10 .. .19; .20 is wgexit, so cells 11.. -> .21 ..
    return 9 + k if k <= 10 else 10 + k


def family_number(family):
    """4 or 6 from 4, "6", "-4", "ipv6"..."""
    f = str(family).lstrip("-").lower().replace("ipv", "")
    if f not in ("4", "6"):
        raise ValueError("family must be 4 or 6, not %r" % (family,))
    return int(f)


def mac(net, host):
    """A fixed locally administered MAC for host HOST on network NET."""
    return "02:00:%02x:00:%02x:%02x" % (net, host >> 8, host & 0xff)


# --------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------
def wan_address(cell="cell1", family=4):
    """The cell's WAN address (what the echo server sees for default-routed peers)."""
    h = wan_host(cell_index(cell))
    return "203.0.113.%d" % h if family_number(family) == 4 else "2001:db8:1::%d" % h


def exit_address(family=4):
    """wgexit's public address (what the echo server sees through the exit)."""
    return EXIT_V4 if family_number(family) == 4 else EXIT_V6


def exit_client_address(cell="cell1", family=4, v4only=False):
    """Tunnel address of the cell's client on wgexit (without prefix)."""
    k = cell_index(cell)
    if v4only:
        return "10.200.1.%d" % k
    return "10.200.0.%d" % (10 + k) if family_number(family) == 4 else "fd00:200::%d" % (10 + k)


def split_peer(peer, cell):
    """(cell name, peer) from ("p1", "cell2") or ("cell2-p1", anything)."""
    peer = str(peer)
    if "-" in peer:
        c, peer = peer.split("-", 1)
        cell = c
    if peer not in PEER_INDEX:
        raise ValueError("unknown peer %r (expected one of %s)" % (peer, ", ".join(PEERS)))
    return cell_name(cell), peer


def peer_node(peer, cell="cell1"):
    c, p = split_peer(peer, cell)
    return "%s-%s" % (c, p)


def peer_address(peer, family=4):
    """The peer's tunnel address (same in every cell), without prefix."""
    _c, p = split_peer(peer, "cell1")
    i = PEER_INDEX[p]
    return "10.0.0.%d" % i if family_number(family) == 4 else "fd00:10::%d" % i


def peer_underlay(peer):
    _c, p = split_peer(peer, "cell1")
    return "172.30.0.%d" % PEER_INDEX[p]


def server_address(family=4):
    return SERVER_V4 if family_number(family) == 4 else SERVER_V6


def server_url(family=4):
    """URL of the echo server over FAMILY."""
    return "http://%s/" % SERVER_V4 if family_number(family) == 4 else "http://[%s]/" % SERVER_V6


# --------------------------------------------------------------------------
# Files the lab writes for the collection
# --------------------------------------------------------------------------
def exit_config_path(cell="cell1", v4only=False):
    return run_path("exits", "%s-wgexit%s.conf" % (cell_name(cell), "-v4only" if v4only else ""))


def python_wrapper(cell="cell1"):
    return run_path("bin", "python-%s" % cell_name(cell))


def state_dir(cell="cell1"):
    """pic_state_dir used by the lab inventory for this cell."""
    return os.path.join(node_dir(cell_name(cell)), "state")


def daemon_log(node, daemon):
    return run_path("logs", "%s-%s.log" % (node, daemon))


# --------------------------------------------------------------------------
# The running lab
# --------------------------------------------------------------------------
def lab_info():
    """The running lab's lab.json ({} if none)."""
    try:
        with open(run_path("lab.json")) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def cells():
    """Names of the cells of the running lab ([] if none)."""
    try:
        return cell_names(int(lab_info()["cells"]))
    except (KeyError, TypeError, ValueError):
        return []


def env_light():
    """True if PICLAB_LIGHT asks for light cells."""
    return os.environ.get("PICLAB_LIGHT", "").lower() in ("1", "yes", "true")


def light():
    """True if the running lab has light cells (else what PICLAB_LIGHT asks for)."""
    info = lab_info()
    return bool(info["light"]) if "light" in info else env_light()


def light_peer_node(cell="cell1"):
    """The node holding every peer of a light CELL (the far end of its wg0)."""
    return "%s-%s" % (cell_name(cell), LIGHT_PEERS)


def nodes(ncells=None, light_cells=None):
    if ncells is None:
        ncells = len(cells())
    if light_cells is None:
        light_cells = light()
    out = ["inet", "wgexit"]
    for c in cell_names(ncells):
        out.append(c)
        out.extend(peer_nodes_of(c, light_cells))
    return out


def peer_nodes_of(cell, light_cells=False):
    """The peer nodes of CELL."""
    if light_cells:
        return [light_peer_node(cell)]
    return ["%s-%s" % (cell, p) for p in PEERS]
