# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pic_library's controller side: reads the library payload (plugin_utils/library.py),
refuses an incomplete one before the cell is touched, and sends it in one module run.
The payload is left out of the result (it is the whole library)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.pic.connectivity.plugins.plugin_utils import library


class ActionModule(ActionBase):
    """Send the library's files to pic_library in one module run."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars or {})
        args = dict(self._task.args)
        if 'files' in args:
            raise AnsibleActionFail('files: is read from src on the controller and cannot be given')
        source = args.get('src') or library.MODULE_UTILS
        try:
            files = library.checked(library.payload(source), source)
        except library.IncompleteLibrary as exc:
            raise AnsibleActionFail(str(exc))
        try:
            args['files'] = dict((name, data.decode('utf-8')) for name, data in files.items())
        except UnicodeDecodeError:
            raise AnsibleActionFail('%s: the collection holds a module_utils file that is not UTF-8; reinstall it'
                                    % source)
        done = self._execute_module(module_name='pic.connectivity.pic_library', module_args=args,
                                    task_vars=task_vars or {})
        done.pop('invocation', None)
        result.update(done)
        return result
