# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LUKS2 volumes for guest storage: format, open, close, keyslots, erase.

Plain Python: the luks_volume module gives LuksVolume a command runner; the
unit tests give it a fake one. The command lines and parsers are luks.py's.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

from ansible_collections.secvirt.kvm.plugins.module_utils.luks import (
    DEFAULT_CIPHER, DEFAULT_KEY_SIZE, DEFAULT_PBKDF, LuksError, RC_BUSY, RC_WRONG_PASSPHRASE, add_key_argv,
    blkid_argv, change_key_argv, close_argv, convert_key_argv, describe_signature, dump_json_argv,
    erase_argv, format_argv, open_argv, parse_blkid_export, parse_luks2_json, parse_status, pbkdf_args,
    refuse_absent_without_wipe, remove_key_argv, status_argv, test_passphrase_argv, unlocked_slot,
    validate_name, wipefs_argv,
)


class Runner(object):
    """What LuksVolume needs from its host; the module and the tests supply it.

    ``run(argv, data=None) -> (rc, out, err)``; ``stat(path)``;
    ``guests_using(path) -> [names]`` (running guests with that disk);
    ``open_count(name) -> int or None``.
    """

    def __init__(self, run, stat_fn=None, guests_using=None, open_count=None):
        self.run = run
        self.stat = stat_fn or os.stat
        self.guests_using = guests_using or (lambda path: [])
        self.open_count = open_count or (lambda name: None)


class LuksVolume(object):
    """Bring one block device + mapper name to the wanted state.

    ``plan()`` only reads (safe in check mode) and fills ``self.actions``;
    ``apply()`` then runs them. Both raise LuksError with an operator-facing
    message for every refusal.
    """

    def __init__(self, runner, name, device, passphrase=None, previous_passphrase=None,
                 add_passphrases=None, remove_passphrases=None, force=False,
                 cipher=DEFAULT_CIPHER, key_size=DEFAULT_KEY_SIZE, pbkdf=DEFAULT_PBKDF,
                 pbkdf_memory=None, pbkdf_iterations=None, pbkdf_parallel=None, iter_time=None,
                 sector_size=None, label=None, discards=False, upgrade_pbkdf=True, wipe=False,
                 planning_only=False):
        validate_name(name)
        self.r = runner
        self.name = name
        self.device = device
        self.mapper = '/dev/mapper/%s' % name
        self.passphrase = passphrase
        self.previous = previous_passphrase
        self.add = list(add_passphrases or [])
        self.remove = list(remove_passphrases or [])
        self.force = force
        self.cipher = cipher
        self.key_size = key_size
        self.pbkdf = pbkdf
        self.kdf_args = pbkdf_args(pbkdf, pbkdf_memory, pbkdf_iterations, pbkdf_parallel, iter_time)
        self.sector_size = sector_size
        self.label = label
        self.discards = discards
        self.upgrade_pbkdf = upgrade_pbkdf
        self.wipe = wipe
        # check mode: nothing will be applied, and the device may be one an
        # earlier task of the same run creates (the role's lvcreate)
        self.planning_only = planning_only
        self.actions = []
        self.warnings = []
        self.before = {}
        self.header = None
        self.signature = None

    # -- reading ------------------------------------------------------------

    def _run(self, argv, data=None, ok=(0,)):
        rc, out, err = self.r.run(argv, data=data)
        if rc not in ok:
            raise LuksError('%s failed (rc=%d): %s' % (' '.join(argv[:2]), rc, (err or out).strip()),
                            rc=rc)
        return rc, out, err

    def device_is_block(self):
        try:
            st = self.r.stat(self.device)
        except OSError:
            return None
        return stat.S_ISBLK(st.st_mode)

    def probe(self):
        """``(luks_version or None, blkid dict)`` for the device."""
        rc, out, _err = self._run(blkid_argv(self.device), ok=(0, 2, 8))
        found = parse_blkid_export(out) if rc == 0 else {}
        if rc == 8:
            found['AMBIVALENT'] = '1'
        if found.get('TYPE') == 'crypto_LUKS':
            return int(found.get('VERSION', '1') or 1), found
        return None, found

    def mapping(self):
        """``cryptsetup status`` of our name: dict with ``active`` and ``device``."""
        rc, out, _err = self.r.run(status_argv(self.name), data=None)
        status = parse_status(out)
        status['active'] = rc == 0 and status.get('active', False)
        return status

    def mapping_is_ours(self, status):
        backing = status.get('device')
        if not backing:
            return False
        if backing == self.device:
            return True
        try:
            return self.r.stat(backing).st_rdev == self.r.stat(self.device).st_rdev
        except OSError:
            return False

    def test_passphrase(self, passphrase):
        """Key slot the passphrase unlocks, or None."""
        rc, out, err = self._run(test_passphrase_argv(self.device), data=passphrase,
                                 ok=(0, RC_WRONG_PASSPHRASE))
        if rc != 0:
            return None
        slot = unlocked_slot(out + err)
        return slot if slot is not None else -1

    def read_header(self):
        _rc, out, _err = self._run(dump_json_argv(self.device))
        return parse_luks2_json(out)

    # -- planning -----------------------------------------------------------

    def refuse_if_in_use(self, verb):
        users = self.r.guests_using(self.mapper)
        if users:
            raise LuksError('refusing to %s %s: guest(s) %s still use %s (running or paused); shut them down first'
                            % (verb, self.name, ', '.join(sorted(users)), self.mapper), guests=users)
        count = self.r.open_count(self.name)
        if count:
            raise LuksError('refusing to %s %s: %s is held open %d time(s) (mounted, used by LVM or a process)'
                            % (verb, self.name, self.mapper, count))

    def plan(self, state):
        if state == 'absent':
            refuse_absent_without_wipe(self.wipe, self.device)
        is_block = self.device_is_block()
        status = self.mapping()
        if status['active'] and not self.mapping_is_ours(status):
            raise LuksError('%s is already open on %s, not on %s' % (self.mapper, status.get('device'), self.device))
        if is_block is None:
            if state == 'absent':
                if status['active']:
                    self.refuse_if_in_use('close')
                    self.actions.append('close')
                self.before = {'state': 'opened' if status['active'] else 'absent', 'device_exists': False}
                return self.actions
            if self.planning_only and not status['active']:
                # Predict what the real run does once the device exists: a
                # new device is blank, so it is formatted (and opened).
                self.warnings.append('%s does not exist yet: planned as a new, blank device (check mode; a real '
                                     'run refuses a device that is still missing)' % self.device)
                self.before = {'state': 'absent', 'device_exists': False}
                self.actions.append('format')
                if state == 'opened':
                    self.actions.append('open')
                return self.actions
            raise LuksError('device %s does not exist' % self.device)
        if not is_block:
            raise LuksError('%s is not a block device' % self.device)

        version, found = self.probe()
        self.before = {'state': 'opened' if status['active'] else ('closed' if version else 'absent'),
                       'luks_version': version}
        if version == 2:
            self.header = self.read_header()
            self.before['keyslots'] = len(self.header['keyslots'])

        if state == 'absent':
            if status['active']:
                self.refuse_if_in_use('close')
                self.actions.append('close')
            if version:
                self.actions += ['erase', 'wipefs']
            return self.actions

        if version is None:
            if found:
                self.signature = describe_signature(found)
                if not self.force:
                    raise LuksError('refusing to format %s: it holds %s; set force to wipe it'
                                    % (self.device, self.signature), signature=found)
                self.actions.append('wipefs')
            self.actions.append('format')
        else:
            self.plan_existing(version)

        if state == 'opened' and not status['active']:
            self.actions.append('open')
        elif state == 'closed' and status['active']:
            self.refuse_if_in_use('close')
            self.actions.append('close')
        return self.actions

    def plan_existing(self, version):
        if version == 1:
            self.warnings.append('%s has a LUKS1 header; convert it with "cryptsetup convert --type luks2" while '
                                 'closed to get argon2id keyslots' % self.device)
        elif self.header:
            if self.header['cipher'] != self.cipher:
                self.warnings.append('%s uses cipher %s, not %s; changing it needs "cryptsetup reencrypt" '
                                     '(not done automatically)' % (self.device, self.header['cipher'], self.cipher))
            if self.header['key_size'] not in (self.key_size, None):
                self.warnings.append('%s has a %s-bit volume key, not %d'
                                     % (self.device, self.header['key_size'], self.key_size))
        slot = self.test_passphrase(self.passphrase)
        if slot is None:
            previous_slot = self.test_passphrase(self.previous) if self.previous else None
            if previous_slot is None:
                raise LuksError('the passphrase does not unlock %s%s; refusing to touch its header'
                                % (self.device, ' and neither does previous_passphrase' if self.previous else ''))
            self.actions.append('change_key')
        elif self.upgrade_pbkdf and version == 2 and slot >= 0 and self.header:
            current = [k for k in self.header['keyslots'] if k['slot'] == slot]
            if current and current[0]['pbkdf'] != self.pbkdf:
                self.actions.append(('convert_key', slot, current[0]['pbkdf']))
        for index, extra in enumerate(self.add):
            if self.test_passphrase(extra) is None:
                self.actions.append(('add_key', index))
        for index, old in enumerate(self.remove):
            if old == self.passphrase or old in self.add:
                raise LuksError('a passphrase listed in remove_passphrases is also the passphrase to keep')
            if self.test_passphrase(old) is not None:
                self.actions.append(('remove_key', index))

    # -- applying -----------------------------------------------------------

    def apply(self):
        for action in self.actions:
            kind = action[0] if isinstance(action, tuple) else action
            getattr(self, '_do_' + kind)(*(action[1:] if isinstance(action, tuple) else ()))

    def _do_close(self):
        rc, out, err = self.r.run(close_argv(self.name), data=None)
        if rc == RC_BUSY:
            raise LuksError('refusing to close %s: the device is still in use (%s)' % (self.name, (err or out).strip()))
        if rc != 0:
            raise LuksError('cryptsetup close failed (rc=%d): %s' % (rc, (err or out).strip()))

    def _do_erase(self):
        self._run(erase_argv(self.device))

    def _do_wipefs(self):
        self._run(wipefs_argv(self.device))

    def _do_format(self):
        self._run(format_argv(self.device, self.kdf_args, self.cipher, self.key_size, self.sector_size, self.label),
                  data=self.passphrase)

    def _do_open(self):
        self._run(open_argv(self.device, self.name, self.discards), data=self.passphrase)

    def _do_change_key(self):
        self._run(change_key_argv(self.device, self.kdf_args), data='%s\n%s' % (self.previous, self.passphrase))

    def _do_convert_key(self, slot, _old_kdf):
        self._run(convert_key_argv(self.device, slot, self.kdf_args), data=self.passphrase)

    def _do_add_key(self, index):
        self._run(add_key_argv(self.device, self.kdf_args), data='%s\n%s' % (self.passphrase, self.add[index]))

    def _do_remove_key(self, index):
        self._run(remove_key_argv(self.device), data=self.remove[index])

    # -- reporting ----------------------------------------------------------

    def describe_actions(self):
        """Actions as strings without any secret (indexes only)."""
        words = []
        for action in self.actions:
            if isinstance(action, tuple):
                if action[0] == 'convert_key':
                    words.append('convert_key slot %d from %s to %s' % (action[1], action[2], self.pbkdf))
                else:
                    words.append('%s #%d' % action)
            else:
                words.append(action)
        return words

    def after_state(self, state):
        if state == 'absent':
            return {'state': 'absent', 'luks_version': None}
        return {'state': state, 'luks_version': 2 if 'format' in self.actions else self.before.get('luks_version')}
