"""The lab's own WireGuard interfaces (wg0 of wgexit, the cells and the peers):
one wireguard-go per node, configured with `wg syncconf`."""

import os
import time

from .addresses import WG_IF, daemon_log, node_dir, split_peer
from .commands import LabError, ipbatch, links, run, tail, write_file
from .keys import public_key, wg_conf
from .processes import daemon_pid, start_daemon, stop


def _socket_path(node):
    return os.path.join(node_dir(node), "wireguard", WG_IF + ".sock")


def start_wg(node):
    """Start wireguard-go for NODE's wg0 unless healthy.  Returns True if (re)started."""
    if daemon_pid(node, "wireguard-go") and WG_IF in links(node):
        return False
    stop(node, "wireguard-go")
    if WG_IF in links(node):            # a leftover interface nobody serves
        ipbatch(node, ["link del %s" % WG_IF], check=False)
    try:
        os.unlink(_socket_path(node))
    except OSError:
        pass
    start_daemon(node, "wireguard-go", ["wireguard-go", "-f", WG_IF])
    return True


def wait_wg_sockets(nodes_, timeout=10):
    """Wait until wireguard-go in each of NODES_ has its UAPI socket."""
    end = time.monotonic() + timeout
    pending = list(nodes_)
    while pending and time.monotonic() < end:
        pending = [n for n in pending if not os.path.exists(_socket_path(n))]
        if pending:
            time.sleep(0.02)
    if pending:
        logs = "; ".join("%s: %s" % (n, tail(daemon_log(n, "wireguard-go"))) for n in pending)
        raise LabError("wireguard-go did not come up in %s (%s)" % (", ".join(pending), logs))


def wg_sync(node, ncells):
    """Bring NODE's wg0 keys/peers to the lab's config (only what differs)."""
    path = os.path.join(node_dir(node), "wg0.conf")
    write_file(path, wg_conf(node, ncells), 0o600)
    run(node, "wg", "syncconf", WG_IF, path)


def handshakes(node):
    """{public key: unix time of last handshake (0 = never)} of NODE's wg0."""
    cp = run(node, "wg", "show", WG_IF, "latest-handshakes", check=False)
    out = {}
    for line in cp.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def wait_handshake(peer, cell="cell1", timeout=15):
    """Wait until PEER has a handshake with its cell.  Returns True/False."""
    c, p = split_peer(peer, cell)
    pub = public_key("%s-%s" % (c, p))
    end = time.monotonic() + timeout
    while True:
        if handshakes(c).get(pub, 0) > 0:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.1)


def endpoints(node):
    """{public key: endpoint} of the peers of NODE's wg0 that have one."""
    cp = run(node, "wg", "show", WG_IF, "endpoints", check=False)
    eps = {}
    for line in cp.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] != "(none)":
            eps[parts[0]] = parts[1]
    return eps
