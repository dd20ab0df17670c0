# -*- coding: utf-8 -*-
"""errors: PicError's message names the field and the value found there (repr, so a control
character shows escaped), and carries its details as given."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


@pytest.mark.parametrize('args, message', [
    (("bad",), "bad"),
    (("must be a port", 'config.port', 70000), "config.port: must be a port (got 70000)"),
    (("is required", 'peers[3].address'), "peers[3].address: is required"),
    (("contains a line break", 'name', 'a\nb'), "name: contains a line break (got 'a\\nb')"),
    (("is not a number", 'timeout', 0), "timeout: is not a number (got 0)"),
])
def test_the_message_names_the_field_and_value(args, message):
    err = PicError(*args)
    assert str(err) == err.msg == message
    assert err.field == (args[1] if len(args) > 1 else None)


def test_details_are_kept_and_default_to_empty():
    assert PicError('x').details == {}
    users = {'users': {'peers': ['alice']}}
    assert PicError('in use', details=users).details is users


def test_it_is_an_exception():
    with pytest.raises(Exception) as err:
        raise PicError('refused', 'name', 'x')
    assert isinstance(err.value, PicError) and err.value.value == 'x'
