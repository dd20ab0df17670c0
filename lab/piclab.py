#!/usr/bin/python3
"""piclab: the local cell lab for pic.connectivity (network namespaces + real daemons).

CLI:  python3 lab/piclab.py up [--cells N] | down | status | exec NODE -- CMD...
      | fetch PEER [-4|-6] [--cell cellN] | probe PEER [-4|-6] [--cell cellN]
      | exit-stop | exit-start | counters-reset | counters
API:  import piclab; piclab.up(cells=1); piclab.fetch("p1", 6); piclab.down() ...

Stdlib only.  Uses ip, nft, wg, wireguard-go, curl.  Needs root.
Nothing is ever configured in the root namespace: every address and route lives
in a namespace named "<PICLAB_PREFIX>-<node>" (default prefix "picl").
See lab/README.md for the topology.
"""

import argparse
import concurrent.futures
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
NSEXEC = os.path.join(LAB_DIR, "nsexec")
PYTHON = "/usr/bin/python3"

# --------------------------------------------------------------------------
# Addresses (documentation ranges only)
# --------------------------------------------------------------------------
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


class LabError(RuntimeError):
    """The lab could not be brought up / operated; the message says why."""


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


def _p(*parts):
    return os.path.join(run_dir(), *parts)


def _node_dir(node):
    return _p("nodes", node)


def _cell_index(cell):
    if isinstance(cell, int):
        k = cell
    else:
        if not str(cell).startswith("cell"):
            raise ValueError("not a cell name: %r" % (cell,))
        k = int(str(cell)[4:])
    if not 1 <= k <= MAX_CELLS:
        raise ValueError("cell index out of range: %r" % (cell,))
    return k


def _cell_name(cell):
    return "cell%d" % _cell_index(cell)


def _wan_host(k):
    # cells 1..10 -> .10 .. .19; .20 is wgexit, so cells 11.. -> .21 ..
    return 9 + k if k <= 10 else 10 + k


def _family(family):
    f = str(family).lstrip("-").lower().replace("ipv", "")
    if f not in ("4", "6"):
        raise ValueError("family must be 4 or 6, not %r" % (family,))
    return int(f)


def wan_address(cell="cell1", family=4):
    """The cell's WAN address (what the echo server sees for default-routed peers)."""
    h = _wan_host(_cell_index(cell))
    return "203.0.113.%d" % h if _family(family) == 4 else "2001:db8:1::%d" % h


def exit_address(family=4):
    """wgexit's public address (what the echo server sees through the exit)."""
    return EXIT_V4 if _family(family) == 4 else EXIT_V6


def exit_client_address(cell="cell1", family=4, v4only=False):
    """Tunnel address of the cell's client on wgexit (without prefix)."""
    k = _cell_index(cell)
    if v4only:
        return "10.200.1.%d" % k
    return "10.200.0.%d" % (10 + k) if _family(family) == 4 else "fd00:200::%d" % (10 + k)


def _peer_split(peer, cell):
    """Accept ("p1", "cell2") or ("cell2-p1", anything)."""
    peer = str(peer)
    if "-" in peer:
        c, peer = peer.split("-", 1)
        cell = c
    if peer not in PEER_INDEX:
        raise ValueError("unknown peer %r (expected one of %s)" % (peer, ", ".join(PEERS)))
    return _cell_name(cell), peer


def peer_node(peer, cell="cell1"):
    c, p = _peer_split(peer, cell)
    return "%s-%s" % (c, p)


def peer_address(peer, family=4):
    """The peer's tunnel address (same in every cell), without prefix."""
    _c, p = _peer_split(peer, "cell1")
    i = PEER_INDEX[p]
    return "10.0.0.%d" % i if _family(family) == 4 else "fd00:10::%d" % i


def peer_underlay(peer):
    _c, p = _peer_split(peer, "cell1")
    return "172.30.0.%d" % PEER_INDEX[p]


def server_address(family=4):
    return SERVER_V4 if _family(family) == 4 else SERVER_V6


def exit_config_path(cell="cell1", v4only=False):
    return _p("exits", "%s-wgexit%s.conf" % (_cell_name(cell), "-v4only" if v4only else ""))


def python_wrapper(cell="cell1"):
    return _p("bin", "python-%s" % _cell_name(cell))


def state_dir(cell="cell1"):
    """pic_state_dir used by the lab inventory for this cell."""
    return os.path.join(_node_dir(_cell_name(cell)), "state")


def cells():
    """Names of the cells of the running lab ([] if none)."""
    try:
        with open(_p("lab.json")) as f:
            n = json.load(f)["cells"]
    except (OSError, ValueError, KeyError):
        return []
    return ["cell%d" % k for k in range(1, n + 1)]


def nodes(ncells=None):
    if ncells is None:
        ncells = len(cells())
    out = ["inet", "wgexit"]
    for k in range(1, ncells + 1):
        out.append("cell%d" % k)
        out.extend("cell%d-%s" % (k, p) for p in PEERS)
    return out


# --------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------
def _env():
    env = dict(os.environ)
    env["PICLAB_RUN"] = run_dir()
    env["PICLAB_PREFIX"] = prefix()
    env.setdefault("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
    return env


def _sh(argv, check=True, timeout=30, input=None):
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True,
                            timeout=timeout, env=_env())
    except subprocess.TimeoutExpired as e:
        raise LabError("timed out after %ss: %s" % (timeout, shlex.join(argv))) from e
    if check and cp.returncode != 0:
        raise LabError("command failed (rc=%d): %s\n%s%s" % (
            cp.returncode, shlex.join(argv), cp.stdout, cp.stderr))
    return cp


def run(node, *cmd, check=True, timeout=30, input=None):
    """Run CMD in lab node NODE (through lab/nsexec).  Returns CompletedProcess (text)."""
    if len(cmd) == 1 and isinstance(cmd[0], (list, tuple)):
        cmd = tuple(cmd[0])
    return _sh([NSEXEC, node] + [str(c) for c in cmd], check=check, timeout=timeout, input=input)


def _ipbatch(node, lines, check=True):
    if not lines:
        return None
    return _sh(["ip", "-n", ns(node), "-batch", "-"], input="\n".join(lines) + "\n", check=check)


def _links(node):
    cp = _sh(["ip", "-n", ns(node), "-j", "link", "show"], check=False)
    if cp.returncode != 0:
        return set()
    try:
        return {l["ifname"] for l in json.loads(cp.stdout or "[]")}
    except ValueError:
        return set()


def _namespaces():
    cp = _sh(["ip", "-j", "netns", "list"], check=False)
    try:
        names = [n["name"] for n in json.loads(cp.stdout or "[]")]
    except ValueError:
        names = [l.split()[0] for l in cp.stdout.splitlines() if l.strip()]
    pre = prefix() + "-"
    return sorted(n for n in names if n.startswith(pre))


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------
def _netns_inode(node):
    try:
        return os.stat("/run/netns/%s" % ns(node)).st_ino
    except OSError:
        return None


def _proc_alive(pid):
    try:
        os.waitpid(pid, os.WNOHANG)          # reap if it is our child
    except (ChildProcessError, OSError):
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return st not in ("Z", "X")


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _in_node(pid, node):
    ino = _netns_inode(node)
    try:
        link = os.readlink("/proc/%d/ns/net" % pid)
    except OSError:
        return False
    return ino is not None and link == "net:[%d]" % ino


def _pidfile(node, daemon):
    return _p("pids", "%s-%s.pid" % (node, daemon))


def _matches(daemon, argv):
    if daemon == "wireguard-go":
        return bool(argv) and argv[0].endswith("wireguard-go") and argv[-1] == WG_IF
    if daemon == "echo":
        return "_echo-server" in argv
    return False


def daemon_pid(node, daemon="wireguard-go"):
    """pid of a lab daemon ("wireguard-go" or "echo") in NODE, or None if not running."""
    try:
        with open(_pidfile(node, daemon)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    known = daemon in ("wireguard-go", "echo")     # plugins' daemons: the marker alone
    if _proc_alive(pid) and (_matches(daemon, _cmdline(pid)) or not known) and _in_node(pid, node) \
            and _lab_daemons_pid(pid) == _marker(node, daemon):
        return pid
    return None


def _lab_daemons_pid(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    if b"PICLAB_RUN=" + run_dir().encode() not in env:
        return None
    for e in env:
        if e.startswith(b"PICLAB_DAEMON="):
            return e[14:].decode(errors="replace")
    return None


def _kill_wait(pids, timeout=3.0):
    pids = {p for p in pids if p and p != os.getpid()}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 3.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        end = time.monotonic() + wait
        while time.monotonic() < end:
            pids = {p for p in pids if _proc_alive(p)}
            if not pids:
                return
            time.sleep(0.02)
    pids = {p for p in pids if _proc_alive(p)}
    if pids:
        raise LabError("processes would not die: %s" % sorted(pids))


def _marker(node, daemon):
    return "%s/%s" % (node, daemon)


def _lab_daemons():
    """{pid: "node/daemon"} of every daemon this lab (run dir + prefix) started,
    wherever it runs now (also in a namespace deleted behind the lab's back)."""
    want_run = b"PICLAB_RUN=" + run_dir().encode()
    want_pre = b"PICLAB_PREFIX=" + prefix().encode()
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if want_run in env and want_pre in env:
            for e in env:
                if e.startswith(b"PICLAB_DAEMON="):
                    out[int(d)] = e[14:].decode(errors="replace")
    return out


def _spawn(node, daemon, argv):
    os.makedirs(_p("logs"), exist_ok=True)
    os.makedirs(_p("pids"), exist_ok=True)
    log = open(_p("logs", "%s-%s.log" % (node, daemon)), "ab")
    try:
        p = subprocess.Popen([NSEXEC, node] + argv, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             close_fds=True, env=dict(_env(), PICLAB_DAEMON=_marker(node, daemon)))
    finally:
        log.close()
    _write(_pidfile(node, daemon), "%d\n" % p.pid)
    return p.pid


def _stop_daemon(node, daemon):
    pids = {p for p, m in _lab_daemons().items() if m == _marker(node, daemon)}
    # strays (e.g. pidfile lost): same daemon in the same namespace
    ino = _netns_inode(node)
    if ino is not None:
        for q in _ns_pids(node):
            if _matches(daemon, _cmdline(q)):
                pids.add(q)
    _kill_wait(pids)
    try:
        os.unlink(_pidfile(node, daemon))
    except OSError:
        pass


def _ns_pids(node):
    cp = _sh(["ip", "netns", "pids", ns(node)], check=False)
    return [int(x) for x in cp.stdout.split() if x.isdigit()]


# --------------------------------------------------------------------------
# Keys and configs
# --------------------------------------------------------------------------
def _key(name):
    """(private, public) for key NAME, generated once per run dir."""
    kdir = _p("keys")
    os.makedirs(kdir, mode=0o700, exist_ok=True)
    os.chmod(kdir, 0o700)
    priv_path = os.path.join(kdir, name + ".key")
    pub_path = os.path.join(kdir, name + ".pub")
    if not os.path.exists(priv_path):
        priv = _sh(["wg", "genkey"]).stdout.strip()
        _write(priv_path, priv + "\n", 0o600)
        if os.path.exists(pub_path):
            os.unlink(pub_path)
    with open(priv_path) as f:
        priv = f.read().strip()
    if not os.path.exists(pub_path):
        pub = _sh(["wg", "pubkey"], input=priv + "\n").stdout.strip()
        _write(pub_path, pub + "\n", 0o600)
    with open(pub_path) as f:
        pub = f.read().strip()
    return priv, pub


def _wg_conf(node, ncells):
    """wg(8) config (for `wg syncconf`) of NODE's wg0."""
    if node == "wgexit":
        priv, _ = _key("wgexit")
        out = ["[Interface]", "PrivateKey = %s" % priv, "ListenPort = %d" % WG_PORT, ""]
        for k in range(1, ncells + 1):
            _, pub = _key("cell%d-wgexit" % k)
            out += ["[Peer]", "PublicKey = %s" % pub,
                    "AllowedIPs = %s/32, %s/128" % (exit_client_address(k, 4),
                                                    exit_client_address(k, 6)), ""]
            # the IPv4-only variant is a client of its own (own key, own address),
            # so both can be up at once without stealing each other's session
            _, pub4 = _key("cell%d-wgexit4" % k)
            out += ["[Peer]", "PublicKey = %s" % pub4,
                    "AllowedIPs = %s/32" % exit_client_address(k, 4, v4only=True), ""]
        return "\n".join(out)
    if "-" in node:                                  # a peer
        cell, peer = node.split("-", 1)
        priv, _ = _key(node)
        _, cpub = _key(cell)
        return "\n".join(["[Interface]", "PrivateKey = %s" % priv, "",
                          "[Peer]", "PublicKey = %s" % cpub,
                          "Endpoint = %s:%d" % (ACCESS_V4, WG_PORT),
                          "AllowedIPs = 0.0.0.0/0, ::/0",
                          "PersistentKeepalive = %d" % KEEPALIVE, ""])
    priv, _ = _key(node)                             # a cell
    out = ["[Interface]", "PrivateKey = %s" % priv, "ListenPort = %d" % WG_PORT, ""]
    for p in PEERS:
        _, pub = _key("%s-%s" % (node, p))
        out += ["[Peer]", "PublicKey = %s" % pub,
                "AllowedIPs = %s/32, %s/128" % (peer_address(p, 4), peer_address(p, 6)), ""]
    return "\n".join(out)


def _write_exit_confs(ncells):
    _, epub = _key("wgexit")
    for k in range(1, ncells + 1):
        for v4only in (False, True):
            priv, _ = _key("cell%d-wgexit%s" % (k, "4" if v4only else ""))
            if v4only:
                addr, allowed = "%s/32" % exit_client_address(k, 4, v4only=True), "0.0.0.0/0"
            else:
                addr = "%s/32, %s/128" % (exit_client_address(k, 4), exit_client_address(k, 6))
                allowed = "0.0.0.0/0, ::/0"
            text = "\n".join([
                "[Interface]", "PrivateKey = %s" % priv, "Address = %s" % addr, "",
                "[Peer]", "PublicKey = %s" % epub,
                "Endpoint = %s:%d" % (EXIT_V4, WG_PORT),
                "AllowedIPs = %s" % allowed,
                "PersistentKeepalive = %d" % KEEPALIVE, ""])
            _write(exit_config_path(k, v4only), text, 0o600)


def _write_wrappers(ncells):
    for k in range(1, ncells + 1):
        text = "#!/bin/sh\n# piclab: python inside lab node cell%d\n" \
               "export PICLAB_RUN=%s PICLAB_PREFIX=%s\nexec %s cell%d %s \"$@\"\n" % (
                   k, shlex.quote(run_dir()), shlex.quote(prefix()),
                   shlex.quote(NSEXEC), k, PYTHON)
        _write(python_wrapper(k), text, 0o755)
        os.makedirs(state_dir(k), exist_ok=True)


# --------------------------------------------------------------------------
# Topology pieces
# --------------------------------------------------------------------------
_LABCOUNT = """table inet labcount {
    counter to_server4 { }
    counter to_server6 { }
    set by_source4 { type ipv4_addr; flags dynamic; counter; size 65536; }
    set by_source6 { type ipv6_addr; flags dynamic; counter; size 65536; }
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        ip daddr %s counter name "to_server4" update @by_source4 { ip saddr }
        ip6 daddr %s counter name "to_server6" update @by_source6 { ip6 saddr }
    }
}
""" % (SERVER_NET4, SERVER_NET6)

_LAB_NAT = """table inet lab_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "%s" masquerade
    }
}
""" % WAN_IF


def _nft_replace(node, table, text):
    # atomic: create-if-missing, delete, recreate -- in one transaction
    fam, name = table.split()
    _sh([NSEXEC, node, "nft", "-f", "-"],
        input="table %s %s\ndelete table %s %s\n%s" % (fam, name, fam, name, text))


def _sysctls(node, router):
    kv = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
          "net.ipv6.conf.default.accept_ra=0", "net.ipv6.conf.all.accept_ra=0"]
    if router:
        kv += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
               "net.ipv6.conf.default.forwarding=1"]
    # direct `ip netns exec` (no /run/wireguard involved), one process per node
    _sh(["ip", "netns", "exec", ns(node), "sysctl", "-q", "-w"] + kv)


def _ensure_ns(node, router):
    if not os.path.exists("/run/netns/%s" % ns(node)):
        _sh(["ip", "netns", "add", ns(node)])
        created = True
    else:
        created = False
    os.makedirs(os.path.join(_node_dir(node), "wireguard"), exist_ok=True)
    _sysctls(node, router)
    return created


def _ensure_veth(node, name, far_node, far_name, have=None, mac=None):
    """Make sure veth NAME in NODE is paired with FAR_NAME in FAR_NODE.  A half left
    over from a deleted namespace (kept alive by a process) is removed first."""
    have = _links(node) if have is None else have
    far = far_name in _links(far_node)
    if name in have and far:
        return
    if name in have:
        _ipbatch(node, ["link del %s" % name], check=False)
    if far:
        _ipbatch(far_node, ["link del %s" % far_name], check=False)
    # fixed MACs on the addressed ends: a re-created node keeps its neighbours' ARP valid
    _ipbatch(node, ["link add %s%s type veth peer name %s netns %s" % (
        name, " address %s" % mac if mac else "", far_name, ns(far_node))])


def _create_links(ncells):
    have = _links("inet")
    if "br0" not in have:
        # fixed MAC: a bridge otherwise takes its lowest port MAC, which changes when
        # a port is re-created and leaves stale ARP entries in the neighbours
        _ipbatch("inet", ["link add br0 address 02:00:cb:00:71:01 type bridge "
                          "stp_state 0 mcast_snooping 0"])
    if "srv0" not in have or "srv1" not in have:
        # the server networks live on srv0, one end of a veth pair kept inside inet
        # (a dummy would do, but loading the dummy module adds dummy0 to the root
        # namespace on some kernels, and this one has no dummy at all)
        _ipbatch("inet", ["link del srv0"], check=False)
        _ipbatch("inet", ["link add srv0 type veth peer name srv1"])
    for k in range(1, ncells + 1):
        c = "cell%d" % k
        have = _links(c)
        _ensure_veth(c, WAN_IF, "inet", c, have, mac=_mac(0xcb, _wan_host(k)))
        if "acc0" not in have:
            _ipbatch(c, ["link add acc0 address 02:00:ac:1e:00:01 type bridge "
                         "stp_state 0 mcast_snooping 0"])
        for p in PEERS:
            _ensure_veth("%s-%s" % (c, p), "eth0", c, p, mac=_mac(0xac, PEER_INDEX[p]))
    _ensure_veth("wgexit", WAN_IF, "inet", "wgexit", mac=_mac(0xcb, 20))


def _mac(net, host):
    return "02:00:%02x:00:%02x:%02x" % (net, host >> 8, host & 0xff)


def _kill_strays():
    """Kill lab daemons that run in a namespace which is no longer their node's
    (its name was deleted): they keep the old namespace, and its veths, alive."""
    stray = [pid for pid, m in _lab_daemons().items() if not _in_node(pid, m.split("/")[0])]
    _kill_wait(stray)


def _inet_lines(ncells):
    lines = ["link set lo up", "link set br0 up", "link set srv1 up", "link set srv0 up",
             "addr replace %s/%d dev br0" % (INET_V4, INET_PREFIX4),
             "addr replace %s/%d dev br0 nodad" % (INET_V6, INET_PREFIX6),
             "addr replace %s/24 dev srv0" % SERVER_ROUTER4,
             "addr replace %s/32 dev srv0" % SERVER_V4,
             "addr replace %s/64 dev srv0 nodad" % SERVER_ROUTER6,
             "addr replace %s/128 dev srv0 nodad" % SERVER_V6,
             "link set wgexit master br0 up"]
    lines += ["link set cell%d master br0 up" % k for k in range(1, ncells + 1)]
    return lines


def _wan_lines(a4, a6):
    return ["link set lo up", "link set %s up" % WAN_IF,
            "addr replace %s/%d dev %s" % (a4, INET_PREFIX4, WAN_IF),
            "addr replace %s/%d dev %s nodad" % (a6, INET_PREFIX6, WAN_IF),
            "route replace 0.0.0.0/0 via %s dev %s" % (INET_V4, WAN_IF),
            "route replace ::/0 via %s dev %s" % (INET_V6, WAN_IF)]


def _cell_lines(k):
    lines = _wan_lines(wan_address(k, 4), wan_address(k, 6))
    lines += ["link set acc0 up", "addr replace %s/%d dev acc0" % (ACCESS_V4, ACCESS_PREFIX4)]
    lines += ["link set %s master acc0 up" % p for p in PEERS]
    lines += _wg_lines([(CELL_TUN_V4, 24), (CELL_TUN_V6, 64)])
    return lines


def _wg_lines(addrs):
    out = []
    for a, plen in addrs:
        out.append("addr replace %s/%d dev %s%s" % (a, plen, WG_IF, " nodad" if ":" in a else ""))
    out.append("link set %s up" % WG_IF)
    return out


def _peer_lines(peer):
    return ["link set lo up", "link set eth0 up",
            "addr replace %s/%d dev eth0" % (peer_underlay(peer), ACCESS_PREFIX4)] + \
        _wg_lines([(peer_address(peer, 4), 32), (peer_address(peer, 6), 128)]) + \
        ["route replace 0.0.0.0/0 dev %s" % WG_IF, "route replace ::/0 dev %s" % WG_IF]


def _exit_wg_lines():
    # /16: the IPv4-only clients live in 10.200.1.0/24
    return _wg_lines([(EXIT_TUN_V4, 16), (EXIT_TUN_V6, 64)])


def _start_wg(node):
    """Start wireguard-go for NODE's wg0 unless healthy.  Returns True if (re)started."""
    if daemon_pid(node, "wireguard-go") and WG_IF in _links(node):
        return False
    _stop_daemon(node, "wireguard-go")
    if WG_IF in _links(node):            # a leftover interface nobody serves
        _ipbatch(node, ["link del %s" % WG_IF], check=False)
    sock = os.path.join(_node_dir(node), "wireguard", WG_IF + ".sock")
    try:
        os.unlink(sock)
    except OSError:
        pass
    _spawn(node, "wireguard-go", ["wireguard-go", "-f", WG_IF])
    return True


def _wait_wg_sockets(nodes_, timeout=10):
    end = time.monotonic() + timeout
    pending = list(nodes_)
    while pending and time.monotonic() < end:
        pending = [n for n in pending
                   if not os.path.exists(os.path.join(_node_dir(n), "wireguard", WG_IF + ".sock"))]
        if pending:
            time.sleep(0.02)
    if pending:
        logs = "; ".join("%s: %s" % (n, _tail(_p("logs", "%s-wireguard-go.log" % n)))
                         for n in pending)
        raise LabError("wireguard-go did not come up in %s (%s)" % (", ".join(pending), logs))


def _tail(path, n=400):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip() or "(empty log)"
    except OSError:
        return "(no log)"


def _wg_sync(node, ncells):
    path = os.path.join(_node_dir(node), "wg0.conf")
    _write(path, _wg_conf(node, ncells), 0o600)
    run(node, "wg", "syncconf", WG_IF, path)


def _start_echo():
    if daemon_pid("inet", "echo"):
        return False
    _stop_daemon("inet", "echo")
    _spawn("inet", "echo", [PYTHON, os.path.abspath(__file__), "_echo-server"])
    return True


def _remove_nodes(names):
    pids = set()
    present = [n for n in names if os.path.exists("/run/netns/%s" % ns(n))]
    for n in present:
        pids.update(_ns_pids(n))
    markers = {_marker(n, d) for n in names for d in ("wireguard-go", "echo")}
    pids.update(p for p, m in _lab_daemons().items() if m in markers)
    _kill_wait(pids)
    for n in present:
        _sh(["ip", "netns", "del", ns(n)], check=False)
    for n in names:
        shutil.rmtree(_node_dir(n), ignore_errors=True)


# --------------------------------------------------------------------------
# up / down
# --------------------------------------------------------------------------
INOTIFY_LIMIT = "/proc/sys/fs/inotify/max_user_instances"


def _raise_inotify_limit(ncells):
    """Every wireguard-go process holds one inotify instance (it watches its UAPI
    socket) and fails with "too many open files" past the per-user limit, 128 by
    default: a 20-cell lab runs about 110 of them (a peer interface and three
    peers per cell, their exits), and other labs on the machine count too.
    Raise the host's limit when it is lower than what the lab needs with room
    to spare; never lower it."""
    want = max(1024, 8 * (5 * ncells + 20))
    try:
        with open(INOTIFY_LIMIT) as f:
            have = int(f.read().strip())
        if have < want:
            with open(INOTIFY_LIMIT, "w") as f:
                f.write("%d\n" % want)
    except (OSError, ValueError):
        pass    # not fatal: a small lab fits in the default limit


def up(cells=1, verify=True):
    """Bring the lab up (idempotent).  Returns {"cells": N, "seconds": t}."""
    t0 = time.monotonic()
    if os.geteuid() != 0:
        raise LabError("piclab needs root")
    ncells = int(cells)
    if not 1 <= ncells <= MAX_CELLS:
        raise LabError("cells must be 1..%d" % MAX_CELLS)
    rd = run_dir()
    if rd in ("/", "/run", "/tmp", "/var/run") or len(rd.strip("/").split("/")) < 2:
        raise LabError("refusing run dir %r" % rd)
    for tool in ("ip", "nft", "wg", "wireguard-go", "curl"):
        if not shutil.which(tool):
            raise LabError("%s not found in PATH" % tool)
    for d in ("", "keys", "logs", "pids", "nodes", "exits", "bin"):
        os.makedirs(_p(d), exist_ok=True)
    os.chmod(_p("keys"), 0o700)
    os.chmod(_p("exits"), 0o700)

    # fewer cells than before: remove the extra ones
    old = len(cells_present())
    if old > ncells:
        extra = []
        for k in range(ncells + 1, old + 1):
            extra += ["cell%d" % k] + ["cell%d-%s" % (k, p) for p in PEERS]
        _remove_nodes(extra)
    _write(_p("lab.json"), json.dumps({"cells": ncells, "prefix": prefix()}) + "\n")

    _kill_strays()
    _raise_inotify_limit(ncells)

    # 1. namespaces + sysctls
    for n in nodes(ncells):
        _ensure_ns(n, router="-" not in n)     # peers are hosts, the rest route

    # 2. links (veth pairs are created straight into both namespaces)
    _create_links(ncells)

    # 3. daemons
    for k in range(1, ncells + 1):
        for p in PEERS:
            _key("cell%d-%s" % (k, p))
        _key("cell%d" % k)
        _key("cell%d-wgexit" % k)
    _key("wgexit")
    _start_echo()
    wg_nodes = ["wgexit"] + ["cell%d" % k for k in range(1, ncells + 1)]
    peer_nodes = ["cell%d-%s" % (k, p) for k in range(1, ncells + 1) for p in PEERS]
    restarted = {n for n in wg_nodes if _start_wg(n)}
    for pn in peer_nodes:
        cell = pn.split("-")[0]
        if cell in restarted and daemon_pid(pn, "wireguard-go"):
            # the cell lost its sessions: restart the peer so it handshakes at once
            _stop_daemon(pn, "wireguard-go")
        _start_wg(pn)
    _wait_wg_sockets(wg_nodes + peer_nodes)

    # 4. WireGuard keys/peers (syncconf: only what differs)
    for n in wg_nodes:
        _wg_sync(n, ncells)

    # 5. addresses, links up, routes: routers first, then peers
    _ipbatch("inet", _inet_lines(ncells))
    _ipbatch("wgexit", _wan_lines(EXIT_V4, EXIT_V6) + _exit_wg_lines())
    for k in range(1, ncells + 1):
        _ipbatch("cell%d" % k, _cell_lines(k))
    for pn in peer_nodes:
        # underlay and wg0 up first: adding the cell as a peer (with keepalive) to a
        # running device sends the handshake at once
        _ipbatch(pn, _peer_lines(pn))
        _wg_sync(pn, ncells)

    # 6. nftables
    if run("inet", "nft", "list", "table", "inet", "labcount", check=False).returncode != 0:
        _nft_replace("inet", "inet labcount", _LABCOUNT)    # kept (with its counts) if present
    _nft_replace("wgexit", "inet lab_nat", _LAB_NAT)
    for k in range(1, ncells + 1):
        _nft_replace("cell%d" % k, "inet lab_nat", _LAB_NAT)

    # 7. files for the collection / Ansible
    _write_exit_confs(ncells)
    _write_wrappers(ncells)

    # 8. exit servers of the other types (lab/servers/*.py)
    for plugin in server_plugins():
        plugin.up(ncells)

    if verify:
        verify_lab(ncells)
    return {"cells": ncells, "seconds": round(time.monotonic() - t0, 2)}


# --------------------------------------------------------------------------
# Exit servers of other types: plugins in lab/servers/*.py
# --------------------------------------------------------------------------
# Each plugin module defines ``up(ncells)`` (idempotent: namespaces, daemons,
# client files under $PICLAB_RUN/exits/) and may define ``check()`` returning a
# list of problems. ``down`` needs nothing from them: every "<prefix>-*"
# namespace and every process in it goes. Plugins build on public_host(),
# spawn() and stop().
SERVERS_DIR = os.path.join(LAB_DIR, "servers")


def server_plugins():
    import importlib.util
    out = []
    if not os.path.isdir(SERVERS_DIR):
        return out
    for name in sorted(os.listdir(SERVERS_DIR)):
        if not name.endswith(".py") or name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location("piclab_server_" + name[:-3],
                                                      os.path.join(SERVERS_DIR, name))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        out.append(mod)
    return out


def public_host(node, host, router=True, mac_host=None):
    """A namespace NODE on the internet bridge with 203.0.113.HOST and
    2001:db8:1::HOST (documentation ranges), default routes via the internet
    router, forwarding on when ROUTER.  Idempotent.  Returns (v4, v6)."""
    v4, v6 = "203.0.113.%d" % host, "2001:db8:1::%d" % host
    _ensure_ns(node, router=router)
    _ensure_veth(node, WAN_IF, "inet", node, mac=_mac(0xcb, mac_host or host))
    _ipbatch("inet", ["link set %s master br0 up" % node])
    _ipbatch(node, _wan_lines(v4, v6))
    return v4, v6


def public_nat(node):
    """Masquerade what NODE forwards out of its public interface (an exit server)."""
    _nft_replace(node, "inet lab_nat", _LAB_NAT)


def spawn(node, daemon, argv):
    """Start DAEMON (a name) as ARGV in NODE, detached, logged, unless it runs."""
    if daemon_pid(node, daemon):
        return False
    _spawn(node, daemon, list(argv))
    return True


def stop(node, daemon):
    _stop_daemon(node, daemon)


def cells_present():
    """Cell namespaces that exist (whatever lab.json says)."""
    pre = prefix() + "-cell"
    out = []
    for n in _namespaces():
        rest = n[len(pre):] if n.startswith(pre) else ""
        if rest.isdigit():
            out.append("cell" + rest)
    return sorted(out, key=lambda c: int(c[4:]))


def down():
    """Remove everything the lab created (idempotent; works after a partial up)."""
    t0 = time.monotonic()
    names = _namespaces()
    killed = set()
    # Several passes: a supervisor in a namespace (a cell's supervisord) may
    # restart a child it saw die before it dies itself; that child must not
    # outlive the lab (it would keep writing to the next lab's run dir).
    for _pass in range(5):
        pids = set()
        for n in names:
            cp = _sh(["ip", "netns", "pids", n], check=False)
            pids.update(int(x) for x in cp.stdout.split() if x.isdigit())
        # daemons the lab started, wherever they are (covers a namespace deleted
        # behind our back but kept alive by a TUN fd)
        pids.update(_lab_daemons())
        pids.discard(os.getpid())
        if not pids:
            break
        _kill_wait(pids)
        killed |= pids
    pids = killed
    for n in names:
        _sh(["ip", "netns", "del", n], check=False)
    left = _namespaces()
    if left:
        raise LabError("could not delete namespaces: %s" % ", ".join(left))
    rd = run_dir()
    if os.path.isdir(rd) and len(rd.strip("/").split("/")) >= 2:
        shutil.rmtree(rd)
    return {"seconds": round(time.monotonic() - t0, 2), "namespaces": len(names),
            "killed": len(pids)}


# --------------------------------------------------------------------------
# Verification and probes
# --------------------------------------------------------------------------
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
    c, p = _peer_split(peer, cell)
    _, pub = _key("%s-%s" % (c, p))
    end = time.monotonic() + timeout
    while True:
        if handshakes(c).get(pub, 0) > 0:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.1)


def verify_lab(ncells=None, timeout=20):
    """Check every peer's handshake and v4/v6 fetch (seen as the cell's WAN address)."""
    if ncells is None:
        ncells = len(cells())
    problems = []
    t0 = time.monotonic()
    if not daemon_pid("wgexit") or WG_IF not in _links("wgexit"):
        problems.append("wgexit: wireguard-go/wg0 not running")
    end = time.monotonic() + timeout
    for k in range(1, ncells + 1):
        c = "cell%d" % k
        want = {_key("%s-%s" % (c, p))[1]: p for p in PEERS}
        while True:
            hs = handshakes(c)
            missing = [p for pub, p in want.items() if hs.get(pub, 0) == 0]
            if not missing or time.monotonic() > end:
                break
            time.sleep(0.1)
        for p in missing:
            problems.append("%s-%s: no WireGuard handshake with %s (see %s)" % (
                c, p, c, _p("logs", "%s-%s-wireguard-go.log" % (c, p))))

    def check(job):
        c, p, fam = job
        want = wan_address(c, fam)
        got = None
        while True:
            got = fetch(p, fam, c, timeout=2)
            if got == want or time.monotonic() > end:
                break
            time.sleep(0.2)
        if os.environ.get("PICLAB_DEBUG"):
            print("piclab: verify %s-%s IPv%d: %r after %.2fs" % (
                c, p, fam, got, time.monotonic() - t0), file=sys.stderr)
        if got != want:
            return "%s-%s: fetch over IPv%d returned %r, expected %s" % (c, p, fam, got, want)
        return None

    jobs = [("cell%d" % k, p, fam) for k in range(1, ncells + 1) for p in PEERS for fam in (4, 6)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(jobs))) as ex:
        problems += [r for r in ex.map(check, jobs) if r]
    if problems:
        raise LabError("lab verification failed:\n  " + "\n  ".join(problems))


def fetch(peer, family=4, cell="cell1", timeout=3):
    """HTTP GET the echo server from PEER; the source address it saw, or None."""
    return fetch_node(peer_node(peer, cell), family, timeout)


def fetch_node(node, family=4, timeout=3):
    """HTTP GET the echo server from any lab NODE; the source address it saw, or None."""
    fam = _family(family)
    url = "http://%s/" % SERVER_V4 if fam == 4 else "http://[%s]/" % SERVER_V6
    try:
        cp = run(node, "curl", "-s", "-g", "--noproxy", "*", "--max-time", str(timeout), url,
                 check=False, timeout=timeout + 10)
    except LabError:
        return None
    out = cp.stdout.strip()
    if cp.returncode != 0 or not out:
        return None
    return out


_PROBE = r"""
import socket, struct, sys, time
fam, dst, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
af = socket.AF_INET if fam == 4 else socket.AF_INET6
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
keep = []
for i in range(n):
    try:
        t = socket.socket(af, socket.SOCK_STREAM); t.setblocking(False); keep.append(t)
        t.connect_ex((dst, 80))
    except OSError: pass
    for port in (53, 443):
        try:
            u = socket.socket(af, socket.SOCK_DGRAM); keep.append(u)
            u.setblocking(False); u.sendto(b"piclab-probe", (dst, port))
        except OSError: pass
    try:
        if fam == 4:
            r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            h = struct.pack("!BBHHH", 8, 0, 0, 0x7069, i) + b"piclab"
            h = h[:2] + struct.pack("!H", csum(h)) + h[4:]
        else:
            r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            h = struct.pack("!BBHHH", 128, 0, 0, 0x7069, i) + b"piclab"
        keep.append(r); r.setblocking(False); r.sendto(h, (dst, 0))
    except OSError: pass
time.sleep(0.2)
"""


def send_probe(peer, family=4, cell="cell1", count=3, target=None):
    """Fire TCP SYN :80, UDP :53 and :443, ICMP echo from PEER toward the server
    (COUNT of each), without waiting for any answer."""
    fam = _family(family)
    dst = target or server_address(fam)
    run(peer_node(peer, cell), PYTHON, "-c", _PROBE, str(fam), dst, str(count), timeout=20)


# --------------------------------------------------------------------------
# Exit server
# --------------------------------------------------------------------------
def exit_stop():
    """Kill wgexit's wireguard-go (its wg0 disappears).  Idempotent."""
    pid = daemon_pid("wgexit")
    if pid:
        # remember where the clients were, so exit_start can re-handshake at once
        cp = run("wgexit", "wg", "show", WG_IF, "endpoints", check=False)
        eps = {}
        for line in cp.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] != "(none)":
                eps[parts[0]] = parts[1]
        _write(os.path.join(_node_dir("wgexit"), "endpoints.json"), json.dumps(eps))
    _stop_daemon("wgexit", "wireguard-go")
    end = time.monotonic() + 5
    while WG_IF in _links("wgexit"):
        if time.monotonic() > end:
            raise LabError("wgexit wg0 still present after stopping wireguard-go")
        time.sleep(0.02)


def exit_start(kick=True):
    """(Re)start wgexit's wireguard-go with the same keys.  Idempotent.
    kick: tell the last known client endpoints to re-handshake now (the
    server initiates), instead of waiting for the clients' timers."""
    ncells = len(cells())
    if not ncells:
        raise LabError("the lab is not up")
    started = _start_wg("wgexit")
    _wait_wg_sockets(["wgexit"])
    _wg_sync("wgexit", ncells)
    _ipbatch("wgexit", _exit_wg_lines())
    if started and kick:
        try:
            with open(os.path.join(_node_dir("wgexit"), "endpoints.json")) as f:
                eps = json.load(f)
        except (OSError, ValueError):
            eps = {}
        for pub, ep in eps.items():
            run("wgexit", "wg", "set", WG_IF, "peer", pub, "endpoint", ep,
                "persistent-keepalive", "1", check=False)
            run("wgexit", "wg", "set", WG_IF, "peer", pub, "persistent-keepalive", "0",
                check=False)
    return daemon_pid("wgexit")


# --------------------------------------------------------------------------
# Counters in the internet namespace
# --------------------------------------------------------------------------
def counters_reset():
    _nft_replace("inet", "inet labcount", _LABCOUNT)


def counters():
    """{"v4": packets, "v6": packets, "by_source": {address: packets}} of every packet
    that entered the internet namespace toward the server networks."""
    cp = run("inet", "nft", "-j", "list", "table", "inet", "labcount")
    data = json.loads(cp.stdout)
    out = {"v4": 0, "v6": 0, "by_source": {}}
    for item in data.get("nftables", []):
        if "counter" in item:
            c = item["counter"]
            if c.get("name") == "to_server4":
                out["v4"] = c.get("packets", 0)
            elif c.get("name") == "to_server6":
                out["v6"] = c.get("packets", 0)
        elif "set" in item:
            for e in item["set"].get("elem", []) or []:
                if isinstance(e, dict) and "elem" in e:
                    addr = e["elem"].get("val")
                    cnt = (e["elem"].get("counter") or {}).get("packets", 0)
                else:
                    addr, cnt = e, 0
                if isinstance(addr, str):
                    addr = str(ipaddress.ip_address(addr))
                    out["by_source"][addr] = out["by_source"].get(addr, 0) + cnt
    return out


# --------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------
def status():
    n = len(cells())
    out = {"run_dir": run_dir(), "prefix": prefix(), "cells": n,
           "namespaces": _namespaces(), "nodes": {}}
    for node in nodes(n):
        info = {"namespace": os.path.exists("/run/netns/%s" % ns(node))}
        if node != "inet":
            info["wireguard-go"] = daemon_pid(node)
        else:
            info["echo"] = daemon_pid("inet", "echo")
        if info["namespace"] and node != "inet":
            hs = handshakes(node)
            now = time.time()
            info["handshakes"] = {k[:8] + "..": (int(now - v) if v else None)
                                  for k, v in hs.items()}
        out["nodes"][node] = info
    return out


# --------------------------------------------------------------------------
# The echo server (runs inside the inet namespace)
# --------------------------------------------------------------------------
def _echo_server(port=SERVER_PORT):
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "piclab-echo"
        sys_version = ""

        def _reply(self, body=True):
            addr = self.client_address[0]
            if addr.startswith("::ffff:") and "." in addr:
                addr = addr[7:]
            data = addr.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self):
            self._reply()

        do_POST = do_PUT = do_GET

        def do_HEAD(self):
            self._reply(body=False)

        def log_message(self, fmt, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6
        allow_reuse_address = True
        daemon_threads = True

        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    Server(("::", port), Handler).serve_forever()


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(prog="piclab", description="pic.connectivity local cell lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="create/repair the lab and verify it")
    p.add_argument("--cells", type=int, default=None,
                   help="number of cells (default: as running, else 1)")
    p.add_argument("--no-verify", action="store_true")
    sub.add_parser("down", help="remove everything")
    sub.add_parser("status")
    p = sub.add_parser("exec", help="exec NODE -- CMD...")
    p.add_argument("node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    for name in ("fetch", "probe"):
        p = sub.add_parser(name)
        p.add_argument("peer")
        g = p.add_mutually_exclusive_group()
        g.add_argument("-4", dest="family", action="store_const", const=4, default=4)
        g.add_argument("-6", dest="family", action="store_const", const=6)
        p.add_argument("--cell", default="cell1")
    sub.add_parser("exit-stop")
    sub.add_parser("exit-start")
    sub.add_parser("counters-reset")
    sub.add_parser("counters")
    sub.add_parser("_echo-server")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "up":
            n = a.cells or len(cells()) or 1
            r = up(n, verify=not a.no_verify)
            print("piclab: %d cell(s) up in %.1fs (run dir %s)" % (r["cells"], r["seconds"],
                                                                   run_dir()))
        elif a.cmd == "down":
            r = down()
            print("piclab: down in %.1fs (%d namespaces, %d processes)" % (
                r["seconds"], r["namespaces"], r["killed"]))
        elif a.cmd == "status":
            print(json.dumps(status(), indent=2))
        elif a.cmd == "exec":
            cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
            if not cmd:
                ap.error("exec NODE -- CMD...")
            os.execve(NSEXEC, [NSEXEC, a.node] + cmd, _env())
        elif a.cmd == "fetch":
            r = fetch(a.peer, a.family, a.cell)
            if r is None:
                print("piclab: fetch failed", file=sys.stderr)
                return 1
            print(r)
        elif a.cmd == "probe":
            send_probe(a.peer, a.family, a.cell)
        elif a.cmd == "exit-stop":
            exit_stop()
        elif a.cmd == "exit-start":
            print(exit_start())
        elif a.cmd == "counters-reset":
            counters_reset()
        elif a.cmd == "counters":
            print(json.dumps(counters(), indent=2, sort_keys=True))
        elif a.cmd == "_echo-server":
            _echo_server()
    except (LabError, ValueError) as e:
        print("piclab: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
