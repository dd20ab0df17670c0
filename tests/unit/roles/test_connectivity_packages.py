# -*- coding: utf-8 -*-
"""The connectivity role's packages: what the cell-side code needs, nothing it does not use."""
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(ROOT, 'roles', 'connectivity')


def _packages():
    with open(os.path.join(ROLE, 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)['pic_packages']
    with open(os.path.join(ROLE, 'meta', 'argument_specs.yml')) as handle:
        spec = yaml.safe_load(handle)['argument_specs']['main']['options']['pic_packages']['default']
    assert defaults == spec
    return defaults


def _library_text():
    lib = os.path.join(ROOT, 'plugins', 'module_utils')
    text = []
    for directory, _dirs, files in os.walk(lib):
        for name in files:
            if name.endswith('.py'):
                with open(os.path.join(directory, name)) as handle:
                    text.append(handle.read())
    return '\n'.join(text)


def test_the_deep_probe_has_its_ping():
    assert 'iputils-ping' in _packages()
    assert "shutil.which('ping')" in _library_text()


def test_every_python_package_installed_is_imported_by_the_library():
    text = _library_text()
    for package in _packages():
        if package.startswith('python3-'):
            name = package[len('python3-'):]
            assert re.search(r'^\s*(import|from) %s\b' % re.escape(name), text, re.M), \
                '%s is installed on the cell but the library never imports %s' % (package, name)
