# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a proxy-type exit instance only while its upstream server answers.

    python3 exitguard.py --upstream HOST:PORT [--interval S] [--fail-after N] [--pidfile PATH] -- COMMAND...

The monitor judges a proxy-type exit (sshuttle, proxy) by a TCP connect to
the instance's ``local_port``.  redsocks keeps listening when its proxy is
gone, and sshuttle listens before its SSH session exists, so the port alone
would call a dead exit alive and fail-open peers would not fall back.  The
guard makes the port mean "the exit works": it starts COMMAND only once a TCP
connect to the upstream (the SSH server, the proxy) succeeds, stops it after
``fail_after`` failed probes in a row (one every ``interval`` seconds), and
starts it again when the upstream is back.  It runs under the service manager
as the instance's program; COMMAND runs in its own session, with a parent-death
signal, so that a killed guard never leaves it behind.  (The parent-death signal
is lost when COMMAND changes its user, as redsocks does: with ``--pidfile`` a
restarted guard first stops the COMMAND an earlier guard left running.)

Standalone: stdlib only, no relative imports (run as a script on the cell).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def parse_hostport(value):
    """'host:port', '[v6]:port' or 'v6addr:port' (last colon) -> (host, port)."""
    value = str(value).strip()
    if value.startswith('['):
        host, _sep, rest = value[1:].partition(']')
        port = rest.lstrip(':')
    else:
        host, _sep, port = value.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('%r is not HOST:PORT' % value)
    return host, int(port)


def reachable(host, port, timeout=2.0):
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.timeout):
        return False
    sock.close()
    return True


def _parent_death_signal():
    """In the child: get SIGTERM when the guard dies (Linux prctl)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


parent_death_signal = _parent_death_signal   # also used by the monitor for its `nft monitor`


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return [arg.decode('utf-8', 'replace') for arg in handle.read().split(b'\0') if arg]
    except (IOError, OSError):
        return None


def reap_stale(pidfile, command, wait=5.0):
    """Stop the COMMAND an earlier guard started (pid in PIDFILE), if it still runs."""
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None
    if pid <= 1 or pid == os.getpid() or _cmdline(pid) != list(command):
        return None
    for sig, pause in ((signal.SIGTERM, wait), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except OSError:
            return pid
        end = time.time() + pause
        while time.time() < end and _cmdline(pid) is not None:
            time.sleep(0.05)
        if _cmdline(pid) is None:
            return pid
    return pid


class Guard(object):
    def __init__(self, upstream, command, interval=1.0, fail_after=2, probe=reachable, log=None, pidfile=None):
        self.upstream = upstream
        self.command = command
        self.pidfile = pidfile
        self.interval = interval
        self.fail_after = fail_after
        self.probe = probe
        self.log = log or (lambda msg: (sys.stdout.write('pic-exit-guard: %s\n' % msg), sys.stdout.flush()))
        self.child = None
        self.fails = 0
        self.stopping = False

    def start(self):
        self.log('upstream %s:%d answers; starting %s' % (self.upstream + (self.command[0],)))
        self.child = subprocess.Popen(self.command, start_new_session=True,  # pylint: disable=consider-using-with
                                      preexec_fn=_parent_death_signal)
        if self.pidfile:
            with open(self.pidfile, 'w') as handle:
                handle.write('%d\n' % self.child.pid)

    def stop(self, why):
        if self.child is None:
            return
        if self.child.poll() is None:
            self.log('%s; stopping the instance (pid %d)' % (why, self.child.pid))
            self.child.terminate()
            try:
                self.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        # whatever the instance left in its session (ssh, a firewall helper)
        try:
            os.killpg(self.child.pid, signal.SIGTERM)
        except OSError:
            pass
        self.child = None
        if self.pidfile:
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass

    def step(self):
        """One probe; start or stop the instance. Returns the seconds to sleep."""
        if self.child is not None and self.child.poll() is not None:
            self.log('the instance exited with status %s' % self.child.returncode)
            self.stop('it exited')
        ok = self.probe(*self.upstream)
        self.fails = 0 if ok else self.fails + 1
        if self.child is None:
            if ok:
                self.start()
            return self.interval
        if self.fails >= self.fail_after:
            self.stop('upstream %s:%d does not answer (%d probes)' % (self.upstream + (self.fails,)))
        return self.interval

    def run(self):
        def _term(_signum, _frame):
            self.stopping = True
        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGINT, _term)
        if self.pidfile:
            stale = reap_stale(self.pidfile, self.command)
            if stale:
                self.log('stopped the instance an earlier guard left running (pid %d)' % stale)
        try:
            while not self.stopping:
                pause = self.step()
                end = time.time() + pause
                while not self.stopping and time.time() < end:
                    time.sleep(0.1)
        finally:
            self.stop('the guard stops')
        return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='exitguard')
    parser.add_argument('--upstream', required=True, help='HOST:PORT that must accept TCP connections')
    parser.add_argument('--interval', type=float, default=1.0)
    parser.add_argument('--fail-after', type=int, default=2)
    parser.add_argument('--pidfile', help="where the instance's pid is kept (stale instances are stopped)")
    parser.add_argument('command', nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        parser.error('the instance command is missing (after --)')
    try:
        upstream = parse_hostport(args.upstream)
    except ValueError as exc:
        parser.error(str(exc))
    return Guard(upstream, command, args.interval, args.fail_after, pidfile=args.pidfile).run()


if __name__ == '__main__':
    sys.exit(main())  # pylint: disable=ansible-bad-function
