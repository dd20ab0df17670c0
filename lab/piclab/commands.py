"""Running commands in the lab: on the host, in a node (through lab/nsexec),
`ip -batch`, nft tables, and writing the lab's files."""

import json
import os
import shlex
import subprocess

from .addresses import NSEXEC, ns, prefix, run_dir


class LabError(RuntimeError):
    """The lab could not be brought up / operated; the message says why."""


def lab_env():
    """The environment of every lab command (carries the run dir and prefix)."""
    env = dict(os.environ)
    env["PICLAB_RUN"] = run_dir()
    env["PICLAB_PREFIX"] = prefix()
    env.setdefault("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
    return env


def sh(argv, check=True, timeout=30, input=None):   # pylint: disable=redefined-builtin
    """Run ARGV on the host.  Returns CompletedProcess (text); LabError on failure."""
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True,
                            timeout=timeout, env=lab_env(), check=False)
    except subprocess.TimeoutExpired as e:
        raise LabError("timed out after %ss: %s" % (timeout, shlex.join(argv))) from e
    if check and cp.returncode != 0:
        raise LabError("command failed (rc=%d): %s\n%s%s" % (
            cp.returncode, shlex.join(argv), cp.stdout, cp.stderr))
    return cp


def run(node, *cmd, check=True, timeout=30, input=None):   # pylint: disable=redefined-builtin
    """Run CMD in lab node NODE (through lab/nsexec).  Returns CompletedProcess (text)."""
    if len(cmd) == 1 and isinstance(cmd[0], (list, tuple)):
        cmd = tuple(cmd[0])
    return sh([NSEXEC, node] + [str(c) for c in cmd], check=check, timeout=timeout, input=input)


def ipbatch(node, lines, check=True):
    """Apply `ip` command LINES in NODE's namespace in one `ip -batch`."""
    if not lines:
        return None
    return sh(["ip", "-n", ns(node), "-batch", "-"], input="\n".join(lines) + "\n", check=check)


def links(node):
    """Names of NODE's interfaces (empty if the namespace is missing)."""
    cp = sh(["ip", "-n", ns(node), "-j", "link", "show"], check=False)
    if cp.returncode != 0:
        return set()
    try:
        return {link["ifname"] for link in json.loads(cp.stdout or "[]")}
    except ValueError:
        return set()


def namespaces():
    """The lab's namespaces (every "<prefix>-*"), sorted."""
    cp = sh(["ip", "-j", "netns", "list"], check=False)
    try:
        names = [n["name"] for n in json.loads(cp.stdout or "[]")]
    except ValueError:
        names = [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]
    pre = prefix() + "-"
    return sorted(n for n in names if n.startswith(pre))


def namespace_pids(node):
    """pids of the processes in NODE's namespace."""
    cp = sh(["ip", "netns", "pids", ns(node)], check=False)
    return [int(x) for x in cp.stdout.split() if x.isdigit()]


def nft_replace(node, table, text):
    """Replace nft TABLE ("inet name") in NODE with TEXT, atomically."""
    # create-if-missing, delete, recreate -- in one transaction
    fam, name = table.split()
    sh([NSEXEC, node, "nft", "-f", "-"],
       input="table %s %s\ndelete table %s %s\n%s" % (fam, name, fam, name, text))


def write_file(path, text, mode=0o644):
    """Write TEXT to PATH atomically with MODE (creating its directory)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def tail(path, n=400):
    """The last N characters of a log file, or a note that it is empty/missing."""
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip() or "(empty log)"
    except OSError:
        return "(no log)"
