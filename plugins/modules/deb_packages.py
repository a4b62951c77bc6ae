#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: deb_packages
short_description: Install Debian packages, asking dpkg first which are missing
version_added: 0.2.0
description:
  - Makes sure the named packages are installed on a Debian host.
  - Reads dpkg's database first (one C(dpkg-query -W) for all names) and hands only the missing
    packages to M(ansible.builtin.apt), which installs them, updates the package lists when they are
    older than O(cache_valid_time), and does the check mode and the diff. When nothing is missing,
    apt does not run at all.
  - Why not M(ansible.builtin.apt) alone; it loads the whole apt cache for every task, even when
    everything is installed. On the collection's test VMs (qemu TCG) that costs 6 s of CPU per task
    idle and up to 30 s under load; C(dpkg-query) takes 0.2 s. See C(benchmarks/deb_packages).
  - Names that are not a plain package name (with an optional C(:arch)), such as C(name=version)
    or a glob, are always handed to apt, which decides what they mean.
  - An action plugin does the two steps; this module file holds the dpkg query.
extends_documentation_fragment:
  - secvirt.kvm.attributes
author:
  - secvirt.kvm contributors (@secvirt)
attributes:
  check_mode:
    support: full
    details: Reports the missing packages and apt's check-mode answer for them.
  diff_mode:
    support: full
    details: The diff is apt's (the packages it would install).
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: debian
options:
  name:
    description: The packages that must be installed.
    type: list
    elements: str
    required: true
  install_recommends:
    description: Passed to M(ansible.builtin.apt) when something is missing.
    type: bool
    default: false
  cache_valid_time:
    description:
      - Passed to M(ansible.builtin.apt) when something is missing; apt updates the package lists first
        when they are older than this many seconds.
    type: int
    default: 86400
seealso:
  - module: ansible.builtin.apt
'''

EXAMPLES = r'''
- name: Install the libvirt client tools
  secvirt.kvm.deb_packages:
    name: [libvirt-clients, python3-libvirt]
'''

RETURN = r'''
installed:
  description: The names that were installed before the task ran, with their versions.
  returned: always
  type: dict
  sample: {libvirt-clients: 9.0.0-4+deb12u2}
missing:
  description: The names that dpkg did not report as installed; these went to apt.
  returned: always
  type: list
  elements: str
  sample: [firewalld]
apt:
  description: What M(ansible.builtin.apt) returned for the missing packages (absent when none was missing).
  returned: when a package was missing
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.deb_packages import (
    ARGUMENT_SPEC, QUERY_FORMAT, installed_versions, queryable)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    names = module.params['name']
    plain, _other = queryable(names)
    output = ''
    if plain:
        dpkg_query = module.get_bin_path('dpkg-query', required=True)
        # rc 1 only says that some name is unknown to dpkg: that name is missing
        rc, output, err = module.run_command([dpkg_query, '-W', '-f', QUERY_FORMAT, '--'] + plain,
                                             environ_update={'LC_ALL': 'C'})
        if rc not in (0, 1):
            module.fail_json(msg='dpkg-query failed: %s' % err.strip(), rc=rc)
    installed, missing = installed_versions(names, output)
    module.exit_json(changed=False, installed=installed, missing=missing)


if __name__ == '__main__':
    main()
