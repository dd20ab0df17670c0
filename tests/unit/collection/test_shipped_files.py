# -*- coding: utf-8 -*-
"""What the built collection ships: the files galaxy.yml's build_ignore leaves in (as the
Makefile's SANITY_FILTER decides), every relative link of README.md and docs/*.md resolving
to one of them, the LICENSE and a changelog release for galaxy.yml's version."""
import fnmatch
import os
import re
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')


def galaxy():
    with open(os.path.join(ROOT, 'galaxy.yml')) as handle:
        return yaml.safe_load(handle)


def shipped(path, patterns):
    """The Makefile's SANITY_FILTER: no prefix of the path matches a build_ignore pattern."""
    parts = path.split('/')
    prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    return not any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns)


def repository_files():
    """The tracked and untracked-but-not-ignored files (as `make sanity` lists them)."""
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode('utf-8')
    return [f for f in out.split('\0') if f and os.path.lexists(os.path.join(ROOT, f))]


@pytest.fixture(scope='module')
def shipped_files():
    if not os.path.isdir(os.path.join(ROOT, '.git')) and not os.path.isfile(os.path.join(ROOT, '.git')):
        pytest.skip('not a git checkout: the installed collection is what ships')
    patterns = galaxy().get('build_ignore') or []
    files = set(f for f in repository_files() if shipped(f, patterns))
    dirs = set(os.path.dirname(f) for f in files)
    for d in list(dirs):
        while d:
            d = os.path.dirname(d)
            dirs.add(d)
    return files | dirs


def documents():
    docs = ['README.md'] + sorted('docs/' + name for name in os.listdir(os.path.join(ROOT, 'docs'))
                                  if name.endswith('.md'))
    return docs


def relative_links(doc):
    with open(os.path.join(ROOT, doc)) as handle:
        text = handle.read()
    text = re.sub(r'(?ms)^```.*?^```', '', text)   # code blocks hold no links
    for target in LINK.findall(text):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target) or target.startswith('#'):
            continue
        yield target


@pytest.mark.parametrize('doc', documents())
def test_every_relative_link_resolves_in_the_built_collection(doc, shipped_files):
    assert doc in shipped_files
    bad = []
    for target in relative_links(doc):
        path = os.path.normpath(os.path.join(os.path.dirname(doc), target.split('#')[0])).rstrip('/')
        if path == '.':
            path = ''
        if path not in shipped_files:
            bad.append(target)
    assert not bad, '%s links to files the built collection does not ship: %s' % (doc, bad)


def test_the_license_is_the_gpl_galaxy_names(shipped_files):
    assert galaxy()['license'] == ['GPL-3.0-or-later']
    assert 'LICENSE' in shipped_files
    with open(os.path.join(ROOT, 'LICENSE')) as handle:
        text = handle.read()
    assert 'GNU GENERAL PUBLIC LICENSE' in text and 'Version 3, 29 June 2007' in text
    assert 'END OF TERMS AND CONDITIONS' in text


def test_the_changelog_has_a_release_for_the_version():
    version = str(galaxy()['version'])
    with open(os.path.join(ROOT, 'changelogs', 'changelog.yaml')) as handle:
        releases = yaml.safe_load(handle)['releases']
    assert version in releases, 'no antsibull-changelog release for %s' % version
    assert releases[version].get('release_date')
    assert os.path.exists(os.path.join(ROOT, 'CHANGELOG.rst'))
    assert os.path.exists(os.path.join(ROOT, 'CHANGELOG.md'))
