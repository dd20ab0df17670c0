"""Traffic probes: what the echo server saw for a request from a node, bursts of
packets that expect no answer, the internet router's packet counters, and the
check that every peer of a fresh lab reaches the internet through its cell."""

import concurrent.futures
import ipaddress
import json
import os
import sys
import time

from .addresses import (PEERS, PKG_DIR, PYTHON, WG_IF, cell_names, cells, daemon_log, exit_address,
                        family_number, light, light_peer_node, peer_address, peer_node,
                        server_address, server_url, split_peer, wan_address)
from .commands import LabError, links, run
from .keys import public_key
from .processes import daemon_pid
from .topology import reset_labcount
from .wireguard import handshakes

PROBE_BURST = os.path.join(PKG_DIR, "probe_burst.py")
# Scripts that tests run in the lab's namespaces (python3 SCRIPT ARGS...).
DNS_QUERY = os.path.join(PKG_DIR, "dns_query.py")
UNCARRIED_BURST = os.path.join(PKG_DIR, "uncarried_burst.py")
STEADY_SENDER = os.path.join(PKG_DIR, "steady_sender.py")
LEAK_SENDER = os.path.join(PKG_DIR, "leak_sender.py")
CELL_RESOLVER = os.path.join(PKG_DIR, "cell_resolver.py")


# --------------------------------------------------------------------------
# Requests and bursts
# --------------------------------------------------------------------------
def fetch(peer, family=4, cell="cell1", timeout=3):
    """HTTP GET the echo server from PEER; the source address it saw, or None.
    A light cell's peer: from its cell's peers node, bound to the peer's address."""
    if light():
        c, p = split_peer(peer, cell)
        return fetch_node(light_peer_node(c), family, timeout, source=peer_address(p, family))
    return fetch_node(peer_node(peer, cell), family, timeout)


def fetch_node(node, family=4, timeout=3, source=None):
    """HTTP GET the echo server from any lab NODE (from address SOURCE if given);
    the source address it saw, or None."""
    url = server_url(family)
    bind = ["--interface", source] if source else []
    try:
        cp = run(node, "curl", "-s", "-g", "--noproxy", "*", "--max-time", str(timeout), *bind, url,
                 check=False, timeout=timeout + 10)
    except LabError:
        return None
    out = cp.stdout.strip()
    if cp.returncode != 0 or not out:
        return None
    return out


def sources(peer, cell="cell1", timeout=3):
    """(IPv4, IPv6): the source addresses the echo server saw from PEER (None: no answer)."""
    return fetch(peer, 4, cell, timeout=timeout), fetch(peer, 6, cell, timeout=timeout)


def via_wan(peer, cell="cell1", timeout=3):
    """True if PEER reaches the server over both families as its cell's WAN address."""
    return sources(peer, cell, timeout) == (wan_address(cell, 4), wan_address(cell, 6))


def via_exit(peer, cell="cell1", timeout=3):
    """True if PEER reaches the server over both families as the WireGuard exit."""
    return sources(peer, cell, timeout) == (exit_address(4), exit_address(6))


def send_probe(peer, family=4, cell="cell1", count=3, target=None):
    """Fire TCP SYN :80, UDP :53 and :443, ICMP echo from PEER toward the server
    (COUNT of each), without waiting for any answer."""
    fam = family_number(family)
    dst = target or server_address(fam)
    run(peer_node(peer, cell), PYTHON, PROBE_BURST, str(fam), dst, str(count), timeout=20)


# --------------------------------------------------------------------------
# Counters in the internet namespace
# --------------------------------------------------------------------------
def counters_reset():
    reset_labcount()


def _count_set_elements(elements, by_source):
    for e in elements or []:
        if isinstance(e, dict) and "elem" in e:
            addr = e["elem"].get("val")
            cnt = (e["elem"].get("counter") or {}).get("packets", 0)
        else:
            addr, cnt = e, 0
        if isinstance(addr, str):
            addr = str(ipaddress.ip_address(addr))
            by_source[addr] = by_source.get(addr, 0) + cnt


def counters():
    """{"v4": packets, "v6": packets, "by_source": {address: packets}} of every packet
    that entered the internet namespace toward the server networks."""
    cp = run("inet", "nft", "-j", "list", "table", "inet", "labcount")
    data = json.loads(cp.stdout)
    out = {"v4": 0, "v6": 0, "by_source": {}}
    totals = {"to_server4": "v4", "to_server6": "v6"}
    for item in data.get("nftables", []):
        if "counter" in item:
            c = item["counter"]
            if c.get("name") in totals:
                out[totals[c["name"]]] = c.get("packets", 0)
        elif "set" in item:
            _count_set_elements(item["set"].get("elem", []), out["by_source"])
    return out


# --------------------------------------------------------------------------
# Verification of a fresh lab
# --------------------------------------------------------------------------
def _missing_handshakes(cell, end):
    """Peers of CELL without a handshake by END (monotonic)."""
    want = {public_key("%s-%s" % (cell, p)): p for p in PEERS}
    while True:
        hs = handshakes(cell)
        missing = [p for pub, p in want.items() if hs.get(pub, 0) == 0]
        if not missing or time.monotonic() > end:
            return missing
        time.sleep(0.1)


def _check_fetch(cell, peer, fam, end, t0):
    """None if PEER of CELL is seen as its cell's WAN address over FAM by END, else why not."""
    want = wan_address(cell, fam)
    while True:
        got = fetch(peer, fam, cell, timeout=2)
        if got == want or time.monotonic() > end:
            break
        time.sleep(0.2)
    if os.environ.get("PICLAB_DEBUG"):
        print("piclab: verify %s-%s IPv%d: %r after %.2fs" % (
            cell, peer, fam, got, time.monotonic() - t0), file=sys.stderr)
    if got != want:
        return "%s-%s: fetch over IPv%d returned %r, expected %s" % (cell, peer, fam, got, want)
    return None


def verify_lab(ncells=None, timeout=20):
    """Check every peer's handshake and v4/v6 fetch (seen as the cell's WAN address).
    Light cells have no handshakes; their peers share one interface, so p1 and p3
    (the first and last address on it) are fetched for."""
    if ncells is None:
        ncells = len(cells())
    problems = []
    t0 = time.monotonic()
    if not daemon_pid("wgexit") or WG_IF not in links("wgexit"):
        problems.append("wgexit: wireguard-go/wg0 not running")
    end = time.monotonic() + timeout
    lite = light()
    for c in [] if lite else cell_names(ncells):
        for p in _missing_handshakes(c, end):
            problems.append("%s-%s: no WireGuard handshake with %s (see %s)" % (
                c, p, c, daemon_log("%s-%s" % (c, p), "wireguard-go")))
    peers = (PEERS[0], PEERS[-1]) if lite else PEERS
    jobs = [(c, p, fam) for c in cell_names(ncells) for p in peers for fam in (4, 6)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(jobs))) as ex:
        problems += [r for r in ex.map(lambda job: _check_fetch(*job, end, t0), jobs) if r]
    if problems:
        raise LabError("lab verification failed:\n  " + "\n  ".join(problems))
