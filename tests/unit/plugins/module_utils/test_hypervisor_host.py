"""Unit tests for plugins/module_utils/hypervisor_host.py: a host tree below tmp_path,
libvirt's own test driver (test:///default) and small fakes for libvirt's failures."""
import os

import libvirt
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import hypervisor_host as hh
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc

from libvirt_fakes import FakeError, FakeLibvirtModule

# systemd 252 (Debian 12): a running monolithic libvirt, a unit that does not
# exist, a masked one, and the modular socket that Debian 12 ships disabled
SYSTEMCTL_OUTPUT = """Id=apparmor.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled

Id=nosuch.service
LoadState=not-found
ActiveState=inactive
UnitFileState=

Id=ksm.service
LoadState=masked
ActiveState=inactive
UnitFileState=masked

Id=libvirtd.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled

Id=virtqemud.socket
LoadState=loaded
ActiveState=inactive
UnitFileState=disabled
"""
UNITS = ['apparmor.service', 'nosuch.service', 'ksm.service', 'libvirtd.service', 'virtqemud.socket']

QEMU_STATUS = """Name:\tqemu-system-x86
Umask:\t0007
State:\tS (sleeping)
Tgid:\t4242
Pid:\t4242
PPid:\t1
Uid:\t64055\t64055\t64055\t64055
Gid:\t108\t108\t108\t108
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
CapBnd:\t000001ffffffffff
NoNewPrivs:\t0
Seccomp:\t2
Seccomp_filters:\t1
"""
TEST_UUID = '6695eb01-f6a4-8304-79aa-97f2502e193f'  # the running guest "test" of libvirt's test driver


def write(root, relative, text):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    return path


def link(root, relative, target):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


# ---------------------------------------------------------------- systemctl

def test_units_to_query_adds_the_layout_units_once():
    assert hh.units_to_query([]) == ['libvirtd.service', 'virtqemud.socket']
    assert hh.units_to_query(['ssh.service', 'libvirtd.service', 'ssh.service']) == [
        'ssh.service', 'libvirtd.service', 'virtqemud.socket']
    assert hh.systemctl_show_argv('/usr/bin/systemctl', ['a.service']) == [
        '/usr/bin/systemctl', 'show', '--property=Id,LoadState,ActiveState,UnitFileState', '--', 'a.service']


def test_parse_systemctl_show_maps_blocks_in_order():
    states = hh.parse_systemctl_show(SYSTEMCTL_OUTPUT, UNITS)
    assert states['apparmor.service'] == {'name': 'apparmor.service', 'load_state': 'loaded',
                                          'active_state': 'active', 'unit_file_state': 'enabled'}
    assert states['nosuch.service'] == {'name': 'nosuch.service', 'load_state': 'not-found',
                                        'active_state': 'inactive', 'unit_file_state': ''}
    assert states['ksm.service']['unit_file_state'] == 'masked'
    assert hh.daemon_layout(states) == 'monolithic'


def test_parse_systemctl_show_keys_by_the_asked_name_not_the_id():
    # an alias answers with the unit's real Id; blocks are matched by position
    text = "Id=dbus-broker.service\nLoadState=loaded\nActiveState=active\nUnitFileState=alias\n\n\n"
    states = hh.parse_systemctl_show(text, ['dbus.service'])
    assert states['dbus.service']['name'] == 'dbus.service'
    assert states['dbus.service']['unit_file_state'] == 'alias'


def test_parse_systemctl_show_tolerates_missing_properties_and_noise():
    text = "Id=a.service\nLoadState=loaded\nnot a property\n\n\nId=b.service\n"
    states = hh.parse_systemctl_show(text, ['a.service', 'b.service'])
    assert states['a.service']['active_state'] == '' and states['a.service']['load_state'] == 'loaded'
    assert states['b.service'] == {'name': 'b.service', 'load_state': '', 'active_state': '', 'unit_file_state': ''}


def test_parse_systemctl_show_refuses_a_short_answer():
    with pytest.raises(hh.HostInfoError, match=r'answered 1 unit\(s\) for the 2 asked \(a.service, b.service\)'):
        hh.parse_systemctl_show("Id=a.service\nLoadState=loaded\n", ['a.service', 'b.service'])
    with pytest.raises(hh.HostInfoError, match='answered 0'):
        hh.parse_systemctl_show('', ['a.service'])


def state(unit_file_state):
    return {'unit_file_state': unit_file_state}


@pytest.mark.parametrize('libvirtd,virtqemud,layout', [
    ('enabled', 'enabled', 'monolithic'),
    ('static', '', 'monolithic'),
    ('indirect', 'disabled', 'monolithic'),
    ('alias', 'disabled', 'monolithic'),
    ('disabled', 'enabled', 'modular'),
    ('masked', 'enabled', 'modular'),
    ('', 'enabled', 'modular'),
    ('disabled', 'disabled', 'none'),
    ('', '', 'none'),
    ('masked', 'static', 'none'),
])
def test_daemon_layout(libvirtd, virtqemud, layout):
    states = {'libvirtd.service': state(libvirtd), 'virtqemud.socket': state(virtqemud)}
    assert hh.daemon_layout(states) == layout


def test_daemon_layout_without_the_units():
    assert hh.daemon_layout({}) == 'none'


# ---------------------------------------------------------------- sysctls

@pytest.mark.parametrize('key,dotted,relpath', [
    ('net.ipv4.ip_forward', 'net.ipv4.ip_forward', 'proc/sys/net/ipv4/ip_forward'),
    ('net/ipv4/ip_forward', 'net.ipv4.ip_forward', 'proc/sys/net/ipv4/ip_forward'),
    ('/net/ipv4/ip_forward', 'net.ipv4.ip_forward', 'proc/sys/net/ipv4/ip_forward'),
    (' kernel.kptr_restrict ', 'kernel.kptr_restrict', 'proc/sys/kernel/kptr_restrict'),
    # a VLAN interface: '/' separates, the dot belongs to the name
    ('net/ipv4/conf/eth0.100/forwarding', 'net.ipv4.conf.eth0/100.forwarding',
     'proc/sys/net/ipv4/conf/eth0.100/forwarding'),
    ('net.ipv4.conf.eth0/100.forwarding', 'net.ipv4.conf.eth0/100.forwarding',
     'proc/sys/net/ipv4/conf/eth0.100/forwarding'),
])
def test_sysctl_key_forms(key, dotted, relpath):
    assert hh.normalize_sysctl_key(key) == dotted
    assert hh.sysctl_relpath(key) == relpath


@pytest.mark.parametrize('key', ['', '.', 'net..ipv4', 'net/../../etc/shadow', 'net.ipv4/../x', 'a\0b'])
def test_sysctl_relpath_refuses_what_is_not_a_key(key):
    with pytest.raises(hh.HostInfoError, match='invalid sysctl key'):
        hh.sysctl_relpath(key)


def test_wanted_value():
    assert hh.wanted_value(True) == '1' and hh.wanted_value(False) == '0'
    assert hh.wanted_value(2) == '2'
    assert hh.wanted_value(' 32768\t 60999 ') == '32768 60999'


def test_read_sysctls(tmp_path):
    write(tmp_path, 'proc/sys/net/ipv4/ip_forward', '0\n')
    write(tmp_path, 'proc/sys/kernel/kptr_restrict', '2\n')
    write(tmp_path, 'proc/sys/net/ipv4/ip_local_port_range', '32768\t60999\n')
    write(tmp_path, 'proc/sys/kernel/unprivileged_bpf_disabled', '1\n')
    write(tmp_path, 'proc/sys/net/ipv4/conf/eth0.100/forwarding', '1\n')
    current, differs = hh.read_sysctls({
        'net.ipv4.ip_forward': 1,
        'kernel.kptr_restrict': '2',
        'net/ipv4/ip_local_port_range': '32768 60999',
        'kernel.unprivileged_bpf_disabled': True,
        'net/ipv4/conf/eth0.100/forwarding': 1,
        'kernel.no_such_key': 1,
    }, root=str(tmp_path))
    assert current == {
        'net.ipv4.ip_forward': '0',
        'kernel.kptr_restrict': '2',
        'net/ipv4/ip_local_port_range': '32768 60999',
        'kernel.unprivileged_bpf_disabled': '1',
        'net/ipv4/conf/eth0.100/forwarding': '1',
        'kernel.no_such_key': None,
    }
    assert differs == ['kernel.no_such_key', 'net.ipv4.ip_forward']
    assert hh.read_sysctls({}, root=str(tmp_path)) == ({}, [])
    with pytest.raises(hh.HostInfoError, match='invalid sysctl key'):
        hh.read_sysctls({'../../etc/shadow': 1}, root=str(tmp_path))


# ---------------------------------------------------------------- sysctl files and forwarding

def test_sysctl_lines_skip_comments_and_accept_both_key_forms():
    text = ("# comment\n; comment\n\n   \nnet.ipv4.ip_forward = 1\n-net/ipv6/conf/all/forwarding=0\n"
            "no assignment here\n  kernel.sysrq =  16 \n")
    assert list(hh.sysctl_lines(text)) == [
        (5, 'net.ipv4.ip_forward', '1'),
        (6, 'net.ipv6.conf.all.forwarding', '0'),
        (8, 'kernel.sysrq', '16'),
    ]


def test_sysctl_files_masking_order_and_own_file(tmp_path):
    root = str(tmp_path)
    write(root, 'usr/lib/sysctl.d/50-default.conf', 'x=1\n')
    write(root, 'usr/lib/sysctl.d/10-vendor.conf', 'x=1\n')
    write(root, 'lib/sysctl.d/10-vendor.conf', 'x=1\n')            # masked by /usr/lib
    write(root, 'run/sysctl.d/50-default.conf', 'x=1\n')           # masks /usr/lib's 50-default
    write(root, 'usr/local/lib/sysctl.d/20-local.conf', 'x=1\n')
    write(root, 'etc/sysctl.d/README', 'not a .conf\n')
    os.makedirs(os.path.join(root, 'etc/sysctl.d/30-dir.conf'))  # a directory does not count
    write(root, 'usr/lib/sysctl.d/30-dir.conf', 'x=1\n')
    link(root, 'etc/sysctl.d/40-masked.conf', '/dev/null')         # masks, is not read
    write(root, 'usr/lib/sysctl.d/40-masked.conf', 'x=1\n')
    write(root, 'usr/lib/sysctl.d/60-secvirt.conf', 'x=1\n')       # masked by the own file
    write(root, 'etc/sysctl.conf', 'x=1\n')
    link(root, 'etc/sysctl.d/99-sysctl.conf', '../sysctl.conf')    # Debian's link: read once, last
    files = hh.sysctl_files(root)
    assert files == ['/usr/lib/sysctl.d/10-vendor.conf', '/usr/local/lib/sysctl.d/20-local.conf',
                     '/usr/lib/sysctl.d/30-dir.conf', '/run/sysctl.d/50-default.conf',
                     '/usr/lib/sysctl.d/60-secvirt.conf', '/etc/sysctl.conf']
    own = hh.sysctl_files(root, '/etc/sysctl.d/60-secvirt.conf')
    assert own == [f for f in files if f != '/usr/lib/sysctl.d/60-secvirt.conf']
    write(root, 'etc/sysctl.d/60-secvirt.conf', 'x=1\n')
    assert hh.sysctl_files(root, '/etc/sysctl.d//60-secvirt.conf') == own
    assert '/etc/sysctl.conf' not in hh.sysctl_files(root, '/etc/sysctl.conf')
    assert hh.sysctl_files(str(tmp_path / 'empty')) == []


def conflicts(root, files, own=''):
    for relative, text in files.items():
        write(root, relative, text)
    return [(c['path'], c['line'], c['key'], c['value']) for c in hh.forwarding_sysctl_conflicts(str(root), own)]


def test_forwarding_zero_is_reported_with_its_line(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.d/99-hardening.conf': '# no routing\nnet.ipv4.ip_forward = 0\n'}) == [
        ('/etc/sysctl.d/99-hardening.conf', 2, 'net.ipv4.ip_forward', '0')]
    found = hh.forwarding_sysctl_conflicts(str(tmp_path))
    assert found == [{'path': '/etc/sysctl.d/99-hardening.conf', 'line': 2, 'key': 'net.ipv4.ip_forward', 'value': '0'}]


def test_forwarding_without_files_or_with_ones_only(tmp_path):
    assert conflicts(tmp_path, {}) == []
    assert conflicts(tmp_path, {'usr/lib/sysctl.d/50-x.conf': 'net.ipv4.ip_forward=1\nnet.ipv6.conf.all.forwarding=1\n'
                                                              'net.ipv4.conf.default.forwarding=0\n'}) == []


def test_a_later_file_setting_one_overrides_earlier_zeros(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 0\n',
                                'usr/lib/sysctl.d/20-b.conf': 'net.ipv4.ip_forward = 1\n'}) == []


def test_a_later_zero_overrides_an_earlier_one(tmp_path):
    assert conflicts(tmp_path, {'usr/lib/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 1\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.ip_forward = 0\n'}) == [
        ('/etc/sysctl.d/20-b.conf', 1, 'net.ipv4.ip_forward', '0')]


def test_every_zero_after_the_last_one_is_reported(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 0\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.ip_forward = 1\n',
                                'etc/sysctl.d/30-c.conf': 'net.ipv4.ip_forward = 0\n',
                                'run/sysctl.d/40-d.conf': 'net.ipv4.ip_forward = 00\n'}) == [
        ('/etc/sysctl.d/30-c.conf', 1, 'net.ipv4.ip_forward', '0'),
        ('/run/sysctl.d/40-d.conf', 1, 'net.ipv4.ip_forward', '00')]


def test_etc_sysctl_conf_is_applied_last(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.conf': 'net.ipv6.conf.all.forwarding = 0\n',
                                'etc/sysctl.d/zz-last.conf': 'net.ipv6.conf.all.forwarding = 1\n'}) == [
        ('/etc/sysctl.conf', 1, 'net.ipv6.conf.all.forwarding', '0')]


def test_debian_link_to_sysctl_conf_is_read_once(tmp_path):
    link(tmp_path, 'etc/sysctl.d/99-sysctl.conf', '../sysctl.conf')
    assert conflicts(tmp_path, {'etc/sysctl.conf': 'net.ipv4.ip_forward=0\n'}) == [
        ('/etc/sysctl.conf', 1, 'net.ipv4.ip_forward', '0')]


def test_a_masked_file_does_not_count(tmp_path):
    link(tmp_path, 'etc/sysctl.d/50-router-off.conf', '/dev/null')
    assert conflicts(tmp_path, {'usr/lib/sysctl.d/50-router-off.conf': 'net.ipv4.ip_forward = 0\n',
                                'usr/lib/sysctl.d/60-other.conf': 'net.ipv6.conf.all.forwarding = 0\n',
                                'lib/sysctl.d/60-other.conf': 'net.ipv4.ip_forward = 0\n'}) == [
        ('/usr/lib/sysctl.d/60-other.conf', 1, 'net.ipv6.conf.all.forwarding', '0')]


def test_the_own_file_is_left_out_and_keeps_masking(tmp_path):
    own = '/etc/sysctl.d/60-secvirt.conf'
    files = {'etc/sysctl.d/60-secvirt.conf': 'net.ipv4.ip_forward = 0\n',
             'usr/lib/sysctl.d/60-secvirt.conf': 'net.ipv6.conf.all.forwarding = 0\n'}
    assert conflicts(tmp_path, files, own) == []
    assert conflicts(tmp_path, {}) == [('/etc/sysctl.d/60-secvirt.conf', 1, 'net.ipv4.ip_forward', '0')]
    # the role has not written it yet: its name already masks the vendor file
    os.remove(os.path.join(str(tmp_path), 'etc/sysctl.d/60-secvirt.conf'))
    assert conflicts(tmp_path, {}, own) == []
    assert conflicts(tmp_path, {}) == [('/usr/lib/sysctl.d/60-secvirt.conf', 1, 'net.ipv6.conf.all.forwarding', '0')]


def test_ip_forward_and_conf_all_forwarding_are_one_switch(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 0\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.conf.all.forwarding = 1\n'
                                                          'net.ipv6.conf.all.forwarding = 0\n'}) == [
        ('/etc/sysctl.d/20-b.conf', 2, 'net.ipv6.conf.all.forwarding', '0')]


def test_both_ipv4_keys_at_zero_are_both_reported(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 0\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.conf.all.forwarding = 0\n'}) == [
        ('/etc/sysctl.d/10-a.conf', 1, 'net.ipv4.ip_forward', '0'),
        ('/etc/sysctl.d/20-b.conf', 1, 'net.ipv4.conf.all.forwarding', '0')]


def test_a_repeated_identical_value_keeps_its_first_place(tmp_path):
    # systemd-sysctl keeps a key's first place when a later file sets the same
    # value: ip_forward=0 is applied before conf.all.forwarding=1, which wins
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 0\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.conf.all.forwarding = 1\n',
                                'etc/sysctl.d/30-c.conf': 'net.ipv4.ip_forward = 0\n'}) == []


def test_the_effective_zero_is_reported_even_before_a_repeated_one(tmp_path):
    # the converse: ip_forward=1 keeps its first place, conf.all.forwarding=0 is written after it and wins
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 1\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.conf.all.forwarding = 0\n',
                                'etc/sysctl.d/30-c.conf': 'net.ipv4.ip_forward = 1\n'}) == [
        ('/etc/sysctl.d/20-b.conf', 1, 'net.ipv4.conf.all.forwarding', '0')]


def test_slash_keys_dash_prefix_and_comments(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': '# net.ipv4.ip_forward = 0\n; net.ipv4.ip_forward = 0\n'
                                                          '-net/ipv6/conf/all/forwarding = 0\n'}) == [
        ('/etc/sysctl.d/10-a.conf', 3, 'net.ipv6.conf.all.forwarding', '0')]


def test_a_value_the_kernel_refuses_does_not_count(tmp_path):
    # conf.all.forwarding = off is refused by the kernel: ip_forward's 0 stays in force
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 0\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.conf.all.forwarding = off\n'}) == [
        ('/etc/sysctl.d/10-a.conf', 1, 'net.ipv4.ip_forward', '0')]


def test_a_later_assignment_of_the_same_key_replaces_the_zero(tmp_path):
    # systemd-sysctl writes only the last assignment of a key: the 0 is never
    # written, even though the kernel refuses the value that replaced it
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.ip_forward = 0\n',
                                'etc/sysctl.d/20-b.conf': 'net.ipv4.ip_forward = off\n'}) == []


def test_a_glob_counts_unless_the_key_is_set_by_name(tmp_path):
    assert conflicts(tmp_path, {'etc/sysctl.d/10-a.conf': 'net.ipv4.conf.*.forwarding = 0\n'}) == [
        ('/etc/sysctl.d/10-a.conf', 1, 'net.ipv4.conf.*.forwarding', '0')]
    # an explicit setting wins over the glob wherever it is
    assert conflicts(tmp_path, {'etc/sysctl.d/05-b.conf': 'net.ipv4.conf.all.forwarding = 1\n'}) == []


# ---------------------------------------------------------------- LSMs and the security driver

def test_lsm_list(tmp_path):
    assert hh.lsm_list(str(tmp_path)) == []
    write(tmp_path, 'sys/kernel/security/lsm', 'lockdown,capability,landlock,yama,apparmor,tomoyo')
    assert hh.lsm_list(str(tmp_path)) == ['lockdown', 'capability', 'landlock', 'yama', 'apparmor', 'tomoyo']


def test_apparmor_profiles(tmp_path):
    assert hh.apparmor_profiles(str(tmp_path)) == {}
    write(tmp_path, 'sys/kernel/security/apparmor/profiles',
          'libvirtd (enforce)\n/usr/sbin/foo (complain)\nlibvirtd//qemu_bridge_helper (enforce)\n'
          'libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f (enforce)\nname with space (kill)\ngarbage\n')
    assert hh.apparmor_profiles(str(tmp_path)) == {
        'libvirtd': 'enforce', '/usr/sbin/foo': 'complain', 'libvirtd//qemu_bridge_helper': 'enforce',
        'libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f': 'enforce', 'name with space': 'kill'}


@pytest.mark.parametrize('param,lsm,enabled', [
    ('Y', 'capability,apparmor', True),
    ('Y', 'capability,selinux', False),   # enabled parameter, but another major LSM runs
    ('Y', None, True),                    # the LSM list is unreadable: the parameter decides
    ('N', 'capability,apparmor', False),
    (None, 'capability,apparmor', False),
])
def test_apparmor_state(tmp_path, param, lsm, enabled):
    if param is not None:
        write(tmp_path, 'sys/module/apparmor/parameters/enabled', param + '\n')
    if lsm is not None:
        write(tmp_path, 'sys/kernel/security/lsm', lsm)
    got = hh.apparmor_state(str(tmp_path))
    assert got == {'enabled': enabled, 'profiles': {}}
    assert hh.apparmor_state(str(tmp_path), hh.lsm_list(str(tmp_path))) == got


def test_selinux_state(tmp_path):
    assert hh.selinux_state(str(tmp_path)) == {'enabled': False, 'enforcing': None}
    write(tmp_path, 'sys/fs/selinux/enforce', '1')
    assert hh.selinux_state(str(tmp_path)) == {'enabled': True, 'enforcing': True}
    write(tmp_path, 'sys/fs/selinux/enforce', '0')
    assert hh.selinux_state(str(tmp_path)) == {'enabled': True, 'enforcing': False}


AA_ON = {'enabled': True, 'profiles': {}}
AA_OFF = {'enabled': False, 'profiles': {}}
SE_OFF = {'enabled': False, 'enforcing': None}
SE_ENFORCING = {'enabled': True, 'enforcing': True}
SE_PERMISSIVE = {'enabled': True, 'enforcing': False}
SE_UNKNOWN = {'enabled': True, 'enforcing': None}


@pytest.mark.parametrize('requested,apparmor,selinux,reason,driver,error', [
    ('auto', AA_OFF, SE_ENFORCING, '', 'selinux', None),
    ('auto', AA_ON, SE_ENFORCING, '', 'selinux', None),
    ('auto', AA_ON, SE_OFF, '', 'apparmor', None),
    ('auto', AA_ON, SE_PERMISSIVE, '', 'apparmor', None),
    ('auto', AA_OFF, SE_PERMISSIVE, '', None, 'no usable LSM: AppArmor is not enabled in this kernel and '
                                              'SELinux is not enforcing; refusing to run guests unconfined'),
    ('auto', AA_OFF, SE_OFF, 'lab only', None, 'no usable LSM'),
    ('apparmor', AA_ON, SE_OFF, '', 'apparmor', None),
    ('apparmor', AA_OFF, SE_ENFORCING, '', None, 'security_driver apparmor: AppArmor is not enabled in this kernel; '
                                                 'libvirt 9.0 fails to start with a security driver whose LSM'),
    ('selinux', AA_OFF, SE_ENFORCING, '', 'selinux', None),
    ('selinux', AA_ON, SE_OFF, '', None, 'security_driver selinux: SELinux is not enabled on this host; '
                                         'libvirt 9.0 fails to start'),
    ('selinux', AA_OFF, SE_PERMISSIVE, '', None, 'SELinux is permissive, so the sVirt labels would not be enforced'),
    ('selinux', AA_OFF, SE_UNKNOWN, '', None, 'cannot read whether SELinux is enforcing'),
    ('none', AA_ON, SE_OFF, '', None, 'security_driver none runs every guest without LSM confinement; '
                                      'it needs security_driver_none_reason'),
    ('none', AA_ON, SE_OFF, '   ', None, 'needs security_driver_none_reason'),
    ('none', AA_ON, SE_OFF, 'nested test host without an LSM', 'none', None),
    ('none', AA_OFF, SE_OFF, 'ticket 42', 'none', None),
])
def test_choose_security_driver(requested, apparmor, selinux, reason, driver, error):
    got_driver, got_error = hh.choose_security_driver(requested, apparmor, selinux, reason)
    assert got_driver == driver
    if error is None:
        assert got_error is None
    else:
        assert got_error.startswith(error) or error in got_error, got_error
        assert got_error.endswith('.')  # the role appends "Nothing was changed."
        # names and states only: never the operator's reason
        assert not reason.strip() or reason not in got_error


def test_choose_security_driver_refuses_an_unknown_driver():
    with pytest.raises(hh.HostInfoError, match="security_driver must be one of auto, apparmor, selinux, none, got 'smack'"):
        hh.choose_security_driver('smack', AA_ON, SE_OFF)


# ---------------------------------------------------------------- KVM, KSM

def test_accel(tmp_path):
    assert hh.accel(str(tmp_path)) == 'tcg'
    write(tmp_path, 'dev/kvm', '')                  # a regular file is no device
    assert hh.accel(str(tmp_path)) == 'tcg'
    os.remove(os.path.join(str(tmp_path), 'dev/kvm'))
    link(tmp_path, 'dev/kvm', '/dev/null')          # a character device
    assert hh.accel(str(tmp_path)) == 'kvm'


def test_kvm_nested(tmp_path):
    assert hh.kvm_nested(str(tmp_path)) == {'kvm_intel': None, 'kvm_amd': None}
    for value, expected in (('Y\n', 'Y'), ('N\n', 'N'), ('1\n', 'Y'), ('0\n', 'N'), ('maybe\n', None)):
        write(tmp_path, 'sys/module/kvm_intel/parameters/nested', value)
        assert hh.kvm_nested(str(tmp_path)) == {'kvm_intel': expected, 'kvm_amd': None}
    write(tmp_path, 'sys/module/kvm_amd/parameters/nested', '1\n')
    assert hh.kvm_nested(str(tmp_path))['kvm_amd'] == 'Y'


def test_ksm_run(tmp_path):
    assert hh.ksm_run(str(tmp_path)) is None
    write(tmp_path, 'sys/kernel/mm/ksm/run', '1\n')
    assert hh.ksm_run(str(tmp_path)) == 1
    write(tmp_path, 'sys/kernel/mm/ksm/run', 'x\n')
    assert hh.ksm_run(str(tmp_path)) is None


# ---------------------------------------------------------------- guests

def test_parse_proc_status():
    assert hh.parse_proc_status(QEMU_STATUS) == {'uid': 64055, 'seccomp': 2, 'cap_eff': '0000000000000000'}
    assert hh.parse_proc_status('') == {'uid': None, 'seccomp': None, 'cap_eff': None}
    assert hh.parse_proc_status(None) == {'uid': None, 'seccomp': None, 'cap_eff': None}
    assert hh.parse_proc_status('no colon here\nUid:\t0\n') == {'uid': None, 'seccomp': None, 'cap_eff': None}
    assert hh.parse_proc_status('Uid:\t1000\t0\t0\t0\nCapEff:\tzz\nSeccomp:\tx\n') == {
        'uid': 0, 'seccomp': None, 'cap_eff': None}


@pytest.mark.parametrize('label,unconfined', [
    (None, True),
    ('', True),
    ('unconfined', True),
    ('libvirt-6695eb01 (complain)', True),
    ('libvirt-6695eb01 (unconfined)', True),
    ('unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023', True),
    ('libvirt-6695eb01 (enforce)', False),
    ('system_u:system_r:svirt_t:s0:c392,c662', False),
])
def test_is_unconfined_label(label, unconfined):
    assert hh.is_unconfined_label(label) is unconfined


def qemu_process(root, name='web01', pid=4242, status=QEMU_STATUS, label='libvirt-6695eb01 (enforce)\n',
                 mnt='mnt:[4026532561]', init_mnt='mnt:[4026531841]'):
    write(root, 'run/libvirt/qemu/%s.pid' % name, '%s\n' % pid)
    if status is not None:
        write(root, 'proc/%s/status' % pid, status)
    if label is not None:
        write(root, 'proc/%s/attr/current' % pid, label)
    if mnt is not None:
        link(root, 'proc/%s/ns/mnt' % pid, mnt)
    if init_mnt is not None and not os.path.lexists(os.path.join(str(root), 'proc/1/ns/mnt')):
        link(root, 'proc/1/ns/mnt', init_mnt)


def test_a_confined_guest(tmp_path):
    qemu_process(tmp_path)
    assert hh.guest_process(str(tmp_path), 'web01', TEST_UUID) == {
        'name': 'web01', 'uuid': TEST_UUID, 'pid': 4242, 'uid': 64055, 'seccomp': 2, 'cap_eff': '0000000000000000',
        'lsm_label': 'libvirt-6695eb01 (enforce)', 'own_mount_ns': True, 'confined': True}


def test_an_selinux_label_keeps_no_trailing_nul(tmp_path):
    qemu_process(tmp_path, label='system_u:system_r:svirt_t:s0:c392,c662\0')
    guest = hh.guest_process(str(tmp_path), 'web01', TEST_UUID)
    assert guest['lsm_label'] == 'system_u:system_r:svirt_t:s0:c392,c662' and guest['confined'] is True


@pytest.mark.parametrize('change', [
    {'label': 'unconfined\n'},
    {'label': None},
    {'status': QEMU_STATUS.replace('Seccomp:\t2', 'Seccomp:\t0')},
    {'status': QEMU_STATUS.replace('Uid:\t64055\t64055', 'Uid:\t0\t0')},
    {'status': QEMU_STATUS.replace('CapEff:\t0000000000000000', 'CapEff:\t00000000a80425fb')},
    {'status': None},
])
def test_each_missing_piece_makes_a_guest_unconfined(tmp_path, change):
    qemu_process(tmp_path, **change)
    assert hh.guest_process(str(tmp_path), 'web01', TEST_UUID)['confined'] is False


def test_mount_namespace(tmp_path):
    qemu_process(tmp_path, mnt='mnt:[4026531841]')
    guest = hh.guest_process(str(tmp_path), 'web01', TEST_UUID)
    assert guest['own_mount_ns'] is False and guest['confined'] is True  # not part of confined
    qemu_process(tmp_path / 'b', mnt=None)
    assert hh.guest_process(str(tmp_path / 'b'), 'web01', TEST_UUID)['own_mount_ns'] is None
    qemu_process(tmp_path / 'c', init_mnt=None)
    assert hh.guest_process(str(tmp_path / 'c'), 'web01', TEST_UUID)['own_mount_ns'] is None


@pytest.mark.parametrize('name,pidfile', [('web01', None), ('web01', 'x\n'), ('web01', '0\n'), ('../web01', '4242\n'),
                                          ('.hidden', '4242\n')])
def test_a_guest_without_a_usable_pid(tmp_path, name, pidfile):
    qemu_process(tmp_path)
    os.remove(os.path.join(str(tmp_path), 'run/libvirt/qemu/web01.pid'))
    if pidfile is not None:  # where a reader that trusts the name would look
        write(tmp_path, 'run/libvirt/qemu/%s.pid' % name, pidfile)
    guest = hh.guest_process(str(tmp_path), name, TEST_UUID)
    assert guest == {'name': name, 'uuid': TEST_UUID, 'pid': None, 'uid': None, 'seccomp': None, 'cap_eff': None,
                     'lsm_label': None, 'own_mount_ns': None, 'confined': False}


# ---------------------------------------------------------------- libvirt

NETWORKS = [
    ("hh-routed", "<forward mode='route'/>"),
    ("hh-opened", "<forward mode='open'/>"),
    ("hh-isolated", ""),
    ("hh-bridged", "<forward mode='bridge'/>"),
]


@pytest.fixture
def test_driver():
    """libvirt's test driver with more networks; its state lives while this connection is open."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open('test:///default')
    defined = []
    for name, forward in NETWORKS:
        bridge = "<bridge name='br0'/>" if 'bridge' in forward else "<bridge name='virbr-%s'/>" % name[3:]
        ip = '' if 'bridge' in forward else "<ip address='10.%d.0.1' netmask='255.255.255.0'/>" % (len(defined) + 10)
        defined.append(conn.networkDefineXML("<network><name>%s</name>%s%s%s</network>" % (name, forward, bridge, ip)))
    defined[0].create()
    defined[0].setAutostart(1)
    yield conn
    for net in defined:
        if net.isActive():
            net.destroy()
        net.undefine()
    conn.close()


def test_libvirt_facts_from_the_test_driver(test_driver, tmp_path):
    qemu_process(tmp_path, name='test')
    networks, guests, error = hh.libvirt_facts('test:///default', str(tmp_path))
    assert error is None
    assert networks == [
        {'name': 'default', 'forward': 'nat', 'active': True, 'autostart': False},
        {'name': 'hh-opened', 'forward': 'open', 'active': False, 'autostart': False},
        {'name': 'hh-routed', 'forward': 'route', 'active': True, 'autostart': True},
    ]
    assert guests == [{'name': 'test', 'uuid': TEST_UUID, 'pid': 4242, 'uid': 64055, 'seccomp': 2,
                       'cap_eff': '0000000000000000', 'lsm_label': 'libvirt-6695eb01 (enforce)',
                       'own_mount_ns': True, 'confined': True}]


def test_libvirt_facts_only_lists_running_guests(test_driver, tmp_path):
    test_driver.lookupByName('test').destroy()
    try:
        networks, guests, error = hh.libvirt_facts('test:///default', str(tmp_path))
        assert guests == [] and error is None and networks
    finally:
        test_driver.lookupByName('test').create()


class Net(object):
    def __init__(self, name, xml, active=1, autostart=0):
        self._name, self.xml, self.active, self.auto = name, xml, active, autostart

    def name(self):
        return self._name

    def XMLDesc(self, flags=0):
        return self.xml

    def isActive(self):
        return self.active

    def autostart(self):
        return self.auto


class Conn(object):
    """A connection whose network or domain listing fails like a daemon without that driver."""

    def __init__(self, networks=None, net_error=None, dom_error=None):
        self.networks, self.net_error, self.dom_error = networks or [], net_error, dom_error
        self.closed = False
        self.flags = []

    def listAllNetworks(self, flags=0):
        if self.net_error:
            raise self.net_error
        return self.networks

    def listAllDomains(self, flags=0):
        self.flags.append(flags)
        if self.dom_error:
            raise self.dom_error
        return []

    def close(self):
        self.closed = True
        raise FakeError('closing fails too')


def test_forward_without_mode_is_nat():
    conn = Conn([Net('b', "<network><name>b</name><forward/></network>", autostart=1),
                 Net('a', "<network><name>a</name><forward mode='nat'/></network>", active=0),
                 Net('c', "<network><name>c</name></network>")])
    assert hh.forwarding_networks(conn) == [
        {'name': 'a', 'forward': 'nat', 'active': False, 'autostart': False},
        {'name': 'b', 'forward': 'nat', 'active': True, 'autostart': True}]


def test_libvirt_facts_reports_listing_errors_without_failing(tmp_path):
    conn = Conn(net_error=FakeError('this function is not supported by the connection driver: virConnectListAllNetworks', 3),
                dom_error=FakeError('internal error: no domains today', 1))
    networks, guests, error = hh.libvirt_facts('qemu:///system', str(tmp_path), FakeLibvirtModule(conn=conn))
    assert networks == [] and guests == []
    assert error == ('cannot list the networks: this function is not supported by the connection driver: '
                     'virConnectListAllNetworks; cannot list the running guests: internal error: no domains today')
    assert conn.closed and conn.flags == [1]
    conn = Conn(net_error=FakeError('no network driver', 3))
    assert hh.libvirt_facts('qemu:///system', str(tmp_path), FakeLibvirtModule(conn=conn)) == (
        [], [], 'cannot list the networks: no network driver')


def test_libvirt_facts_without_a_daemon_or_libvirt_python(tmp_path, monkeypatch):
    lv = FakeLibvirtModule(error=FakeError("Failed to connect socket to '/var/run/libvirt/libvirt-sock-ro': "
                                           "No such file or directory", 38))
    networks, guests, error = hh.libvirt_facts('qemu:///system', str(tmp_path), lv)
    assert (networks, guests) == ([], []) and lv.opened == [('qemu:///system', True)]
    assert error.startswith('cannot connect to libvirt at qemu:///system: the daemon is not running')
    monkeypatch.setattr(lc, 'libvirt', None)
    networks, guests, error = hh.libvirt_facts('qemu:///system', str(tmp_path))
    assert (networks, guests) == ([], []) and 'python3-libvirt' in error


# ---------------------------------------------------------------- the whole result

def test_host_warnings():
    assert hh.host_warnings({'accel': 'kvm', 'unconfined_guests': []}) == []
    assert hh.host_warnings({'accel': 'tcg', 'unconfined_guests': ['b', 'a']}) == [
        'no /dev/kvm: guests run under software emulation (TCG) only',
        'running guests not confined by the baseline (LSM label, seccomp, non-root uid, no capabilities): b, a; '
        'they must be restarted to run under the baseline']


def debian_host(root):
    write(root, 'sys/kernel/security/lsm', 'lockdown,capability,landlock,yama,apparmor,tomoyo')
    write(root, 'sys/module/apparmor/parameters/enabled', 'Y\n')
    write(root, 'sys/kernel/security/apparmor/profiles', 'libvirtd (enforce)\n')
    write(root, 'sys/module/kvm_intel/parameters/nested', 'Y\n')
    write(root, 'sys/kernel/mm/ksm/run', '0\n')
    write(root, 'proc/sys/net/ipv4/ip_forward', '0\n')
    write(root, 'etc/sysctl.d/99-cis.conf', 'net.ipv4.ip_forward = 0\n')
    write(root, 'etc/sysctl.d/60-secvirt.conf', 'net.ipv6.conf.all.forwarding = 0\n')
    link(root, 'dev/kvm', '/dev/null')


def test_host_facts(test_driver, tmp_path):
    root = str(tmp_path)
    debian_host(root)
    params = {'uri': 'test:///default', 'services': ['ksm.service', 'apparmor.service'],
              'sysctls': {'net.ipv4.ip_forward': 1}, 'own_sysctl_file': '/etc/sysctl.d/60-secvirt.conf',
              'security_driver': 'auto', 'security_driver_none_reason': ''}
    result = hh.host_facts(params, hh.parse_systemctl_show(SYSTEMCTL_OUTPUT, UNITS), root)
    assert [s['name'] for s in result['services']] == ['ksm.service', 'apparmor.service']
    assert result['daemon_layout'] == 'monolithic'
    assert result['sysctl_current'] == {'net.ipv4.ip_forward': '0'}
    assert result['sysctl_differs'] == ['net.ipv4.ip_forward']
    assert result['lsm'][-2:] == ['apparmor', 'tomoyo']
    assert result['apparmor'] == {'enabled': True, 'profiles': {'libvirtd': 'enforce'}}
    assert result['selinux'] == {'enabled': False, 'enforcing': None}
    assert (result['security_driver'], result['security_driver_error']) == ('apparmor', None)
    assert result['accel'] == 'kvm' and result['kvm_nested'] == {'kvm_intel': 'Y', 'kvm_amd': None}
    assert result['ksm_run'] == 0
    assert result['forwarding_sysctl_conflicts'] == [
        {'path': '/etc/sysctl.d/99-cis.conf', 'line': 1, 'key': 'net.ipv4.ip_forward', 'value': '0'}]
    assert [n['name'] for n in result['forwarding_networks']] == ['default', 'hh-opened', 'hh-routed']
    assert [g['name'] for g in result['guests']] == ['test'] and result['guests'][0]['pid'] is None
    assert result['unconfined_guests'] == ['test'] and result['libvirt_error'] is None
    assert result['warnings'] == [
        'running guests not confined by the baseline (LSM label, seccomp, non-root uid, no capabilities): test; '
        'they must be restarted to run under the baseline']


def test_host_facts_on_an_empty_host_without_libvirt(tmp_path, monkeypatch):
    monkeypatch.setattr(lc, 'libvirt', None)
    params = {'uri': 'qemu:///system', 'services': [], 'sysctls': {}, 'own_sysctl_file': '',
              'security_driver': 'none', 'security_driver_none_reason': ''}
    states = hh.parse_systemctl_show(
        'Id=libvirtd.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n\n'
        'Id=virtqemud.socket\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n', hh.units_to_query([]))
    result = hh.host_facts(params, states, str(tmp_path))
    assert result['services'] == [] and result['daemon_layout'] == 'none'
    assert result['lsm'] == [] and result['apparmor'] == {'enabled': False, 'profiles': {}}
    assert result['security_driver'] is None and 'security_driver_none_reason' in result['security_driver_error']
    assert result['accel'] == 'tcg' and result['ksm_run'] is None
    assert result['kvm_nested'] == {'kvm_intel': None, 'kvm_amd': None}
    assert result['forwarding_sysctl_conflicts'] == [] and result['forwarding_networks'] == []
    assert result['guests'] == [] and result['unconfined_guests'] == []
    assert 'python3-libvirt' in result['libvirt_error']
    assert result['warnings'] == ['no /dev/kvm: guests run under software emulation (TCG) only']
