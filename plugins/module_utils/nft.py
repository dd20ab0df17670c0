# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables access: read the collection's table as JSON, replace it atomically.

Uses libnftables through its Python binding (Debian's python3-nftables) and
falls back to the ``nft`` command with the same JSON output when the binding
is missing. Nothing here parses nft's text output.

The command reads scripts from stdin (``nft -f -``: one transaction), but a
listing goes as arguments (``nft -j list table ...``): ``nft -j -f -`` prints
nothing at all for a listing (nftables 1.0.6, Debian 12), whether the table
exists or not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import re
import subprocess

from .errors import PicError
from .model import NFT_FAMILY, NFT_TABLE
from .validation import network

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

    def delete_table(self):
        if self.list_table() is not None:
            self.cmd('delete table %s %s' % (NFT_FAMILY, NFT_TABLE))


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


def summary(objects):
    """The comparable shape of a listed table (see model.Desired.nft_summary):
    sets as Python sets, maps as dicts (no sorting: order means nothing there)."""
    if objects is None:
        return None
    out = {'sets': {}, 'maps': {}, 'chains': {}}
    for obj in objects:
        if 'set' in obj:
            spec = obj['set']
            out['sets'][spec['name']] = set(_elem_key(e) for e in spec.get('elem', []))
        elif 'map' in obj:
            spec = obj['map']
            out['maps'][spec['name']] = dict((_elem_key(k), _verdict(v)) for k, v in spec.get('elem', []))
        elif 'chain' in obj:
            out['chains'].setdefault(obj['chain']['name'], [])
        elif 'rule' in obj:
            rule = obj['rule']
            out['chains'].setdefault(rule['chain'], []).append(rule.get('comment'))
    return out
