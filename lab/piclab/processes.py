"""The lab's daemons: started detached in a node with a marker in their
environment (PICLAB_DAEMON=node/daemon), found again by that marker, and killed."""

import os
import signal
import subprocess
import time

from .addresses import NSEXEC, PKG_DIR, PYTHON, WG_IF, daemon_log, netns_path, run_dir, run_path, prefix
from .commands import LabError, lab_env, namespace_pids, write_file

ECHO_SERVER = os.path.join(PKG_DIR, "echo_server.py")
KNOWN_DAEMONS = ("wireguard-go", "echo")


def netns_inode(node):
    try:
        return os.stat(netns_path(node)).st_ino
    except OSError:
        return None


def proc_alive(pid):
    """True while PID runs (reaps it first if it is our child)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return st not in ("Z", "X")


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def in_node(pid, node):
    """True if PID runs in NODE's (current) namespace."""
    ino = netns_inode(node)
    try:
        link = os.readlink("/proc/%d/ns/net" % pid)
    except OSError:
        return False
    return ino is not None and link == "net:[%d]" % ino


def pidfile(node, daemon):
    return run_path("pids", "%s-%s.pid" % (node, daemon))


def marker(node, daemon):
    return "%s/%s" % (node, daemon)


def matches_daemon(daemon, argv):
    """True if ARGV is the command line of the lab's DAEMON (a known one)."""
    if daemon == "wireguard-go":
        return bool(argv) and argv[0].endswith("wireguard-go") and argv[-1] == WG_IF
    if daemon == "echo":
        return ECHO_SERVER in argv
    return False


def _environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def _marker_in(env):
    for e in env:
        if e.startswith(b"PICLAB_DAEMON="):
            return e[14:].decode(errors="replace")
    return None


def daemon_marker(pid):
    """The PICLAB_DAEMON marker of PID if this lab (run dir) started it, else None."""
    env = _environ(pid)
    if env is None or b"PICLAB_RUN=" + run_dir().encode() not in env:
        return None
    return _marker_in(env)


def daemon_pid(node, daemon="wireguard-go"):
    """pid of a lab daemon ("wireguard-go" or "echo") in NODE, or None if not running."""
    try:
        with open(pidfile(node, daemon)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    known = daemon in KNOWN_DAEMONS     # plugins' daemons: the marker alone
    if proc_alive(pid) and (matches_daemon(daemon, cmdline(pid)) or not known) \
            and in_node(pid, node) and daemon_marker(pid) == marker(node, daemon):
        return pid
    return None


def lab_daemons():
    """{pid: "node/daemon"} of every daemon this lab (run dir + prefix) started,
    wherever it runs now (also in a namespace deleted behind the lab's back)."""
    want_run = b"PICLAB_RUN=" + run_dir().encode()
    want_pre = b"PICLAB_PREFIX=" + prefix().encode()
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        env = _environ(int(d))
        if env is not None and want_run in env and want_pre in env:
            m = _marker_in(env)
            if m is not None:
                out[int(d)] = m
    return out


def kill_wait(pids, timeout=3.0):
    """SIGTERM PIDS, SIGKILL what is left after TIMEOUT; LabError if any survive."""
    pids = {p for p in pids if p and p != os.getpid()}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 3.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        end = time.monotonic() + wait
        while time.monotonic() < end:
            pids = {p for p in pids if proc_alive(p)}
            if not pids:
                return
            time.sleep(0.02)
    pids = {p for p in pids if proc_alive(p)}
    if pids:
        raise LabError("processes would not die: %s" % sorted(pids))


def start_daemon(node, daemon, argv):
    """Start ARGV in NODE detached, logged, marked as DAEMON.  Returns its pid."""
    os.makedirs(run_path("logs"), exist_ok=True)
    os.makedirs(run_path("pids"), exist_ok=True)
    log = open(daemon_log(node, daemon), "ab")    # pylint: disable=consider-using-with
    try:
        p = subprocess.Popen(    # pylint: disable=consider-using-with
            [NSEXEC, node] + argv, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, env=dict(lab_env(), PICLAB_DAEMON=marker(node, daemon)))
    finally:
        log.close()
    write_file(pidfile(node, daemon), "%d\n" % p.pid)
    return p.pid


def spawn(node, daemon, argv):
    """Start DAEMON (a name) as ARGV in NODE, detached, logged, unless it runs."""
    if daemon_pid(node, daemon):
        return False
    start_daemon(node, daemon, list(argv))
    return True


def stop(node, daemon):
    """Kill NODE's DAEMON (and strays of it in the namespace); forget its pidfile."""
    pids = {p for p, m in lab_daemons().items() if m == marker(node, daemon)}
    # strays (e.g. pidfile lost): same daemon in the same namespace
    if netns_inode(node) is not None:
        for q in namespace_pids(node):
            if matches_daemon(daemon, cmdline(q)):
                pids.add(q)
    kill_wait(pids)
    try:
        os.unlink(pidfile(node, daemon))
    except OSError:
        pass


def kill_strays():
    """Kill lab daemons that run in a namespace which is no longer their node's
    (its name was deleted): they keep the old namespace, and its veths, alive."""
    stray = [pid for pid, m in lab_daemons().items() if not in_node(pid, m.split("/")[0])]
    kill_wait(stray)


def start_echo():
    """Start the HTTP echo server in the internet namespace unless it runs."""
    if daemon_pid("inet", "echo"):
        return False
    stop("inet", "echo")
    start_daemon("inet", "echo", [PYTHON, ECHO_SERVER])
    return True

