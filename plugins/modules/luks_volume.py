#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: luks_volume
short_description: LUKS2 encrypted block devices for guest storage (format, open, close, rotate keys)
version_added: 0.1.0
description:
  - Formats a block device (typically an LVM logical volume) as LUKS2 with modern defaults
    (C(aes-xts-plain64), 512-bit volume key, C(argon2id) keyslots with tunable memory, iterations
    and parallelism), opens it as C(/dev/mapper/<name>), closes it, or destroys its keyslots.
  - Passphrases are given to C(cryptsetup) on standard input, never on the command line and never in
    a file; every passphrase option is C(no_log).
  - Refuses to format a device that holds any signature C(blkid -p) can see (filesystem, LVM, RAID,
    swap, partition table, another LUKS header) unless O(force=true). O(force) never reformats an
    existing LUKS header; it only allows wiping a foreign signature.
  - Refuses to close (or destroy) a mapping that a running libvirt guest uses, or that anything else
    holds open.
  - Before anything is read or run on the host, refuses O(state=absent) without O(wipe=true) and new
    passphrases (O(passphrase), O(add_passphrases)) shorter than O(passphrase_min_length).
  - Keyslots - checks that O(passphrase) unlocks the device (C(cryptsetup open --test-passphrase));
    when it does not but O(previous_passphrase) does, replaces the old passphrase with the new one
    (C(luksChangeKey)); adds O(add_passphrases) and removes O(remove_passphrases). The data is never
    re-encrypted. Keyslots still using PBKDF2 are converted to O(pbkdf) when O(upgrade_pbkdf=true).
  - Every run tests each given passphrase once, which costs one key derivation each (about
    O(iter_time) milliseconds, or what O(pbkdf_iterations) and O(pbkdf_memory) make it cost).
  - It exists beside C(community.crypto.luks_device) so that the collection needs no other collection and
    so that one call gives the guest-storage role what it relies on - the C(blkid -p) signature refusal, the
    refusal to close a mapping a running libvirt guest uses (it asks libvirt), PBKDF2 keyslots converted to
    argon2id, and a passphrase rotation from O(previous_passphrase), all with secrets on standard input only.
author:
  - secvirt.kvm contributors (@secvirt)
options:
  name:
    description:
      - Device-mapper name; the opened device is C(/dev/mapper/<name>).
    type: str
    required: true
  device:
    description:
      - The block device holding (or to hold) the LUKS header, e.g. C(/dev/vg_guests/guest01_luks).
    type: path
    required: true
  state:
    description:
      - V(opened) formats the device if it is blank and opens it.
      - V(closed) formats the device if it is blank and makes sure it is not open.
      - V(absent) closes the mapping, destroys every keyslot (C(cryptsetup erase)) and wipes the LUKS
        signature; the data on the device becomes unrecoverable. It is refused unless O(wipe=true).
    type: str
    choices: [opened, closed, absent]
    default: opened
  passphrase:
    description:
      - Passphrase that must unlock the device (from Ansible Vault). Required unless O(state=absent).
      - At least O(passphrase_min_length) characters, at most 512 bytes, without newline characters.
        The minimum also applies to a passphrase the device already has; rotate a shorter one with
        O(previous_passphrase).
    type: str
  previous_passphrase:
    description:
      - The passphrase the device had before; used only when O(passphrase) does not unlock it yet, to
        replace the old passphrase by the new one in place (key rotation).
      - Only has to unlock the device, so O(passphrase_min_length) does not apply to it.
    type: str
  add_passphrases:
    description:
      - Further passphrases that must also unlock the device (each gets its own keyslot).
      - Each must be at least O(passphrase_min_length) characters long.
    type: list
    elements: str
    default: []
  remove_passphrases:
    description:
      - Passphrases that must no longer unlock the device (their keyslots are removed).
      - Only have to unlock the device, so O(passphrase_min_length) does not apply to them.
    type: list
    elements: str
    default: []
  passphrase_min_length:
    description:
      - Minimum length in characters of O(passphrase) and of each entry of O(add_passphrases),
        checked before anything is read or changed on the host. The message never shows the passphrase.
      - Cannot be set below 8. The default, 12, is the rule of the C(secvirt.kvm.pki) CA passphrase.
    type: int
    default: 12
  wipe:
    description:
      - Confirms O(state=absent), which destroys every keyslot and the LUKS signature (the data becomes
        unrecoverable). Without O(wipe=true), O(state=absent) is refused before anything is done,
        in check mode too.
      - Has no effect with the other states.
    type: bool
    default: false
  force:
    description:
      - Allow formatting a device that holds a filesystem, LVM, RAID, swap or partition-table
        signature. Data on it is destroyed. Never reformats a device that already has a LUKS header.
    type: bool
    default: false
  cipher:
    description:
      - Data cipher for a new header.
    type: str
    default: aes-xts-plain64
  key_size:
    description:
      - Volume key size in bits for a new header (512 means AES-256 in XTS mode).
    type: int
    default: 512
  pbkdf:
    description:
      - Key derivation for new keyslots.
    type: str
    choices: [argon2id, argon2i, pbkdf2]
    default: argon2id
  pbkdf_memory:
    description:
      - Argon2 memory cost in KiB (cryptsetup lowers it on hosts with little RAM).
    type: int
    default: 1048576
  pbkdf_parallel:
    description:
      - Argon2 parallel threads.
    type: int
    default: 4
  pbkdf_iterations:
    description:
      - Fixed argon2 time cost (or PBKDF2 iterations). When set, cryptsetup does not benchmark and
        O(iter_time) is ignored.
    type: int
  iter_time:
    description:
      - Milliseconds cryptsetup tunes a new keyslot's key derivation to when O(pbkdf_iterations) is unset.
    type: int
    default: 2000
  sector_size:
    description:
      - Encryption sector size of a new header; cryptsetup chooses when unset.
    type: int
    choices: [512, 1024, 2048, 4096]
  label:
    description:
      - LUKS2 label of a new header.
    type: str
  discards:
    description:
      - Pass discards (TRIM) through when opening. Off by default because it reveals which blocks are unused.
    type: bool
    default: false
  upgrade_pbkdf:
    description:
      - Convert the keyslot that O(passphrase) unlocks to O(pbkdf) when it uses another key derivation.
    type: bool
    default: true
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
requirements:
  - cryptsetup 2.4 or later (C(cryptsetup-bin) on Debian), blkid and wipefs (util-linux), dmsetup
  - libvirt-python (C(python3-libvirt)) to name the guests that use a volume; without it the module
    relies on the device-mapper open count, which a running guest also raises
notes:
  - A passphrase is tested with every run; with the defaults each test costs about two seconds and up to 1 GiB of RAM.
  - Opening a volume needs its passphrase, which is the point of the encryption - an attacker with the disks
    (or the host powered off) sees only ciphertext. Close volumes of guests that are not in use.
seealso:
  - module: secvirt.kvm.image_check
  - module: secvirt.kvm.libvirt_guest_disk
'''

EXAMPLES = r'''
- name: Encrypt and open the logical volume that will hold guest01's disk
  secvirt.kvm.luks_volume:
    name: guest01
    device: /dev/vg_guests/guest01_luks
    passphrase: "{{ vault_guest01_passphrase }}"
    state: opened
  no_log: true

- name: Rotate guest01's passphrase without re-encrypting its data
  secvirt.kvm.luks_volume:
    name: guest01
    device: /dev/vg_guests/guest01_luks
    passphrase: "{{ vault_guest01_passphrase_2026 }}"
    previous_passphrase: "{{ vault_guest01_passphrase }}"
  no_log: true

- name: Destroy guest03's volume for good (the data becomes unrecoverable)
  secvirt.kvm.luks_volume:
    name: guest03
    device: /dev/vg_guests/guest03_luks
    state: absent
    wipe: true

- name: Close guest02's volume (fails while guest02 runs)
  secvirt.kvm.luks_volume:
    name: guest02
    device: /dev/vg_guests/guest02_luks
    passphrase: "{{ vault_guest02_passphrase }}"
    state: closed
  no_log: true
'''

RETURN = r'''
name:
  description: The device-mapper name.
  returned: always
  type: str
  sample: guest01
mapper:
  description: Path of the opened device.
  returned: always
  type: str
  sample: /dev/mapper/guest01
device:
  description: The LUKS block device.
  returned: always
  type: str
  sample: /dev/vg_guests/guest01_luks
actions:
  description: What was (or in check mode would be) done, without any secret.
  returned: always
  type: list
  elements: str
  sample: [format, open]
luks:
  description: The LUKS2 header after the run (absent for LUKS1 or no header).
  returned: when the device has a LUKS2 header
  type: dict
  contains:
    version:
      description: LUKS version.
      type: int
      sample: 2
    cipher:
      description: Data cipher.
      type: str
      sample: aes-xts-plain64
    key_size:
      description: Volume key size in bits.
      type: int
      sample: 512
    sector_size:
      description: Encryption sector size.
      type: int
      sample: 512
    keyslots:
      description: Keyslots with their key derivation (type, time, memory KiB, threads).
      type: list
      elements: dict
      sample: [{slot: 0, pbkdf: argon2id, pbkdf_time: 4, pbkdf_memory: 1048576, pbkdf_parallel: 4}]
'''

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.secvirt.kvm.plugins.module_utils.guest_disk import guests_using, libvirt_domains
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    HAS_LIBVIRT, LibvirtModuleError, error_message, open_connection, uri_argument_spec,
)
from ansible_collections.secvirt.kvm.plugins.module_utils.luks import (
    LuksError,
    MIN_PASSPHRASE,
    dump_json_argv,
    parse_luks2_json,
    refuse_absent_without_wipe,
    validate_min_length,
    validate_passphrase,
)
from ansible_collections.secvirt.kvm.plugins.module_utils.luks_plan import LuksVolume, Runner

LOCAL_SOCKETS = ('/run/libvirt/libvirt-sock-ro', '/run/libvirt/virtqemud-sock-ro')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            device=dict(type='path', required=True),
            state=dict(type='str', default='opened', choices=['opened', 'closed', 'absent']),
            passphrase=dict(type='str', no_log=True),
            previous_passphrase=dict(type='str', no_log=True),
            add_passphrases=dict(type='list', elements='str', default=[], no_log=True),
            remove_passphrases=dict(type='list', elements='str', default=[], no_log=True),
            passphrase_min_length=dict(type='int', default=MIN_PASSPHRASE, no_log=False),
            wipe=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
            cipher=dict(type='str', default='aes-xts-plain64'),
            key_size=dict(type='int', default=512, no_log=False),
            pbkdf=dict(type='str', default='argon2id', choices=['argon2id', 'argon2i', 'pbkdf2']),
            pbkdf_memory=dict(type='int', default=1048576),
            pbkdf_parallel=dict(type='int', default=4),
            pbkdf_iterations=dict(type='int'),
            iter_time=dict(type='int', default=2000),
            sector_size=dict(type='int', choices=[512, 1024, 2048, 4096]),
            label=dict(type='str'),
            discards=dict(type='bool', default=False),
            upgrade_pbkdf=dict(type='bool', default=True),
            **uri_argument_spec(),
        ),
        required_if=[('state', 'opened', ['passphrase']), ('state', 'closed', ['passphrase'])],
        supports_check_mode=True,
    )
    p = module.params
    # Refusals that need nothing from the host come first: nothing is read or run before them.
    try:
        if p['state'] == 'absent':
            refuse_absent_without_wipe(p['wipe'], p['device'])
        else:
            min_length = p['passphrase_min_length']
            validate_min_length(min_length)
            validate_passphrase(p['passphrase'], min_length=min_length)
            if p['previous_passphrase']:
                validate_passphrase(p['previous_passphrase'], 'previous_passphrase')
            for extra in p['add_passphrases']:
                validate_passphrase(extra, 'an entry of add_passphrases', min_length=min_length)
            for old in p['remove_passphrases']:
                validate_passphrase(old, 'an entry of remove_passphrases')
    except LuksError as exc:
        module.fail_json(msg=str(exc), name=p['name'], device=p['device'], mapper='/dev/mapper/%s' % p['name'])
    for tool in ('cryptsetup', 'blkid', 'wipefs'):
        module.get_bin_path(tool, required=True)
    dmsetup = module.get_bin_path('dmsetup')

    def run(argv, data=None):
        return module.run_command(argv, data=data, environ_update={'LC_ALL': 'C'})

    def find_guests(path):
        if not HAS_LIBVIRT:
            module.warn('%s; relying on the device-mapper open count to see whether a guest uses %s'
                        % (missing_required_lib('libvirt-python'), path))
            return []
        if p['uri'] == 'qemu:///system' and not any(os.path.exists(sock) for sock in LOCAL_SOCKETS):
            return []  # no libvirt daemon on this host, so no libvirt guest
        try:
            conn = open_connection(p['uri'], readonly=True)
        except LibvirtModuleError as exc:
            module.warn('cannot ask libvirt (%s) which guests use %s: %s' % (p['uri'], path, exc.msg))
            return []
        try:
            return guests_using(libvirt_domains(conn), path)
        except Exception as exc:  # libvirt.libvirtError, or LibvirtModuleError for XML it cannot parse
            module.warn('cannot list the guests using %s: %s' % (path, error_message(exc)))
            return []
        finally:
            conn.close()

    def open_count(name):
        if not dmsetup:
            return None
        rc, out, _err = module.run_command([dmsetup, 'info', '--columns', '--noheadings', '--options', 'open', name],
                                           environ_update={'LC_ALL': 'C'})
        if rc != 0:
            return None
        try:
            return int(out.strip())
        except ValueError:
            return None

    runner = Runner(run, guests_using=find_guests, open_count=open_count)
    try:
        volume = LuksVolume(
            runner, p['name'], p['device'], passphrase=p['passphrase'],
            previous_passphrase=p['previous_passphrase'], add_passphrases=p['add_passphrases'],
            remove_passphrases=p['remove_passphrases'], force=p['force'], cipher=p['cipher'],
            key_size=p['key_size'], pbkdf=p['pbkdf'], pbkdf_memory=p['pbkdf_memory'],
            pbkdf_iterations=p['pbkdf_iterations'], pbkdf_parallel=p['pbkdf_parallel'],
            iter_time=p['iter_time'], sector_size=p['sector_size'], label=p['label'],
            discards=p['discards'], upgrade_pbkdf=p['upgrade_pbkdf'], wipe=p['wipe'],
            planning_only=module.check_mode)
        volume.plan(p['state'])
        if volume.actions and not module.check_mode:
            volume.apply()
    except LuksError as exc:
        module.fail_json(msg=str(exc), name=p['name'], device=p['device'], mapper='/dev/mapper/%s' % p['name'],
                         **exc.extra)

    for warning in volume.warnings:
        module.warn(warning)
    result = dict(changed=bool(volume.actions), name=p['name'], device=p['device'], mapper=volume.mapper,
                  actions=volume.describe_actions())
    header = volume.header
    if volume.actions and not module.check_mode and p['state'] != 'absent':
        rc, out, _err = run(dump_json_argv(p['device']))
        if rc == 0:
            header = parse_luks2_json(out)
    if header and not (p['state'] == 'absent' and volume.actions and not module.check_mode):
        result['luks'] = header
    if module._diff:
        result['diff'] = dict(before=volume.before, after=volume.after_state(p['state']))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
