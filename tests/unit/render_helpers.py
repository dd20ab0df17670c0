# -*- coding: utf-8 -*-
"""Render a role template as the template module does (trim_blocks, Ansible's
core filters and tests, the collection's filters under their FQCN)."""
import functools
import os

import jinja2
from ansible.plugins.filter.core import FilterModule as CoreFilters
from ansible.plugins.test.core import TestModule as CoreTests

from ansible_collections.pic.connectivity.plugins.filter import render

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANAGED = 'Ansible managed'


@functools.lru_cache(maxsize=1)
def environment():
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
