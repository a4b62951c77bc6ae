#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_seclabel
short_description: Set the sVirt security label of a libvirt guest
version_added: 0.1.0
description:
  - Sets the guest's C(<seclabel>) for one security model (SELinux, AppArmor or DAC) in its persistent
    definition; the running guest keeps its label until it restarts (RV(restart_required)).
  - Validates SELinux labels (C(user:role:type:level)) and, for static labels, the MCS categories.
    A static SELinux label needs exactly two distinct categories, C(s0:cN,cM) with N < M, both in
    c0..c1023, as libvirt's dynamic labels use. A label without categories or with a single one
    (C(s0:c5)) is refused, because every label that adds categories (C(s0:c5,c9)) dominates it;
    ranges are refused because they would dominate other guests. C(imagelabel) must carry the same
    categories as C(label).
  - Refuses a static SELinux label that shares any category with the SELinux label of another guest
    on the host, or that dominates another guest's label without categories (static definitions and
    the dynamic labels of running guests), since libvirt leaves that separation to the administrator.
  - DAC and AppArmor labels are checked for syntax only.
  - Reports the labels the security drivers really gave the running qemu process
    (virDomainGetSecurityLabelList), so that a play can check them against the disk images.
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
  - secvirt.kvm.libvirt.domain
author:
  - secvirt.kvm contributors (@secvirt)
options:
  model:
    description:
      - Security driver the label is for. Required except for O(type=none), where leaving it out
        disables every driver for the guest.
    type: str
    choices: [selinux, apparmor, dac]
  type:
    description:
      - V(dynamic) lets libvirt generate a unique label at each start (recommended),
        V(static) uses O(label), V(none) runs the guest unconfined by that driver.
    type: str
    choices: [dynamic, static, none]
    default: dynamic
  label:
    description:
      - Process label for O(type=static). SELinux C(system_u:system_r:svirt_t:s0:c32,c256),
        AppArmor profile name, or DAC C(user:group) / C(+uid:+gid).
    type: str
  imagelabel:
    description: Label for the guest's images when O(relabel=true) (static labels).
    type: str
  baselabel:
    description: Base for the generated label of a dynamic SELinux or DAC label.
    type: str
  relabel:
    description:
      - Whether libvirt relabels the guest's resources. libvirt's default is V(true) for dynamic and
        V(false) for static labels; dynamic labels must relabel.
    type: bool
  state:
    description: V(absent) removes the guest's label of O(model) (libvirt's default applies again).
    type: str
    choices: [present, absent]
    default: present
  check_unique:
    description:
      - Refuse a static SELinux MCS category pair that shares a category with another guest's SELinux
        label, or that dominates another guest's label without categories.
    type: bool
    default: true
  require_host_model:
    description:
      - Refuse a label for a security driver this host does not run (the guest could not start).
        Set V(false) to store it anyway, for example for a guest that will migrate.
    type: bool
    default: true
notes:
  - A static DAC label's group must be able to enter libvirt's per-guest directories. Debian keeps
    C(/var/lib/libvirt/qemu) at mode 0750, owned by C(libvirt-qemu:libvirt-qemu), so on Debian give the
    guest its own uid with the C(libvirt-qemu) group (C(+970:+<gid of libvirt-qemu>)). With a group of
    its own, qemu cannot open its C(master-key.aes) there and the guest fails to start (seen with
    libvirt 9.0 on Debian 12).
seealso:
  - name: libvirt security label XML
    description: The seclabel element.
    link: https://libvirt.org/formatdomain.html#security-label
'''

EXAMPLES = r'''
- name: Give db01 a fixed SELinux MCS pair
  secvirt.kvm.libvirt_seclabel:
    domain: db01
    model: selinux
    type: static
    label: system_u:system_r:svirt_t:s0:c32,c256
    imagelabel: system_u:object_r:svirt_image_t:s0:c32,c256
    relabel: true

- name: Run web01's qemu as a dedicated user in the libvirt-qemu group (DAC, Debian)
  secvirt.kvm.libvirt_seclabel:
    domain: web01
    model: dac
    type: static
    label: "svirt-web01:libvirt-qemu"
    relabel: false
  register: web01_label

- name: Show the label of the running qemu process
  ansible.builtin.debug:
    var: web01_label.live_labels
'''

RETURN = r'''
seclabel:
  description: The guest's C(<seclabel>) for O(model) after the change (empty when absent).
  returned: always
  type: str
  sample: "<seclabel type=\"static\" model=\"dac\" relabel=\"no\"><label>+970:+970</label></seclabel>"
restart_required:
  description: The guest is running with its previous label; restart it to apply the new one.
  returned: always
  type: bool
active:
  description: Whether the guest is running.
  returned: always
  type: bool
host_models:
  description: Security drivers this host's libvirt runs, in order.
  returned: always
  type: list
  elements: str
  sample: [apparmor, dac]
live_labels:
  description: Labels of the running qemu process, one per security driver.
  returned: when the guest runs
  type: list
  elements: dict
  sample: [{model: apparmor, label: libvirt-8a1c..., enforcing: true}, {model: dac, label: "+970:+970", enforcing: false}]
live_label:
  description: The running process label of O(model).
  returned: when the guest runs
  type: str
live_imagelabel:
  description: The image label of O(model) in the running guest's XML.
  returned: when the guest runs
  type: str
conflicts:
  description: Guests whose SELinux label shares a category with the requested MCS pair or has no categories.
  returned: on failure because of an overlapping pair
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import run_libvirt_module, uri_argument_spec
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_seclabel import run_seclabel
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_xml import XMLValidationError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            domain=dict(type='str', required=True),
            model=dict(type='str', choices=['selinux', 'apparmor', 'dac']),
            type=dict(type='str', default='dynamic', choices=['dynamic', 'static', 'none']),
            label=dict(type='str'),
            imagelabel=dict(type='str'),
            baselabel=dict(type='str'),
            relabel=dict(type='bool'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            check_unique=dict(type='bool', default=True),
            require_host_model=dict(type='bool', default=True),
        ),
        required_if=[('type', 'static', ('model', 'label')), ('type', 'dynamic', ('model',)),
                     ('state', 'absent', ('model',))],
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: run_seclabel(conn, module.params, check_mode=module.check_mode, secure=not module.check_mode),
                       user_errors=(XMLValidationError,))


if __name__ == '__main__':
    main()
