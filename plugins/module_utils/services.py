# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service egress in the registry: which connection a cell service's outbound
traffic takes. Only services whose manifest declares ``has_egress: true``. Pure,
except reading a manifest file given by path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

from . import model
from .connections import resolve
from .errors import PicError
from .peers import check_overlaps
from .validation import check_bool, check_ifname, check_peer_name, parse_network

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - depends on the cell
    yaml = None
    HAS_YAML = False


def _yaml_position(exc):
    """Where a YAML error is (line and column), never the text of the file:
    the path may name any file on the cell."""
    mark = getattr(exc, 'problem_mark', None) or getattr(exc, 'context_mark', None)
    if mark is None:
        return ''
    return ' (error at line %d, column %d)' % (mark.line + 1, mark.column + 1)


MANIFEST_MAX = 1024 * 1024


def _read_manifest(path, field):
    """The text of a manifest file: a regular file of at most MANIFEST_MAX bytes
    (never a FIFO or a device such as /dev/zero, which would hold the registry
    lock forever or fill the memory), UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise PicError("cannot be read (%s)" % exc.strerror, field, path)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PicError("is not a regular file", field, path)
    with os.fdopen(fd, 'rb') as handle:
        data = handle.read(MANIFEST_MAX + 1)
    if len(data) > MANIFEST_MAX:
        raise PicError("is larger than %d bytes" % MANIFEST_MAX, field, path)
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        raise PicError("is not UTF-8 text", field, path)


def load_manifest(manifest, field='manifest'):
    """A manifest given as a dict, or as the path of a YAML/JSON file on the cell."""
    if isinstance(manifest, dict):
        return manifest
    if not isinstance(manifest, str) or not manifest:
        raise PicError("must be the service's manifest (a dict) or the path of its manifest file", field, manifest)
    text = _read_manifest(manifest, field)
    try:
        data = json.loads(text)
    except ValueError:
        if not HAS_YAML:
            raise PicError("is not JSON, and PyYAML is not installed on the cell to read YAML", field, manifest)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PicError("is neither JSON nor YAML%s" % _yaml_position(exc), field, manifest)
    if not isinstance(data, dict):
        raise PicError("does not hold a mapping", field, manifest)
    return data


def check_egress(params, name):
    """A service routed through a connection must declare ``has_egress: true`` in its manifest."""
    if params.get('manifest') is None:
        raise PicError("is required to route a service through a connection (it must declare has_egress: true)",
                       'manifest')
    manifest = load_manifest(params['manifest'])
    if manifest.get('has_egress') is not True:
        raise PicError("service %s does not declare has_egress: true in its manifest; only services with egress "
                       "(the email service, typically) can be routed through a connection" % name,
                       'manifest.has_egress', manifest.get('has_egress'))


def plan(doc, params):
    """Apply one pic_service_egress call to a copy of ``doc``. Returns (doc, name)."""
    doc = json.loads(json.dumps(doc))
    services = doc.setdefault('services', {})
    name = check_peer_name(params.get('service'), 'service')
    if params.get('state') == 'absent':
        current = services.get(name)
        if current is not None:
            services.pop(name)
        return doc, name
    conn_id = resolve(doc, params.get('connection'), 'connection')
    record = dict(services.get(name) or {'name': name, 'address': [], 'interface': None, 'fail_open': None})
    if conn_id != model.DEFAULT:
        check_egress(params, name)
    if params.get('address') is not None:
        nets = []
        for j, addr in enumerate(params['address']):
            nets.append(str(parse_network(addr, 'address[%d]' % j, peer=True)))
        record['address'] = nets
    if not record['address']:
        raise PicError("is required for a service the cell does not know yet (%s)" % name, 'address')
    if params.get('interface') is not None:
        record['interface'] = check_ifname(params['interface'], 'interface')
    if not record.get('interface'):
        raise PicError("is required for a service the cell does not know yet: the interface its traffic arrives "
                       "by (the cell's service network)", 'interface')
    if params.get('fail_open') is not None:
        record['fail_open'] = check_bool(params['fail_open'], 'fail_open', words=True)
    record['connection'] = conn_id
    services[name] = record
    check_overlaps(doc, {}, False)
    return doc, name


def public(doc, name):
    record = doc.get('services', {}).get(name)
    if record is None:
        return None
    return {'service': name, 'address': list(record['address']), 'interface': record.get('interface'),
            'connection': record.get('connection', model.DEFAULT), 'fail_open': record.get('fail_open')}
