"""Cell-to-cell links: site-to-site WireGuard tunnels between lab cells (what
the PIC cell software's Cell Network page manages).  cell1 is linked to cell2
and to cell3 (when the lab has them).  On cellA the link to cellB is the
interface ``cl-cellB``; cellA may send anything through it (AllowedIPs
0.0.0.0/0, ::/0), cellB accepts only cellA's link address (cellA masquerades
what it relays)."""

import json
import os
import time

import piclab

LINK_PORT_BASE = 51900


def links(ncells):
    """[(index, a, b)] of the lab's links: 1-2 and 1-3."""
    return [(k - 1, 1, k) for k in range(2, min(ncells, 3) + 1)]


def ifname(remote):
    return "cl-cell%d" % remote


def address(index, side, family=4):
    """Link address of side 1 (a) or 2 (b)."""
    return "10.254.%d.%d" % (index, side) if family == 4 else "fd00:254:%d::%d" % (index, side)


def _conf(priv, peer_pub, port, endpoint, allowed):
    return "\n".join(["[Interface]", "PrivateKey = %s" % priv, "ListenPort = %d" % port, "",
                      "[Peer]", "PublicKey = %s" % peer_pub, "Endpoint = %s" % endpoint,
                      "AllowedIPs = %s" % allowed, "PersistentKeepalive = 5", ""])


def _ensure(node, ifc, conf_text, addrs):
    daemon = "wg-" + ifc
    if ifc not in piclab.links(node):
        piclab.stop(node, daemon)
        sock = os.path.join(piclab.node_dir(node), "wireguard", ifc + ".sock")
        if os.path.exists(sock):
            os.unlink(sock)
        piclab.spawn(node, daemon, ["wireguard-go", "-f", ifc])
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) or ifc not in piclab.links(node):
            if time.monotonic() > deadline:
                raise piclab.LabError("link %s in %s did not come up" % (ifc, node))
            time.sleep(0.02)
    path = os.path.join(piclab.node_dir(node), ifc + ".conf")
    piclab.write_file(path, conf_text, 0o600)
    piclab.run(node, "wg", "syncconf", ifc, path)
    lines = ["addr replace %s dev %s%s" % (a, ifc, " nodad" if ":" in a else "") for a in addrs]
    piclab.ipbatch(node, lines + ["link set %s up" % ifc])


def up(ncells):
    described = {}
    for index, a, b in links(ncells):
        node_a, node_b = "cell%d" % a, "cell%d" % b
        priv_a, pub_a = piclab.key("link%d-a" % index)
        priv_b, pub_b = piclab.key("link%d-b" % index)
        port_a, port_b = LINK_PORT_BASE + b, LINK_PORT_BASE + a
        _ensure(node_a, ifname(b), _conf(priv_a, pub_b, port_a, "%s:%d" % (piclab.wan_address(node_b, 4), port_b),
                                         "0.0.0.0/0, ::/0"),
                ["%s/30" % address(index, 1), "%s/64" % address(index, 1, 6)])
        _ensure(node_b, ifname(a), _conf(priv_b, pub_a, port_b, "%s:%d" % (piclab.wan_address(node_a, 4), port_a),
                                         "%s/32, %s/128" % (address(index, 1), address(index, 1, 6))),
                ["%s/30" % address(index, 2), "%s/64" % address(index, 2, 6)])
        described.setdefault(node_a, []).append({"cell": node_b, "interface": ifname(b)})
        described.setdefault(node_b, []).append({"cell": node_a, "interface": ifname(a)})
    piclab.write_file(os.path.join(piclab.run_dir(), "links.json"), json.dumps(described, indent=1) + "\n")


def link_down(a, b):
    """Cut the link between cellA and cellB (cellA's side: its interface goes away)."""
    piclab.stop("cell%d" % a, "wg-" + ifname(b))
    deadline = time.monotonic() + 5
    while ifname(b) in piclab.links("cell%d" % a) and time.monotonic() < deadline:
        time.sleep(0.02)
