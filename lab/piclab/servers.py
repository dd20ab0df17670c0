"""Exit servers of the other types: plugins in lab/servers/*.py.

Each plugin module defines ``up(ncells)`` (idempotent: namespaces, daemons,
client files under $PICLAB_RUN/exits/) and may define ``check()`` returning a
list of problems. ``down`` needs nothing from them: every "<prefix>-*"
namespace and every process in it goes. Plugins build on public_host(),
public_nat(), spawn() and stop() and the rest of the package's public API."""

import importlib.util
import os
import sys

from .addresses import LAB_DIR, WAN_IF, mac
from .commands import ipbatch
from .topology import ensure_ns, ensure_veth, wan_lines

SERVERS_DIR = os.path.join(LAB_DIR, "servers")


def server_plugins():
    """The plugin modules of lab/servers/ (not the ones named _*), loaded."""
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
    ensure_ns(node, router=router)
    ensure_veth(node, WAN_IF, "inet", node, mac=mac(0xcb, mac_host or host))
    ipbatch("inet", ["link set %s master br0 up" % node])
    ipbatch(node, wan_lines(v4, v6))
    return v4, v6
