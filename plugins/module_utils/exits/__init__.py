# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exit-type registry: one provider per type (``exits/<type>.py``), and
everything derived from them (type lists, defaults, secret keys, the service
roles, the instance files, the documented ``config`` keys).

The lists are live views of the registry, so code that holds one (``model.TYPES``)
sees a provider registered later (a test's toy type). To add a type, write its
provider file and add it to the import below (docs/adding-an-exit-type.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping, Sequence

from ..errors import PicError
from . import cell_relay, openvpn, proxy, sshuttle, tor, wireguard_ext
from .base import COMMON_OPTIONS, INTERFACE, PROXY

PROVIDERS = {}


def register(provider):
    """Add ``provider`` (an :class:`~.base.Exit` subclass) under its name; returns it."""
    if provider.kind not in (INTERFACE, PROXY):
        raise ValueError('exit type %s: kind must be %s or %s' % (provider.name, INTERFACE, PROXY))
    clashing = set(o.name for o in provider.options) & set(o.name for o in COMMON_OPTIONS)
    if clashing:
        raise ValueError('exit type %s redeclares common settings: %s' % (provider.name, sorted(clashing)))
    PROVIDERS[provider.name] = provider
    return provider


def unregister(name):
    PROVIDERS.pop(name, None)


for _module in (wireguard_ext, openvpn, tor, sshuttle, proxy, cell_relay):
    register(_module.PROVIDER)


def get(ctype):
    """The provider of ``ctype``, or None."""
    return PROVIDERS.get(ctype) if isinstance(ctype, str) else None


def provider(ctype, field='type'):
    """The provider of ``ctype``; an unknown type is an error naming ``field``."""
    found = get(ctype)
    if found is None:
        raise PicError("unknown connection type", field, ctype)
    return found


def kind_of(ctype):
    """``'interface'``, ``'proxy'`` or None (unknown type)."""
    found = get(ctype)
    return found.kind if found else None


def is_proxy(ctype):
    return kind_of(ctype) == PROXY


def is_interface(ctype):
    return kind_of(ctype) == INTERFACE


def cell_runs_wireguard(ctype):
    """Whether the cell itself brings up (and removes) the WireGuard interface of a ``ctype`` exit."""
    found = get(ctype)
    return bool(getattr(found, 'cell_runs_wireguard', False))


class _Types(Sequence):
    """The names of the registered types that ``wanted(provider)`` holds, in
    registration order: a live view, compared equal to a tuple or list of the same names."""

    def __init__(self, wanted):
        self._wanted = wanted

    def _names(self):
        return tuple(name for name, prov in PROVIDERS.items() if self._wanted(prov))

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self):
        return len(self._names())

    def __contains__(self, name):
        found = get(name)
        return found is not None and bool(self._wanted(found))

    def __eq__(self, other):
        return isinstance(other, (tuple, list, _Types)) and tuple(self) == tuple(other)

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return repr(self._names())


class _ByType(Mapping):
    """{type: value(provider)} of the registered types that have a value (not None): a live view."""

    def __init__(self, value):
        self._value = value

    def _items(self):
        return dict((name, self._value(prov)) for name, prov in PROVIDERS.items()
                    if self._value(prov) is not None)

    def __getitem__(self, name):
        return self._items()[name]

    def __iter__(self):
        return iter(self._items())

    def __len__(self):
        return len(self._items())

    def __repr__(self):
        return repr(self._items())


TYPES = _Types(lambda p: True)
CREATABLE_TYPES = _Types(lambda p: p.creatable)
INTERFACE_TYPES = _Types(lambda p: p.kind == INTERFACE)
PROXY_TYPES = _Types(lambda p: p.kind == PROXY)
SINGLETON_TYPES = _Types(lambda p: p.singleton)
# the types whose new connections need ``config``
CONFIG_REQUIRED_TYPES = _Types(lambda p: p.creatable and p.needs_config)
DEFAULT_FAIL_OPEN = _ByType(lambda p: bool(p.fail_open))
# {type: role} of the types with a service role (roles/connectivity's connectivity_service_roles)
SERVICE_ROLES = _ByType(lambda p: p.service_role)
# {type: (directory, file name)} the service role writes for an instance
INSTANCE_FILES = _ByType(lambda p: p.instance_file)


def _options():
    """Every (provider or None for the common settings, option)."""
    out = [(None, o) for o in COMMON_OPTIONS]
    out.extend((prov, o) for prov in PROVIDERS.values() for o in prov.options)
    return out


def secret_keys():
    """The keys whose values are secrets, in any type (``password``, ``private_key``, ...)."""
    return tuple(sorted(set(o.name for _p, o in _options() if o.secret)))


def secret_file_keys():
    """The keys holding a file's text with secret lines (``wg_config``, ``ovpn_config``)."""
    return tuple(sorted(set(o.name for _p, o in _options() if o.holds_secrets)))


def public_keys():
    """Every key of any type that holds no secret."""
    return frozenset(o.name for _p, o in _options() if not o.no_log)


SECRET_NOTE = 'A secret: masked in every output and log, and kept only in a 0600 file under I(state_dir).'
SECRETS_NOTE = ('Holds secrets: masked whole in every output and log, and kept only in a 0600 file under '
                'I(state_dir).')


def _types_text(names):
    """' C(a)', 's C(a) and C(b)': what follows 'type' in a sentence."""
    quoted = ['C(%s)' % n for n in names]
    return ' ' + quoted[0] if len(quoted) == 1 else 's %s and %s' % (', '.join(quoted[:-1]), quoted[-1])


def _doc_of(name, declared):
    """The documentation of one ``config`` key from its [(provider, option)]."""
    first = declared[0][1]
    for _prov, option in declared[1:]:
        if (option.type, option.no_log, option.elements) != (first.type, first.no_log, first.elements):
            raise ValueError('config key %s: the types declaring it disagree on its type or secrecy' % name)
    provs = [p for p, _o in declared if p is not None]
    if not provs:
        lines = ['For every type. ' + first.description]
    else:
        lines = ['Only for type%s.' % _types_text([p.name for p in provs])]
        required = [p.name for p, o in declared if p is not None and o.required]
        if required:
            lines[0] += ' Required for type%s.' % _types_text(required)
        if len(declared) == 1:
            lines.append(first.description)
        else:
            lines.extend('C(%s) - %s' % (p.name, o.description) for p, o in declared)
    if first.no_log:
        lines.append(SECRET_NOTE if first.secret else SECRETS_NOTE)
    doc = {'description': lines, 'type': first.type}
    if first.elements:
        doc['elements'] = first.elements
    return doc


def doc_suboptions():
    """{key: documentation} of every ``config`` key of every type, as pic_connection's
    DOCUMENTATION states them under ``config.suboptions`` (a unit test keeps them equal)."""
    declared = {}
    for prov, option in _options():
        if prov is None or prov.creatable:
            declared.setdefault(option.name, []).append((prov, option))
    return dict((name, _doc_of(name, declared[name])) for name in sorted(declared))
