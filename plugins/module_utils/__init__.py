# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The library of the pic.connectivity collection: private to the collection.

Only this collection's modules, roles and tests import these files, and the
connectivity role copies them to the cell as the package
``pic_connectivity_lib`` (boot restore, monitor, CLI). Nothing here is an API
for other collections or playbooks: names, signatures and files change between
releases without deprecation. Ansible has no mechanism that restricts imports
of a collection's ``module_utils`` to the collection itself; this statement is
the contract (see docs/architecture.md). Its public interface is the modules'
options and return values and the role's variables
(docs/architecture.md, the collection interface).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
