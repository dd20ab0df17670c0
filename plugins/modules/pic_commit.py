#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_commit
short_description: Confirmed commit of a change to a PIC cell's connectivity
version_added: 1.0.0
description:
  - In the spirit of network operating systems' "commit confirmed". C(begin) snapshots the cell's registry and
    the secrets of its connections and arms a timer on the cell; the change is then made (for example with the
    C(pic.connectivity.connectivity) role). Unless C(confirm) comes before I(timeout) seconds have passed, the
    timer puts the snapshot back and converges the cell to it by itself, even when the controller has lost
    contact with the cell. C(rollback) reverts at once.
  - The timer runs the cell-side entry point installed by the connectivity role (I(entry_point)).
  - Once an unconfirmed commit has reverted by itself, the collection's modules refuse to change the cell until
    C(begin), C(confirm) (which then fails) or C(rollback) acknowledges it, so the rest of a run that lost its
    deadline cannot re-apply half of the change.
author:
  - PIC connectivity developers (@pic-cells)
extends_documentation_fragment:
  - pic.connectivity.cell
notes:
  - It accepts the data plane options of the C(pic.connectivity.cell) group (I(peer_interface),
    I(local_networks), I(mark_mask), I(table_base), I(priority_base), I(port_base)) so that one
    C(module_defaults) group serves every module of the collection, and ignores them (a rollback puts back the
    settings of the snapshot).
attributes:
  check_mode:
    support: full
    description: Reports what it would do and does nothing.
  diff_mode:
    support: none
    description: Nothing to diff; the change itself is made by other tasks.
  idempotent:
    support: partial
    description: C(status) never changes anything; C(confirm) and C(rollback) change nothing once done.
    details: C(begin) always arms a new timer (a new snapshot and deadline), so it reports a change every time.
options:
  action:
    description: C(begin), C(confirm), C(rollback) or C(status).
    type: str
    choices: [begin, confirm, rollback, status]
    required: true
  id:
    description: Name of the commit (letters, digits, C(_), C(.), C(-)); C(begin) returns it.
    type: str
    default: rollout
  timeout:
    description: Seconds after C(begin) at which an unconfirmed commit reverts by itself (5 to 604800, a week).
    type: int
    default: 300
  entry_point:
    description: The cell-side C(pic-connectivity) command (the connectivity role's I(pic_entry_point)).
    type: path
    default: /usr/local/sbin/pic-connectivity
  allow_empty:
    description:
      - What to do when I(state_dir) holds no cell. With V(false), C(status) fails when the directory is missing or
        holds no C(registry.json), and C(confirm) and C(rollback) fail when the directory is missing (it cannot
        hold the commit, and with a mistyped I(state_dir) the real commit would revert by itself). V(true)
        reports such a cell as one without a registry or a pending commit (C(registry_sha256) null), as a
        rollout to a new cell reads it before its first change.
      - C(begin) sets the directory up and never needs it.
    type: bool
    default: false
seealso:
  - module: pic.connectivity.pic_health
'''

EXAMPLES = r'''
- name: Arm a revert in 2 minutes
  pic.connectivity.pic_commit:
    action: begin
    timeout: 120

- name: Change the cell
  ansible.builtin.include_role:
    name: pic.connectivity.connectivity

- name: Keep the change
  pic.connectivity.pic_commit:
    action: confirm
'''

RETURN = r'''
pending:
  description: The commit waiting for confirmation after this call (id, deadline as a UNIX time), or null.
  returned: success
  type: dict
  sample: {id: rollout, deadline: 1764003191.5, pid: 4242}
registry_sha256:
  description: SHA-256 of the cell's registry (status only), to tell whether a run changed the cell.
  returned: when action is status
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
changes:
  description: What a rollback changed on the cell.
  returned: when action is rollback
  type: list
  elements: str
  sample: ["replace nftables table inet pic_connectivity"]
'''

import hashlib
import os

from ansible_collections.pic.connectivity.plugins.module_utils.commits import Commits, revert
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import Registry
from ansible_collections.pic.connectivity.plugins.module_utils.audit import check_actor
from ansible_collections.pic.connectivity.plugins.module_utils.runner import build_module, cell_argument_spec, read_only
from ansible_collections.pic.connectivity.plugins.module_utils.validation import check_peer_name, parse_int

# A week: an unconfirmed commit must revert while someone still remembers it (and a
# larger number is no time at all: time.time() + 10**400 overflows).
MAX_TIMEOUT = 7 * 24 * 3600


def registry_digest(registry):
    try:
        with open(registry.path, 'rb') as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except IOError:
        return None


def apply(module):
    params = module.params
    registry = Registry(params['state_dir'])
    commits = Commits(registry)
    commit_id = check_peer_name(params['id'], 'id')
    action = params['action']
    if action == 'status':
        registry.require_set_up(params['allow_empty'])
    elif action != 'begin' and not params['allow_empty'] and not os.path.isdir(registry.state_dir):
        registry.require_set_up()
    pending = commits.pending()
    if action == 'status':
        return dict(changed=False, pending=pending, registry_sha256=registry_digest(registry))
    if action == 'begin':
        parse_int(params['timeout'], 'timeout', 5, MAX_TIMEOUT)
        if module.check_mode:
            return dict(changed=True, pending=pending)
        commits.clear_expired()
        with registry:
            commits.begin(commit_id, params['timeout'], params['entry_point'])
        return dict(changed=True, pending=commits.pending())
    if action == 'confirm':
        gone = commits.expired()
        if gone is not None and gone['id'] == commit_id:
            raise PicError("commit %r was not confirmed in time: the cell reverted it by itself" % commit_id,
                           'id', commit_id)
        if pending is None or pending['id'] != commit_id:
            return dict(changed=False, pending=pending)
        if not module.check_mode:
            commits.confirm(commit_id)
        return dict(changed=True, pending=commits.pending())
    gone = commits.expired()
    if pending is None or pending['id'] != commit_id:
        if gone is not None and gone['id'] == commit_id and not module.check_mode:
            commits.clear_expired()   # already reverted by the timer: acknowledge it
            return dict(changed=True, pending=None, changes=['reverted by the cell at %s' % gone['at']])
        return dict(changed=False, pending=pending, changes=[])
    if module.check_mode:
        return dict(changed=True, pending=pending, changes=[])
    changes = revert(registry, commit_id, 'pic_commit rollback', check_actor(params.get('audit_actor')))
    return dict(changed=True, pending=commits.pending(), changes=changes)


def main():
    argument_spec = cell_argument_spec()
    argument_spec.update(
        action=dict(type='str', required=True, choices=['begin', 'confirm', 'rollback', 'status']),
        id=dict(type='str', default='rollout'),
        timeout=dict(type='int', default=300),
        entry_point=dict(type='path', default='/usr/local/sbin/pic-connectivity'),
        allow_empty=dict(type='bool', default=False),
    )
    module = build_module(argument_spec, supports_check_mode=True)
    read_only(module, apply)


if __name__ == '__main__':
    main()
