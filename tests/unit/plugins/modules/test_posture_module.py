"""posture module: a host tree below tmp_path (HOST_ROOT), libvirt's test driver, fake
auditctl/nft/ip on PATH; the result schema, check mode, selection, bad input."""
import json
import os
import sys

import pytest
from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.module_utils import posture as pm
from ansible_collections.secvirt.kvm.plugins.modules import posture

STATUS = "Name:\tqemu-system-x86\nUid:\t64055\t64055\t64055\t64055\nCapEff:\t0000000000000000\nSeccomp:\t2\n"
ANSWERS = {
    'auditctl -l': '-w /etc/libvirt -p wa -k virt_libvirt_cfg\n'
                   '-a always,exit -F arch=b64 -S execve -F uid=64055 -F key=virt_qemu_crossdomain\n',
    'auditctl -s': 'enabled 1\nfailure 1\npid 812\n',
    'nft -j list ruleset': '{"nftables": [{"metainfo": {"json_schema_version": 1}}]}',
    'ip -j addr show': '[]',
}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(ansible_warnings, '_global_warnings', {})
    monkeypatch.setattr(ansible_internal, 'is_controller', False)


def write(root, relative, text):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


@pytest.fixture
def host(tmp_path, monkeypatch):
    root = tmp_path / 'host'
    write(root, 'etc/libvirt/libvirtd.conf', 'audit_level = 2\naudit_logging = 1\ntls_allowed_dn_list = ["C=DE,O=x,OU=admins,CN=*"]\n')
    write(root, 'etc/libvirt/qemu.conf', 'vnc_tls = 1\nvnc_tls_x509_verify = 1\nmigrate_tls_force = 1\nmigrate_tls_x509_verify = 1\n')
    write(root, 'proc/cmdline', 'root=/dev/vda1 ro audit=1\n')
    write(root, 'proc/net/tcp', '  sl  local_address rem_address   st\n')
    # the running guest "test" of libvirt's test driver, confined
    write(root, 'run/libvirt/qemu/test.pid', '4242\n')
    write(root, 'proc/4242/status', STATUS)
    write(root, 'proc/4242/attr/current', 'libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f (enforce)\n')
    write(root, 'var/lib/libvirt/images/test.qcow2', '')
    os.chmod(str(root / 'var/lib/libvirt/images/test.qcow2'), 0o600)
    os.chmod(str(root / 'var/lib/libvirt/images'), 0o711)
    monkeypatch.setattr(posture, 'HOST_ROOT', str(root))
    return root


@pytest.fixture
def commands(tmp_path, monkeypatch):
    """auditctl, nft and ip on PATH that record their arguments and answer from ANSWERS."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    calls = tmp_path / 'calls'
    for name in ('auditctl', 'nft', 'ip'):
        tool = bindir / name
        tool.write_text("""#!%s
import os, sys
ANSWERS = %r
line = ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])
with open(%r, 'a') as log:
    log.write(line + '\\n')
sys.stdout.write(ANSWERS.get(line, ''))
""" % (sys.executable, ANSWERS, str(calls)))
        tool.chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (bindir, os.environ['PATH']))
    return calls


def run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            posture.main()
    return json.loads(capsys.readouterr().out)


def snapshot(root):
    seen = {}
    for top, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            seen[path] = (st.st_mode, st.st_mtime_ns, st.st_size)
    return seen


def test_a_whole_run(host, commands, capsys):
    pytest.importorskip('libvirt')
    before = snapshot(host)
    res = run({'uri': 'test:///default'}, capsys)
    assert not res.get('failed') and res['changed'] is False, res
    assert [c['id'] for c in res['controls']] == sorted(pm.CATALOG)
    assert sum(res['summary'].values()) == len(res['controls']) == len(pm.CATALOG)
    by_id = dict((c['id'], c) for c in res['controls'])
    statuses = dict((cid, c['status']) for cid, c in by_id.items())
    assert statuses['SVK-AUD-001'] == 'pass' and statuses['SVK-AUD-002'] == 'pass' and statuses['SVK-AUD-003'] == 'pass'
    assert statuses['SVK-CNF-003'] == 'pass'  # the test driver's guest, confined in the tree
    assert statuses['SVK-CON-001'] == 'pass' and statuses['SVK-MIG-001'] == 'pass'
    assert statuses['SVK-IMG-001'] == 'fail'  # the test driver's disk declares no format
    assert statuses['SVK-NET-003'] == 'fail'  # nor a network filter
    assert statuses['SVK-STO-001'] == ('pass' if os.geteuid() == 0 else 'fail')  # the image directory must be root's
    assert statuses['SVK-TLS-001'] == 'fail' and statuses['SVK-TLS-002'] == 'fail'
    assert by_id['SVK-TLS-002']['evidence'][0] == 'not_attempted: nothing listens on TCP port 16514'
    assert statuses['SVK-MIG-002'] == 'fail' and statuses['SVK-TLS-006'] == 'not_applicable'
    assert by_id['SVK-AUD-001']['evidence'][1] == 'auditctl -l: 1 virt_* syscall rule(s), 1 virt_* file watch(es)'
    assert sorted(commands.read_text().splitlines()) == ['auditctl -l', 'auditctl -s', 'ip -j addr show', 'nft -j list ruleset']
    assert snapshot(host) == before
    assert 'diff' not in res and not res.get('warnings')


def test_check_mode_measures_the_same(host, commands, capsys):
    pytest.importorskip('libvirt')
    normal = run({'uri': 'test:///default', '_ansible_diff': True}, capsys)
    check = run({'uri': 'test:///default', '_ansible_check_mode': True, '_ansible_diff': True}, capsys)
    assert check == normal and check['changed'] is False and 'diff' not in check


def test_only_the_chosen_controls_run_and_read(host, commands, capsys):
    res = run({'controls': ['audit', 'CNF-001'], 'uri': 'test:///default'}, capsys)
    assert [c['id'] for c in res['controls']] == ['SVK-AUD-001', 'SVK-AUD-002', 'SVK-AUD-003', 'SVK-CNF-001']
    assert commands.read_text().splitlines() == ['auditctl -l', 'auditctl -s']
    assert res['summary'] == {'pass': 3, 'fail': 1, 'warn': 0, 'not_applicable': 0}  # qemu.conf has no security_driver


def test_without_libvirt_python_the_guest_controls_fail_with_the_reason(host, commands, capsys, monkeypatch):
    monkeypatch.setattr(lc, 'libvirt', None)
    monkeypatch.setattr(lc, 'HAS_LIBVIRT', False)
    res = run({'controls': ['confinement', 'IMG-001']}, capsys)
    assert not res.get('failed'), res
    by_id = dict((c['id'], c) for c in res['controls'])
    for cid in ('SVK-CNF-002', 'SVK-CNF-003', 'SVK-IMG-001'):
        assert by_id[cid]['status'] == 'fail'
        assert by_id[cid]['evidence'][0].startswith('running guests: the Python module libvirt is missing: install libvirt-python')


@pytest.mark.parametrize('args, message', [
    ({'controls': ['TLS-999']}, 'unknown control(s) TLS-999: use control IDs (SVK-AUD-001'),
    ({'tls_port': 70000}, 'tls_port must be a TCP port (1-65535), got 70000'),
    ({'image_dirs': ['images']}, 'image_dirs must be absolute paths: images'),
])
def test_bad_input_fails_before_anything_is_read(host, commands, capsys, args, message):
    res = run(args, capsys)
    assert res['failed'] and res['msg'].startswith(message), res
    assert not commands.exists()
