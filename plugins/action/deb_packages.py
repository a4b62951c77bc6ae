# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""secvirt.kvm.deb_packages: ask dpkg which packages are missing, let apt
install only those (see the module's documentation)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.secvirt.kvm.plugins.module_utils.deb_packages import ARGUMENT_SPEC


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)

        query = self._execute_module(module_name='secvirt.kvm.deb_packages', module_args=args,
                                     task_vars=task_vars)
        if query.get('failed'):
            result.update(query)
            return result
        result.update(changed=False, installed=query['installed'], missing=query['missing'])
        if not query['missing']:
            return result

        apt = self._execute_module(
            module_name='ansible.builtin.apt',
            module_args=dict(name=query['missing'], state='present',
                             install_recommends=args['install_recommends'],
                             cache_valid_time=args['cache_valid_time']),
            task_vars=task_vars)
        result['apt'] = dict((k, v) for k, v in apt.items() if k not in ('diff', 'invocation', 'exception'))
        result['changed'] = bool(apt.get('changed'))
        if 'diff' in apt:
            result['diff'] = apt['diff']
        if apt.get('failed'):
            result['failed'] = True
            result['msg'] = 'apt could not install %s: %s' % (', '.join(query['missing']), apt.get('msg', ''))
        return result
