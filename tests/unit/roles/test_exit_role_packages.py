# -*- coding: utf-8 -*-
"""The exit service roles install only the packages the cell's package facts do not list:
a cell that has them runs no apt (on the stale-stamp path and in the role, task by task)."""
import os

import jinja2
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = ('openvpn_client', 'proxy', 'sshuttle', 'tor', 'wireguard_ext')


def _load(role, kind):
    with open(os.path.join(ROOT, 'roles', role, kind, 'main.yml')) as handle:
        return yaml.safe_load(handle)


def _missing(role, facts):
    packages = _load(role, 'defaults')['%s_packages' % role]
    expression = _load(role, 'vars')['%s_missing_packages' % role]
    variables = {'%s_packages' % role: packages, 'ansible_facts': {} if facts is None else {'packages': facts}}
    return packages, yaml.safe_load(jinja2.Environment().from_string(expression).render(**variables))


@pytest.mark.parametrize('role', ROLES)
def test_missing_packages_are_those_the_facts_do_not_list(role):
    packages, missing = _missing(role, None)
    assert missing == packages                      # no facts: every package (apt decides)
    installed = dict((name, [{'version': '1'}]) for name in packages[1:])
    assert _missing(role, installed)[1] == packages[:1]
    assert _missing(role, dict((name, [{'version': '1'}]) for name in packages))[1] == []


@pytest.mark.parametrize('role', ROLES)
def test_apt_runs_only_for_missing_packages(role):
    task = _load(role, 'tasks')[0]
    assert task['ansible.builtin.apt']['name'] == '{{ %s_missing_packages }}' % role
    assert '%s_missing_packages | length > 0' % role in task['when']
