# -*- coding: utf-8 -*-
"""The cell library's payload on the controller: every module_utils file, and a missing or
incomplete source refused (it must never shrink a cell's library)."""
import os

import pytest

from ansible_collections.pic.connectivity.plugins.plugin_utils import library


def test_the_payload_is_every_module_utils_file_by_its_path_in_the_package():
    files = library.payload()
    assert set(library.REQUIRED) <= set(files)
    assert 'exits/tor.py' in files and '__init__.py' in files
    assert not [n for n in files if '__pycache__' in n or not n.endswith('.py')]
    assert library.checked(files, library.MODULE_UTILS) is files


@pytest.mark.parametrize('broken, named', [
    (lambda f: {}, 'missing: ' + library.REQUIRED[0]),
    (lambda f: dict((k, v) for k, v in f.items() if k != 'nft.py'), 'missing: nft.py'),
    (lambda f: dict(f, **{'dataplane.py': b''}), 'empty: dataplane.py'),
])
def test_an_incomplete_source_is_refused_naming_what_lacks(broken, named):
    with pytest.raises(library.IncompleteLibrary) as err:
        library.checked(broken(library.payload()), '/src')
    assert named in str(err.value) and "the cell's installed library was left as it is" in str(err.value)


def test_a_missing_directory_is_an_empty_payload(tmp_path):
    assert library.payload(str(tmp_path / 'nothing')) == {}
    assert os.path.isdir(library.MODULE_UTILS)
