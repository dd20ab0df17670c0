# -*- coding: utf-8 -*-
"""validation.check_bool: the one boolean check, as data."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import links, peers
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.plugins.module_utils.validation import check_bool, check_bool_or_none

ACCEPTED = [
    # value, none_ok, words, result
    (True, False, False, True),
    (False, False, False, False),
    (None, True, False, None),
    ('yes', False, True, True),
    (' On ', False, True, True),
    (1, False, True, True),
    ('f', True, True, False),
    (0, False, True, False),
]
REFUSED = [
    # value, none_ok, words, message
    (None, False, False, 'must be true or false'),
    ('yes', False, False, 'must be true or false'),
    (1, True, False, 'must be true, false or null'),
    ('maybe', True, True, 'must be true, false or null'),
    (2, False, True, 'must be true or false'),
    (1.0, False, True, 'must be true or false'),
    ([True], False, True, 'must be true or false'),
]


@pytest.mark.parametrize('value,none_ok,words,result', ACCEPTED)
def test_accepted(value, none_ok, words, result):
    assert check_bool(value, 'x', none_ok=none_ok, words=words) is result


@pytest.mark.parametrize('value,none_ok,words,message', REFUSED)
def test_refused_naming_the_field(value, none_ok, words, message):
    with pytest.raises(PicError) as err:
        check_bool(value, 'peers[2].fail_open', none_ok=none_ok, words=words)
    assert str(err.value).startswith('peers[2].fail_open: ' + message)


def test_the_callers_use_it():
    assert check_bool_or_none(None, 'x') is None
    with pytest.raises(PicError) as err:
        peers.normalize_items([{'peer': 'a', 'fail_open': 'maybe'}])
    assert str(err.value).startswith('peers[0].fail_open: must be true, false or null')
    with pytest.raises(PicError) as err:
        links.plan(empty(), [{'cell': 'cell-b', 'interface': 'cl-b', 'offer_exit': 'yes'}])
    assert 'offer_exit: must be true or false' in str(err.value)
