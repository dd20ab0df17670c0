# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The glue between AnsibleModule and the library: options every module
shares, one transaction per call (lock, read, plan, apply), and the single
place where domain errors become ``fail_json``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from . import model
from .commits import Commits
from .errors import PicError
from .registry import Registry, DEFAULT_STATE_DIR
from .validation import check_local_against_peers

SETTING_KEYS = ('peer_interface', 'local_networks', 'mark_mask', 'table_base', 'priority_base', 'port_base')
LAYOUT_KEYS = ('mark_mask', 'table_base', 'priority_base', 'port_base')


def cell_argument_spec():
    return dict(
        state_dir=dict(type='path', default=DEFAULT_STATE_DIR),
        peer_interface=dict(type='str'),
        local_networks=dict(type='list', elements='str'),
        mark_mask=dict(type='raw'),
        table_base=dict(type='int'),
        priority_base=dict(type='int'),
        port_base=dict(type='int'),
    )


class Plan(object):
    """What a module wants: the new registry, its result and diff, the secrets."""

    def __init__(self, doc, result=None, diff=None, wg=None, removed=None, secrets=None):
        self.doc = doc
        self.result = result or {}
        self.diff = diff
        self.wg = wg or {}
        self.removed = removed or []
        self.secrets = secrets or []


def merge_settings(doc, params):
    """Settings given to the module (non-null) over what the registry holds."""
    given = dict((k, params.get(k)) for k in SETTING_KEYS if params.get(k) is not None)
    merged = dict(doc.get('settings') or {})
    merged.update(given)
    normalized, _layout = model.normalize_settings(merged)
    current, _l = model.normalize_settings(doc.get('settings'))
    if doc['connections']:
        for key in LAYOUT_KEYS:
            if normalized[key] != current[key]:
                raise PicError("cannot change while connections exist (it renumbers their marks, tables or rules); "
                               "the registry holds %r" % current[key], key, params.get(key))
    doc['settings'] = dict((k, normalized[k]) for k in SETTING_KEYS)
    return doc


def transact(module, planner):
    """Run ``planner(doc) -> Plan`` under the registry lock and converge the cell."""
    from .dataplane import Cell
    registry = Registry(module.params['state_dir'])
    fresh = not os.path.exists(registry.path)
    if module.check_mode and not os.path.isdir(registry.state_dir):
        registry_ctx = None
    else:
        registry_ctx = registry.lock()
    try:
        # The planners never change the document they are given (they work on
        # copies), so the loaded document is the "before" as it is.
        Commits(registry).check_not_expired()
        base = registry.load()
        doc = merge_settings(dict(base), module.params)
        plan = planner(doc)
        for secret in plan.secrets:
            module.no_log_values.add(secret)
        registry_changed = plan.doc != base
        cell = Cell(registry)
        try:
            if plan.doc['settings'].get('local_networks'):
                check_local_against_peers(plan.doc['settings']['local_networks'], cell.facts(plan.doc)['peer_networks'])
            if module.check_mode:
                changes = cell.converge(plan.doc, check_mode=True, pending=plan.wg)
            else:
                for conn_id, wg in plan.wg.items():
                    if registry.read_secret(conn_id) != json.dumps(wg, sort_keys=True):
                        cell.store_wg(conn_id, wg)
                if registry_changed or fresh:
                    registry.save(plan.doc)
                changes = cell.converge(plan.doc)
                for record in plan.removed:
                    changes.extend(cell.drop_wg(record['id'], record.get('interface')))
        finally:
            cell.close()
    finally:
        if registry_ctx is not None:
            registry.unlock()
    result = dict(plan.result)
    result['changed'] = bool(registry_changed or changes)
    result['changes'] = changes
    if module._diff and plan.diff is not None:
        result['diff'] = plan.diff
    return result


def run(module, planner):
    """The one place a PicError becomes fail_json (with nothing changed)."""
    try:
        result = transact(module, planner)
    except PicError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    for warning in result.pop('warnings', []):
        module.warn(warning)
    module.exit_json(**result)
