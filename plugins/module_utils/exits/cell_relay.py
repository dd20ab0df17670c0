# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cell_relay exit: the internet exit a linked cell offers, through the
WireGuard link to it. Made by pic_cell_link, never by pic_connection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..errors import PicError
from .base import InterfaceExit


class CellRelay(InterfaceExit):
    name = 'cell_relay'
    creatable = False
    needs_config = False
    liveness = 'handshake'

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        raise PicError("cell_relay connections are derived from cell links and cannot be configured by hand",
                       'type', cls.name)


PROVIDER = CellRelay
