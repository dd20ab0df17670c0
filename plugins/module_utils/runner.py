# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The glue between AnsibleModule and the library: options every module
shares, one transaction per call (lock, read, plan, apply), and the single
place where domain errors become ``fail_json``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import sys

from . import audit, model
from .commits import Commits
from .connections import check_overrides_not_foreign, resolve
from .errors import PicError
from .registry import Registry, DEFAULT_STATE_DIR, read_nofollow_bytes, write_atomic
from .validation import check_local_against_peers, slugify

SETTING_KEYS = ('peer_interface', 'local_networks', 'mark_mask', 'table_base', 'priority_base', 'port_base')
LAYOUT_KEYS = ('mark_mask', 'table_base', 'priority_base', 'port_base')


def state_dir_option():
    """The ``state_dir`` option of every module (the default state directory)."""
    return dict(type='path', default=DEFAULT_STATE_DIR)


def cell_argument_spec():
    return dict(
        state_dir=state_dir_option(),
        peer_interface=dict(type='str'),
        local_networks=dict(type='list', elements='str'),
        mark_mask=dict(type='raw'),
        table_base=dict(type='int'),
        priority_base=dict(type='int'),
        port_base=dict(type='int'),
        audit_actor=dict(type='str'),
    )


def read_only_argument_spec():
    """The options of a module that only reads the cell: the cell's, and
    ``allow_empty`` (doc fragment ``pic.connectivity.cell.read_only``)."""
    return dict(cell_argument_spec(), allow_empty=dict(type='bool', default=False))


class Plan(object):
    """What a module wants: the new registry, its result and diff, the secrets.
    ``deferred``: changes a check-mode run reports without planning them (they
    depend on a connection an earlier task of the same run creates)."""

    def __init__(self, doc, result=None, diff=None, wg=None, removed=None, secrets=None, deferred=None):
        self.doc = doc
        self.result = result or {}
        self.diff = diff
        self.wg = wg or {}
        self.removed = removed or []
        self.secrets = secrets or []
        self.deferred = deferred or []


def planned_connection(doc, value, planned, check_mode):
    """In check mode, the id of connection ``value`` when the cell does not have
    it but it is one of ``planned`` (names of connections that earlier tasks of the
    same run create, which a check-mode run does not); None otherwise (``value``
    is then resolved as in a real run: an unknown connection is an error)."""
    if not check_mode or not planned or not isinstance(value, str) or value == model.DEFAULT:
        return None
    try:
        resolve(doc, value, 'connection')
        return None
    except PicError:
        pass
    slugs = set(slugify(name) for name in planned if isinstance(name, str))
    return slugify(value) if value in planned or slugify(value) in slugs else None


def planned_argument_spec():
    """The option of the modules whose items name a connection (see planned_connection)."""
    return dict(planned_connections=dict(type='list', elements='str', default=[]))


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


def _snapshot(registry, conn_ids):
    """The registry and the secrets of ``conn_ids`` as they are: what a rollback puts back."""
    paths = [registry.path]
    for conn_id in conn_ids:
        paths.extend((registry.secret_path(conn_id), registry.secret_path(conn_id) + '.setconf'))
    return [(path, read_nofollow_bytes(path)) for path in paths]


def _restore(snapshot):
    for path, data in snapshot:
        if data is None:
            if os.path.lexists(path):
                os.unlink(path)
        else:
            write_atomic(path, data, 0o600)


def _finish_pending(registry, cell, check_mode):
    """A run that found the registry saved but its apply unfinished (killed in
    between) converges the cell to the registry first. Returns (warnings, changes)."""
    if not registry.has_pending():
        return [], []
    if check_mode:
        return ['an earlier run saved the registry and did not finish applying it; '
                'the next run (not in check mode) applies it first'], []
    changes = cell.converge(registry.load())
    registry.clear_pending()
    return ['an earlier run saved the registry and did not finish applying it; applied it first: %s'
            % ('; '.join(changes) or 'nothing was left to do')], changes


def _roll_back(registry, cell, snapshot, previous, failed, exc):
    """Put back the registry and secrets of before the run and converge to them; raise."""
    reason = exc.msg if isinstance(exc, PicError) else '%s: %s' % (type(exc).__name__, exc)
    details = exc.details if isinstance(exc, PicError) else {}
    try:
        _restore(snapshot)
        cell.roll_back(previous, failed)
    except Exception as again:  # pylint: disable=broad-except
        raise PicError("%s; putting the previous state back failed too (%s): the registry is marked "
                       "for re-apply, run again" % (reason, again), details=details)
    registry.clear_pending()
    raise PicError("%s (nothing changed: the previous registry, secrets and data plane were put back)" % reason,
                   details=details)


def _apply(registry, cell, base, plan, save_doc):
    """Check, save (write-ahead marked) and converge; roll back on failure."""
    stale = sorted(cid for cid, wg in plan.wg.items()
                   if registry.read_secret(cid) != json.dumps(wg, sort_keys=True))
    if not stale and not save_doc and not plan.removed:
        return cell.converge(plan.doc), []   # nothing to save: the stored state as it is
    cell.check(plan.doc, pending=plan.wg)   # before any write: the kernel must take it
    snapshot = _snapshot(registry, stale + [r['id'] for r in plan.removed])
    registry.mark_pending()
    try:
        for conn_id in stale:
            cell.store_wg(conn_id, plan.wg[conn_id])
        if save_doc:
            registry.save(plan.doc)
        changes = cell.converge(plan.doc)
        for record in plan.removed:
            changes.extend(cell.drop_wg(record['id'], record.get('interface')))
    except Exception as exc:  # pylint: disable=broad-except
        previous = base if snapshot[0][1] is not None else None   # None: the cell had no registry
        _roll_back(registry, cell, snapshot, previous, plan.doc, exc)
    registry.clear_pending()
    return changes, stale


def _source(module, planner):
    """The module's name for the journal: Ansible's, else the planner's module."""
    name = getattr(module, '_name', None) or ''
    if name.startswith('pic') or '.pic_' in name:
        return name.rsplit('.', 1)[-1]
    where = getattr(planner, '__module__', None) or 'pic.connectivity'
    if where == '__main__':   # the module run as a script: its file's name
        where = os.path.splitext(os.path.basename(getattr(sys.modules['__main__'], '__file__', '') or where))[0]
    return where.rsplit('.', 1)[-1]


def journal(module, registry, planner, base_plan, changes, stale):
    """Append the run's change to the audit journal (nothing when nothing
    changed). Returns warnings: the change is made, a journal that cannot be
    written does not undo it."""
    base, plan = base_plan
    if plan.doc == base and not changes and not stale:
        return []
    names = [(plan.doc['connections'].get(cid) or base['connections'].get(cid) or {}).get('name', cid)
             for cid in stale]
    line = audit.entry(_source(module, planner), module.params.get('audit_actor'), base, plan.doc, changes, names)
    # what the module masks in its result and logs (its no_log values), and the plan's secrets
    secrets = [form for secret in plan.secrets for form in mask_forms(secret)]
    secrets.extend(v for v in getattr(module, 'no_log_values', ()) if isinstance(v, str) and len(v) >= 4)
    try:
        audit.Journal(registry.state_dir).append(line, secrets)
    except (OSError, PicError) as exc:
        return ['the change is made, but the audit journal was not written: %s' % exc]
    return []


def _sets_up_nothing(plan):
    return not plan.wg and not plan.removed and not any(plan.doc.get(section)
                                                        for section in ('connections', 'peers', 'services', 'links'))


def transact(module, planner):
    """Run ``planner(doc) -> Plan`` under the registry lock and converge the cell."""
    from .dataplane import Cell
    registry = Registry(module.params['state_dir'])
    audit.check_actor(module.params.get('audit_actor'))
    if module.check_mode and not os.path.isdir(registry.state_dir):
        registry_ctx = None
    else:
        registry_ctx = registry.lock()
    try:
        Commits(registry).check_not_expired()
        cell = Cell(registry, hold_facts=True)
        try:
            warnings, recovered = _finish_pending(registry, cell, module.check_mode)
            fresh = not os.path.exists(registry.path)
            # The planners never change the document they are given (they work on
            # copies), so the loaded document is the "before" as it is.
            base = registry.load()
            plan = planner(merge_settings(dict(base), module.params))
            add_secrets(module, plan.secrets)
            registry_changed = plan.doc != base
            if registry_changed:
                check_overrides_not_foreign(base, plan.doc, cell.routing.links)
            if registry_changed and plan.doc['settings'].get('local_networks'):
                check_local_against_peers(plan.doc['settings']['local_networks'],
                                          cell.facts(plan.doc)['peer_networks'])
            if fresh and not recovered and _sets_up_nothing(plan):
                # a new cell, and a call that asks for nothing (removing what never existed,
                # no peers): no registry and no data plane, in check mode as in a real run
                registry_changed, changes = False, list(plan.deferred)
            elif module.check_mode:
                if registry_changed or plan.wg:
                    cell.check(plan.doc, pending=plan.wg)
                changes = list(plan.deferred) + cell.converge(plan.doc, check_mode=True, pending=plan.wg)
            else:
                applied, stale = _apply(registry, cell, base, plan, registry_changed or fresh)
                changes = recovered + applied
                warnings.extend(journal(module, registry, planner, (base, plan), changes, stale))
        finally:
            cell.close()
    finally:
        if registry_ctx is not None:
            registry.unlock()
    result = dict(plan.result)
    result['changed'] = bool(registry_changed or changes)
    result['changes'] = changes
    result['warnings'] = warnings + list(result.get('warnings') or [])
    if module._diff and plan.diff is not None:
        result['diff'] = plan.diff
    return result


def run(module, planner):
    """The one place a PicError becomes fail_json (with nothing changed)."""
    read_only(module, lambda mod: transact(mod, planner))


def read_only(module, gather):
    """Run ``gather(module) -> result`` and exit: a PicError becomes fail_json
    with its details, the result's ``warnings`` become module warnings."""
    try:
        result = gather(module)
    except PicError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    for warning in result.pop('warnings', None) or []:
        module.warn(warning)
    module.exit_json(**result)


MIN_SECRET_LINE = 8


def mask_forms(secret):
    """What to mask for one secret: the text itself, its escaped forms (a dict
    printed with str() or JSON shows a multi-line key with backslash-n) and
    each of its lines (a key inside a larger file)."""
    if not isinstance(secret, str) or not secret:
        return []
    forms = [secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]]
    if '\n' in secret:
        forms.extend(line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_SECRET_LINE)
    return sorted(set(forms))


def add_secrets(module, secrets):
    for secret in secrets or []:
        module.no_log_values.update(mask_forms(secret))


def _secrets_or_none(secrets_of, params):
    return [form for s in secrets_of(params) for form in mask_forms(s)]


def config_secrets(secrets_in, key='config'):
    """``secrets_of`` for a module whose dict option ``key`` holds secrets: reads
    it as AnsibleModule will (a dict, JSON text or ``k=v`` text) and masks the
    whole text as well when it is given as a string."""
    def _of(params):
        config = params.get(key)
        if not isinstance(config, str):
            return secrets_in(config)
        from ansible.module_utils.common.validation import check_type_dict
        try:
            parsed = check_type_dict(config)
        except (TypeError, ValueError):
            parsed = None
        return ([config] if config.strip() else []) + secrets_in(parsed)
    return _of


_ATOMS = (str, int, float, bool, type(None))


def _copy_item(value, memo):
    """A deep copy of one item of a bulk option: flat records (text, numbers,
    lists of them) copied directly, anything else by ``copy.deepcopy``."""
    if isinstance(value, dict):
        return dict((k, _copy_item(v, memo)) for k, v in value.items())
    if isinstance(value, list) and all(isinstance(v, _ATOMS) for v in value):
        return list(value)
    if isinstance(value, _ATOMS):
        return value
    return copy.deepcopy(value, memo)


class BulkItems(list):
    """A bulk option's list (10,000 peers, say) as read from the module arguments.
    AnsibleModule's argument validation deep-copies every parameter; ``copy.deepcopy``
    walks each item through its generic machinery (a sixth of a 10,000-peer no-op),
    this copies the flat records directly. The copy is a plain list, equal to
    what ``copy.deepcopy`` makes."""

    def __deepcopy__(self, memo):
        return [_copy_item(item, memo) for item in self]


BULK_MIN = 64   # shorter lists are left to copy.deepcopy


def build_module(argument_spec, secrets_of=None, **kwargs):
    """The AnsibleModule of every module of the collection.

    AnsibleModule logs its arguments to syslog/the journal in its constructor,
    masking only values it already knows as secret. Here the secrets of the
    raw parameters (``secrets_of(params)``) are registered as soon as the
    parameters are read, the constructor's own log is held back, and the
    invocation is logged once the validated parameters' secrets are known too.
    """
    from ansible.module_utils.basic import AnsibleModule

    class PicModule(AnsibleModule):
        secrets_registered = False

        def _load_params(self):
            super(PicModule, self)._load_params()
            for key, value in list(self.params.items()):
                if type(value) is list and len(value) >= BULK_MIN:   # pylint: disable=unidiomatic-typecheck
                    self.params[key] = BulkItems(value)
            if secrets_of is not None:
                self.no_log_values.update(_secrets_or_none(secrets_of, self.params))

        def _log_invocation(self):
            if self.secrets_registered:
                super(PicModule, self)._log_invocation()

        def log_masked_invocation(self):
            """Register the validated parameters' secrets, then log the invocation."""
            if secrets_of is not None:
                self.no_log_values.update(_secrets_or_none(secrets_of, self.params))
            self.secrets_registered = True
            if not self.no_log:
                self._log_invocation()

    module = PicModule(argument_spec=argument_spec, **kwargs)
    module.log_masked_invocation()
    return module
