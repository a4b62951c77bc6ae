"""Unit tests for plugins/module_utils/luks.py against a simulated host."""
import json
import os
import stat as statmod

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import luks as L
from ansible_collections.secvirt.kvm.plugins.module_utils import luks_plan as P

DEV = '/dev/vg/guest01_luks'

# Real `cryptsetup luksDump --dump-json-metadata` of cryptsetup 2.6.1 (one slot).
DUMP = {
    "keyslots": {"0": {"type": "luks2", "key_size": 64,
                       "af": {"type": "luks1", "stripes": 4000, "hash": "sha256"},
                       "area": {"type": "raw", "offset": "32768", "size": "258048",
                                "encryption": "aes-xts-plain64", "key_size": 64},
                       "kdf": {"type": "argon2id", "time": 4, "memory": 32768, "cpus": 1,
                               "salt": "7xFt5ME4Anu9ChOfTMH6VC5z4/mbbhS9Y7s4c6tsbUc="}}},
    "tokens": {},
    "segments": {"0": {"type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0",
                       "encryption": "aes-xts-plain64", "sector_size": 4096}},
    "digests": {"0": {"type": "pbkdf2", "keyslots": ["0"], "segments": ["0"], "hash": "sha256",
                      "iterations": 1000, "salt": "x", "digest": "y"}},
    "config": {"json_size": "12288", "keyslots_size": "16744448"},
}

STATUS_ACTIVE = """/dev/mapper/guest01 is active.
  type:    LUKS2
  cipher:  aes-xts-plain64
  keysize: 512 bits
  key location: keyring
  device:  /dev/mapper/vg-guest01_luks
  sector size:  512
  offset:  32768 sectors
  size:    8355840 sectors
  mode:    read/write
"""


class Stat(object):
    def __init__(self, mode, rdev=0):
        self.st_mode = mode
        self.st_rdev = rdev


class FakeHost(object):
    """Just enough cryptsetup/blkid/wipefs behaviour to drive LuksVolume."""

    def __init__(self, luks=None, signature=None, passphrases=(), open_as=None, kdf='argon2id',
                 device_exists=True, is_block=True):
        self.luks = luks
        self.signature = dict(signature or {})
        self.slots = dict(enumerate(passphrases))
        self.open_as = open_as
        self.kdf = {i: kdf for i in self.slots}
        self.device_exists = device_exists
        self.is_block = is_block
        self.calls = []
        self.guests = []
        self.count = None
        self.close_rc = 0

    # stat(): the LV path and the mapper backing path are the same device
    def stat(self, path):
        if path in (DEV, '/dev/mapper/vg-guest01_luks'):
            if not self.device_exists:
                raise OSError(2, 'No such file or directory')
            return Stat(statmod.S_IFBLK if self.is_block else statmod.S_IFREG, rdev=0xfd01)
        if path == '/dev/other':
            return Stat(statmod.S_IFBLK, rdev=0xfd02)
        raise OSError(2, 'No such file or directory')

    def slot_of(self, passphrase):
        for slot, value in self.slots.items():
            if value == passphrase:
                return slot
        return None

    def run(self, argv, data=None):
        self.calls.append((list(argv), data))
        tool, sub = argv[0], argv[1]
        if tool == 'blkid':
            if self.luks:
                return 0, 'UUID=abc\nVERSION=%d\nTYPE=crypto_LUKS\nUSAGE=crypto\n' % self.luks, ''
            if self.signature.get('AMBIVALENT'):
                return 8, '', ''
            if self.signature:
                return 0, ''.join('%s=%s\n' % kv for kv in self.signature.items()), ''
            return 2, '', ''
        if tool == 'wipefs':
            self.signature = {}
            self.luks = None
            return 0, '', ''
        assert tool == 'cryptsetup'
        if sub == 'status':
            if self.open_as:
                return 0, STATUS_ACTIVE.replace('/dev/mapper/vg-guest01_luks', self.open_as), ''
            return 4, '/dev/mapper/%s is inactive.\n' % argv[2], ''
        if sub == 'luksDump':
            dump = json.loads(json.dumps(DUMP))
            dump['keyslots'] = {}
            for slot in self.slots:
                entry = json.loads(json.dumps(DUMP['keyslots']['0']))
                entry['kdf']['type'] = self.kdf[slot]
                dump['keyslots'][str(slot)] = entry
            return 0, json.dumps(dump), ''
        if sub == 'luksFormat':
            self.luks = 2
            self.slots = {0: data}
            self.kdf = {0: argv[argv.index('--pbkdf') + 1]}
            return 0, '', ''
        if sub == 'open' and '--test-passphrase' in argv:
            slot = self.slot_of(data)
            if slot is None:
                return 2, '', 'No key available with this passphrase.\n'
            return 0, 'Key slot %d unlocked.\nCommand successful.\n' % slot, ''
        if sub == 'open':
            if self.slot_of(data) is None:
                return 2, '', 'No key available with this passphrase.\n'
            self.open_as = DEV
            return 0, '', ''
        if sub == 'close':
            if self.close_rc:
                return self.close_rc, '', 'Device %s is still in use.\n' % argv[2]
            self.open_as = None
            return 0, '', ''
        if sub in ('luksAddKey', 'luksChangeKey'):
            old, new = data.split('\n')
            slot = self.slot_of(old)
            if slot is None:
                return 2, '', 'No key available with this passphrase.\n'
            if sub == 'luksChangeKey':
                del self.slots[slot]
            free = max(list(self.slots) + [-1]) + 1
            self.slots[free] = new
            self.kdf[free] = argv[argv.index('--pbkdf') + 1]
            return 0, '', ''
        if sub == 'luksRemoveKey':
            del self.slots[self.slot_of(data)]
            return 0, '', ''
        if sub == 'luksConvertKey':
            self.kdf[int(argv[argv.index('--key-slot') + 1])] = argv[argv.index('--pbkdf') + 1]
            return 0, '', ''
        if sub == 'erase':
            self.slots = {}
            return 0, '', ''
        raise AssertionError('unexpected command %r' % argv)

    def runner(self):
        return P.Runner(self.run, stat_fn=self.stat, guests_using=lambda path: self.guests,
                        open_count=lambda name: self.count)


def volume(host, **kw):
    kw.setdefault('passphrase', 'correct horse')
    return P.LuksVolume(host.runner(), 'guest01', DEV, pbkdf_memory=65536, pbkdf_iterations=4,
                        pbkdf_parallel=1, **kw)


def ensure(host, state='opened', **kw):
    vol = volume(host, **kw)
    vol.plan(state)
    vol.apply()
    return vol


def secrets_in_argv(host, *secrets):
    return [argv for argv, _data in host.calls if any(s in ' '.join(argv) for s in secrets)]


# --- pure helpers ----------------------------------------------------------

def test_pbkdf_args():
    assert L.pbkdf_args('argon2id', 1048576, None, 4, 2000) == [
        '--pbkdf', 'argon2id', '--pbkdf-memory', '1048576', '--pbkdf-parallel', '4', '--iter-time', '2000']
    assert L.pbkdf_args('argon2id', 65536, 4, 1) == [
        '--pbkdf', 'argon2id', '--pbkdf-memory', '65536', '--pbkdf-parallel', '1', '--pbkdf-force-iterations', '4']
    assert L.pbkdf_args('pbkdf2', 65536, None, 4, 1000) == ['--pbkdf', 'pbkdf2', '--iter-time', '1000']


def test_format_argv_is_luks2_aes_xts_512():
    argv = L.format_argv(DEV, L.pbkdf_args(), sector_size=4096, label='guest01')
    assert argv[:4] == ['cryptsetup', 'luksFormat', '--batch-mode', '--type']
    assert argv[argv.index('--type') + 1] == 'luks2'
    assert argv[argv.index('--cipher') + 1] == 'aes-xts-plain64'
    assert argv[argv.index('--key-size') + 1] == '512'
    assert argv[argv.index('--pbkdf') + 1] == 'argon2id'
    assert argv[argv.index('--sector-size') + 1] == '4096'
    assert argv[argv.index('--label') + 1] == 'guest01'
    assert argv[-1] == DEV


def test_simple_argvs():
    assert L.open_argv(DEV, 'g', discards=True) == ['cryptsetup', 'open', '--type', 'luks', '--allow-discards', DEV, 'g']
    assert L.close_argv('g') == ['cryptsetup', 'close', 'g']
    assert L.erase_argv(DEV) == ['cryptsetup', 'erase', '--batch-mode', DEV]
    assert L.wipefs_argv(DEV) == ['wipefs', '--all', DEV]
    assert L.blkid_argv(DEV) == ['blkid', '--probe', '--output', 'export', DEV]
    assert L.remove_key_argv(DEV)[-1] == DEV
    assert L.convert_key_argv(DEV, 3, ['--pbkdf', 'argon2id'])[3:5] == ['--key-slot', '3']


@pytest.mark.parametrize('bad', ['', None, 'two\nlines', 'cr\r', 'nul\0', 'x' * 513])
def test_validate_passphrase_rejects(bad):
    with pytest.raises(L.LuksError):
        L.validate_passphrase(bad)


def test_validate_passphrase_accepts_unicode_and_spaces():
    assert L.validate_passphrase(u'correct horse battery st\u00e4ple', min_length=12) is None
    # the minimum counts characters, not UTF-8 bytes: 12 two-byte characters
    # pass a minimum of 12, 11 of them do not (and the message shows no value)
    assert L.validate_passphrase(u'\u00e4' * 12, min_length=12) is None
    with pytest.raises(L.LuksError, match='at least 12 characters') as err:
        L.validate_passphrase(u'\u00e4' * 11, min_length=12)
    assert u'\u00e4' not in str(err.value)


@pytest.mark.parametrize('bad', ['', '-x', 'a/b', 'a b', 'x' * 128])
def test_validate_name(bad):
    with pytest.raises(L.LuksError):
        L.validate_name(bad)


def test_parse_luks2_json():
    summary = L.parse_luks2_json(json.dumps(DUMP))
    assert summary['version'] == 2
    assert summary['cipher'] == 'aes-xts-plain64'
    assert summary['key_size'] == 512
    assert summary['sector_size'] == 4096
    assert summary['data_offset'] == 16777216
    assert summary['keyslots'] == [{'slot': 0, 'type': 'luks2', 'key_size': 512, 'encryption': 'aes-xts-plain64',
                                    'pbkdf': 'argon2id', 'pbkdf_time': 4, 'pbkdf_memory': 32768,
                                    'pbkdf_parallel': 1}]
    with pytest.raises(L.LuksError):
        L.parse_luks2_json('LUKS header information')


def test_parse_status_and_blkid():
    status = L.parse_status(STATUS_ACTIVE)
    assert status['active'] is True
    assert status['device'] == '/dev/mapper/vg-guest01_luks'
    assert status['type'] == 'LUKS2' and status['key_location'] == 'keyring'
    assert L.parse_status('/dev/mapper/x is inactive.\n') == {'active': False}
    probe = L.parse_blkid_export('DEVNAME=/dev/vdb\nUUID=1\nBLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n')
    assert probe['TYPE'] == 'ext4'
    assert L.describe_signature(probe) == 'ext4 filesystem'
    assert L.describe_signature({'PTTYPE': 'gpt'}) == 'gpt partition table'
    assert L.describe_signature({'TYPE': 'LVM2_member', 'USAGE': 'raid'}) == 'LVM2_member RAID member'
    assert L.describe_signature({'AMBIVALENT': '1'}) == 'several conflicting signatures'
    assert L.describe_signature({}) == 'an unknown signature'


def test_unlocked_slot():
    assert L.unlocked_slot('Key slot 3 unlocked.\nCommand successful.') == 3
    assert L.unlocked_slot('Command successful.') is None


# --- behaviour -------------------------------------------------------------

def test_blank_device_is_formatted_and_opened_with_secret_on_stdin_only():
    host = FakeHost()
    vol = ensure(host)
    assert vol.actions == ['format', 'open']
    assert host.luks == 2 and host.open_as == DEV
    fmt = [c for c in host.calls if c[0][1] == 'luksFormat'][0]
    assert fmt[1] == 'correct horse'
    assert secrets_in_argv(host, 'correct horse') == []
    assert vol.after_state('opened') == {'state': 'opened', 'luks_version': 2}
    assert vol.before == {'state': 'absent', 'luks_version': None}


def test_second_run_changes_nothing():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    vol = volume(host)
    assert vol.plan('opened') == []
    assert vol.before['state'] == 'opened' and vol.before['keyslots'] == 1
    assert not any(c[0][1] in ('luksFormat', 'open') and '--test-passphrase' not in c[0] for c in host.calls)


def test_closed_volume_is_formatted_but_not_opened():
    host = FakeHost()
    assert ensure(host, 'closed').actions == ['format']
    assert host.open_as is None


@pytest.mark.parametrize('signature', [
    {'TYPE': 'ext4', 'USAGE': 'filesystem'}, {'TYPE': 'LVM2_member', 'USAGE': 'raid'},
    {'PTTYPE': 'gpt'}, {'TYPE': 'swap', 'USAGE': 'other'}, {'AMBIVALENT': '1'},
])
def test_refuses_to_format_over_a_signature(signature):
    host = FakeHost(signature=signature)
    with pytest.raises(L.LuksError) as err:
        volume(host).plan('opened')
    assert 'refusing to format' in str(err.value) and 'force' in str(err.value)
    assert not any(c[0][0] == 'wipefs' or c[0][1] == 'luksFormat' for c in host.calls)


def test_force_wipes_a_foreign_signature_then_formats():
    host = FakeHost(signature={'TYPE': 'ext4', 'USAGE': 'filesystem'})
    assert ensure(host, force=True).actions == ['wipefs', 'format', 'open']


def test_force_never_reformats_an_existing_luks_header():
    host = FakeHost(luks=2, passphrases=['other'])
    with pytest.raises(L.LuksError) as err:
        volume(host, force=True).plan('opened')
    assert 'does not unlock' in str(err.value)
    assert not any(c[0][1] == 'luksFormat' for c in host.calls if c[0][0] == 'cryptsetup')


def test_rotation_with_previous_passphrase():
    host = FakeHost(luks=2, passphrases=['old one'], open_as=DEV)
    vol = ensure(host, passphrase='new one', previous_passphrase='old one')
    assert vol.actions == ['change_key']
    assert host.slot_of('new one') is not None and host.slot_of('old one') is None
    assert secrets_in_argv(host, 'old one', 'new one') == []
    assert volume(host, passphrase='new one', previous_passphrase='old one').plan('opened') == []


def test_rotation_refused_when_no_passphrase_works():
    host = FakeHost(luks=2, passphrases=['something else'])
    with pytest.raises(L.LuksError) as err:
        volume(host, passphrase='new one', previous_passphrase='old one').plan('opened')
    assert 'neither does previous_passphrase' in str(err.value)


def test_add_and_remove_passphrases():
    host = FakeHost(luks=2, passphrases=['correct horse', 'retired'], open_as=DEV)
    vol = ensure(host, add_passphrases=['recovery key'], remove_passphrases=['retired'])
    assert vol.describe_actions() == ['add_key #0', 'remove_key #0']
    assert sorted(host.slots.values()) == ['correct horse', 'recovery key']
    add = [c for c in host.calls if c[0][1] == 'luksAddKey'][0]
    assert add[1] == 'correct horse\nrecovery key'
    assert secrets_in_argv(host, 'correct horse', 'recovery key', 'retired') == []
    assert volume(host, add_passphrases=['recovery key'], remove_passphrases=['retired']).plan('opened') == []


def test_removing_the_kept_passphrase_is_refused():
    host = FakeHost(luks=2, passphrases=['correct horse'])
    with pytest.raises(L.LuksError):
        volume(host, remove_passphrases=['correct horse']).plan('closed')


def test_pbkdf2_slot_is_upgraded_to_argon2id():
    host = FakeHost(luks=2, passphrases=['correct horse'], kdf='pbkdf2', open_as=DEV)
    vol = ensure(host)
    assert vol.describe_actions() == ['convert_key slot 0 from pbkdf2 to argon2id']
    assert host.kdf[0] == 'argon2id'
    assert volume(host, upgrade_pbkdf=True).plan('opened') == []
    host2 = FakeHost(luks=2, passphrases=['correct horse'], kdf='pbkdf2', open_as=DEV)
    assert volume(host2, upgrade_pbkdf=False).plan('opened') == []


def test_luks1_is_kept_with_a_warning():
    host = FakeHost(luks=1, passphrases=['correct horse'])
    vol = ensure(host)
    assert vol.actions == ['open']
    assert 'LUKS1' in vol.warnings[0]


def test_warns_about_a_different_cipher():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    vol = volume(host, cipher='serpent-xts-plain64', key_size=256)
    vol.plan('opened')
    assert any('reencrypt' in w for w in vol.warnings)
    assert any('512-bit volume key' in w for w in vol.warnings)


def test_close_refused_while_a_guest_runs():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    host.guests = ['kvm01']
    with pytest.raises(L.LuksError) as err:
        volume(host).plan('closed')
    assert 'guest(s) kvm01 still use' in str(err.value)
    assert err.value.extra == {'guests': ['kvm01']}
    assert host.open_as == DEV


def test_close_refused_while_held_open():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    host.count = 1
    with pytest.raises(L.LuksError) as err:
        volume(host).plan('closed')
    assert 'held open 1 time' in str(err.value)


def test_close_busy_reported_clearly():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    host.close_rc = L.RC_BUSY
    with pytest.raises(L.LuksError) as err:
        ensure(host, 'closed')
    assert 'still in use' in str(err.value)


def test_close_when_free():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    assert ensure(host, 'closed').actions == ['close']
    assert host.open_as is None


def test_mapper_name_taken_by_another_device():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as='/dev/other')
    with pytest.raises(L.LuksError) as err:
        volume(host).plan('opened')
    assert 'already open on /dev/other' in str(err.value)


def test_absent_closes_erases_and_wipes():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    vol = ensure(host, 'absent', passphrase=None, wipe=True)
    assert vol.actions == ['close', 'erase', 'wipefs']
    assert host.luks is None and host.open_as is None
    assert volume(host, passphrase=None, wipe=True).plan('absent') == []
    assert vol.after_state('absent') == {'state': 'absent', 'luks_version': None}


def test_absent_with_missing_device():
    host = FakeHost(device_exists=False)
    assert volume(host, passphrase=None, wipe=True).plan('absent') == []
    host.open_as = '/dev/mapper/vg-guest01_luks'
    vol = volume(host, passphrase=None, wipe=True)
    # the backing device vanished: the stale mapping has no device to compare
    with pytest.raises(L.LuksError):
        vol.plan('absent')


def test_missing_or_non_block_device():
    with pytest.raises(L.LuksError) as err:
        volume(FakeHost(device_exists=False)).plan('opened')
    assert 'does not exist' in str(err.value)
    with pytest.raises(L.LuksError) as err:
        volume(FakeHost(is_block=False)).plan('opened')
    assert 'not a block device' in str(err.value)


def test_command_failure_is_reported():
    host = FakeHost()

    def broken(argv, data=None):
        if argv[1] == 'luksFormat':
            return 1, '', 'Cannot format device.'
        return host.run(argv, data)
    vol = P.LuksVolume(P.Runner(broken, stat_fn=host.stat), 'guest01', DEV, passphrase='p')
    vol.plan('opened')
    with pytest.raises(L.LuksError) as err:
        vol.apply()
    assert 'Cannot format device' in str(err.value) and err.value.extra == {'rc': 1}


def test_default_runner_helpers():
    runner = P.Runner(lambda argv, data=None: (0, '', ''))
    assert runner.guests_using('/dev/mapper/x') == []
    assert runner.open_count('x') is None
    assert runner.stat is os.stat


# --- minimum passphrase length and explicit wipe (security review) ---------

def test_validate_passphrase_enforces_a_minimum_length_without_echoing_it():
    with pytest.raises(L.LuksError) as err:
        L.validate_passphrase('abc', 'an entry of add_passphrases', min_length=12)
    assert 'an entry of add_passphrases' in str(err.value) and 'at least 12 characters' in str(err.value)
    assert 'abc' not in str(err.value)
    L.validate_passphrase('x' * 12, min_length=12)
    L.validate_passphrase(u'\u00e4' * 12, min_length=12)  # characters, not bytes


def test_minimum_passphrase_length_has_a_floor():
    assert L.MIN_PASSPHRASE == 12 and L.MIN_PASSPHRASE_FLOOR == 8
    with pytest.raises(L.LuksError) as err:
        L.validate_min_length(7)
    assert 'passphrase_min_length' in str(err.value) and 'at least 8' in str(err.value)
    L.validate_min_length(8)


def test_absent_is_refused_without_wipe_before_anything_runs():
    host = FakeHost(luks=2, passphrases=['correct horse'], open_as=DEV)
    with pytest.raises(L.LuksError) as err:
        volume(host, passphrase=None).plan('absent')
    assert 'wipe' in str(err.value) and 'unrecoverable' in str(err.value)
    assert host.calls == [] and host.luks == 2 and host.open_as == DEV
