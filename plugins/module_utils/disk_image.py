# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inspect an untrusted disk image the way libvirt's security notes ask.

Plain Python, no Ansible: the image_check module and the unit tests call it.

The rules (libvirt "Disk image handling"):

* the format is the one the operator *declares*; it is never probed;
* an image with a backing file (or a qcow2 external data file, which is the
  same attack: a pointer to an arbitrary host file or network URL) is rejected;
* the logical (virtual) size, not the file size, is checked against a limit;
* only regular files are accepted (no symlinks, devices or FIFOs).

Two independent parsers look at the image: our own reading of the qcow2
header (``read_header``) and ``qemu-img info --output=json -f <declared>``
(``parse_qemu_img_info``). qemu-img runs under ``prlimit`` so that a crafted
image cannot make it eat the host's memory or CPU (OpenStack does the same).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import stat
import struct

SUPPORTED_FORMATS = ('raw', 'qcow2')

# Signatures of image formats qemu can open. A file declared raw that starts
# with one of them was either uploaded by someone trying the format-probing
# attack or is simply not what the operator thinks it is.
FORMAT_MAGIC = (
    (0, b'QFI\xfb', 'qcow2'),
    (0, b'QED\x00', 'qed'),
    (0, b'LUKS\xba\xbe', 'luks'),
    (0, b'KDMV', 'vmdk'),
    (0, b'COWD', 'vmdk'),
    (0, b'# Disk DescriptorFile', 'vmdk'),
    (0, b'conectix', 'vpc'),
    (0, b'vhdxfile', 'vhdx'),
    (0, b'WithoutFreeSpace', 'parallels'),
    (0, b'WithouFreSpacExt', 'parallels'),
    (0, b'Bochs Virtual HD Image', 'bochs'),
    (0, b'#!/bin/sh\n#V2.0 Format', 'cloop'),
    (0x40, b'\x7f\x10\xda\xbe', 'vdi'),
)
HEADER_BYTES = 512

QCOW2_MAGIC = b'QFI\xfb'
QCOW2_INCOMPAT_DATA_FILE = 1 << 2
QCOW2_EXT_DATA_FILE = 0x44415441
QCOW2_EXT_BACKING_FORMAT = 0xE2792ACA

_SIZE_RE = re.compile(r'^\s*(\d+)\s*([kmgtpe]?)(i?b?)\s*$', re.IGNORECASE)
_UNITS = {'': 0, 'k': 1, 'm': 2, 'g': 3, 't': 4, 'p': 5, 'e': 6}


class ImageError(Exception):
    """The image could not be inspected at all (not a rejection verdict)."""


def parse_size(value):
    """Bytes from an int or a string such as ``20G``, ``512MiB``, ``1048576``.

    Suffixes are binary (K = 1024), as qemu-img and LVM read them.
    """
    if isinstance(value, bool):
        raise ValueError('size must be a number of bytes or a string like 20G, not a boolean')
    if isinstance(value, int):
        if value < 0:
            raise ValueError('size must not be negative: %d' % value)
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError('cannot read %r as a size (use bytes or a suffix K, M, G, T, P, E)' % (value,))
    number, unit, tail = match.groups()
    if tail.lower() == 'b' and not unit:
        tail = ''
    return int(number) * (1024 ** _UNITS[unit.lower()])


def inspect_path(path):
    """Return ``(size, reasons)`` for the file itself, without following symlinks."""
    if not os.path.isabs(path):
        raise ImageError('path must be absolute: %s' % path)
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ImageError('cannot stat %s: %s' % (path, exc.strerror))
    if stat.S_ISLNK(st.st_mode):
        return st.st_size, ['%s is a symbolic link; give the real path of a regular file' % path]
    if not stat.S_ISREG(st.st_mode):
        kind = describe_mode(st.st_mode)
        return st.st_size, ['%s is not a regular file (it is a %s)' % (path, kind)]
    return st.st_size, []


def describe_mode(mode):
    for test, name in ((stat.S_ISBLK, 'block device'), (stat.S_ISCHR, 'character device'),
                       (stat.S_ISDIR, 'directory'), (stat.S_ISFIFO, 'FIFO'),
                       (stat.S_ISSOCK, 'socket'), (stat.S_ISLNK, 'symbolic link')):
        if test(mode):
            return name
    return 'special file'


def read_header(path, size=HEADER_BYTES):
    """First bytes of a regular file, opened without following a symlink."""
    flags = os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError('%s is not a regular file' % path)
        return os.read(fd, size)
    finally:
        os.close(fd)


def detect_magic(header):
    """Name of the image format whose signature starts ``header``, or None."""
    for offset, magic, name in FORMAT_MAGIC:
        if header[offset:offset + len(magic)] == magic:
            return name
    return None


def parse_qcow2_header(data):
    """Facts from the start of a qcow2 file (pure; ``data`` is the first bytes).

    Returns a dict with ``version``, ``backing_file_offset``,
    ``backing_file_size``, ``incompatible_features``, ``data_file`` (bool:
    the external-data-file feature bit or header extension is present) and
    ``virtual_size``. Raises ValueError for anything that is not qcow2.
    """
    if len(data) < 72 or data[:4] != QCOW2_MAGIC:
        raise ValueError('not a qcow2 header')
    version, backing_offset, backing_size = struct.unpack('>IQI', data[4:20])
    virtual_size = struct.unpack('>Q', data[24:32])[0]
    facts = {'version': version, 'backing_file_offset': backing_offset,
             'backing_file_size': backing_size, 'virtual_size': virtual_size,
             'incompatible_features': 0, 'data_file': False, 'backing_format': None}
    header_length = 72
    if version not in (2, 3):
        raise ValueError('unknown qcow2 version %d' % version)
    if version == 3:
        if len(data) < 104:
            raise ValueError('truncated qcow2 v3 header')
        facts['incompatible_features'] = struct.unpack('>Q', data[72:80])[0]
        header_length = struct.unpack('>I', data[100:104])[0]
    if facts['incompatible_features'] & QCOW2_INCOMPAT_DATA_FILE:
        facts['data_file'] = True
    # Header extensions follow the header: (type, length, data padded to 8).
    pos = header_length
    while pos + 8 <= len(data):
        ext_type, ext_len = struct.unpack('>II', data[pos:pos + 8])
        if ext_type == 0:
            break
        body = data[pos + 8:pos + 8 + ext_len]
        if ext_type == QCOW2_EXT_DATA_FILE:
            facts['data_file'] = True
        elif ext_type == QCOW2_EXT_BACKING_FORMAT:
            facts['backing_format'] = body.decode('utf-8', 'replace')
        pos += 8 + ((ext_len + 7) & ~7)
    return facts


def qemu_img_info_argv(path, fmt, qemu_img='qemu-img', prlimit=None,
                       address_space=1024 * 1024 * 1024, cpu_seconds=30, force_share=False):
    """argv for ``qemu-img info`` with the declared format, never a probe."""
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError('unsupported format %r (supported: %s)' % (fmt, ', '.join(SUPPORTED_FORMATS)))
    if not os.path.isabs(path):
        raise ValueError('path must be absolute: %s' % path)
    argv = [qemu_img, 'info', '--output=json', '-f', fmt]
    if force_share:
        argv.append('--force-share')
    argv.append(path)
    if prlimit:
        argv = [prlimit, '--as=%d' % address_space, '--cpu=%d' % cpu_seconds, '--'] + argv
    return argv


def parse_qemu_img_info(text):
    """Normalise ``qemu-img info --output=json`` (one image) into plain facts."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ImageError('qemu-img info did not return JSON: %s' % exc)
    if isinstance(raw, list):
        # --backing-chain output; we never ask for it but accept it.
        if not raw:
            raise ImageError('qemu-img info returned an empty list')
        chain_length = len(raw)
        raw = raw[0]
    else:
        chain_length = 1
    if not isinstance(raw, dict) or 'format' not in raw or 'virtual-size' not in raw:
        raise ImageError('qemu-img info JSON lacks "format" or "virtual-size"')
    specific = raw.get('format-specific') or {}
    specific_data = specific.get('data') or {}
    backing = raw.get('backing-filename') or raw.get('full-backing-filename')
    if not backing and isinstance(raw.get('backing-image'), dict):
        backing = raw['backing-image'].get('filename') or '(unnamed backing image)'
    return {
        'format': raw['format'],
        'virtual_size': int(raw['virtual-size']),
        'actual_size': int(raw['actual-size']) if raw.get('actual-size') is not None else None,
        'cluster_size': raw.get('cluster-size'),
        'dirty': bool(raw.get('dirty-flag', False)),
        'encrypted': bool(raw.get('encrypted', False)),
        'backing_file': backing,
        'backing_format': raw.get('backing-filename-format'),
        'data_file': specific_data.get('data-file'),
        'corrupt': bool(specific_data.get('corrupt', False)),
        'compat': specific_data.get('compat'),
        'backing_chain': bool(backing) or chain_length > 1,
    }


def explain_qemu_img_error(stderr, fmt):
    """A rejection reason from qemu-img's error text (format mismatch etc.)."""
    text = (stderr or '').strip()
    if re.search(r'Image is not in %s format' % re.escape(fmt), text) or \
            re.search(r'not in %s format' % re.escape(fmt), text, re.IGNORECASE):
        return 'the image is not in the declared format %s (qemu-img: %s)' % (fmt, text.splitlines()[-1])
    if 'Failed to get shared' in text or 'lock' in text.lower():
        return 'the image is locked by a running process (a running guest?): %s' % text.splitlines()[-1]
    return None


def evaluate(declared_format, facts, max_virtual_size=None, file_size=None, max_file_size=None,
             header=None, allow_format_header_in_raw=False, allow_encrypted=False):
    """Rejection reasons (empty list: accepted) for the facts of one image."""
    reasons = []
    if facts.get('format') != declared_format:
        reasons.append('declared format %s but qemu-img opened it as %s' % (declared_format, facts.get('format')))
    if facts.get('backing_file') or facts.get('backing_chain'):
        reasons.append('the image has a backing file (%s); backing chains can expose arbitrary host files '
                       'or network storage' % (facts.get('backing_file') or 'chain'))
    if facts.get('data_file'):
        reasons.append('the qcow2 image uses an external data file (%s)' % facts['data_file'])
    if facts.get('corrupt'):
        reasons.append('qemu-img reports the image as corrupt')
    if facts.get('encrypted') and not allow_encrypted:
        reasons.append('the image is encrypted; it cannot be checked or copied without its secret')
    if max_virtual_size is not None and facts.get('virtual_size', 0) > max_virtual_size:
        reasons.append('virtual size %d bytes exceeds the limit of %d bytes'
                       % (facts['virtual_size'], max_virtual_size))
    if max_file_size is not None and file_size is not None and file_size > max_file_size:
        reasons.append('file size %d bytes exceeds the limit of %d bytes' % (file_size, max_file_size))
    if header is not None:
        magic = detect_magic(header)
        if declared_format == 'raw' and magic and not allow_format_header_in_raw:
            reasons.append('declared raw but the file starts with a %s header; refusing an image that would be '
                           'read differently by anything that probes it' % magic)
        if declared_format == 'qcow2':
            try:
                own = parse_qcow2_header(header)
            except ValueError as exc:
                reasons.append('declared qcow2 but the qcow2 header is unusable (%s)' % exc)
            else:
                if own['backing_file_offset'] or own['backing_file_size']:
                    reasons.append('the qcow2 header names a backing file')
                if own['data_file'] and not facts.get('data_file'):
                    reasons.append('the qcow2 header enables an external data file')
    # Deduplicate while keeping order: two parsers often agree.
    seen = set()
    unique = []
    for reason in reasons:
        if reason not in seen:
            seen.add(reason)
            unique.append(reason)
    return unique


def check_image(run, path, declared_format, max_virtual_size=None, max_file_size=None,
                qemu_img='qemu-img', prlimit=None, address_space=1024 * 1024 * 1024, cpu_seconds=30,
                allow_format_header_in_raw=False, allow_encrypted=False, force_share=False):
    """Inspect ``path``; return ``(facts, reasons)``.

    ``run(argv) -> (rc, stdout, stderr)`` runs a command (module.run_command
    in the module, a fake in the unit tests). Never runs qemu-img on a file
    that already failed the file-type checks.
    """
    if declared_format not in SUPPORTED_FORMATS:
        raise ImageError('unsupported format %r (supported: %s)' % (declared_format, ', '.join(SUPPORTED_FORMATS)))
    file_size, reasons = inspect_path(path)
    facts = {'path': path, 'declared_format': declared_format, 'file_size': file_size}
    if reasons:
        return facts, reasons
    header = read_header(path)
    if declared_format == 'qcow2':
        try:
            own = parse_qcow2_header(header)
        except ValueError:
            own = None
        if own and (own['backing_file_offset'] or own['data_file']):
            # Our own parser already sees a pointer to another file: do not
            # let qemu-img open the image at all.
            facts['format'] = 'qcow2'
            facts['virtual_size'] = own['virtual_size']
            return facts, evaluate(declared_format, dict(facts, backing_file=None, data_file=None),
                                   max_virtual_size, file_size, max_file_size, header,
                                   allow_format_header_in_raw, allow_encrypted)
    argv = qemu_img_info_argv(path, declared_format, qemu_img, prlimit, address_space, cpu_seconds, force_share)
    rc, out, err = run(argv)
    if rc != 0:
        reason = explain_qemu_img_error(err, declared_format)
        if reason:
            return facts, [reason]
        raise ImageError('qemu-img info failed (rc=%d): %s' % (rc, (err or out).strip()))
    facts.update(parse_qemu_img_info(out))
    facts['path'] = path
    return facts, evaluate(declared_format, facts, max_virtual_size, file_size, max_file_size, header,
                           allow_format_header_in_raw, allow_encrypted)
