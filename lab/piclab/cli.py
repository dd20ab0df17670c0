"""The lab's command line: ``python3 lab/piclab up|down|status|exec|fetch|probe|...``."""

import argparse
import json
import os
import sys

from .addresses import NSEXEC, cells, run_dir
from .commands import LabError, lab_env
from .exit_server import exit_start, exit_stop
from .lifecycle import down, status, up
from .traffic import counters, counters_reset, fetch, send_probe


def build_parser():
    ap = argparse.ArgumentParser(prog="piclab", description="pic.connectivity local cell lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="create/repair the lab and verify it")
    p.add_argument("--cells", type=int, default=None,
                   help="number of cells (default: as running, else 1)")
    p.add_argument("--no-verify", action="store_true")
    p.add_argument("--light", action="store_true", default=None,
                   help="light cells: no WireGuard peers and no daemon per cell, the peers on "
                        "the far end of a veth wg0 (also PICLAB_LIGHT=1; default: as running)")
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
    for name in ("exit-stop", "exit-start", "counters-reset", "counters"):
        sub.add_parser(name)
    return ap


def cmd_up(a, _ap):
    r = up(a.cells or len(cells()) or 1, verify=not a.no_verify, light=a.light)
    print("piclab: %d %scell(s) up in %.1fs (run dir %s)" % (
        r["cells"], "light " if r["light"] else "", r["seconds"], run_dir()))


def cmd_down(_a, _ap):
    r = down()
    print("piclab: down in %.1fs (%d namespaces, %d processes)" % (
        r["seconds"], r["namespaces"], r["killed"]))


def cmd_exec(a, ap):
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("exec NODE -- CMD...")
    os.execve(NSEXEC, [NSEXEC, a.node] + cmd, lab_env())


def cmd_fetch(a, _ap):
    r = fetch(a.peer, a.family, a.cell)
    if r is None:
        print("piclab: fetch failed", file=sys.stderr)
        return 1
    print(r)
    return 0


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": lambda a, ap: print(json.dumps(status(), indent=2)),
    "exec": cmd_exec,
    "fetch": cmd_fetch,
    "probe": lambda a, ap: send_probe(a.peer, a.family, a.cell),
    "exit-stop": lambda a, ap: exit_stop(),
    "exit-start": lambda a, ap: print(exit_start()),
    "counters-reset": lambda a, ap: counters_reset(),
    "counters": lambda a, ap: print(json.dumps(counters(), indent=2, sort_keys=True)),
}


def main(argv=None):
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        return COMMANDS[a.cmd](a, ap) or 0
    except (LabError, ValueError) as e:
        print("piclab: error: %s" % e, file=sys.stderr)
        return 1
