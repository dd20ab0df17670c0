# -*- coding: utf-8 -*-
"""What several unit test files share: paths, case data (hostile strings, WireGuard
texts and configs) and rendering a role template as the template module does.

Every test file imports it the same way, wherever it lives:
``from ansible_collections.pic.connectivity.tests.unit.helpers import ...``
(conftest.py makes the work tree importable as ansible_collections.pic.connectivity)."""
import base64
import functools
import os
import re
import socket
import struct
import threading

import jinja2
import pytest
from ansible.plugins.filter.core import FilterModule as CoreFilters
from ansible.plugins.test.core import TestModule as CoreTests
from hypothesis import strategies as st

from ansible_collections.pic.connectivity.plugins.filter import render
from ansible_collections.pic.connectivity.plugins.module_utils import connections
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

# -- paths ----------------------------------------------------------------------------------------

# The work tree (the collection root), whichever way this module was imported.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
# The directory holding ansible_collections/pic/connectivity (a link to ROOT made by conftest.py),
# for ANSIBLE_COLLECTIONS_PATH and sys.path of child processes.
_HERE = os.path.abspath(__file__)
COLLECTIONS = _HERE[:_HERE.rindex(os.sep + 'ansible_collections' + os.sep)] \
    if os.sep + 'ansible_collections' + os.sep in _HERE else None

# -- hostile strings (validation) -----------------------------------------------------------------

KEY = base64.b64encode(bytes(range(32))).decode()
HOSTILE_CHARS = st.sampled_from(list('\x00\n\r\t\x0b\x0c\x1b\x7f\x85\u2028\u2029\u202e\ufeff %"\'\\-@:/[]=#;$`'
                                     'aZ09.,_+fFd:x') + ['\u00e9', '\u0661', '\uff10', '\U0001f600'])
HOSTILE = st.one_of(
    st.text(HOSTILE_CHARS, max_size=40),
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(['fd00::1', '10.0.0.1', 'alice', 'pic-x', 'ssh.example', '-',
                                                   '@', KEY]), st.text(HOSTILE_CHARS, max_size=12)),
    st.builds(lambda a, b: a + b, st.text(HOSTILE_CHARS, max_size=3), st.sampled_from(['fd00::1', '10.0.0.1',
                                                                                       'alice', KEY])),
    st.text('a.-', min_size=200, max_size=400),
)
CONTROL = re.compile(u'[\x00-\x1f\x7f-\x9f\u2028\u2029]')

# -- wireguard_ext connections (connections, wgconf) ----------------------------------------------

PRIV = base64.b64encode(bytes([7]) * 32).decode()
PUB = base64.b64encode(bytes([8]) * 32).decode()
PSK = base64.b64encode(bytes([9]) * 32).decode()


def wg_text(extra_iface='', extra_peer='', allowed='0.0.0.0/0, ::/0', address='10.200.0.11/32, fd00:200::11/128'):
    """A wg-quick text with the fixed keys PRIV and PUB."""
    return ('[Interface]\nPrivateKey = %s\nAddress = %s\n%s\n[Peer]\nPublicKey = %s\nEndpoint = 203.0.113.20:51820\n'
            'AllowedIPs = %s\n%s' % (PRIV, address, extra_iface, PUB, allowed, extra_peer))


def keyed(**over):
    """A flat wireguard_ext config with the fixed keys, ``over`` replacing or adding keys."""
    config = {'private_key': PRIV, 'address': ['10.1.0.2/32'], 'peer_public_key': PUB,
              'endpoint': '203.0.113.20:51820'}
    config.update(over)
    return config


def refused(ctype, config, name='X', doc=None):
    """The PicError of planning a connection of ``ctype`` with ``config``."""
    with pytest.raises(PicError) as err:
        connections.plan(doc or empty(), {'name': name, 'type': ctype, 'config': config})
    return err.value


# -- a cell with one wireguard_ext exit (model) ---------------------------------------------------

def keys_wg_text(keys, allowed='0.0.0.0/0, ::/0', address='10.200.0.11/32, fd00:200::11/128', extra=''):
    """A wg-quick text with the keys of the ``keys`` fixture (private keys[0], peer keys[1])."""
    return ('[Interface]\nPrivateKey = %s\nAddress = %s\n%s\n[Peer]\nPublicKey = %s\n'
            'Endpoint = 203.0.113.20:51820\nAllowedIPs = %s\n' % (keys[0], address, extra, keys[1], allowed))


def new_cell(keys, **conn):
    """A registry with one wireguard_ext connection 'Exit WG' (``conn`` overrides the call), and its record."""
    doc = empty()
    params = {'name': 'Exit WG', 'type': 'wireguard_ext', 'config': {'wg_config': keys_wg_text(keys)}}
    params.update(conn)
    doc, record, _payload, _secrets, _removed = connections.plan(doc, params)
    return doc, record


# -- role templates -------------------------------------------------------------------------------

MANAGED = 'Ansible managed'


@functools.lru_cache(maxsize=1)
def environment():
    """Jinja as the template module sets it up: trim_blocks, Ansible's core filters and tests,
    the collection's filters under their FQCN."""
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
                             loader=jinja2.FileSystemLoader(os.path.join(ROOT, 'roles')))
    core = CoreFilters().filters()
    for name in ('default', 'd'):   # Jinja's own default understands StrictUndefined
        core.pop(name, None)
    env.filters.update(core)
    env.tests.update(CoreTests().tests())
    env.filters.update(dict(('pic.connectivity.' + name, function)
                            for name, function in render.FilterModule().filters().items()))
    return env


def render_template(role, name, **variables):
    """The text of roles/<role>/templates/<name> for ``variables``."""
    variables.setdefault('ansible_managed', MANAGED)
    return environment().get_template('%s/templates/%s' % (role, name)).render(**variables)


# -- a throwaway network namespace (kernel state: nftables, rules, routes, links) ------------------

CLONE_NEWNET = 0x40000000


def _unshare_net():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), 'unshare(CLONE_NEWNET)')
    import subprocess
    subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)


def in_netns(func, *args, **kwargs):
    """``func(*args, **kwargs)`` in a forked child in a network namespace of its own (its own
    nftables, rules, routes, links and ports, gone when the child exits): its return value,
    or its exception raised again here. Needs root."""
    if os.geteuid() != 0:
        pytest.skip('a network namespace needs root')
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: whatever happens, it never returns into pytest
        try:
            os.close(read_end)
            with os.fdopen(write_end, 'wb') as out:
                out.write(_outcome(func, args, kwargs))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as handle:
        data = handle.read()
    _pid, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError('the namespace child died without an answer (wait status %d)' % status)
    import pickle
    kind, value = pickle.loads(data)
    if kind == 'raised':
        raise value
    return value


def _outcome(func, args, kwargs):
    """The pickled ('ok', result) or ('raised', exception) of ``func`` in a new namespace;
    what cannot be pickled comes back as a RuntimeError with the traceback."""
    import pickle
    import traceback
    try:
        _unshare_net()
        outcome = ('ok', func(*args, **kwargs))
    except BaseException as exc:  # pylint: disable=broad-except
        outcome = ('raised', exc)
    try:
        return pickle.dumps(outcome)
    except Exception:  # pylint: disable=broad-except
        return pickle.dumps(('raised', RuntimeError(traceback.format_exc() if outcome[0] == 'ok' else
                                                    ''.join(traceback.format_exception(outcome[1])))))


DEBIAN_NFTABLES = '/usr/lib/python3/dist-packages/nftables'


def use_libnftables(monkeypatch):
    """nft.py with Debian's libnftables binding (python3-nftables, what cells run), which the
    test virtualenv does not hold: loaded from its file, so nothing else of dist-packages comes along."""
    import importlib.util
    import sys
    from ansible_collections.pic.connectivity.plugins.module_utils import nft
    if nft.HAS_LIBNFTABLES:
        return nft
    init = os.path.join(DEBIAN_NFTABLES, '__init__.py')
    if not os.path.exists(init):
        pytest.skip('python3-nftables is not installed')
    spec = importlib.util.spec_from_file_location('nftables', init, submodule_search_locations=[DEBIAN_NFTABLES])
    binding = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, 'nftables', binding)
    spec.loader.exec_module(binding)
    monkeypatch.setattr(nft, '_nftables', binding)
    monkeypatch.setattr(nft, 'HAS_LIBNFTABLES', True)
    return nft


# -- a module's main() with module arguments --------------------------------------------------------

def run_module(module, args, check_mode=False, diff=False):
    """Run ``module.main()`` as Ansible would with ``args``: the JSON result it printed
    (``failed`` and ``msg`` when it failed). Logging to the journal/syslog is left out.
    ansible-core 2.19 prints a module's warnings outside a controller run to stderr:
    they are returned as the result's ``warnings`` when the result has none."""
    import contextlib
    import io
    import json
    from unittest import mock
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    out, err = io.StringIO(), io.StringIO()
    with patch_module_args(args), mock.patch.object(basic.AnsibleModule, 'log', lambda *a, **k: None), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit):
            module.main()
    result = json.loads(out.getvalue())
    warned = [line[len('[WARNING]: '):] for line in err.getvalue().splitlines() if line.startswith('[WARNING]: ')]
    if warned:
        result.setdefault('warnings', warned)
    return result


def kernel_state():
    """What the collection left in this network namespace: its nftables table as nft -j
    prints it (None when there is none) and the ip rules of both families, as text."""
    import json
    import subprocess
    proc = subprocess.run(['nft', '-j', 'list', 'table', 'inet', 'pic_connectivity'], capture_output=True,
                          text=True, check=False)
    table = json.loads(proc.stdout)['nftables'] if proc.returncode == 0 else None
    rules = [subprocess.run(['ip', '-%d' % family, 'rule', 'show'], capture_output=True, text=True,
                            check=True).stdout for family in (4, 6)]
    return {'table': table, 'rules': ''.join(rules)}


def files_under(path):
    """The relative paths of the files under ``path`` (nothing when it does not exist)."""
    found = []
    for top, _dirs, names in os.walk(str(path)):
        found.extend(os.path.relpath(os.path.join(top, name), str(path)) for name in names)
    return sorted(found)


def saved_registry(state_dir, *connection_calls, **peers_of):
    """A cell's registry saved under ``state_dir`` as the planners build it, without a data plane:
    one pic_connection call per dict of ``connection_calls``, then peers ``peers_of`` {name: (address, connection)}."""
    from ansible_collections.pic.connectivity.plugins.module_utils import peers
    from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
    doc = empty()
    for params in connection_calls:
        doc = connections.plan(doc, dict(params))[0]
    if peers_of:
        items = [{'peer': name, 'address': [address], 'connection': conn, 'fail_open': None}
                 for name, (address, conn) in sorted(peers_of.items())]
        doc = peers.plan(doc, items)[0]
    registry = Registry(state_dir)
    registry.save(doc)
    return registry


# -- stand-in servers on loopback (proxies, echo servers; test_proxy_deep_check, test_egress, ...) -----

class FakeServer(object):
    """A TCP server on ``address`` (127.0.0.1, a free port) answering every connection with
    ``serve(server, conn)`` in a thread; what it served goes to ``requests`` (``serve`` appends)."""

    def __init__(self, serve, address=('127.0.0.1', 0)):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        self.requests = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.serve(self, conn)
                except (OSError, IndexError, ValueError, struct.error):
                    continue     # a bare TCP connect (the port checks), closed at once

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the accept() of the thread: nothing listens any more
        except OSError:
            pass
        self.sock.close()


def read_request(conn):
    """An HTTP request's head, as text."""
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.decode('ascii', 'replace')


def echo(server, conn, body=None):
    """The lab's echo server: the caller's source address (or ``body``)."""
    server.requests.append(read_request(conn))
    data = (body if body is not None else conn.getpeername()[0]).encode('ascii')
    conn.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n' % len(data) + data)


class FakeProxy(FakeServer):
    """A SOCKS5 (``kind``) or HTTP CONNECT proxy (``http-connect``) that grants a request for
    ``reachable`` (host, port) and refuses any other; with ``login`` (user, password) it
    wants that login. It records what it was asked (``asked``: (host, port), a host name
    as a name) and the logins it got; once it granted, ``then(server, conn)`` (if given)
    serves the connection as the target would (an echo server seeing ``exit_address``)."""

    def __init__(self, kind, reachable, login=None, then=None):
        self.kind, self.reachable, self.asked, self.login, self.logins = kind, reachable, [], login, []
        self.then = then
        super(FakeProxy, self).__init__(lambda server, conn: server.grant(conn))

    def grant(self, conn):
        if (self._socks5 if self.kind == 'socks5' else self._http)(conn) and self.then:
            self.then(self, conn)

    def _socks5_login(self, conn, greeting):
        if not self.login:
            conn.sendall(b'\x05\x00')
            return True
        if b'\x02' not in greeting[2:]:
            conn.sendall(b'\x05\xff')
            return False
        conn.sendall(b'\x05\x02')
        head = conn.recv(2)
        user = conn.recv(head[1]).decode()
        password = conn.recv(conn.recv(1)[0]).decode()
        self.logins.append((user, password))
        if (user, password) != self.login:
            conn.sendall(b'\x01\x01')
            return False
        conn.sendall(b'\x01\x00')
        return True

    def _socks5(self, conn):
        greeting = conn.recv(4)
        if not greeting.startswith(b'\x05') or not self._socks5_login(conn, greeting):
            return False
        head = conn.recv(4)
        if head[3] == 3:
            host = conn.recv(conn.recv(1)[0]).decode('ascii')
        else:
            host = socket.inet_ntop(socket.AF_INET6 if head[3] == 4 else socket.AF_INET,
                                    conn.recv(16 if head[3] == 4 else 4))
        port = struct.unpack('!H', conn.recv(2))[0]
        self.asked.append((host, port))
        code = 0 if (host, port) == self.reachable else 5
        conn.sendall(struct.pack('!BBBB', 5, code, 0, 1) + b'\0' * 6)
        return code == 0

    def _http(self, conn):
        request = conn.recv(1024).decode()
        if self.login:
            expected = 'Proxy-Authorization: Basic %s\r\n' % base64.b64encode(':'.join(self.login).encode()).decode()
            if expected not in request:
                conn.sendall(b'HTTP/1.1 407 Proxy Authentication Required\r\n\r\n')
                return False
            self.logins.append(self.login)
        where = request.split(' ')[1]
        host, port = where.rsplit(':', 1)
        self.asked.append((host.strip('[]'), int(port)))
        ok = (host.strip('[]'), int(port)) == self.reachable
        conn.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n' if ok else b'HTTP/1.1 502 Bad Gateway\r\n\r\n')
        return ok


def echo_as(address):
    """``then`` of a FakeProxy: an echo server behind it that sees ``address`` (the exit's)."""
    return lambda server, conn: echo(server, conn, address)
