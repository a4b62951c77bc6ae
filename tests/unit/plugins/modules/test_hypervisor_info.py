"""hypervisor_info module: one systemctl call, the host tree, libvirt's test driver,
check mode, warnings and failures. Reads a host tree below tmp_path (HOST_ROOT)."""
import json
import os
import sys

import pytest
from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.modules import hypervisor_info

# what systemd 252 answers per unit; any other unit is not-found
UNITS = {
    'apparmor.service': ('loaded', 'active', 'enabled'),
    'libvirtd.service': ('loaded', 'active', 'enabled'),
    'virtqemud.socket': ('loaded', 'inactive', 'disabled'),
}
STATUS = "Name:\tqemu-system-x86\nUid:\t64055\t64055\t64055\t64055\nCapEff:\t0000000000000000\nSeccomp:\t2\n"


def warnings(res):
    """The texts of a result's warnings (ansible-core 2.19 wraps each in a summary object)."""
    return [w['event']['msg'] if isinstance(w, dict) else w for w in res.get('warnings', [])]


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(ansible_warnings, '_global_warnings', {})
    monkeypatch.setattr(ansible_internal, 'is_controller', False)


def write(root, relative, text):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


def link(root, relative, target):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


@pytest.fixture
def host(tmp_path, monkeypatch):
    root = tmp_path / 'host'
    root.mkdir()
    monkeypatch.setattr(hypervisor_info, 'HOST_ROOT', str(root))
    return root


@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    """A systemctl on PATH that records its arguments and answers like systemctl show (or fails)."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    calls = tmp_path / 'systemctl.calls'
    tool = bindir / 'systemctl'
    tool.write_text("""#!%s
import os, sys
UNITS = %r
with open(%r, 'a') as log:
    log.write(' '.join(sys.argv[1:]) + '\\n')
if os.environ.get('SHORT'):  # an answer that does not match the units asked
    sys.exit(0)
if os.environ.get('FAIL'):
    sys.stderr.write(os.environ['FAIL'] + '\\n')
    sys.exit(1)
blocks = []
for unit in sys.argv[sys.argv.index('--') + 1:]:
    load, active, file_state = UNITS.get(unit, ('not-found', 'inactive', ''))
    blocks.append('Id=%%s\\nLoadState=%%s\\nActiveState=%%s\\nUnitFileState=%%s\\n' %% (unit, load, active, file_state))
sys.stdout.write('\\n'.join(blocks))
""" % (sys.executable, UNITS, str(calls)))
    tool.chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (bindir, os.environ['PATH']))
    return calls


def run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            hypervisor_info.main()
    return json.loads(capsys.readouterr().out)


def snapshot(root):
    """Every path below root with its content (or link target) and mtime."""
    seen = {}
    for top, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(top, name)
            if os.path.islink(path):
                seen[path] = ('link', os.readlink(path))
            elif os.path.isdir(path):
                seen[path] = ('dir', os.stat(path).st_mtime_ns)
            else:
                with open(path, 'rb') as handle:
                    seen[path] = ('file', handle.read(), os.stat(path).st_mtime_ns)
    return seen


def hardened_host(root):
    write(root, 'sys/kernel/security/lsm', 'lockdown,capability,landlock,yama,apparmor')
    write(root, 'sys/module/apparmor/parameters/enabled', 'Y\n')
    write(root, 'sys/kernel/security/apparmor/profiles', 'libvirtd (enforce)\n')
    write(root, 'sys/kernel/mm/ksm/run', '0\n')
    write(root, 'proc/sys/kernel/kptr_restrict', '2\n')
    write(root, 'proc/sys/net/ipv4/ip_forward', '1\n')
    write(root, 'etc/sysctl.d/60-secvirt.conf', 'net.ipv4.ip_forward = 0\n')
    link(root, 'dev/kvm', '/dev/null')
    # the running guest "test" of libvirt's test driver, confined
    write(root, 'run/libvirt/qemu/test.pid', '4242\n')
    write(root, 'proc/4242/status', STATUS)
    write(root, 'proc/4242/attr/current', 'libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f (enforce)\n')
    link(root, 'proc/4242/ns/mnt', 'mnt:[4026532561]')
    link(root, 'proc/1/ns/mnt', 'mnt:[4026531841]')


ARGS = {'uri': 'test:///default', 'services': ['apparmor.service'],
        'sysctls': {'kernel.kptr_restrict': 2, 'net.ipv4.ip_forward': '1'},
        'own_sysctl_file': '/etc/sysctl.d/60-secvirt.conf'}


def test_one_systemctl_call_and_the_whole_result(host, systemctl, capsys):
    hardened_host(host)
    before = snapshot(host)
    res = run(dict(ARGS), capsys)
    assert not res.get('failed') and res['changed'] is False, res
    assert systemctl.read_text().splitlines() == [
        'show --property=Id,LoadState,ActiveState,UnitFileState -- apparmor.service libvirtd.service virtqemud.socket']
    assert res['services'] == [{'name': 'apparmor.service', 'load_state': 'loaded', 'active_state': 'active',
                                'unit_file_state': 'enabled'}]
    assert res['daemon_layout'] == 'monolithic'
    assert res['sysctl_current'] == {'kernel.kptr_restrict': '2', 'net.ipv4.ip_forward': '1'}
    assert res['sysctl_differs'] == []
    assert res['lsm'][-1] == 'apparmor' and res['apparmor'] == {'enabled': True, 'profiles': {'libvirtd': 'enforce'}}
    assert res['selinux'] == {'enabled': False, 'enforcing': None}
    assert res['security_driver'] == 'apparmor' and res['security_driver_error'] is None
    assert res['accel'] == 'kvm' and res['kvm_nested'] == {'kvm_intel': None, 'kvm_amd': None}
    assert res['ksm_run'] == 0
    assert res['forwarding_sysctl_conflicts'] == []  # the own file is left out
    assert res['forwarding_networks'] == [{'name': 'default', 'forward': 'nat', 'active': True, 'autostart': False}]
    assert res['guests'] == [{'name': 'test', 'uuid': '6695eb01-f6a4-8304-79aa-97f2502e193f', 'pid': 4242,
                              'uid': 64055, 'seccomp': 2, 'cap_eff': '0000000000000000',
                              'lsm_label': 'libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f (enforce)',
                              'own_mount_ns': True, 'confined': True}]
    assert res['unconfined_guests'] == [] and res['libvirt_error'] is None
    assert warnings(res) == []
    assert 'diff' not in res
    assert snapshot(host) == before


def test_check_mode_reads_the_same_and_writes_nothing(host, systemctl, capsys):
    hardened_host(host)
    before = snapshot(host)
    normal = run(dict(ARGS, _ansible_diff=True), capsys)
    check = run(dict(ARGS, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert check == normal and check['changed'] is False and 'diff' not in check
    assert len(systemctl.read_text().splitlines()) == 2
    assert snapshot(host) == before


def test_warnings_for_tcg_and_unconfined_guests(host, systemctl, capsys):
    res = run({'uri': 'test:///default'}, capsys)
    assert not res.get('failed'), res
    assert res['services'] == [] and res['accel'] == 'tcg' and res['unconfined_guests'] == ['test']
    assert res['security_driver'] is None and res['security_driver_error'].startswith('no usable LSM')
    assert warnings(res) == [
        'no /dev/kvm: guests run under software emulation (TCG) only',
        'running guests not confined by the baseline (LSM label, seccomp, non-root uid, no capabilities): test; '
        'they must be restarted to run under the baseline']


def test_forwarding_conflicts_and_differing_sysctls(host, systemctl, capsys):
    hardened_host(host)
    write(host, 'usr/lib/sysctl.d/50-cis.conf', 'net.ipv4.ip_forward=0\n')
    res = run(dict(ARGS, own_sysctl_file='', sysctls={'kernel.kptr_restrict': 1}), capsys)
    assert res['forwarding_sysctl_conflicts'] == [
        {'path': '/usr/lib/sysctl.d/50-cis.conf', 'line': 1, 'key': 'net.ipv4.ip_forward', 'value': '0'},
        {'path': '/etc/sysctl.d/60-secvirt.conf', 'line': 1, 'key': 'net.ipv4.ip_forward', 'value': '0'}]
    assert res['sysctl_differs'] == ['kernel.kptr_restrict']


def test_without_libvirt_python_the_libvirt_part_is_empty(host, systemctl, capsys, monkeypatch):
    monkeypatch.setattr(lc, 'libvirt', None)
    monkeypatch.setattr(lc, 'HAS_LIBVIRT', False)
    res = run({'security_driver': 'none', 'security_driver_none_reason': 'lab host'}, capsys)
    assert not res.get('failed'), res
    assert res['forwarding_networks'] == [] and res['guests'] == [] and res['unconfined_guests'] == []
    assert 'python3-libvirt' in res['libvirt_error']
    assert res['security_driver'] == 'none' and res['security_driver_error'] is None


def test_requested_layout_units_are_returned_and_queried_once(host, systemctl, capsys):
    res = run({'uri': 'test:///default', 'services': ['nosuch.service', 'libvirtd.service']}, capsys)
    assert systemctl.read_text().split(' -- ')[1].split() == ['nosuch.service', 'libvirtd.service', 'virtqemud.socket']
    assert res['services'] == [
        {'name': 'nosuch.service', 'load_state': 'not-found', 'active_state': 'inactive', 'unit_file_state': ''},
        {'name': 'libvirtd.service', 'load_state': 'loaded', 'active_state': 'active', 'unit_file_state': 'enabled'}]


def test_without_systemctl(host, capsys, monkeypatch):
    monkeypatch.setattr(hypervisor_info.AnsibleModule, 'get_bin_path', lambda self, *a, **k: None)
    res = run({}, capsys)
    assert res['failed'] and res['msg'].startswith('systemctl not found')


def test_systemctl_failure_is_reported(host, systemctl, capsys, monkeypatch):
    monkeypatch.setenv('FAIL', 'System has not been booted with systemd as init system (PID 1). Can\'t operate.')
    res = run({}, capsys)
    assert res['failed'] and res['rc'] == 1
    assert res['msg'] == "systemctl show failed: System has not been booted with systemd as init system (PID 1). Can't operate."


def test_a_systemctl_answer_that_does_not_match_fails(host, systemctl, capsys, monkeypatch):
    monkeypatch.setenv('SHORT', '1')
    res = run({}, capsys)
    assert res['failed'] and res['msg'] == 'systemctl show answered 0 unit(s) for the 2 asked (libvirtd.service, virtqemud.socket)'


def test_bad_input_fails(host, systemctl, capsys):
    res = run({'sysctls': {'net/../../etc/shadow': 1}}, capsys)
    assert res['failed'] and res['msg'] == "invalid sysctl key 'net/../../etc/shadow'"
    res = run({'security_driver': 'smack'}, capsys)
    assert res['failed'] and 'security_driver' in res['msg']
    assert not systemctl.exists()  # refused before anything ran
