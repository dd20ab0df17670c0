#!/usr/bin/python3
"""A small private Tor network for the lab (``TestingTorNetwork``).

Nodes (public hosts on the lab's internet, see ``piclab.public_host``):

| node  | host | role |
|-------|------|------|
| tora1 | 70   | directory authority (also a guard/middle relay) |
| tora2 | 71   | directory authority |
| tora3 | 72   | directory authority |
| torr1 | 73   | relay (no exit) |
| torr2 | 74   | relay (no exit) |
| torx  | 80   | exit relay: port 80 (IPv4 and IPv6) |

The exit policy opens port 80 to every address, not only the lab's server
networks (198.51.100.0/24, 2001:db8:ff::/64, the only web servers on the
lab's internet): clients choose exits by the policy *summary* of the
microdescriptor, which only counts ports open to (nearly) all addresses, so an
exit open to one /24 is no exit at all for them.

Keys are made once per run dir (``tor-gencert`` for the authorities' v3
keys, ``tor --list-fingerprint`` for the relay identities), like the lab's
WireGuard keys.  Timings are chutney's fast test settings: the network has a
consensus with the exit in it about 10-20 s after ``start()``.

The exit relay resolves names with a stub resolver of its own (127.0.0.1:53
in its namespace): ``*.piclab.test`` -> the echo server (198.51.100.80,
2001:db8:ff::80), anything else NXDOMAIN.  A name that resolves therefore
proves that the query went through the Tor exit.

Client files under ``$PICLAB_RUN/exits/`` (0600):

* ``tor-authorities.txt``: the ``DirAuthority`` lines a client needs;
* ``tor-exit.json``: ``{"v4": ..., "v6": ..., "nickname": ...}`` of the exit relay.

The network is opt-in (six tor processes): ``start()`` (or ``PICLAB_TOR=1``
for ``piclab up``) builds and starts it; afterwards every ``piclab up``
repairs it.  ``stop()`` kills the daemons and keeps keys and state.
CLI: ``python3 lab/servers/tor.py start|stop|status|wait``.
"""
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import piclab  # noqa: E402

TOR = "/usr/bin/tor"
GENCERT = "/usr/bin/tor-gencert"
ORPORT = 5000
DIRPORT = 7000
AUTHORITIES = (("tora1", 70), ("tora2", 71), ("tora3", 72))
RELAYS = (("torr1", 73), ("torr2", 74))
EXIT = ("torx", 80)
NODES = AUTHORITIES + RELAYS + (EXIT,)
DAEMON = "tor"
DNS_DAEMON = "dns"
DNS_SUFFIX = ".piclab.test"

COMMON = """\
TestingTorNetwork 1
AssumeReachable 1
PathsNeededToBuildCircuits 0.25
TestingDirAuthVoteExit *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
RunAsDaemon 0
ShutdownWaitLength 0
Log notice stdout
ProtocolWarnings 1
SafeLogging 0
DisableDebuggerAttachment 0
SocksPort 0
ContactInfo lab@piclab.test
"""

AUTHORITY = """\
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
DirPort {ip}:{dirport}
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
ExitPolicy reject *:*
"""

RELAY = """\
ExitRelay 0
ExitPolicy reject *:*
"""

EXIT_POLICY = """\
ExitRelay 1
IPv6Exit 1
ExitPolicy accept {net4}:80
ExitPolicy accept6 [{net6_addr}]/{net6_len}:80
ExitPolicy accept *:80
ExitPolicy accept6 *:80
ExitPolicy reject *:*
ExitPolicy reject6 *:*
ServerDNSResolvConfFile {dir}/resolv.conf
ServerDNSDetectHijacking 0
ServerDNSAllowNonRFC953Hostnames 1
"""


def _data_dir(node):
    return os.path.join(piclab.run_dir(), "nodes", node, "tor")


def _exits_dir():
    return os.path.join(piclab.run_dir(), "exits")


def authorities_path():
    return os.path.join(_exits_dir(), "tor-authorities.txt")


def exit_info_path():
    return os.path.join(_exits_dir(), "tor-exit.json")


def _wanted():
    return os.environ.get("PICLAB_TOR") == "1" or os.path.exists(authorities_path())


def _addr(host):
    return "203.0.113.%d" % host, "2001:db8:1::%d" % host


def _write(path, text, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _keys(node, host):
    """Make the node's keys once; returns (identity fingerprint, v3 ident or None)."""
    data = _data_dir(node)
    keys = os.path.join(data, "keys")
    os.makedirs(keys, mode=0o700, exist_ok=True)
    os.chmod(data, 0o700)
    v3ident = None
    if (node, host) in AUTHORITIES:
        cert = os.path.join(keys, "authority_certificate")
        if not os.path.exists(cert):
            subprocess.run([GENCERT, "--create-identity-key", "--passphrase-fd", "0", "-m", "24",
                            "-a", "%s:%d" % (_addr(host)[0], DIRPORT),
                            "-i", os.path.join(keys, "authority_identity_key"),
                            "-s", os.path.join(keys, "authority_signing_key"),
                            "-c", cert], input="\n", capture_output=True, text=True, check=True)
        with open(cert) as handle:
            v3ident = re.search(r"^fingerprint (\S+)", handle.read(), re.M).group(1)
    fpfile = os.path.join(data, "fingerprint")
    if not os.path.exists(fpfile):
        subprocess.run([TOR, "--quiet", "--ignore-missing-torrc", "-f", "/dev/null", "--DisableNetwork", "1",
                        "--list-fingerprint", "--orport", "1", "--datadirectory", data, "--nickname", node,
                        "--DirAuthority", "x 127.0.0.1:1 " + "f" * 40],
                       capture_output=True, text=True, check=True)
    with open(fpfile) as handle:
        fingerprint = handle.read().split()[1]
    return fingerprint, v3ident


def _torrc(node, host, authority_lines):
    ip4, _ip6 = _addr(host)
    data = _data_dir(node)
    text = COMMON + "Nickname %s\nDataDirectory %s\nAddress %s\nORPort %s:%d\n" % (node, data, ip4, ip4, ORPORT)
    if (node, host) in AUTHORITIES:
        text += AUTHORITY.format(ip=ip4, dirport=DIRPORT)
    elif (node, host) == EXIT:
        net6_addr, net6_len = piclab.SERVER_NET6.split("/")
        text += EXIT_POLICY.format(net4=piclab.SERVER_NET4, net6_addr=net6_addr, net6_len=net6_len, dir=data)
        _write(os.path.join(data, "resolv.conf"), "nameserver 127.0.0.1\n", 0o644)
    else:
        text += RELAY
    text += authority_lines
    _write(os.path.join(data, "torrc"), text, 0o600)


def build():
    """Namespaces, keys, torrc files and client files (idempotent, no daemons)."""
    if not os.path.exists("/run/netns/%s" % piclab.ns("inet")):
        raise piclab.LabError("the lab is not up (no namespace %s): run lab/piclab up first" % piclab.ns("inet"))
    lines = []
    for node, host in NODES:
        piclab.public_host(node, host)
    for node, host in AUTHORITIES:
        fingerprint, v3ident = _keys(node, host)
        lines.append("DirAuthority %s orport=%d no-v2 v3ident=%s %s:%d %s\n"
                     % (node, ORPORT, v3ident, _addr(host)[0], DIRPORT, fingerprint))
    for node, host in RELAYS + (EXIT,):
        _keys(node, host)
    authority_lines = "".join(lines)
    for node, host in NODES:
        _torrc(node, host, authority_lines)
    _write(authorities_path(), authority_lines)
    v4, v6 = _addr(EXIT[1])
    _write(exit_info_path(), json.dumps({"v4": v4, "v6": v6, "nickname": EXIT[0]}) + "\n")


def start():
    """Build the network and start every daemon that does not run (idempotent).
    Returns the nodes whose tor was started."""
    build()
    started = _start_once()
    if started:
        # A tor that exits at once (seen for the exit relay right after the network was stopped and
        # started again) is gone by now: then the whole network is stopped and started once more
        # (stop() kills every tor of the network first, so none is ever started twice).
        time.sleep(2.0)
        if set(n for n, _h in NODES) - set(running()):
            stop()
            started = _start_once()
    return started


def _start_once():
    started = []
    if piclab.spawn(EXIT[0], DNS_DAEMON, [piclab.PYTHON, os.path.abspath(__file__), "_dns-stub"]):
        started.append(EXIT[0] + "/" + DNS_DAEMON)
    for node, _host in NODES:
        if piclab.spawn(node, DAEMON, [TOR, "-f", os.path.join(_data_dir(node), "torrc")]):
            started.append(node)
    return started


def stop():
    """Stop every daemon of the network (keys and state stay)."""
    for node, _host in NODES:
        if os.path.exists("/run/netns/%s" % piclab.ns(node)):
            piclab.stop(node, DAEMON)
    if os.path.exists("/run/netns/%s" % piclab.ns(EXIT[0])):
        piclab.stop(EXIT[0], DNS_DAEMON)


def running():
    return [node for node, _host in NODES if piclab.daemon_pid(node, DAEMON)]


def up(ncells):  # noqa: ARG001 (the plugin interface)
    """piclab.up(): repair the network once it was started (opt-in, see the module doc)."""
    if _wanted():
        start()


def check():
    if not _wanted():
        return []
    missing = sorted(set(n for n, _h in NODES) - set(running()))
    return ["tor not running in %s" % n for n in missing]


def exit_address(family=4):
    return _addr(EXIT[1])[0 if int(family) == 4 else 1]


def authority_lines():
    """The DirAuthority values (without the keyword) a client needs."""
    with open(authorities_path()) as handle:
        return [line.split(None, 1)[1].strip() for line in handle if line.startswith("DirAuthority ")]


def network_ready():
    """True when an authority's consensus lists the exit relay with the Exit flag
    and at least three other running relays."""
    for node, _host in AUTHORITIES:
        path = os.path.join(_data_dir(node), "cached-microdesc-consensus")
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            continue
        relays = re.findall(r"^r (\S+) .*\n(?:[^r].*\n)*?s ([^\n]*)", text, re.M)
        flags = dict(relays)
        if EXIT[0] in flags and "Exit" in flags[EXIT[0]].split() and \
                sum(1 for f in flags.values() if "Running" in f.split()) >= 4 and _exit_microdesc(node):
            return True
    return False


def _exit_microdesc(node):
    """The authority has a microdescriptor with an exit policy summary (the exit's)."""
    for name in ("cached-microdescs", "cached-microdescs.new"):
        try:
            with open(os.path.join(_data_dir(node), name)) as handle:
                if re.search(r"^p accept .*\b80\b", handle.read(), re.M):
                    return True
        except OSError:
            continue
    return False


def wait_ready(timeout=60):
    """Wait for network_ready(); returns the seconds it took."""
    started = time.monotonic()
    while not network_ready():
        if time.monotonic() - started > timeout:
            raise piclab.LabError("the private Tor network has no usable consensus after %ds; see %s"
                                  % (timeout, os.path.join(piclab.run_dir(), "logs")))
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


# --------------------------------------------------------------------------
# The exit relay's resolver
# --------------------------------------------------------------------------
def _dns_answer(query):
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        return None
    pos, labels = 12, []
    while query[pos]:
        size = query[pos]
        labels.append(query[pos + 1:pos + 1 + size].decode("ascii", "replace"))
        pos += 1 + size
    qtype, _qclass = struct.unpack("!HH", query[pos + 1:pos + 5])
    question = query[12:pos + 5]
    name = ".".join(labels).lower()
    rdata = None
    if name.endswith(DNS_SUFFIX) or name == DNS_SUFFIX[1:]:
        if qtype == 1:
            rdata = socket.inet_pton(socket.AF_INET, piclab.SERVER_V4)
        elif qtype == 28:
            rdata = socket.inet_pton(socket.AF_INET6, piclab.SERVER_V6)
        rcode = 0
    else:
        rcode = 3
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if rdata else 0, 0, 0)
    answer = b""
    if rdata:
        answer = struct.pack("!HHHIH", 0xc00c, qtype, 1, 60, len(rdata)) + rdata
    return header + question + answer


def _dns_stub():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 53))
    while True:
        data, addr = sock.recvfrom(4096)
        try:
            reply = _dns_answer(data)
        except (IndexError, struct.error, ValueError):
            reply = None
        if reply:
            sock.sendto(reply, addr)


def main(argv):
    try:
        return _main(argv)
    except piclab.LabError as exc:
        print("tor lab: %s" % exc, file=sys.stderr)
        return 1


def _main(argv):
    cmd = argv[0] if argv else "status"
    if cmd == "_dns-stub":
        _dns_stub()
    elif cmd == "start":
        print(json.dumps({"started": start(), "ready_after": wait_ready()}))
    elif cmd == "wait":
        print(json.dumps({"ready_after": wait_ready()}))
    elif cmd == "stop":
        stop()
    else:
        print(json.dumps({"running": running(), "ready": network_ready(), "problems": check()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
