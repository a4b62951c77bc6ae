# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LUKS2 volumes for guest storage: input checks, cryptsetup command lines
and the parsers of cryptsetup's and blkid's output.

What to run, and in which order, is decided by ``luks_plan.LuksVolume``.
Every passphrase goes to cryptsetup on stdin (one per line, as cryptsetup
reads a non-terminal stdin), never in argv, never in a file.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

DEFAULT_CIPHER = 'aes-xts-plain64'
DEFAULT_KEY_SIZE = 512
DEFAULT_PBKDF = 'argon2id'
MAX_PASSPHRASE = 512          # cryptsetup's limit for an interactive passphrase
MIN_PASSPHRASE = 12           # default minimum length of a new passphrase (as the pki CA passphrase)
MIN_PASSPHRASE_FLOOR = 8      # passphrase_min_length cannot be set lower than this

# cryptsetup exit codes (man cryptsetup, RETURN CODES)
RC_WRONG_PASSPHRASE = 2
RC_BUSY = 5

_STATUS_LINE = re.compile(r'^\s*([a-z ]+):\s*(.*?)\s*$')
_SLOT_UNLOCKED = re.compile(r'Key slot (\d+) unlocked')
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]{0,126}$')


class LuksError(Exception):
    """A refusal or failure with a message meant for the operator."""

    def __init__(self, msg, **extra):
        super(LuksError, self).__init__(msg)
        self.extra = extra


def validate_name(name):
    if not _NAME.match(name or ''):
        raise LuksError('invalid mapper name %r: use letters, digits and _ . + - (max 127)' % (name,))


def validate_passphrase(value, what='passphrase', min_length=None):
    """cryptsetup reads each passphrase up to a newline from our stdin.

    ``min_length`` (characters) applies to passphrases that will be set on the
    device; one that only has to unlock it (the previous passphrase, one to
    remove) is checked without it. Messages never contain the value.
    """
    if value is None or value == '':
        raise LuksError('%s must not be empty' % what)
    if '\n' in value or '\r' in value or '\0' in value:
        raise LuksError('%s must not contain newline, carriage return or NUL characters' % what)
    if len(value.encode('utf-8')) > MAX_PASSPHRASE:
        raise LuksError('%s is longer than %d bytes' % (what, MAX_PASSPHRASE))
    if min_length and len(value) < min_length:
        raise LuksError('%s must be at least %d characters long (passphrase_min_length); nothing was changed'
                        % (what, min_length))


def validate_min_length(min_length):
    """The configured minimum itself may not be weaker than MIN_PASSPHRASE_FLOOR."""
    if min_length is None or min_length < MIN_PASSPHRASE_FLOOR:
        raise LuksError('passphrase_min_length must be at least %d (got %s)' % (MIN_PASSPHRASE_FLOOR, min_length))


def pbkdf_args(pbkdf=DEFAULT_PBKDF, memory=None, iterations=None, parallel=None, iter_time=None):
    """cryptsetup options that set a keyslot's key derivation.

    With ``iterations`` set the cost is exact (no benchmark: reproducible and
    fast on slow test hosts); otherwise cryptsetup benchmarks to ``iter_time``
    milliseconds within ``memory`` KiB.
    """
    args = ['--pbkdf', pbkdf]
    if pbkdf in ('argon2id', 'argon2i'):
        if memory:
            args += ['--pbkdf-memory', str(int(memory))]
        if parallel:
            args += ['--pbkdf-parallel', str(int(parallel))]
    if iterations:
        args += ['--pbkdf-force-iterations', str(int(iterations))]
    elif iter_time:
        args += ['--iter-time', str(int(iter_time))]
    return args


def format_argv(device, kdf_args, cipher=DEFAULT_CIPHER, key_size=DEFAULT_KEY_SIZE,
                sector_size=None, label=None):
    argv = ['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2',
            '--cipher', cipher, '--key-size', str(int(key_size))] + list(kdf_args)
    if sector_size:
        argv += ['--sector-size', str(int(sector_size))]
    if label:
        argv += ['--label', label]
    return argv + [device]


def open_argv(device, name, discards=False):
    argv = ['cryptsetup', 'open', '--type', 'luks']
    if discards:
        argv.append('--allow-discards')
    return argv + [device, name]


def close_argv(name):
    return ['cryptsetup', 'close', name]


def test_passphrase_argv(device):
    return ['cryptsetup', 'open', '--test-passphrase', '--verbose', '--type', 'luks', device]


def add_key_argv(device, kdf_args):
    return ['cryptsetup', 'luksAddKey', '--batch-mode'] + list(kdf_args) + [device]


def change_key_argv(device, kdf_args):
    return ['cryptsetup', 'luksChangeKey', '--batch-mode'] + list(kdf_args) + [device]


def remove_key_argv(device):
    return ['cryptsetup', 'luksRemoveKey', '--batch-mode', device]


def convert_key_argv(device, slot, kdf_args):
    return ['cryptsetup', 'luksConvertKey', '--batch-mode', '--key-slot', str(slot)] + list(kdf_args) + [device]


def dump_json_argv(device):
    return ['cryptsetup', 'luksDump', '--dump-json-metadata', device]


def erase_argv(device):
    return ['cryptsetup', 'erase', '--batch-mode', device]


def wipefs_argv(device):
    return ['wipefs', '--all', device]


def blkid_argv(device):
    return ['blkid', '--probe', '--output', 'export', device]


def status_argv(name):
    return ['cryptsetup', 'status', name]


def parse_blkid_export(text):
    """``KEY=value`` lines of ``blkid -p -o export`` into a dict."""
    result = {}
    for line in (text or '').splitlines():
        if '=' in line:
            key, value = line.split('=', 1)
            result[key.strip()] = value.strip()
    return result


def describe_signature(probe):
    """Human words for what blkid found, e.g. ``ext4 filesystem``."""
    parts = []
    if probe.get('TYPE'):
        usage = probe.get('USAGE', '')
        kind = {'filesystem': 'filesystem', 'raid': 'RAID member', 'crypto': 'encrypted volume',
                'other': 'signature'}.get(usage, 'signature')
        parts.append('%s %s' % (probe['TYPE'], kind))
    if probe.get('PTTYPE'):
        parts.append('%s partition table' % probe['PTTYPE'])
    if probe.get('AMBIVALENT'):
        parts.append('several conflicting signatures')
    return ', '.join(parts) or 'an unknown signature'


def parse_status(text):
    """``cryptsetup status NAME`` into a dict (``active``, ``type``, ``device``...)."""
    lines = (text or '').splitlines()
    result = {'active': bool(lines) and ' is active' in lines[0]}
    for line in lines[1:]:
        match = _STATUS_LINE.match(line)
        if match:
            result[match.group(1).strip().replace(' ', '_')] = match.group(2)
    return result


def parse_luks2_json(text):
    """Summary of ``cryptsetup luksDump --dump-json-metadata`` (LUKS2 only)."""
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise LuksError('cannot read the LUKS2 metadata: %s' % exc)
    segments = meta.get('segments') or {}
    segment = segments.get('0') or (list(segments.values())[0] if segments else {})
    keyslots = []
    for slot_id in sorted(meta.get('keyslots') or {}, key=int):
        slot = meta['keyslots'][slot_id]
        kdf = slot.get('kdf') or {}
        keyslots.append({
            'slot': int(slot_id),
            'type': slot.get('type'),
            'key_size': int(slot.get('key_size', 0)) * 8,
            'encryption': (slot.get('area') or {}).get('encryption'),
            'pbkdf': kdf.get('type'),
            'pbkdf_time': kdf.get('time', kdf.get('iterations')),
            'pbkdf_memory': kdf.get('memory'),
            'pbkdf_parallel': kdf.get('cpus'),
        })
    key_sizes = sorted(set(k['key_size'] for k in keyslots if k['type'] == 'luks2'))
    return {
        'version': 2,
        'cipher': segment.get('encryption'),
        'sector_size': segment.get('sector_size'),
        'data_offset': int(segment['offset']) if segment.get('offset') else None,
        'key_size': key_sizes[0] if len(key_sizes) == 1 else (key_sizes or None),
        'keyslots': keyslots,
        'tokens': len(meta.get('tokens') or {}),
    }


def unlocked_slot(text):
    match = _SLOT_UNLOCKED.search(text or '')
    return int(match.group(1)) if match else None


def refuse_absent_without_wipe(wipe, device):
    """state=absent destroys the keyslots: only with an explicit wipe=true."""
    if wipe is not True:
        raise LuksError('refusing state=absent on %s without wipe=true: it closes the mapping, destroys every '
                        'keyslot (cryptsetup erase) and wipes the LUKS signature, which makes the data '
                        'unrecoverable. Set wipe=true to confirm; nothing was changed' % device)
