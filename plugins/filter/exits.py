# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the roles need to know about the exit types, read from the exit-type
registry (plugins/module_utils/exits/), so that no role holds a list of types.

Filters (FQCN ``pic.connectivity.<name>``):

* ``exit_types``: ``'service_role' | pic.connectivity.exit_types`` is
  ``{type: role}`` of the types with a service role (the connectivity role's
  ``connectivity_service_roles``); ``'kind'`` gives ``{type: 'interface' or 'proxy'}``,
  ``'creatable'``, ``'singleton'``, ``'fail_open'`` a boolean per type.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.pic.connectivity.plugins.module_utils import exits

ATTRIBUTES = ('service_role', 'kind', 'creatable', 'singleton', 'fail_open')


def exit_types(attribute):
    """{type: the attribute of its provider} of every registered type where it is not None."""
    if attribute not in ATTRIBUTES:
        raise AnsibleFilterError('exit_types: unknown attribute %r; known: %s' % (attribute, ', '.join(ATTRIBUTES)))
    return dict((name, getattr(prov, attribute)) for name, prov in exits.PROVIDERS.items()
                if getattr(prov, attribute) is not None)


class FilterModule(object):

    def filters(self):
        return {'exit_types': exit_types}
