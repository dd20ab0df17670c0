"""WireGuard keys (generated once per run dir) and the wg(8) configs built from them."""

import os
import shlex

from .addresses import (ACCESS_V4, EXIT_V4, KEEPALIVE, NSEXEC, PEERS, PYTHON, WG_PORT,
                        cell_names, exit_client_address, exit_config_path, peer_address,
                        prefix, python_wrapper, run_dir, run_path, state_dir)
from .commands import sh, write_file


def _read(path):
    with open(path) as f:
        return f.read().strip()


def key(name):
    """(private, public) for key NAME, generated once per run dir."""
    kdir = run_path("keys")
    os.makedirs(kdir, mode=0o700, exist_ok=True)
    os.chmod(kdir, 0o700)
    priv_path = os.path.join(kdir, name + ".key")
    pub_path = os.path.join(kdir, name + ".pub")
    if not os.path.exists(priv_path):
        priv = sh(["wg", "genkey"]).stdout.strip()
        write_file(priv_path, priv + "\n", 0o600)
        if os.path.exists(pub_path):
            os.unlink(pub_path)
    priv = _read(priv_path)
    if not os.path.exists(pub_path):
        pub = sh(["wg", "pubkey"], input=priv + "\n").stdout.strip()
        write_file(pub_path, pub + "\n", 0o600)
    return priv, _read(pub_path)


def public_key(name):
    return key(name)[1]


def ensure_keys(ncells, light=False):
    """Generate every key a lab of NCELLS cells uses (kept across `up`s); light
    cells have no WireGuard of their own: only their exit clients' keys."""
    for c in cell_names(ncells):
        if not light:
            for p in PEERS:
                key("%s-%s" % (c, p))
            key(c)
        key("%s-wgexit" % c)
        key("%s-wgexit4" % c)
    key("wgexit")


# --------------------------------------------------------------------------
# wg(8) configs (for `wg syncconf`) of the lab's own wg0 interfaces
# --------------------------------------------------------------------------
def _peer_section(pub, allowed, endpoint=None, keepalive=None):
    out = ["[Peer]", "PublicKey = %s" % pub]
    if endpoint:
        out.append("Endpoint = %s" % endpoint)
    out.append("AllowedIPs = %s" % allowed)
    if keepalive:
        out.append("PersistentKeepalive = %d" % keepalive)
    return out + [""]


def _interface(priv, listen=True, address=None):
    out = ["[Interface]", "PrivateKey = %s" % priv]
    if address:
        out.append("Address = %s" % address)
    if listen:
        out.append("ListenPort = %d" % WG_PORT)
    return out + [""]


def _wgexit_conf(ncells):
    out = _interface(key("wgexit")[0])
    for k in range(1, ncells + 1):
        out += _peer_section(public_key("cell%d-wgexit" % k), "%s/32, %s/128" % (
            exit_client_address(k, 4), exit_client_address(k, 6)))
        # the IPv4-only variant is a client of its own (own key, own address),
        # so both can be up at once without stealing each other's session
        out += _peer_section(public_key("cell%d-wgexit4" % k),
                             "%s/32" % exit_client_address(k, 4, v4only=True))
    return out


def _peer_conf(node):
    cell, _peer = node.split("-", 1)
    return _interface(key(node)[0], listen=False) + _peer_section(
        public_key(cell), "0.0.0.0/0, ::/0", endpoint="%s:%d" % (ACCESS_V4, WG_PORT),
        keepalive=KEEPALIVE)


def _cell_conf(node):
    out = _interface(key(node)[0])
    for p in PEERS:
        out += _peer_section(public_key("%s-%s" % (node, p)), "%s/32, %s/128" % (
            peer_address(p, 4), peer_address(p, 6)))
    return out


def wg_conf(node, ncells):
    """wg(8) config (for `wg syncconf`) of NODE's wg0."""
    if node == "wgexit":
        lines = _wgexit_conf(ncells)
    elif "-" in node:
        lines = _peer_conf(node)
    else:
        lines = _cell_conf(node)
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Files for the collection / Ansible
# --------------------------------------------------------------------------
def exit_client_conf(k, v4only):
    """wg-quick config of cell K's client of wgexit (the IPv4-only variant if V4ONLY)."""
    priv = key("cell%d-wgexit%s" % (k, "4" if v4only else ""))[0]
    if v4only:
        addr, allowed = "%s/32" % exit_client_address(k, 4, v4only=True), "0.0.0.0/0"
    else:
        addr = "%s/32, %s/128" % (exit_client_address(k, 4), exit_client_address(k, 6))
        allowed = "0.0.0.0/0, ::/0"
    return "\n".join(_interface(priv, listen=False, address=addr) + _peer_section(
        public_key("wgexit"), allowed, endpoint="%s:%d" % (EXIT_V4, WG_PORT), keepalive=KEEPALIVE))


def write_exit_configs(ncells):
    for k in range(1, ncells + 1):
        for v4only in (False, True):
            write_file(exit_config_path(k, v4only), exit_client_conf(k, v4only), 0o600)


def write_python_wrappers(ncells):
    """The per-cell python wrappers (the inventory's interpreter) and state dirs."""
    for k in range(1, ncells + 1):
        text = "#!/bin/sh\n# piclab: python inside lab node cell%d\n" \
               "export PICLAB_RUN=%s PICLAB_PREFIX=%s\nexec %s cell%d %s \"$@\"\n" % (
                   k, shlex.quote(run_dir()), shlex.quote(prefix()),
                   shlex.quote(NSEXEC), k, PYTHON)
        write_file(python_wrapper(k), text, 0o755)
        os.makedirs(state_dir(k), exist_ok=True)
