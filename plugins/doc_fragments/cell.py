# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  state_dir:
    description:
      - Directory on the cell holding the registry (C(registry.json)), its lock and the secrets of connections.
      - One per cell; give each cell of a lab on one machine its own.
    type: path
    default: /var/lib/pic-connectivity
  peer_interface:
    description:
      - The cell's WireGuard server interface, from which peers' traffic arrives.
      - Its own subnets never go through an exit (peer-to-peer traffic stays on the cell).
      - When omitted, the value stored in the registry is kept (C(wg0) on a new cell).
    type: str
  local_networks:
    description:
      - Extra destinations that never go through an exit (for example the cell's service network).
      - When omitted, the value stored in the registry is kept (none on a new cell).
    type: list
    elements: str
  mark_mask:
    description:
      - The packet mark bits the collection owns, one contiguous run of at least two bits, as an integer or
        a C(0x) string. Its highest bit is the kill bit of fail-closed peers; the bits below number the
        connections, so C(0x00ff0000) allows 127 connections.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(0x00ff0000) on a
        new cell).
    type: raw
  table_base:
    description:
      - Connection N uses routing table I(table_base + N). The reserved range must not include the kernel's
        tables 253-255.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(10000) on a new cell).
    type: int
  priority_base:
    description:
      - The C(ip rule) priorities used are I(priority_base) (one rule per connection and family) and
        I(priority_base + 1) (the kill-switch rule). Must be below the main table's 32766.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(10000) on a new cell).
    type: int
  port_base:
    description:
      - Proxy connection N (C(tor), C(sshuttle), C(proxy)) gets the local ports I(port_base + 2N) (transparent TCP)
        and I(port_base + 2N + 1) (DNS) for its instance.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(12300) on a new cell).
    type: int
requirements:
  - python3 on the cell with pyroute2 (Debian C(python3-pyroute2)) and the nftables binding
    (Debian C(python3-nftables)) or the C(nft) command
  - wireguard-tools, and kernel WireGuard or C(wireguard-go), for C(wireguard_ext) connections
'''
