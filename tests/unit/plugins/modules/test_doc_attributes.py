# -*- coding: utf-8 -*-
"""Every module's attributes (platform, idempotent, action_group) and the action group
of meta/runtime.yml: every member takes every option of the group's doc fragment."""
import importlib
import os

import pytest
import yaml

from ansible_collections.pic.connectivity.plugins.doc_fragments.cell import ModuleDocFragment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, 'plugins', 'modules'))
                 if name.startswith('pic_') and name.endswith('.py'))
GROUP = 'cell'
# modules outside the group, and why
OUTSIDE = {'pic_library': 'installs the cell library; takes none of the cell options'}
MEMBERS = [name for name in MODULES if name not in OUTSIDE]


def runtime_groups():
    with open(os.path.join(ROOT, 'meta', 'runtime.yml')) as handle:
        return yaml.safe_load(handle)['action_groups']


def module_of(name):
    return importlib.import_module('ansible_collections.pic.connectivity.plugins.modules.' + name)


def documentation(name):
    """A module's DOCUMENTATION with the attributes of the cell doc fragment merged in, as
    ansible-doc merges them (the module's own win)."""
    doc = yaml.safe_load(module_of(name).DOCUMENTATION)
    fragments = doc.get('extends_documentation_fragment') or []
    shared = yaml.safe_load(ModuleDocFragment.DOCUMENTATION).get('attributes', {}) \
        if 'pic.connectivity.cell' in fragments else {}
    doc['attributes'] = dict(shared, **doc.get('attributes', {}))
    return doc


class _Spec(Exception):
    pass


def argument_spec(name, monkeypatch):
    """The argument spec module NAME's main() builds its AnsibleModule with."""
    module = module_of(name)

    def capture(spec, *_args, **_kwargs):
        raise _Spec(spec)
    monkeypatch.setattr(module, 'build_module', capture)
    with pytest.raises(_Spec) as caught:
        module.main()
    return caught.value.args[0]


def test_every_module_is_in_the_cell_group():
    assert sorted(runtime_groups()[GROUP]) == MEMBERS


@pytest.mark.parametrize('name', MEMBERS)
def test_every_member_takes_every_option_of_the_group(name, monkeypatch):
    shared = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    spec = argument_spec(name, monkeypatch)
    missing = sorted(set(shared) - set(spec))
    assert not missing, '%s does not take %s: module_defaults of group/pic.connectivity.%s breaks it' % (
        name, missing, GROUP)
    for option, doc in shared.items():
        assert spec[option]['type'] == doc['type'], (name, option)
        assert spec[option].get('default') == doc.get('default'), (name, option)
    assert 'pic.connectivity.cell' in documentation(name)['extends_documentation_fragment']


@pytest.mark.parametrize('name', MODULES)
def test_attributes_name_the_platform_idempotence_and_group(name):
    attributes = documentation(name)['attributes']
    assert attributes['platform']['platforms'] == 'debian'
    assert attributes['idempotent']['support'] in ('full', 'partial')
    groups = ['pic.connectivity.%s' % group for group, members in runtime_groups().items() if name in members]
    assert attributes['action_group']['membership'] == groups
    for attribute in attributes.values():
        assert attribute['support'] in ('full', 'partial', 'none', 'N/A') and attribute['description']
