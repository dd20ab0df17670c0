# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
attributes:
  platform:
    support: full
    platforms: debian
    description: Debian 12 cells (Linux with nftables, fwmark policy routing and WireGuard) with Python 3.11.
  action_group:
    support: full
    membership: [pic.connectivity.cell]
    description: Takes the options of the C(pic.connectivity.cell) group from C(module_defaults).
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
      - The packet mark bits the collection owns, one contiguous run of at least three bits, as an integer or
        a C(0x) string. Its highest bit is the kill bit of fail-closed peers; the bits below number the
        connections.
      - The highest number (all bits below the kill bit set) is no connection's; it is the direct mark, which
        the nftables table gives every packet of an ingress interface that goes to no exit. So every packet the
        table has classified carries a non-zero value in the mask, and the guard rules (see I(priority_base))
        catch those that carry none because the table is gone.
      - C(0x00ff0000) thus allows 126 connections (marks C(0x00010000)-C(0x007e0000); direct mark
        C(0x007f0000); kill bit C(0x00800000)); the smallest mask, three bits, allows 2.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(0x00ff0000) on a
        new cell).
    type: raw
  table_base:
    description:
      - Connection N uses routing table I(table_base + N). The reserved range is I(table_base)+1 to
        I(table_base) + the direct mark's number (10001-10127 with the defaults); it must not include the
        kernel's tables 253-255.
      - The last table of the range is the kill switch's guard table (its only route leads IPv4 back to the peer
        interface) and is never a connection's.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(10000) on a new cell).
    type: int
  priority_base:
    description:
      - The C(ip rule) priorities used are I(priority_base) (one rule per connection and family) and
        I(priority_base + 1) (the kill switch; C(fwmark <kill bit>/<kill bit>) to C(unreachable), and while a
        peer or service is fail-closed the guard rules C(iif <ingress interface> fwmark 0/<mask>), one per
        ingress interface and family, to the guard table for IPv4 and C(unreachable) for IPv6).
      - At most 32764, below the main table's 32766.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(10000) on a new cell).
    type: int
  port_base:
    description:
      - Proxy connection N (C(tor), C(sshuttle), C(proxy)) gets the local ports I(port_base + 2N) (transparent TCP)
        and I(port_base + 2N + 1) (DNS) for its instance.
      - Cannot change while connections exist. When omitted, the registry's value is kept (C(12300) on a new cell).
    type: int
  audit_actor:
    description:
      - Who asks for the change, as the controller says (for example C(alice@laptop)), written to the cell's
        audit journal (C(audit.jsonl) in I(state_dir)) with every change the call makes. Not authenticated;
        the journal also records the user the module runs as on the cell and sudo's C(SUDO_USER).
      - The connectivity role fills it from the controller (C(pic_audit_actor), the controller's C(USER) and
        host name). Printable text, at most 200 characters. Read-only modules ignore it.
    type: str
requirements:
  - python3 on the cell with pyroute2 (Debian C(python3-pyroute2)) and the nftables binding
    (Debian C(python3-nftables)) or the C(nft) command
  - wireguard-tools, and kernel WireGuard or C(wireguard-go), for C(wireguard_ext) connections
'''

    # The read-only modules' answer to a state_dir that holds no cell
    # (pic.connectivity.cell.read_only).
    READ_ONLY = r'''
options:
  allow_empty:
    description:
      - What to do when I(state_dir) holds no cell (the directory is missing, or it holds no C(registry.json)).
      - V(false) fails with an error naming I(state_dir) (a mistyped I(state_dir) must not read as a healthy cell
        with no connections); V(true) reports a cell without connections.
    type: bool
    default: false
'''
