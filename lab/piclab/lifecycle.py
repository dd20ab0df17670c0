"""Bringing the lab up (idempotent: create or repair) and down, and its status."""

import json
import os
import shutil
import time

from .addresses import (EXIT_V4, EXIT_V6, MAX_CELLS, cell_names, cells, env_light, lab_info,
                        light, netns_path, node_dir, nodes, ns, peer_nodes, peer_nodes_of,
                        prefix, run_dir, run_path)
from .commands import LabError, ipbatch, namespace_pids, namespaces, run, sh, write_file
from .keys import ensure_keys, write_exit_configs, write_python_wrappers
from .processes import (daemon_pid, kill_strays, kill_wait, lab_daemons, marker, start_echo,
                        stop)
from .servers import server_plugins
from .topology import (cell_lines, create_links, ensure_ns, exit_wg_lines, inet_lines,
                       light_cell_lines, light_peers_lines, peer_lines, public_nat,
                       reset_labcount, wan_lines)
from .traffic import verify_lab
from .wireguard import handshakes, start_wg, wait_wg_sockets, wg_sync

INOTIFY_LIMIT = "/proc/sys/fs/inotify/max_user_instances"
REQUIRED_TOOLS = ("ip", "nft", "wg", "wireguard-go", "curl")
RUN_SUBDIRS = ("", "keys", "logs", "pids", "nodes", "exits", "bin")


# --------------------------------------------------------------------------
# up: the steps, in order
# --------------------------------------------------------------------------
def check_host(ncells):
    """Root, a sane cell count and run dir, the tools in PATH."""
    if os.geteuid() != 0:
        raise LabError("piclab needs root")
    if not 1 <= ncells <= MAX_CELLS:
        raise LabError("cells must be 1..%d" % MAX_CELLS)
    rd = run_dir()
    if rd in ("/", "/run", "/tmp", "/var/run") or len(rd.strip("/").split("/")) < 2:
        raise LabError("refusing run dir %r" % rd)
    for tool in REQUIRED_TOOLS:
        if not shutil.which(tool):
            raise LabError("%s not found in PATH" % tool)


def prepare_run_dir():
    for d in RUN_SUBDIRS:
        os.makedirs(run_path(d), exist_ok=True)
    os.chmod(run_path("keys"), 0o700)
    os.chmod(run_path("exits"), 0o700)


def check_mode(light_cells):
    """A running lab keeps its mode (full or light cells): refuse to switch it."""
    info = lab_info()
    if cells_present() and "cells" in info and bool(info.get("light")) != light_cells:
        raise LabError("the lab is up with %s cells: bring it down before an up with %s cells"
                       % (("full", "light") if light_cells else ("light", "full")))


def remove_extra_cells(ncells, light_cells=False):
    """Fewer cells than before: remove the extra ones."""
    old = len(cells_present())
    if old > ncells:
        extra = []
        for k in range(ncells + 1, old + 1):
            extra += ["cell%d" % k] + peer_nodes_of("cell%d" % k, light_cells)
        remove_nodes(extra)


def raise_inotify_limit(ncells):
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


def create_namespaces(ncells, light_cells=False):
    for n in nodes(ncells, light_cells):
        ensure_ns(n, router="-" not in n)     # peers are hosts, the rest route


def wg_nodes(ncells, light_cells=False):
    """The nodes whose wg0 listens (the exit and the cells; light cells' wg0 is a veth)."""
    return ["wgexit"] + ([] if light_cells else cell_names(ncells))


def start_daemons(ncells, light_cells=False):
    """Keys, the echo server and every wireguard-go (a restarted cell restarts its peers);
    light cells: the exit's only."""
    ensure_keys(ncells, light_cells)
    start_echo()
    if light_cells:
        start_wg("wgexit")
        wait_wg_sockets(["wgexit"])
        return
    restarted = {n for n in wg_nodes(ncells) if start_wg(n)}
    for pn in peer_nodes(ncells):
        cell = pn.split("-")[0]
        if cell in restarted and daemon_pid(pn, "wireguard-go"):
            # the cell lost its sessions: restart the peer so it handshakes at once
            stop(pn, "wireguard-go")
        start_wg(pn)
    wait_wg_sockets(wg_nodes(ncells) + peer_nodes(ncells))


def configure_wireguard(ncells, light_cells=False):
    """WireGuard keys/peers of the exit and the cells (syncconf: only what differs)."""
    for n in wg_nodes(ncells, light_cells):
        wg_sync(n, ncells)


def configure_light_addresses(ncells):
    """Light cells: WAN and wg0 of each cell, its peers on the far end of wg0."""
    for k in range(1, ncells + 1):
        ipbatch("cell%d" % k, light_cell_lines(k))
    for pn in peer_nodes(ncells, light_cells=True):
        ipbatch(pn, light_peers_lines())


def configure_addresses(ncells, light_cells=False):
    """Addresses, links up, routes: routers first, then peers."""
    ipbatch("inet", inet_lines(ncells))
    ipbatch("wgexit", wan_lines(EXIT_V4, EXIT_V6) + exit_wg_lines())
    if light_cells:
        configure_light_addresses(ncells)
        return
    for k in range(1, ncells + 1):
        ipbatch("cell%d" % k, cell_lines(k))
    for pn in peer_nodes(ncells):
        # underlay and wg0 up first: adding the cell as a peer (with keepalive) to a
        # running device sends the handshake at once
        ipbatch(pn, peer_lines(pn))
        wg_sync(pn, ncells)


def configure_nftables(ncells):
    if run("inet", "nft", "list", "table", "inet", "labcount", check=False).returncode != 0:
        reset_labcount()    # kept (with its counts) if present
    for n in ["wgexit"] + cell_names(ncells):
        public_nat(n)


def write_client_files(ncells):
    """Files for the collection / Ansible: exit client configs, python wrappers."""
    write_exit_configs(ncells)
    write_python_wrappers(ncells)


def start_exit_servers(ncells, light_cells=False):
    """Exit servers of the other types (lab/servers/*.py); none for light cells (the
    fleet benchmark's cells use the WireGuard exit only, and the servers' hosts on the
    internet bridge, .30 and up, are the WAN addresses of cells 20 and up)."""
    if light_cells:
        return
    for plugin in server_plugins():
        plugin.up(ncells)


def lab_mode(light_arg):
    """Light cells or not: LIGHT_ARG if given, else the running lab's mode, else $PICLAB_LIGHT."""
    if light_arg is not None:
        return bool(light_arg)
    info = lab_info()
    return bool(info.get("light")) if info else env_light()


def lab_json(ncells, light_cells):
    doc = {"cells": ncells, "prefix": prefix()}
    if light_cells:
        doc["light"] = True
    return json.dumps(doc) + "\n"


def up(cells=1, verify=True, light=None):   # pylint: disable=redefined-outer-name
    """Bring the lab up (idempotent).  LIGHT: light cells (no WireGuard peers, no
    daemon per cell: see lab/README.md); None: as running, else $PICLAB_LIGHT.
    Returns {"cells": N, "seconds": t, "light": bool}."""
    t0 = time.monotonic()
    ncells = int(cells)
    lite = lab_mode(light)
    check_host(ncells)
    check_mode(lite)
    prepare_run_dir()
    remove_extra_cells(ncells, lite)
    write_file(run_path("lab.json"), lab_json(ncells, lite))
    kill_strays()
    raise_inotify_limit(ncells)
    create_namespaces(ncells, lite)
    create_links(ncells, lite)
    start_daemons(ncells, lite)
    configure_wireguard(ncells, lite)
    configure_addresses(ncells, lite)
    configure_nftables(ncells)
    write_client_files(ncells)
    start_exit_servers(ncells, lite)
    if verify:
        verify_lab(ncells)
    return {"cells": ncells, "seconds": round(time.monotonic() - t0, 2), "light": lite}


# --------------------------------------------------------------------------
# down
# --------------------------------------------------------------------------
def cells_present():
    """Cell namespaces that exist (whatever lab.json says)."""
    pre = prefix() + "-cell"
    out = []
    for n in namespaces():
        rest = n[len(pre):] if n.startswith(pre) else ""
        if rest.isdigit():
            out.append("cell" + rest)
    return sorted(out, key=lambda c: int(c[4:]))


def remove_nodes(names):
    """Kill the processes of lab nodes NAMES, delete their namespaces and files."""
    pids = set()
    present = [n for n in names if os.path.exists(netns_path(n))]
    for n in present:
        pids.update(namespace_pids(n))
    markers = {marker(n, d) for n in names for d in ("wireguard-go", "echo")}
    pids.update(p for p, m in lab_daemons().items() if m in markers)
    kill_wait(pids)
    for n in present:
        sh(["ip", "netns", "del", ns(n)], check=False)
    for n in names:
        shutil.rmtree(node_dir(n), ignore_errors=True)


def kill_namespace_processes(names):
    """Kill every process in the namespaces NAMES and every daemon of the lab.

    Several passes: a supervisor in a namespace (a cell's supervisord) may
    restart a child it saw die before it dies itself; that child must not
    outlive the lab (it would keep writing to the next lab's run dir).
    Returns the pids killed."""
    killed = set()
    for _pass in range(5):
        pids = set()
        for n in names:
            cp = sh(["ip", "netns", "pids", n], check=False)
            pids.update(int(x) for x in cp.stdout.split() if x.isdigit())
        # daemons the lab started, wherever they are (covers a namespace deleted
        # behind our back but kept alive by a TUN fd)
        pids.update(lab_daemons())
        pids.discard(os.getpid())
        if not pids:
            break
        kill_wait(pids)
        killed |= pids
    return killed


def down():
    """Remove everything the lab created (idempotent; works after a partial up)."""
    t0 = time.monotonic()
    names = namespaces()
    killed = kill_namespace_processes(names)
    for n in names:
        sh(["ip", "netns", "del", n], check=False)
    left = namespaces()
    if left:
        raise LabError("could not delete namespaces: %s" % ", ".join(left))
    rd = run_dir()
    if os.path.isdir(rd) and len(rd.strip("/").split("/")) >= 2:
        shutil.rmtree(rd)
    return {"seconds": round(time.monotonic() - t0, 2), "namespaces": len(names),
            "killed": len(killed)}


# --------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------
def node_status(node):
    info = {"namespace": os.path.exists(netns_path(node))}
    if node != "inet":
        info["wireguard-go"] = daemon_pid(node)
    else:
        info["echo"] = daemon_pid("inet", "echo")
    if info["namespace"] and node != "inet":
        now = time.time()
        info["handshakes"] = {k[:8] + "..": (int(now - v) if v else None)
                              for k, v in handshakes(node).items()}
    return info


def status():
    n = len(cells())
    return {"run_dir": run_dir(), "prefix": prefix(), "cells": n, "light": light(),
            "namespaces": namespaces(), "nodes": {node: node_status(node) for node in nodes(n)}}
