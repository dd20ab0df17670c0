# -*- coding: utf-8 -*-
"""Services (module_utils/services.py): a manifest given by path is a regular,
bounded file. A FIFO held pic_service_egress (and the registry lock) forever,
/dev/zero filled the memory of the cell."""
import os

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import services
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


def fifo(tmp_path):
    path = str(tmp_path / 'fifo')
    os.mkfifo(path)
    return path


def big(tmp_path):
    path = tmp_path / 'big.yml'
    path.write_text('has_egress: true\n' + '#' * services.MANIFEST_MAX)
    return str(path)


# (path maker, message)
REFUSED = [
    (lambda tmp_path: '/dev/zero', 'is not a regular file'),
    (lambda tmp_path: '/dev/null', 'is not a regular file'),
    (fifo, 'is not a regular file'),
    (str, 'is not a regular file'),
    (big, 'is larger than'),
    (lambda tmp_path: str(tmp_path / 'missing.yml'), 'cannot be read'),
]


@pytest.mark.parametrize('make,message', REFUSED)
def test_a_manifest_path_that_is_no_bounded_regular_file_is_refused(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(PicError) as err:
        services.load_manifest(path)
    assert message in err.value.msg and err.value.field == 'manifest'


def test_a_manifest_file_is_read(tmp_path):
    path = tmp_path / 'manifest.yml'
    path.write_text('has_egress: true\nname: email\n')
    assert services.load_manifest(str(path)) == {'has_egress': True, 'name': 'email'}
    path.write_text('{"has_egress": false}')
    assert services.load_manifest(str(path)) == {'has_egress': False}
