"""Unit tests for plugins/module_utils/disk_image.py (image_check logic)."""
import json
import os
import shutil
import struct
import subprocess

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import disk_image as di

# Real qemu-img 7.2 output (Debian 12), trimmed only of nothing.
RAW_INFO = """{
    "virtual-size": 1048576,
    "filename": "raw.img",
    "format": "raw",
    "actual-size": 1048576,
    "dirty-flag": false
}"""

QCOW2_BACKING_INFO = """{
    "backing-filename-format": "qcow2",
    "virtual-size": 67108864,
    "filename": "over.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib",
        "lazy-refcounts": false, "refcount-bits": 16, "corrupt": false, "extended-l2": false}},
    "full-backing-filename": "/tmp/lt/base.qcow2",
    "backing-filename": "/tmp/lt/base.qcow2",
    "dirty-flag": false
}"""

QCOW2_DATA_FILE_INFO = """{
    "virtual-size": 16777216, "filename": "df.qcow2", "cluster-size": 65536, "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "data-file": "/tmp/lt/df.raw",
        "data-file-raw": false, "corrupt": false, "extended-l2": false}},
    "dirty-flag": false
}"""

QCOW2_GOOD_INFO = """{
    "virtual-size": 67108864, "filename": "base.qcow2", "cluster-size": 65536, "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}},
    "dirty-flag": false
}"""

MISMATCH_ERR = "qemu-img: Could not open '/x/raw.img': Image is not in qcow2 format\n"


def qcow2_header(virtual_size=64 << 20, backing=None, data_file=False, version=3):
    """A minimal qcow2 header as qemu writes it (enough for our parser)."""
    header_length = 104 if version >= 3 else 72
    backing_offset = 0
    backing_size = 0
    extensions = b''
    if data_file:
        name = b'/etc/shadow'
        extensions += struct.pack('>II', di.QCOW2_EXT_DATA_FILE, len(name)) + name.ljust(16, b'\0')
    extensions += struct.pack('>II', 0, 0)
    body_end = header_length + len(extensions)
    if backing:
        backing_offset = body_end
        backing_size = len(backing)
    head = b'QFI\xfb' + struct.pack('>IQI', version, backing_offset, backing_size)
    head += struct.pack('>I', 16)  # cluster bits
    head += struct.pack('>Q', virtual_size)
    head += b'\0' * (72 - len(head))
    if version >= 3:
        incompat = di.QCOW2_INCOMPAT_DATA_FILE if data_file else 0
        head += struct.pack('>QQQII', incompat, 0, 0, 4, header_length)
    data = head + extensions + (backing or b'')
    return data.ljust(512, b'\0')


class FakeRun:
    def __init__(self, rc=0, out='', err=''):
        self.rc, self.out, self.err = rc, out, err
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        return self.rc, self.out, self.err


@pytest.fixture
def raw_file(tmp_path):
    path = tmp_path / 'disk.img'
    path.write_bytes(b'\x00' * 1024 * 1024)
    return str(path)


# --- parse_size ------------------------------------------------------------

@pytest.mark.parametrize('text,expected', [
    (0, 0), (1048576, 1048576), ('1048576', 1048576), ('1K', 1024), ('20G', 20 << 30),
    ('512MiB', 512 << 20), ('2 T', 2 << 40), ('1g', 1 << 30), ('100b', 100), ('3KB', 3072),
])
def test_parse_size(text, expected):
    assert di.parse_size(text) == expected


@pytest.mark.parametrize('bad', ['', 'lots', '1.5G', '-1', '10X', True, -5])
def test_parse_size_rejects_garbage(bad):
    with pytest.raises(ValueError):
        di.parse_size(bad)


# --- qemu-img JSON parsing -------------------------------------------------

def test_parse_raw_info():
    facts = di.parse_qemu_img_info(RAW_INFO)
    assert facts['format'] == 'raw'
    assert facts['virtual_size'] == 1048576
    assert facts['actual_size'] == 1048576
    assert facts['backing_file'] is None
    assert facts['backing_chain'] is False
    assert facts['data_file'] is None
    assert facts['dirty'] is False and facts['encrypted'] is False


def test_parse_backing_info():
    facts = di.parse_qemu_img_info(QCOW2_BACKING_INFO)
    assert facts['backing_file'] == '/tmp/lt/base.qcow2'
    assert facts['backing_format'] == 'qcow2'
    assert facts['backing_chain'] is True
    assert facts['cluster_size'] == 65536
    assert facts['compat'] == '1.1'


def test_parse_data_file_info():
    assert di.parse_qemu_img_info(QCOW2_DATA_FILE_INFO)['data_file'] == '/tmp/lt/df.raw'


def test_parse_backing_chain_list_and_nested_backing_image():
    chain = json.dumps([json.loads(QCOW2_GOOD_INFO), json.loads(RAW_INFO)])
    assert di.parse_qemu_img_info(chain)['backing_chain'] is True
    nested = json.loads(QCOW2_GOOD_INFO)
    nested['backing-image'] = {'filename': 'nbd://evil/export'}
    assert di.parse_qemu_img_info(json.dumps(nested))['backing_file'] == 'nbd://evil/export'


@pytest.mark.parametrize('text', ['not json', '[]', '{"format": "raw"}', '"str"'])
def test_parse_rejects_bad_json(text):
    with pytest.raises(di.ImageError):
        di.parse_qemu_img_info(text)


def test_parse_encrypted_and_corrupt():
    data = json.loads(QCOW2_GOOD_INFO)
    data['encrypted'] = True
    data['format-specific']['data']['corrupt'] = True
    facts = di.parse_qemu_img_info(json.dumps(data))
    assert facts['encrypted'] and facts['corrupt']
    reasons = di.evaluate('qcow2', facts)
    assert any('encrypted' in r for r in reasons)
    assert any('corrupt' in r for r in reasons)
    assert not any('encrypted' in r for r in di.evaluate('qcow2', facts, allow_encrypted=True))


# --- argv ------------------------------------------------------------------

def test_info_argv_declares_format_and_limits():
    argv = di.qemu_img_info_argv('/i/a.img', 'raw', prlimit='/usr/bin/prlimit',
                                 address_space=1 << 30, cpu_seconds=7)
    assert argv == ['/usr/bin/prlimit', '--as=1073741824', '--cpu=7', '--',
                    'qemu-img', 'info', '--output=json', '-f', 'raw', '/i/a.img']
    assert di.qemu_img_info_argv('/i/a', 'qcow2', force_share=True) == [
        'qemu-img', 'info', '--output=json', '-f', 'qcow2', '--force-share', '/i/a']


@pytest.mark.parametrize('path,fmt', [('rel/a.img', 'raw'), ('/a.img', 'vmdk'), ('/a.img', None)])
def test_info_argv_refuses(path, fmt):
    with pytest.raises(ValueError):
        di.qemu_img_info_argv(path, fmt)


# --- headers ---------------------------------------------------------------

def test_qcow2_header_parser():
    plain = di.parse_qcow2_header(qcow2_header())
    assert plain['version'] == 3 and plain['virtual_size'] == 64 << 20
    assert plain['backing_file_offset'] == 0 and plain['data_file'] is False
    backed = di.parse_qcow2_header(qcow2_header(backing=b'/etc/shadow'))
    assert backed['backing_file_offset'] > 0 and backed['backing_file_size'] == 11
    assert di.parse_qcow2_header(qcow2_header(data_file=True))['data_file'] is True
    assert di.parse_qcow2_header(qcow2_header(version=2))['version'] == 2
    with pytest.raises(ValueError):
        di.parse_qcow2_header(b'\0' * 512)
    with pytest.raises(ValueError):
        di.parse_qcow2_header(b'QFI\xfb' + struct.pack('>I', 9) + b'\0' * 100)


def test_qcow2_backing_format_extension():
    head = bytearray(qcow2_header())
    ext = struct.pack('>II', di.QCOW2_EXT_BACKING_FORMAT, 5) + b'qcow2'.ljust(8, b'\0')
    head[104:104 + len(ext)] = ext
    head[104 + len(ext):112 + len(ext)] = b'\0' * 8
    assert di.parse_qcow2_header(bytes(head))['backing_format'] == 'qcow2'


@pytest.mark.parametrize('head,name', [
    (b'QFI\xfb', 'qcow2'), (b'LUKS\xba\xbe', 'luks'), (b'KDMV', 'vmdk'), (b'vhdxfile', 'vhdx'),
    (b'\0' * 0x40 + b'\x7f\x10\xda\xbe', 'vdi'), (b'\xeb\x63\x90', None), (b'', None),
])
def test_detect_magic(head, name):
    assert di.detect_magic(head) == name


# --- evaluate --------------------------------------------------------------

def test_evaluate_accepts_good_images():
    assert di.evaluate('raw', di.parse_qemu_img_info(RAW_INFO), max_virtual_size=1 << 20,
                       header=b'\0' * 512) == []
    assert di.evaluate('qcow2', di.parse_qemu_img_info(QCOW2_GOOD_INFO), max_virtual_size=1 << 30,
                       header=qcow2_header()) == []


def test_evaluate_rejects_each_rule():
    raw = di.parse_qemu_img_info(RAW_INFO)
    assert 'exceeds the limit' in di.evaluate('raw', raw, max_virtual_size=1000)[0]
    assert 'file size' in di.evaluate('raw', raw, file_size=10, max_file_size=5)[0]
    assert 'opened it as raw' in di.evaluate('qcow2', raw)[0]
    assert 'starts with a qcow2 header' in di.evaluate('raw', raw, header=qcow2_header())[0]
    assert di.evaluate('raw', raw, header=qcow2_header(), allow_format_header_in_raw=True) == []
    backed = di.parse_qemu_img_info(QCOW2_BACKING_INFO)
    assert any('backing file (/tmp/lt/base.qcow2)' in r for r in di.evaluate('qcow2', backed))
    data = di.parse_qemu_img_info(QCOW2_DATA_FILE_INFO)
    assert any('external data file (/tmp/lt/df.raw)' in r for r in di.evaluate('qcow2', data))
    good = di.parse_qemu_img_info(QCOW2_GOOD_INFO)
    assert di.evaluate('qcow2', good, header=b'\0' * 512) == [
        'declared qcow2 but the qcow2 header is unusable (not a qcow2 header)']
    assert di.evaluate('qcow2', good, header=qcow2_header(backing=b'x')) == ['the qcow2 header names a backing file']
    assert di.evaluate('qcow2', good, header=qcow2_header(data_file=True)) == [
        'the qcow2 header enables an external data file']


def test_explain_qemu_img_error():
    assert 'not in the declared format qcow2' in di.explain_qemu_img_error(MISMATCH_ERR, 'qcow2')
    assert 'locked' in di.explain_qemu_img_error(
        'qemu-img: Could not open x: Failed to get shared "write" lock\nIs another process using the image?', 'raw')
    assert di.explain_qemu_img_error('qemu-img: something else', 'raw') is None
    assert di.explain_qemu_img_error('', 'raw') is None


# --- files and check_image -------------------------------------------------

def test_check_image_accepts_raw(raw_file):
    run = FakeRun(out=RAW_INFO)
    facts, reasons = di.check_image(run, raw_file, 'raw', max_virtual_size=1 << 20, prlimit='/usr/bin/prlimit')
    assert reasons == []
    assert facts['format'] == 'raw' and facts['file_size'] == 1 << 20 and facts['path'] == raw_file
    assert run.calls[0][:4] == ['/usr/bin/prlimit', '--as=1073741824', '--cpu=30', '--']
    assert run.calls[0][-3:] == ['-f', 'raw', raw_file]


def test_check_image_mismatch(raw_file):
    run = FakeRun(rc=1, err=MISMATCH_ERR)
    facts, reasons = di.check_image(run, raw_file, 'qcow2')
    assert len(reasons) == 1 and 'declared format qcow2' in reasons[0]
    assert 'format' not in facts


def test_check_image_unexplained_failure_raises(raw_file):
    with pytest.raises(di.ImageError):
        di.check_image(FakeRun(rc=1, err='qemu-img: out of memory'), raw_file, 'raw')


def test_check_image_backing_file_never_reaches_qemu_img(tmp_path):
    path = tmp_path / 'evil.qcow2'
    path.write_bytes(qcow2_header(backing=b'/etc/shadow'))
    run = FakeRun(out=QCOW2_GOOD_INFO)
    facts, reasons = di.check_image(run, str(path), 'qcow2', max_virtual_size=1 << 30)
    assert run.calls == []
    assert reasons == ['the qcow2 header names a backing file']
    assert facts['virtual_size'] == 64 << 20


def test_check_image_backing_file_reported_by_qemu_img(tmp_path):
    # Our parser sees nothing (a header qemu would still read differently):
    # qemu-img's verdict is used as well.
    path = tmp_path / 'sneaky.qcow2'
    path.write_bytes(qcow2_header())
    facts, reasons = di.check_image(FakeRun(out=QCOW2_BACKING_INFO), str(path), 'qcow2', max_virtual_size=1 << 30)
    assert any('backing file' in r for r in reasons)
    assert facts['backing_file'] == '/tmp/lt/base.qcow2'


def test_check_image_refuses_non_regular_files(tmp_path, raw_file):
    link = tmp_path / 'link.img'
    os.symlink(raw_file, str(link))
    run = FakeRun(out=RAW_INFO)
    _facts, reasons = di.check_image(run, str(link), 'raw')
    assert 'symbolic link' in reasons[0]
    fifo = tmp_path / 'fifo'
    os.mkfifo(str(fifo))
    assert 'FIFO' in di.check_image(run, str(fifo), 'raw')[1][0]
    assert 'directory' in di.check_image(run, str(tmp_path), 'raw')[1][0]
    assert 'character device' in di.check_image(run, '/dev/null', 'raw')[1][0]
    assert run.calls == []


def test_check_image_errors(tmp_path):
    with pytest.raises(di.ImageError):
        di.check_image(FakeRun(), 'relative.img', 'raw')
    with pytest.raises(di.ImageError):
        di.check_image(FakeRun(), str(tmp_path / 'missing.img'), 'raw')
    with pytest.raises(di.ImageError):
        di.check_image(FakeRun(), str(tmp_path), 'vmdk')


def test_describe_mode_fallback():
    assert di.describe_mode(0) == 'special file'


@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='qemu-img not installed')
def test_against_real_qemu_img(tmp_path):
    """The parser and rules against the qemu-img actually installed here."""
    def run(argv):
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    base = str(tmp_path / 'base.qcow2')
    over = str(tmp_path / 'over.qcow2')
    raw = str(tmp_path / 'raw.img')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', base, '64M'], check=True)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, over], check=True)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'raw', raw, '2M'], check=True)
    assert di.check_image(run, base, 'qcow2', max_virtual_size=64 << 20)[1] == []
    assert di.check_image(run, base, 'qcow2', max_virtual_size=(64 << 20) - 1)[1][0].startswith('virtual size')
    assert 'backing file' in di.check_image(run, over, 'qcow2', max_virtual_size=1 << 30)[1][0]
    assert 'not in the declared format' in di.check_image(run, raw, 'qcow2')[1][0]
    assert di.check_image(run, raw, 'raw', max_virtual_size=2 << 20)[1] == []
    # qcow2 declared raw: qemu opens it as raw, our magic check refuses it.
    assert 'starts with a qcow2 header' in di.check_image(run, base, 'raw')[1][0]
