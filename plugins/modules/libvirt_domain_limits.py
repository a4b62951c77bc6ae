#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_domain_limits
short_description: Limit a libvirt guest's CPU, memory, block I/O and network use (cgroups)
version_added: 0.1.0
description:
  - Sets the cgroup controls libvirt offers for a guest, so that one guest cannot starve the others
    (denial of service). It manages CPU shares and quotas (C(virsh schedinfo)), memory hard/soft/swap limits
    (C(virsh memtune)), block I/O weight and per-device throttles (C(virsh blkiotune)) and interface
    bandwidth (C(virsh domiftune)).
  - Writes the persistent definition and, when the guest runs and O(live=true), the running guest.
  - Only the options given are managed; others keep their value.
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
  - secvirt.kvm.libvirt.domain
author:
  - secvirt.kvm contributors (@secvirt)
options:
  cpu_shares:
    description:
      - Relative CPU weight (C(<cputune><shares>)). With cgroup v2 (Debian 12) libvirt writes it to
        C(cpu.weight), whose range is 1-10000.
    type: int
  vcpu_period:
    description: Enforcement period for each vCPU, in microseconds (1000-1000000).
    type: int
  vcpu_quota:
    description: Maximum run time of each vCPU per period, in microseconds; -1 means unlimited.
    type: int
  global_period:
    description: Enforcement period for the whole guest, in microseconds.
    type: int
  global_quota:
    description: Maximum run time of the whole guest per period, in microseconds; -1 means unlimited.
    type: int
  emulator_period:
    description: Enforcement period for the emulator threads (not vCPUs), in microseconds.
    type: int
  emulator_quota:
    description: Maximum run time of the emulator threads per period, in microseconds; -1 means unlimited.
    type: int
  memory_hard_limit:
    description:
      - Maximum memory the guest (qemu process) may use. A number is KiB; units like V(512MiB),
        V(2G), V(2GB) (decimal) are accepted; V(unlimited) removes the limit.
      - Too low a value gets the qemu process killed by the kernel.
    type: str
  memory_soft_limit:
    description: Memory the guest is pushed back to under host memory contention; same format.
    type: str
  memory_swap_hard_limit:
    description: Maximum memory plus swap; same format; not lower than O(memory_hard_limit).
    type: str
  blkio_weight:
    description: Relative block I/O weight (100-1000 with cgroup v1, 1-10000 with cgroup v2).
    type: int
  blkio_devices:
    description:
      - Per host block device weight and throttles. A value of 0 removes that throttle.
    type: list
    elements: dict
    suboptions:
      path:
        description: Host block device, for example C(/dev/sdb).
        type: str
        required: true
      weight:
        description: Relative weight for this device.
        type: int
      read_bytes_sec:
        description: Read throughput limit in bytes per second.
        type: int
      write_bytes_sec:
        description: Write throughput limit in bytes per second.
        type: int
      read_iops_sec:
        description: Read operations per second limit.
        type: int
      write_iops_sec:
        description: Write operations per second limit.
        type: int
  interfaces:
    description:
      - Bandwidth limits per guest interface. An O(interfaces[].inbound.average) or
        O(interfaces[].outbound.average) of 0 removes that direction's limits.
    type: list
    elements: dict
    suboptions:
      mac:
        description: MAC address of the interface.
        type: str
      target_dev:
        description: Host-side device of the interface (C(vnet0)) of the running guest.
        type: str
      inbound:
        description: Traffic to the guest.
        type: dict
        suboptions:
          average:
            description: Average rate in KiB/s.
            type: int
          peak:
            description: Peak rate in KiB/s.
            type: int
          burst:
            description: Burst size in KiB.
            type: int
          floor:
            description: Guaranteed rate in KiB/s (only for interfaces on a libvirt network with QoS).
            type: int
      outbound:
        description: Traffic from the guest.
        type: dict
        suboptions:
          average:
            description: Average rate in KiB/s.
            type: int
          peak:
            description: Peak rate in KiB/s.
            type: int
          burst:
            description: Burst size in KiB.
            type: int
  live:
    description: Also apply the limits to the running guest.
    type: bool
    default: true
notes:
  - Limits are enforced by cgroups (and tc for bandwidth) only while the guest runs.
seealso:
  - name: libvirt resource tuning XML
    description: cputune, memtune, blkiotune and bandwidth elements.
    link: https://libvirt.org/formatdomain.html#cpu-tuning
'''

EXAMPLES = r'''
- name: Keep web01 from starving its neighbours
  secvirt.kvm.libvirt_domain_limits:
    domain: web01
    cpu_shares: 512
    vcpu_period: 100000
    vcpu_quota: 50000
    memory_hard_limit: 2GiB
    memory_soft_limit: 1536MiB
    blkio_weight: 300
    blkio_devices:
      - path: /dev/sdb
        read_iops_sec: 2000
        write_bytes_sec: 52428800
    interfaces:
      - mac: "52:54:00:5b:1a:cd"
        inbound: {average: 10240, peak: 20480, burst: 1024}
        outbound: {average: 10240}
'''

RETURN = r'''
config:
  description: The guest's limits in its persistent definition after the change.
  returned: when the guest is persistent
  type: dict
  sample: {cputune: {shares: 512}, memtune: {hard_limit: 2097152}, blkio_weight: 300,
           blkio_devices: {/dev/sdb: {read_iops_sec: 2000}}, bandwidth: {}}
live:
  description: The requested settings of the running guest after the change, keyed by API and field.
  returned: when the guest runs and O(live=true)
  type: dict
  sample: {sched/cpu_shares: 512, memory/hard_limit: 2097152}
config_changed:
  description: Whether the persistent definition changed (or would change).
  returned: always
  type: bool
live_changed:
  description: Whether the running guest changed (or would change).
  returned: always
  type: bool
active:
  description: Whether the guest is running.
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import run_libvirt_module, uri_argument_spec
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_limits import run_limits
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_xml import XMLValidationError


def main():
    rate = dict(average=dict(type='int'), peak=dict(type='int'), burst=dict(type='int'))
    inbound = dict(rate, floor=dict(type='int'))
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            domain=dict(type='str', required=True),
            cpu_shares=dict(type='int'),
            vcpu_period=dict(type='int'),
            vcpu_quota=dict(type='int'),
            global_period=dict(type='int'),
            global_quota=dict(type='int'),
            emulator_period=dict(type='int'),
            emulator_quota=dict(type='int'),
            memory_hard_limit=dict(type='str'),
            memory_soft_limit=dict(type='str'),
            memory_swap_hard_limit=dict(type='str'),
            blkio_weight=dict(type='int'),
            blkio_devices=dict(type='list', elements='dict', options=dict(
                path=dict(type='str', required=True),
                weight=dict(type='int'),
                read_bytes_sec=dict(type='int'),
                write_bytes_sec=dict(type='int'),
                read_iops_sec=dict(type='int'),
                write_iops_sec=dict(type='int'),
            )),
            interfaces=dict(type='list', elements='dict', options=dict(
                mac=dict(type='str'),
                target_dev=dict(type='str'),
                inbound=dict(type='dict', options=inbound),
                outbound=dict(type='dict', options=rate),
            ), required_one_of=[('mac', 'target_dev')], mutually_exclusive=[('mac', 'target_dev')]),
            live=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: run_limits(conn, module.params, check_mode=module.check_mode, secure=not module.check_mode),
                       user_errors=(XMLValidationError,))


if __name__ == '__main__':
    main()
