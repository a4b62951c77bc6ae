#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: hypervisor_info
short_description: Read what a KVM host runs before it is hardened
version_added: 0.2.0
description:
  - Returns, in one call, the state the C(secvirt.kvm.hypervisor) role decides on before it changes anything
    (systemd units, sysctls, Linux security modules, the libvirt security driver to configure, KVM
    acceleration, KSM, sysctl files and libvirt networks that decide IP forwarding, running guests and
    whether their qemu processes are confined).
  - Reads the units with one C(systemctl show) call, the rest from C(/proc), C(/sys), C(/dev), C(/run) and
    the sysctl configuration files, and the networks and guests over a read-only libvirt connection.
  - Never writes anything. When libvirt-python is missing or the daemon cannot be reached (libvirt is not
    installed yet), the libvirt part is empty and RV(libvirt_error) says why; the module does not fail.
  - Warns when the host has no C(/dev/kvm) and when running guests are not confined.
extends_documentation_fragment:
  - secvirt.kvm.attributes.read_only
  - secvirt.kvm.libvirt
author:
  - secvirt.kvm contributors (@secvirt)
options:
  services:
    description:
      - systemd units whose state is returned in RV(services), in this order.
      - C(libvirtd.service) and C(virtqemud.socket) are always read too (for RV(daemon_layout)); they are
        in RV(services) only when listed here.
    type: list
    elements: str
    default: []
  sysctls:
    description:
      - Sysctl keys (dotted, or with C(/) between the parts) and the values they should have.
      - The current values are read from C(/proc/sys); whitespace runs count as one space, V(true) and
        V(false) as V(1) and V(0).
    type: dict
    default: {}
  own_sysctl_file:
    description:
      - The sysctl file the role writes, left out of RV(forwarding_sysctl_conflicts). It keeps its place
        (its name still masks the same name in later directories) but its current content is not read.
    type: path
    default: ''
  security_driver:
    description:
      - The libvirt security driver wanted in C(qemu.conf). V(auto) picks SELinux when it is enforcing,
        else AppArmor when it is enabled.
      - The module does not fail when the driver cannot be used; RV(security_driver_error) says why.
    type: str
    choices: [auto, apparmor, selinux, none]
    default: auto
  security_driver_none_reason:
    description:
      - Why guests may run without LSM confinement. O(security_driver=none) is refused without it.
    type: str
    default: ''
notes:
  - The host facts are those of the host the module runs on, so O(uri) should name that host's libvirt.
  - RV(forwarding_sysctl_conflicts) follows systemd-sysctl. It reads C(/etc/sysctl.d), C(/run/sysctl.d),
    C(/usr/local/lib/sysctl.d), C(/usr/lib/sysctl.d) and C(/lib/sysctl.d) (a file name in an earlier
    directory masks it in the later ones), applies the files in the lexical order of their names and
    C(/etc/sysctl.conf) last. A key set again takes the later value, and a glob key does not override a
    key set by name. C(net.ipv4.ip_forward) and C(net.ipv4.conf.all.forwarding) are the same switch in
    the kernel.
seealso:
  - module: secvirt.kvm.libvirt_config
  - module: secvirt.kvm.libvirt_seclabel
'''

EXAMPLES = r'''
- name: Read the host before hardening it
  secvirt.kvm.hypervisor_info:
    services: [apparmor.service, ksm.service]
    sysctls:
      kernel.kptr_restrict: 2
      net.ipv4.ip_forward: 1
    own_sysctl_file: /etc/sysctl.d/60-secvirt-hypervisor.conf
    security_driver: auto
  register: hypervisor

- name: Refuse a host without a usable LSM
  ansible.builtin.assert:
    that: hypervisor.security_driver_error is none
    fail_msg: "{{ hypervisor.security_driver_error }}"
'''

RETURN = r'''
services:
  description: The state of the units of O(services), in that order (V('') for a property systemd leaves empty).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The unit name as given.
      type: str
    load_state:
      description: C(LoadState) (V(loaded), V(not-found), V(masked) ...).
      type: str
    active_state:
      description: C(ActiveState) (V(active), V(inactive), V(failed) ...).
      type: str
    unit_file_state:
      description: C(UnitFileState) (V(enabled), V(disabled), V(static), V(masked) ...).
      type: str
  sample: [{name: apparmor.service, load_state: loaded, active_state: active, unit_file_state: enabled}]
daemon_layout:
  description:
    - V(monolithic) when C(libvirtd.service) is enabled, static, indirect or an alias; else V(modular) when
      C(virtqemud.socket) is enabled; else V(none) (libvirt is not installed).
  returned: always
  type: str
  sample: monolithic
sysctl_current:
  description: The current value of each key of O(sysctls), whitespace normalised (null when the key does not exist).
  returned: always
  type: dict
  sample: {kernel.kptr_restrict: '1', net.ipv4.ip_forward: '0'}
sysctl_differs:
  description: The keys of O(sysctls) whose current value differs from the wanted one, sorted.
  returned: always
  type: list
  elements: str
  sample: [kernel.kptr_restrict, net.ipv4.ip_forward]
lsm:
  description: The Linux security modules of the running kernel, in order (empty when the list is unreadable).
  returned: always
  type: list
  elements: str
  sample: [lockdown, capability, landlock, yama, apparmor, tomoyo]
apparmor:
  description: AppArmor's state.
  returned: always
  type: dict
  contains:
    enabled:
      description: AppArmor is enabled in the kernel (and in RV(lsm) when that is known).
      type: bool
    profiles:
      description: The loaded profiles and their modes (empty when unreadable, for example without root).
      type: dict
  sample: {enabled: true, profiles: {libvirtd: enforce, /usr/sbin/libvirtd: enforce}}
selinux:
  description: SELinux's state.
  returned: always
  type: dict
  contains:
    enabled:
      description: SELinux is enabled (C(/sys/fs/selinux/enforce) exists).
      type: bool
    enforcing:
      description: SELinux enforces (null when it is not enabled).
      type: bool
  sample: {enabled: false, enforcing: null}
security_driver:
  description: The value for C(security_driver) in C(qemu.conf), null when RV(security_driver_error) is set.
  returned: always
  type: str
  sample: apparmor
security_driver_error:
  description: Why O(security_driver) cannot be used on this host (names and states only), null when it can.
  returned: always
  type: str
  sample: null
accel:
  description: V(kvm) when C(/dev/kvm) is a character device, else V(tcg) (software emulation).
  returned: always
  type: str
  sample: kvm
kvm_nested:
  description: Nested virtualisation of C(kvm_intel) and C(kvm_amd), V(Y) or V(N); null when the module is not loaded.
  returned: always
  type: dict
  sample: {kvm_intel: N, kvm_amd: null}
ksm_run:
  description: The value of C(/sys/kernel/mm/ksm/run) (0 stopped, 1 running, 2 unmerge), null when absent.
  returned: always
  type: int
  sample: 0
forwarding_sysctl_conflicts:
  description:
    - The lines of the sysctl files (O(own_sysctl_file) left out) whose 0 is the value C(net.ipv4.ip_forward),
      C(net.ipv4.conf.all.forwarding) or C(net.ipv6.conf.all.forwarding) gets at boot. A 0 that a later
      line sets back to non-zero is not listed.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
    line:
      description: The line number in the file.
      type: int
    key:
      description: The key, in dotted form.
      type: str
    value:
      description: The value as written.
      type: str
  sample: [{path: /etc/sysctl.d/99-hardening.conf, line: 4, key: net.ipv4.ip_forward, value: '0'}]
forwarding_networks:
  description: The libvirt networks whose forward mode is V(nat), V(route) or V(open), by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Network name.
      type: str
    forward:
      description: Forward mode (a C(<forward/>) without mode is V(nat)).
      type: str
    active:
      description: The network is running.
      type: bool
    autostart:
      description: The network starts with the daemon.
      type: bool
  sample: [{name: default, forward: nat, active: true, autostart: true}]
guests:
  description: The running guests and their qemu processes, by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
    uuid:
      description: Guest uuid.
      type: str
    pid:
      description: The qemu process (from C(/run/libvirt/qemu/<name>.pid)), null when unknown.
      type: int
    uid:
      description: The process's effective uid.
      type: int
    seccomp:
      description: The process's seccomp mode (2 is a filter).
      type: int
    cap_eff:
      description: The process's effective capabilities (hexadecimal).
      type: str
    lsm_label:
      description: The process's LSM label (C(/proc/<pid>/attr/current)), null when unreadable.
      type: str
    own_mount_ns:
      description: The process has a mount namespace of its own (null when unreadable).
      type: bool
    confined:
      description:
        - The process has an LSM label that confines it (not C(unconfined), not an AppArmor profile in
          complain mode, not SELinux's C(unconfined_t)), a seccomp filter, a uid other than 0 and no
          effective capability.
      type: bool
  sample: [{name: web01, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f, pid: 4242, uid: 64055, seccomp: 2,
            cap_eff: '0000000000000000', lsm_label: libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f (enforce),
            own_mount_ns: true, confined: true}]
unconfined_guests:
  description: The names of the running guests that are not RV(guests[].confined), sorted.
  returned: always
  type: list
  elements: str
  sample: [legacy01]
libvirt_error:
  description: Why the networks and guests could not be read (null when they could).
  returned: always
  type: str
  sample: null
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils import hypervisor_host as hh
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import uri_argument_spec

# the directory the host's /proc, /sys, /dev, /run and /etc are read below;
# the unit tests point it at a temporary tree
HOST_ROOT = '/'


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            services=dict(type='list', elements='str', default=[]),
            sysctls=dict(type='dict', default={}),
            own_sysctl_file=dict(type='path', default=''),
            security_driver=dict(type='str', choices=list(hh.SECURITY_DRIVERS), default='auto'),
            security_driver_none_reason=dict(type='str', default=''),
        ),
        supports_check_mode=True,
    )
    try:
        hh.check_sysctl_keys(module.params['sysctls'])
    except hh.HostInfoError as exc:
        module.fail_json(msg=str(exc))
    systemctl = module.get_bin_path('systemctl')
    if not systemctl:
        module.fail_json(msg='systemctl not found: this module reads the state of systemd units and needs '
                             'systemd (systemctl) on the host')
    units = hh.units_to_query(module.params['services'])
    rc, out, err = module.run_command(hh.systemctl_show_argv(systemctl, units), environ_update={'LC_ALL': 'C'})
    if rc != 0:
        module.fail_json(msg='systemctl show failed: %s' % ((err or out).strip() or 'rc %d' % rc), rc=rc)
    try:
        states = hh.parse_systemctl_show(out, units)
        result = hh.host_facts(module.params, states, root=HOST_ROOT)
    except hh.HostInfoError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop('warnings'):
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
