# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables, both directions: the collection's table rendered as one nft
script, and read back from nft's JSON listing into the same comparable shape.

Rendering: ``render_table`` (the whole table, delete + create in one
transaction), ``render_down_set`` (the monitor's one-set change) and
``boot_block_script`` (boot restore's minimal kill switch). Parsing:
``summary`` (a listed table -> sets, maps and the comments of each chain's
rules), compared with ``desired_summary`` of the model's ``Desired``.

Access (``Nft``) uses libnftables through its Python binding (Debian's
python3-nftables) and falls back to the ``nft`` command with the same JSON
output when the binding is missing. Nothing here parses nft's text output.
The command reads scripts from stdin (``nft -f -``: one transaction), but a
listing goes as arguments (``nft -j list table ...``): ``nft -j -f -`` prints
nothing at all for a listing (nftables 1.0.6, Debian 12), whether the table
exists or not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import functools
import json
import re
import socket
import subprocess

from .errors import PicError
from .validation import check_ifname, network

NFT_FAMILY = 'inet'
NFT_TABLE = 'pic_connectivity'
BOOT_BLOCK_COMMENT = 'pic:boot-block'
# Sets the kernel fills (model.add_exit_source_guard): their elements are never the
# model's, so a listed table compares without them.
LEARNED_SETS = ('exit_src4', 'exit_src6')

try:
    import nftables as _nftables
    HAS_LIBNFTABLES = True
except ImportError:  # pragma: no cover - depends on the cell
    _nftables = None
    HAS_LIBNFTABLES = False


def _nft_command(text, json_out):
    """Run ``text`` with the ``nft`` command. Returns (rc, stdout, stderr)."""
    if json_out:
        # a listing: one command, made of the module's own words (never user input)
        args = ['nft', '-j'] + text.split()
    else:
        args = ['nft', '-f', '-']
    try:
        proc = subprocess.run(args, input=None if json_out else text, capture_output=True, text=True, check=False)
    except OSError as exc:
        # (not the OSError's text: "No such file or directory" means a missing table to list_table)
        why = 'no nft command in PATH' if exc.errno == errno.ENOENT else 'nft cannot run (errno %d)' % exc.errno
        raise PicError("neither the nftables Python binding (Debian python3-nftables) nor the nft command "
                       "(Debian nftables) is usable on this host: %s" % why)
    return proc.returncode, proc.stdout, proc.stderr


class Nft(object):
    """``use_binding``: None (the default) uses the Python binding when it is
    installed and the ``nft`` command otherwise; False forces the command."""

    def __init__(self, use_binding=None):
        self._lib = None
        if HAS_LIBNFTABLES and use_binding is not False:
            self._lib = _nftables.Nftables()
            self._lib.set_json_output(True)
            self._lib.set_handle_output(False)

    def cmd(self, text, json_out=False):
        """Run an nft script (one transaction). Returns stdout."""
        if self._lib is not None:
            self._lib.set_json_output(json_out)
            rc, out, err = self._lib.cmd(text)
        else:
            rc, out, err = _nft_command(text, json_out)
        if rc != 0:
            raise PicError("nftables refused the change: %s" % (err or out).strip())
        return out

    def list_table(self):
        """The table as nft JSON objects, or None when it does not exist."""
        try:
            out = self.cmd('list table %s %s' % (NFT_FAMILY, NFT_TABLE), json_out=True)
        except PicError as exc:
            if 'No such file or directory' in str(exc):
                return None
            raise
        try:
            return json.loads(out).get('nftables', [])
        except (ValueError, AttributeError):
            raise PicError("nft listed the table %s %s as something else than JSON: %r"
                           % (NFT_FAMILY, NFT_TABLE, out[:200]))

    def replace(self, script):
        self.cmd(script)

    def check_json(self, commands):
        """``check()`` of a list of nft JSON commands (``element_batch``)."""
        self.check(json.dumps({'nftables': commands}), json_in=True)

    def json_cmd(self, commands):
        """Run a list of nft JSON commands (``element_batch``) as one batch: one
        transaction, all of it or nothing."""
        text = json.dumps({'nftables': commands})
        if self._lib is not None:
            self._lib.set_json_output(True)
            rc, out, err = self._lib.cmd(text)
        else:
            proc = subprocess.run(['nft', '-j', '-f', '-'], input=text, capture_output=True, text=True, check=False)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        if rc != 0:
            raise PicError("nftables refused the element change: %s" % (err or out).strip())
        return out

    def delete_table(self):
        if self.list_table() is not None:
            self.cmd('delete table %s %s' % (NFT_FAMILY, NFT_TABLE))

    def check(self, script, json_in=False):
        """Have the kernel validate an nft script (``json_in``: JSON text) without
        committing it (``nft -c``)."""
        if self._lib is not None:
            self._lib.set_dry_run(True)
            try:
                self._lib.set_json_output(json_in)   # libnftables reads JSON input in JSON mode
                rc, out, err = self._lib.cmd(script)
            finally:
                self._lib.set_dry_run(False)
        else:
            proc = subprocess.run(['nft', '-c'] + (['-j'] if json_in else []) + ['-f', '-'], input=script,
                                  capture_output=True, text=True, check=False)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        if rc != 0:
            raise PicError("nftables refuses the new ruleset, nothing was saved or changed: %s"
                           % (err or out).strip())


def generation():
    """The generation id of this network namespace's nftables ruleset (every committed
    transaction, whoever makes it, gives a new one; a packet filling a dynamic set
    does not), or None when it cannot be read. Through pyroute2's NFTSocket (imported
    the light way ``routing`` does)."""
    try:
        from . import routing  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel
        from pyroute2.netlink import NLM_F_REQUEST
        from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_GETGEN, NFTSocket, nft_gen_msg
    except ImportError:
        return None
    try:
        sock = NFTSocket()
    except Exception:  # pylint: disable=broad-except
        return None
    try:
        msg = nft_gen_msg()
        msg['nfgen_family'] = socket.AF_UNSPEC
        for reply in sock.request_get(msg, msg_type=NFT_MSG_GETGEN, msg_flags=NLM_F_REQUEST):
            value = reply.get_attr('NFTA_GEN_ID')
            if isinstance(value, int):
                return value
        return None
    except Exception:  # pylint: disable=broad-except
        return None
    finally:
        sock.close()


def list_terse():
    """The collection's table as nft JSON objects without set contents (None if absent)."""
    proc = subprocess.run(['nft', '-t', '-j', 'list', 'table', NFT_FAMILY, NFT_TABLE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if 'No such file or directory' in proc.stderr:
            return None
        raise PicError("nft could not list the table: %s" % proc.stderr.strip())
    return json.loads(proc.stdout).get('nftables', [])


# -- rendering ---------------------------------------------------------------------
def _sort_key(value):
    """The order of rendered elements: addresses by family, number and prefix length."""
    if isinstance(value, str):
        addr, _slash, length = value.partition('/')
        family = socket.AF_INET6 if ':' in addr else socket.AF_INET
        try:
            # canonical forms (all the model holds) without ipaddress: 20,000 of them at 10,000 peers
            packed = socket.inet_pton(family, addr)
        except (OSError, ValueError):
            packed = None
        if packed is not None and (length.isdigit() or not length):
            return (0, 6 if family == socket.AF_INET6 else 4, int.from_bytes(packed, 'big'),
                    int(length) if length else len(packed) * 8, '')
    return _slow_sort_key(value)


@functools.lru_cache(maxsize=None)
def _slow_sort_key(value):
    try:
        net = network(value)
        return (0, net.version, int(net.network_address), net.prefixlen, '')
    except ValueError:
        return (1, 0, 0, 0, str(value))


def _nft_elem(value, nft_type, interval=True):
    if nft_type == 'ifname':
        return '"%s"' % value
    if nft_type == 'mark':
        return '0x%08x' % int(value)
    if not interval and nft_type in ('ipv4_addr', 'ipv6_addr'):
        return str(value).split('/', 1)[0]   # a host address ('/32', '/128') in a set without intervals
    return str(value)


def _render_set(name, spec):
    lines = ['\tset %s {' % name, '\t\ttype %s' % spec['type']]
    if spec['flags']:
        lines.append('\t\tflags %s' % ', '.join(spec['flags']))
    if spec['elements']:
        interval = 'interval' in spec['flags']
        elements = [_nft_elem(e, spec['type'], interval) for e in sorted(spec['elements'], key=_sort_key)]
        lines.append('\t\telements = { %s }' % ', '.join(elements))
    lines.append('\t}')
    return lines


def _render_map(name, spec):
    lines = ['\tmap %s {' % name, '\t\ttype %s : verdict' % spec['type']]
    if spec['flags']:
        lines.append('\t\tflags %s' % ', '.join(spec['flags']))
    if spec['elements']:
        interval = 'interval' in spec['flags']
        lines.append('\t\telements = { %s }' % ', '.join(
            '%s : %s' % (_nft_elem(k, spec['type'], interval), spec['elements'][k])
            for k in sorted(spec['elements'], key=_sort_key)))
    lines.append('\t}')
    return lines


def _render_chain(name, chain):
    lines = ['\tchain %s {' % name]
    if chain['base']:
        base = chain['base']
        lines.append('\t\ttype %s hook %s priority %s; policy accept;'
                     % (base['type'], base['hook'], base['priority']))
    for text, comment in chain['rules']:
        lines.append('\t\t%s comment "%s"' % (text, comment))
    lines.append('\t}')
    return lines


def render_table(want):
    """The whole table of a ``model.Desired`` as one nft script: delete + create
    in one transaction."""
    lines = ['table %s %s' % (NFT_FAMILY, NFT_TABLE), 'delete table %s %s' % (NFT_FAMILY, NFT_TABLE),
             'table %s %s {' % (NFT_FAMILY, NFT_TABLE)]
    for name in sorted(want.sets):
        lines.extend(_render_set(name, want.sets[name]))
    for name in sorted(want.maps):
        lines.extend(_render_map(name, want.maps[name]))
    for name in want.chain_order:
        lines.extend(_render_chain(name, want.chains[name]))
    lines.append('}')
    return '\n'.join(lines) + '\n'


def render_down_set(marks, carry=None, closed=None):
    """The monitor's change of the ``down_open`` set to ``marks`` and (when
    given) of the ``carry`` map to ``carry`` ({mark: verdict}) and of the
    ``down_closed`` set to ``closed``, in one transaction: no packet sees one
    changed without the others."""
    script = ''
    if closed is not None:
        script += 'flush set %s %s down_closed\n' % (NFT_FAMILY, NFT_TABLE)
        if closed:
            script += 'add element %s %s down_closed { %s }\n' % (NFT_FAMILY, NFT_TABLE,
                                                                  ', '.join('0x%08x' % m for m in sorted(closed)))
    if carry is not None:
        script += 'flush map %s %s carry\n' % (NFT_FAMILY, NFT_TABLE)
        if carry:
            script += 'add element %s %s carry { %s }\n' % (
                NFT_FAMILY, NFT_TABLE, ', '.join('0x%08x : %s' % (m, carry[m]) for m in sorted(carry)))
    script += 'flush set %s %s down_open\n' % (NFT_FAMILY, NFT_TABLE)
    if marks:
        script += 'add element %s %s down_open { %s }\n' % (NFT_FAMILY, NFT_TABLE,
                                                            ', '.join('0x%08x' % m for m in marks))
    return script


def boot_block_script(peer_interface):
    """The minimal kill switch: nothing forwarded from the peer interface, except
    back to it (peer to peer inside the cell); the cell itself stays reachable."""
    check_ifname(peer_interface, 'peer_interface')
    table = '%s %s' % (NFT_FAMILY, NFT_TABLE)
    return ('table %s\ndelete table %s\ntable %s {\n\tchain forward {\n'
            '\t\ttype filter hook forward priority filter; policy accept;\n'
            '\t\tiifname "%s" oifname != "%s" counter drop comment "%s"\n\t}\n}\n'
            % (table, table, table, peer_interface, peer_interface, BOOT_BLOCK_COMMENT))


def desired_summary(want):
    """The comparable shape of a ``model.Desired`` table (what ``summary()`` reads back)."""
    return {
        'sets': dict((n, set(s['elements'])) for n, s in want.sets.items()),
        'maps': dict((n, dict(m['elements'])) for n, m in want.maps.items()),
        'chains': dict((n, [c for _t, c in ch['rules']]) for n, ch in want.chains.items()),
    }


# -- parsing -----------------------------------------------------------------------


# Addresses as nft prints them (inet_ntop: RFC 5952 for IPv6, the form Python's
# ipaddress prints too), without an embedded IPv4 part, whose forms differ.
_PLAIN_ADDRESS = re.compile(r'^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f]*:[0-9a-f:]*)$')


def _net_key(addr, length=None):
    """An address (and prefix length) from nft -> the model's canonical string
    (``str(ip_network)``), without parsing it when nft printed it canonically."""
    if _PLAIN_ADDRESS.match(addr):
        if length is None:
            length = 128 if ':' in addr else 32
        return '%s/%s' % (addr, length)
    return str(network(addr if length is None else '%s/%s' % (addr, length)))


def _elem_key(elem):
    """nft JSON element -> the model's canonical string."""
    if isinstance(elem, dict) and 'elem' in elem:
        elem = elem['elem'].get('val')
    if isinstance(elem, dict) and 'prefix' in elem:
        return _net_key(elem['prefix']['addr'], elem['prefix']['len'])
    if isinstance(elem, dict) and 'range' in elem:
        return 'range:%s-%s' % tuple(elem['range'])
    if isinstance(elem, int):
        return elem
    try:
        return _net_key(elem)
    except ValueError:
        return elem


def _verdict(data):
    for kind in ('jump', 'goto'):
        if isinstance(data, dict) and kind in data:
            return '%s %s' % (kind, data[kind]['target'])
    return json.dumps(data, sort_keys=True)


def shapes(objects):
    """{name: (kind, type, flags)} of the sets and maps of a listed table (None if absent)."""
    if objects is None:
        return None
    out = {}
    for obj in objects:
        for kind in ('set', 'map'):
            if kind in obj:
                spec = obj[kind]
                flags = spec.get('flags') or []
                out[spec['name']] = (kind, spec.get('type'), _shape_flags([flags] if isinstance(flags, str) else flags))
    return out


# nft (1.0.6) lists a set declared ``flags dynamic`` without that flag: it says
# nothing about the set's structure that the rules using it do not say.
UNLISTED_FLAGS = ('dynamic',)


def _shape_flags(flags):
    return tuple(sorted(f for f in flags if f not in UNLISTED_FLAGS))


def desired_shapes(want):
    """The ``shapes`` of a ``model.Desired`` table."""
    out = dict((n, ('set', s['type'], _shape_flags(s['flags']))) for n, s in want.sets.items())
    out.update((n, ('map', m['type'], _shape_flags(m['flags']))) for n, m in want.maps.items())
    return out


def summary(objects):
    """The comparable shape of a listed table (see ``desired_summary``):
    sets as Python sets, maps as dicts (no sorting: order means nothing there)."""
    if objects is None:
        return None
    out = {'sets': {}, 'maps': {}, 'chains': {}}
    for obj in objects:
        if 'set' in obj:
            spec = obj['set']
            out['sets'][spec['name']] = set() if spec['name'] in LEARNED_SETS else \
                set(_elem_key(e) for e in spec.get('elem', []))
        elif 'map' in obj:
            spec = obj['map']
            out['maps'][spec['name']] = dict((_elem_key(k), _verdict(v)) for k, v in spec.get('elem', []))
        elif 'chain' in obj:
            out['chains'].setdefault(obj['chain']['name'], [])
        elif 'rule' in obj:
            rule = obj['rule']
            out['chains'].setdefault(rule['chain'], []).append(rule.get('comment'))
    return out


# -- element updates: what differs, in one batch ----------------------------------
def same_structure(have, have_shapes, want, want_shapes):
    """Do two tables differ in their elements only (the same chains with the same
    rules, the same sets and maps of the same types and flags)?"""
    return have is not None and have['chains'] == want['chains'] and have_shapes == want_shapes


def _elem_json(key, nft_type, interval=True):
    """A canonical element (as ``summary`` reads it) -> nft JSON."""
    if nft_type in ('ipv4_addr', 'ipv6_addr'):
        if key.startswith('range:'):
            return {'range': key[len('range:'):].split('-', 1)}
        addr, _slash, length = key.partition('/')
        return {'prefix': {'addr': addr, 'len': int(length)}} if length and interval else addr
    if nft_type in ('mark', 'inet_service'):
        return int(key)
    return key


def _verdict_json(verdict):
    """'jump c_x_open' (as ``summary`` reads it) -> nft JSON."""
    kind, _space, target = verdict.partition(' ')
    if kind in ('jump', 'goto') and target:
        return {kind: {'target': target}}
    return json.loads(verdict)


def _element_cmd(verb, name, elems):
    return {verb: {'element': {'family': NFT_FAMILY, 'table': NFT_TABLE, 'name': name, 'elem': elems}}}


_GONE = object()


def element_diff(have, want):
    """{name: (gone keys, new {key: verdict or None})} of the sets and maps whose
    elements differ (a map element whose verdict changed is in both)."""
    out = {}
    for name, new in want['sets'].items():
        old = have['sets'][name]
        if old != new:
            out[name] = (old - new, dict.fromkeys(new - old))
    for name, new in want['maps'].items():
        old = have['maps'][name]
        if old != new:
            gone = set(k for k, v in old.items() if new.get(k, _GONE) != v)
            out[name] = (gone, dict((k, v) for k, v in new.items() if old.get(k, _GONE) != v))
    return out


def element_batch(diff, shapes_of):
    """The nft JSON commands of an ``element_diff`` (``shapes_of``: the table's
    ``shapes``): every delete, then every add, in one list for one transaction
    (a changed map element is deleted and added again: no packet sees it missing)."""
    deletes, adds = [], []
    for name in sorted(diff):
        gone, new = diff[name]
        kind, nft_type, flags = shapes_of[name]
        interval = 'interval' in flags
        if gone:
            deletes.append(_element_cmd('delete', name, [_elem_json(k, nft_type, interval)
                                                         for k in sorted(gone, key=_sort_key)]))
        if new:
            keys = sorted(new, key=_sort_key)
            if kind == 'map':
                elems = [[_elem_json(k, nft_type, interval), _verdict_json(new[k])] for k in keys]
            else:
                elems = [_elem_json(k, nft_type, interval) for k in keys]
            adds.append(_element_cmd('add', name, elems))
    return deletes + adds


# nft (1.0.6) loads every element of an interval set to add or delete one (and
# deletes slower still): beyond this many changed elements of such sets, the
# table replace costs less.
INTERVAL_CHANGES_MAX = 64


def interval_changes(diff, shapes_of):
    """How many elements of sets and maps with intervals ``diff`` changes."""
    return sum(len(gone) + len(new) for name, (gone, new) in diff.items() if 'interval' in shapes_of[name][2])


def describe_diff(diff):
    """'peer4 -1 +1, down_open +1': what an element update changes, by set or map."""
    parts = []
    for name in sorted(diff):
        gone, new = diff[name]
        counts = ['-%d' % len(gone)] if gone else []
        counts += ['+%d' % len(new)] if new else []
        parts.append('%s %s' % (name, ' '.join(counts)))
    return ', '.join(parts)
