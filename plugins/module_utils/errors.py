# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type of the collection's domain errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class PicError(Exception):
    """A domain error: bad input, a refused change or a failed apply.

    ``field`` is the dotted path of the offending input (``peers[3].address[0]``)
    and ``value`` the value found there; both are shown in the message.
    ``details`` is a dict returned to the user as is (for example the users of
    a connection that cannot be deleted).
    """

    def __init__(self, msg, field=None, value=None, details=None):
        self.field = field
        self.value = value
        self.details = details or {}
        if field is not None:
            msg = "%s: %s (got %r)" % (field, msg, value) if value is not None else "%s: %s" % (field, msg)
        super(PicError, self).__init__(msg)
        self.msg = msg
