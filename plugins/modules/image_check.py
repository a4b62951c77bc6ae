#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: image_check
short_description: Vet an untrusted disk image before a guest or a copy uses it
version_added: 0.1.0
description:
  - Inspects a disk image with C(qemu-img info --output=json -f <format>) using the format the
    operator declares; the format is B(never) probed from the file's contents, which a guest or
    an uploader controls (libvirt security notes, "Disk image format probing").
  - Rejects the image when the declared format does not match, when it has a backing file or a
    qcow2 external data file (either can point at arbitrary host files or network storage), when
    its virtual (logical) size exceeds O(max_virtual_size), when it is corrupt or encrypted, or
    when the path is not a regular file (symlinks, block devices, FIFOs are refused).
  - A file declared C(raw) that starts with the signature of another image format (qcow2, vmdk,
    LUKS, ...) is rejected too, unless O(allow_format_header_in_raw=true).
  - The qcow2 header is also read by the module's own parser; when it names a backing file or an
    external data file, qemu-img is not run on the image at all.
  - qemu-img runs under C(prlimit) (address space and CPU time limits) when C(prlimit) exists, so
    a crafted image cannot exhaust the host.
  - Never changes anything; runs in check mode too.
author:
  - secvirt.kvm contributors (@secvirt)
options:
  path:
    description:
      - Absolute path of the image file on the managed host.
    type: path
    required: true
  format:
    description:
      - The format the image is supposed to have. Only C(raw) and C(qcow2) are accepted; convert
        other formats in a throw-away VM first.
    type: str
    required: true
    choices: [raw, qcow2]
  max_virtual_size:
    description:
      - Largest virtual (guest-visible) size accepted, in bytes or with a binary suffix (C(20G)).
      - A qcow2 of 1 MiB on disk can claim many TiB; this is the limit that matters.
    type: str
    required: true
  max_file_size:
    description:
      - Optional limit on the size of the file itself (bytes or C(20G)).
    type: str
  allow_format_header_in_raw:
    description:
      - Accept a file declared C(raw) that starts with another image format's signature.
    type: bool
    default: false
  allow_encrypted:
    description:
      - Accept an image whose metadata says it is encrypted.
    type: bool
    default: false
  force_share:
    description:
      - Pass C(--force-share) to qemu-img so an image held open by a running guest can be inspected.
        The facts may then be inconsistent; never use it for untrusted uploads.
    type: bool
    default: false
  fail_on_reject:
    description:
      - Fail the task when the image is rejected. With V(false) the task succeeds and reports
        RV(accepted) and RV(reasons).
    type: bool
    default: true
  qemu_img_memory_limit:
    description:
      - Address-space limit for the qemu-img process (bytes or C(1G)).
    type: str
    default: 1G
  qemu_img_cpu_seconds:
    description:
      - CPU-time limit for the qemu-img process.
    type: int
    default: 30
requirements:
  - qemu-img (C(qemu-utils) on Debian) on the managed host
  - prlimit (util-linux) for the resource limits; without it qemu-img runs unlimited and a warning is returned
extends_documentation_fragment:
  - secvirt.kvm.attributes.read_only
notes:
  - The check looks at the image's metadata. It does not make the guest data inside trustworthy;
    never mount an untrusted image on the host (use a throw-away VM or libguestfs).
seealso:
  - module: secvirt.kvm.luks_volume
  - name: libvirt security notes, disk image handling
    description: Why the format must never be probed and backing files must be refused.
    link: https://libvirt.org/kbase/secureusage.html
'''

EXAMPLES = r'''
- name: Refuse an uploaded image unless it is a self-contained qcow2 of at most 40 GiB
  secvirt.kvm.image_check:
    path: /srv/uploads/customer42.qcow2
    format: qcow2
    max_virtual_size: 40G

- name: Record why an image would be refused without failing the play
  secvirt.kvm.image_check:
    path: /var/lib/libvirt/images/old.img
    format: raw
    max_virtual_size: 100G
    fail_on_reject: false
  register: old_image

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ old_image.accepted }} {{ old_image.reasons }}"
'''

RETURN = r'''
accepted:
  description: Whether the image passed every check.
  returned: always
  type: bool
  sample: false
reasons:
  description: Why the image was rejected (empty when accepted).
  returned: always
  type: list
  elements: str
  sample: ["the image has a backing file (/etc/shadow); backing chains can expose arbitrary host files or network storage"]
image:
  description: Facts about the image.
  returned: always
  type: dict
  contains:
    path:
      description: The inspected path.
      type: str
      sample: /srv/uploads/customer42.qcow2
    declared_format:
      description: The format given in O(format).
      type: str
      sample: qcow2
    format:
      description: The format qemu-img opened the image as (absent when qemu-img refused it).
      type: str
      sample: qcow2
    virtual_size:
      description: Guest-visible size in bytes.
      type: int
      sample: 42949672960
    actual_size:
      description: Space the image occupies on the host, in bytes.
      type: int
      sample: 1213464576
    file_size:
      description: Apparent size of the file in bytes.
      type: int
      sample: 1213530112
    backing_file:
      description: Backing file named in the image, if any.
      type: str
      sample: null
    data_file:
      description: qcow2 external data file, if any.
      type: str
      sample: null
    encrypted:
      description: Whether the image metadata says it is encrypted.
      type: bool
      sample: false
    dirty:
      description: qcow2 dirty flag (the image was not closed cleanly).
      type: bool
      sample: false
    cluster_size:
      description: qcow2 cluster size.
      type: int
      sample: 65536
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.disk_image import (
    ImageError,
    check_image,
    parse_size,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            format=dict(type='str', required=True, choices=['raw', 'qcow2']),
            max_virtual_size=dict(type='str', required=True),
            max_file_size=dict(type='str'),
            allow_format_header_in_raw=dict(type='bool', default=False),
            allow_encrypted=dict(type='bool', default=False),
            force_share=dict(type='bool', default=False),
            fail_on_reject=dict(type='bool', default=True),
            qemu_img_memory_limit=dict(type='str', default='1G'),
            qemu_img_cpu_seconds=dict(type='int', default=30),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        max_virtual = parse_size(params['max_virtual_size'])
        max_file = parse_size(params['max_file_size']) if params['max_file_size'] else None
        memory_limit = parse_size(params['qemu_img_memory_limit'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    qemu_img = module.get_bin_path('qemu-img', required=True)
    prlimit = module.get_bin_path('prlimit')
    if not prlimit:
        module.warn('prlimit not found: qemu-img runs without memory/CPU limits')

    def run(argv):
        return module.run_command(argv, environ_update={'LC_ALL': 'C'})

    try:
        facts, reasons = check_image(
            run, params['path'], params['format'],
            max_virtual_size=max_virtual, max_file_size=max_file,
            qemu_img=qemu_img, prlimit=prlimit,
            address_space=memory_limit, cpu_seconds=params['qemu_img_cpu_seconds'],
            allow_format_header_in_raw=params['allow_format_header_in_raw'],
            allow_encrypted=params['allow_encrypted'],
            force_share=params['force_share'])
    except (ImageError, ValueError, OSError) as exc:
        module.fail_json(msg='cannot inspect %s: %s' % (params['path'], exc), accepted=False,
                         reasons=[str(exc)], image={'path': params['path']})

    result = dict(changed=False, accepted=not reasons, reasons=reasons, image=facts)
    if reasons and params['fail_on_reject']:
        module.fail_json(msg='image %s rejected: %s' % (params['path'], '; '.join(reasons)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
