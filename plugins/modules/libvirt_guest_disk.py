#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: libvirt_guest_disk
short_description: Point a shut-off guest's disk at a block device (e.g. an opened LUKS volume)
version_added: 0.1.0
description:
  - Reads a defined libvirt guest's disk by its target name (C(vda), C(sda)) and, with
    O(state=present), changes it to C(type='block') with C(<source dev='...'/>) and driver type
    C(raw), as the "migrating existing guests to encrypted storage" procedure does by hand with
    C(virsh edit). Bus, cache, serial, boot order and address are kept; a C(<backingStore>) is dropped.
  - Refuses to change a guest that is not shut off. The persistent definition is changed, never a
    running guest.
  - With O(state=query) only reports the disk and the guest's state (runs in check mode too).
  - To change a guest it reads the persistent definition with its secrets (C(VIR_DOMAIN_XML_SECURE), which
    needs a read-write connection), so that VNC/SPICE passwords (C(<graphics passwd=...>)) survive the
    rewrite. The diff shows every password as C(********). Check mode and O(state=query) use a read-only
    connection and never see the passwords.
author:
  - secvirt.kvm contributors (@secvirt)
options:
  target:
    description:
      - Target device name of the disk inside the guest definition (C(<target dev='vda'/>)).
    type: str
    required: true
  dev:
    description:
      - Block device the disk must use, e.g. C(/dev/mapper/guest01). Required with O(state=present).
    type: path
  state:
    description:
      - V(present) makes the disk a raw block disk on O(dev); V(query) changes nothing.
    type: str
    choices: [present, query]
    default: present
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
  - secvirt.kvm.libvirt.domain
seealso:
  - module: secvirt.kvm.luks_volume
  - module: secvirt.kvm.image_check
'''

EXAMPLES = r'''
- name: Find where guest01's first disk lives
  secvirt.kvm.libvirt_guest_disk:
    domain: guest01
    target: vda
    state: query
  register: guest01_vda

- name: Run guest01 from its encrypted volume
  secvirt.kvm.libvirt_guest_disk:
    domain: guest01
    target: vda
    dev: /dev/mapper/guest01
'''

RETURN = r'''
disk:
  description: The disk as it was before the task.
  returned: always
  type: dict
  contains:
    type:
      description: Disk type (C(file), C(block), C(network), C(volume)).
      type: str
      sample: file
    source:
      description: Path (file or dev) of the disk's source.
      type: str
      sample: /var/lib/libvirt/images/guest01.img
    format:
      description: Driver type (C(raw), C(qcow2)).
      type: str
      sample: raw
    device:
      description: C(disk), C(cdrom), C(lun) or C(floppy).
      type: str
      sample: disk
    readonly:
      description: Whether the disk is read-only.
      type: bool
      sample: false
    backing_store:
      description: Whether libvirt records a backing chain for the disk.
      type: bool
      sample: false
    target:
      description: Target device name.
      type: str
      sample: vda
domain_state:
  description: State of the guest (C(running), C(shut off), C(paused), ...).
  returned: always
  type: str
  sample: shut off
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.guest_disk import run_guest_disk
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import run_libvirt_module, uri_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=dict(
            domain=dict(type='str', required=True),
            target=dict(type='str', required=True),
            dev=dict(type='path'),
            state=dict(type='str', default='present', choices=['present', 'query']),
            **uri_argument_spec(),
        ),
        required_if=[('state', 'present', ['dev'])],
        supports_check_mode=True,
    )
    p = module.params
    # A change needs a read-write connection, also to read the definition with
    # its graphics passwords (VIR_DOMAIN_XML_SECURE) so that they survive it.
    writing = p['state'] == 'present' and not module.check_mode
    run_libvirt_module(module, lambda conn: run_guest_disk(conn, p, check_mode=module.check_mode, diff=module._diff),
                       readonly=not writing)


if __name__ == '__main__':
    main()
