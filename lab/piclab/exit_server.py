"""The lab's WireGuard exit server (node wgexit): stop it and start it again
with the same keys, as the kill-switch tests do."""

import json
import os
import time

from .addresses import WG_IF, cells, node_dir
from .commands import LabError, ipbatch, links, run, write_file
from .processes import daemon_pid, stop
from .topology import exit_wg_lines
from .wireguard import endpoints, start_wg, wait_wg_sockets, wg_sync


def _endpoints_file():
    return os.path.join(node_dir("wgexit"), "endpoints.json")


def exit_stop():
    """Kill wgexit's wireguard-go (its wg0 disappears).  Idempotent."""
    if daemon_pid("wgexit"):
        # remember where the clients were, so exit_start can re-handshake at once
        write_file(_endpoints_file(), json.dumps(endpoints("wgexit")))
    stop("wgexit", "wireguard-go")
    end = time.monotonic() + 5
    while WG_IF in links("wgexit"):
        if time.monotonic() > end:
            raise LabError("wgexit wg0 still present after stopping wireguard-go")
        time.sleep(0.02)


def _kick_clients():
    """Have wgexit initiate a handshake with every client endpoint it knew."""
    try:
        with open(_endpoints_file()) as f:
            eps = json.load(f)
    except (OSError, ValueError):
        eps = {}
    for pub, ep in eps.items():
        run("wgexit", "wg", "set", WG_IF, "peer", pub, "endpoint", ep,
            "persistent-keepalive", "1", check=False)
        run("wgexit", "wg", "set", WG_IF, "peer", pub, "persistent-keepalive", "0",
            check=False)


def exit_start(kick=True):
    """(Re)start wgexit's wireguard-go with the same keys.  Idempotent.
    kick: tell the last known client endpoints to re-handshake now (the
    server initiates), instead of waiting for the clients' timers."""
    ncells = len(cells())
    if not ncells:
        raise LabError("the lab is not up")
    started = start_wg("wgexit")
    wait_wg_sockets(["wgexit"])
    wg_sync("wgexit", ncells)
    ipbatch("wgexit", exit_wg_lines())
    if started and kick:
        _kick_clients()
    return daemon_pid("wgexit")
