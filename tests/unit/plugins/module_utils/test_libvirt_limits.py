"""Unit tests for plugins/module_utils/libvirt_limits.py against fake libvirt objects."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_limits as ll
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import limits_xml as lmx

from libvirt_fakes import FakeConn, FakeError

GUEST = """<domain type='qemu'><name>guest1</name><memory unit='KiB'>65536</memory>
<devices><interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='default'/>%s</interface>
</devices></domain>"""
LIVE = """<domain type='qemu' id='3'><name>guest1</name><memory unit='KiB'>65536</memory>
<devices><interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='default'/>
<target dev='vnet7'/></interface></devices></domain>"""


def params(**kwargs):
    result = dict((k, None) for k in (
        'cpu_shares', 'vcpu_period', 'vcpu_quota', 'global_period', 'global_quota', 'emulator_period',
        'emulator_quota', 'memory_hard_limit', 'memory_soft_limit', 'memory_swap_hard_limit', 'blkio_weight',
        'blkio_devices', 'interfaces'))
    result.update({'domain': 'guest1', 'live': True})
    result.update(kwargs)
    return result


FULL = dict(
    cpu_shares=512, vcpu_period=100000, vcpu_quota=50000, emulator_quota=-1,
    memory_hard_limit='512MiB', memory_soft_limit='256M', memory_swap_hard_limit='1G',
    blkio_weight=300,
    blkio_devices=[{'path': '/dev/vdb', 'read_iops_sec': 200, 'write_bytes_sec': 1048576, 'weight': None}],
    interfaces=[{'mac': '52:54:00:AA:BB:01', 'target_dev': None,
                 'inbound': {'average': 1000, 'peak': 2000, 'burst': 64, 'floor': None},
                 'outbound': {'average': 500, 'peak': None, 'burst': None}}],
)


def test_desired_limits_translates_options():
    limits = ll.desired_limits(params(**FULL))
    assert limits == {
        'cputune': {'shares': 512, 'period': 100000, 'quota': 50000, 'emulator_quota': -1},
        'memtune': {'hard_limit': 524288, 'soft_limit': 262144, 'swap_hard_limit': 1048576},
        'blkio_weight': 300,
        'blkio_devices': {'/dev/vdb': {'read_iops_sec': 200, 'write_bytes_sec': 1048576}},
        'bandwidth': {'52:54:00:aa:bb:01': {'inbound': {'average': 1000, 'peak': 2000, 'burst': 64},
                                            'outbound': {'average': 500}}},
    }
    assert ll.desired_limits(params()) == {}


@pytest.mark.parametrize('kwargs,message', [
    ({'cpu_shares': 0}, 'cpu_shares'),
    ({'vcpu_period': 10}, 'vcpu_period'),
    ({'global_quota': 10}, 'global_quota'),
    ({'memory_hard_limit': 'lots'}, 'memory_hard_limit'),
    ({'memory_hard_limit': '1G', 'memory_soft_limit': '2G'}, 'soft_limit must not exceed'),
    ({'memory_hard_limit': '2G', 'memory_swap_hard_limit': '1G'}, 'must not be lower'),
    ({'blkio_weight': 0}, 'blkio_weight'),
    ({'blkio_devices': [{'path': 'vdb'}]}, 'absolute'),
    ({'interfaces': [{'mac': None, 'target_dev': None}]}, 'mac or target_dev'),
])
def test_desired_limits_refusals(kwargs, message):
    with pytest.raises(lc.LibvirtModuleError, match=message):
        ll.desired_limits(params(**kwargs))


def test_unlimited_quota_and_memory_are_accepted():
    limits = ll.desired_limits(params(vcpu_quota=-1, memory_hard_limit='unlimited', memory_soft_limit='1G'))
    assert limits['cputune'] == {'quota': -1}
    assert limits['memtune']['hard_limit'] == lmx.MEMORY_UNLIMITED_KIB


def test_inactive_guest_config_only_then_idempotent():
    conn = FakeConn()
    dom = conn.add_domain('guest1', GUEST % '')
    result = ll.run_limits(conn, params(**FULL))
    assert result['changed'] and result['config_changed'] and not result['live_changed']
    assert 'live' not in result
    limits = lmx.read_limits(lx.parse_xml(dom.inactive))
    assert limits['cputune'] == {'shares': 512, 'period': 100000, 'quota': 50000, 'emulator_quota': -1}
    assert limits['memtune'] == {'hard_limit': 524288, 'soft_limit': 262144, 'swap_hard_limit': 1048576}
    assert '<hard_limit unit="KiB">524288</hard_limit>' in result['diff']['after']
    assert '<hard_limit' not in result['diff']['before']
    again = ll.run_limits(conn, params(**FULL))
    assert again['changed'] is False and len(conn.defined) == 1
    assert dom.calls == []


def test_running_guest_live_and_config():
    conn = FakeConn()
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE)
    dom.blkio['device_read_iops_sec'] = '/dev/vda,50'
    result = ll.run_limits(conn, params(**FULL))
    assert result['config_changed'] and result['live_changed']
    calls = dict((c[0], c) for c in dom.calls)
    # only what differs is written (period and emulator quota already had those values)
    assert calls['sched'][1] == {'cpu_shares': 512, 'vcpu_quota': 50000}
    assert calls['sched'][2] == lc.AFFECT_LIVE
    assert calls['memory'][1] == {'hard_limit': 524288, 'soft_limit': 262144, 'swap_hard_limit': 1048576}
    assert calls['blkio'][1] == {'weight': 300, 'device_read_iops_sec': '/dev/vda,50,/dev/vdb,200',
                                 'device_write_bytes_sec': '/dev/vdb,1048576'}
    assert calls['iface'][1] == 'vnet7'
    assert calls['iface'][2] == {'inbound.average': 1000, 'inbound.peak': 2000, 'inbound.burst': 64,
                                 'outbound.average': 500}
    assert result['live']['sched/cpu_shares'] == 512
    assert '<!-- running guest -->' in result['diff']['after']
    again = ll.run_limits(conn, params(**FULL))
    assert again['changed'] is False, again['diff']


def test_memory_rounding_by_the_kernel_is_not_a_change():
    conn = FakeConn()
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE)
    ll.run_limits(conn, params(memory_hard_limit='524287'))
    assert dom.memory['hard_limit'] == 524284
    assert ll.run_limits(conn, params(memory_hard_limit='524287'))['changed'] is False


def test_live_only_difference_is_corrected():
    conn = FakeConn()
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE)
    ll.run_limits(conn, params(cpu_shares=200))
    dom.sched['cpu_shares'] = 1000  # someone ran virsh schedinfo --live
    result = ll.run_limits(conn, params(cpu_shares=200))
    assert not result['config_changed'] and result['live_changed']
    assert dom.sched['cpu_shares'] == 200


def test_check_mode_and_live_false():
    conn = FakeConn()
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE)
    result = ll.run_limits(conn, params(cpu_shares=200), check_mode=True, secure=False)
    assert result['changed'] and conn.defined == [] and dom.calls == []
    result = ll.run_limits(conn, params(cpu_shares=200, live=False))
    assert result['config_changed'] and not result['live_changed'] and dom.calls == []
    assert 'next start' in result['warnings'][0]


def test_removals_and_target_dev():
    conn = FakeConn()
    bw = "<bandwidth><inbound average='1000'/></bandwidth>"
    dom = conn.add_domain('guest1', GUEST % bw, active=True, live_xml=LIVE)
    dom.iface_params['vnet7'] = {'inbound.average': 1000}
    dom.blkio['device_read_iops_sec'] = '/dev/vdb,200'
    result = ll.run_limits(conn, params(
        interfaces=[{'mac': None, 'target_dev': 'vnet7', 'inbound': {'average': 0}, 'outbound': None}],
        blkio_devices=[{'path': '/dev/vdb', 'read_iops_sec': 0}]))
    assert result['changed']
    assert 'bandwidth' not in dom.inactive
    assert dom.iface_params['vnet7']['inbound.average'] == 0
    assert dom.blkio['device_read_iops_sec'] == '/dev/vdb,0'


def test_errors():
    conn = FakeConn()
    conn.add_domain('guest1', GUEST % '')
    with pytest.raises(lc.LibvirtModuleError, match='no limit requested'):
        ll.run_limits(conn, params())
    with pytest.raises(lc.LibvirtModuleError, match='no interface with target device vnet9'):
        ll.run_limits(conn, params(interfaces=[{'mac': None, 'target_dev': 'vnet9', 'inbound': {'average': 1}}]))
    with pytest.raises(lc.LibvirtModuleError, match='no interface with MAC 52:54:00:00:00:09'):
        ll.run_limits(conn, params(interfaces=[{'mac': '52:54:00:00:00:09', 'inbound': {'average': 1}}]))
    conn.define_error = FakeError('invalid argument: shares', 8)
    with pytest.raises(lc.LibvirtModuleError, match='refused the limits for guest guest1: invalid argument'):
        ll.run_limits(conn, params(cpu_shares=5))
    conn.define_error = None
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE)

    def broken(*_args):
        raise FakeError('Unable to find cpu cgroup controller', 1)
    dom.setSchedulerParametersFlags = broken
    with pytest.raises(lc.LibvirtModuleError, match='running guest guest1: Unable to find cpu cgroup'):
        ll.run_limits(conn, params(cpu_shares=7))


def test_live_interface_missing():
    conn = FakeConn()
    conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE.replace('52:54:00:aa:bb:01', '52:54:00:aa:bb:09'))
    with pytest.raises(lc.LibvirtModuleError, match='running guest has no interface with MAC'):
        ll.run_limits(conn, params(interfaces=[{'mac': '52:54:00:aa:bb:01', 'inbound': {'average': 1}}]))


def test_transient_guest_is_live_only():
    conn = FakeConn()
    dom = conn.add_domain('guest1', None, active=True, persistent=False, live_xml=LIVE)
    result = ll.run_limits(conn, params(blkio_weight=500))
    assert not result['config_changed'] and result['live_changed'] and 'config' not in result
    assert dom.blkio['weight'] == 500


def test_parse_device_list():
    assert ll.parse_device_list('/dev/vda,100,/dev/vdb,200') == {'/dev/vda': 100, '/dev/vdb': 200}
    assert ll.parse_device_list('') == {} and ll.parse_device_list(None) == {}


def test_round_trip_through_real_libvirt_test_driver():
    # libvirt itself parses and re-formats the definition: the next run must be a no-op
    conn = lc.open_connection('test:///default')
    conn.defineXML("<domain type='test'><name>limited</name><memory>65536</memory><os><type>hvm</type></os>"
                   "<devices><interface type='network'><mac address='52:54:00:aa:bb:01'/>"
                   "<source network='default'/></interface></devices></domain>")
    try:
        first = ll.run_limits(conn, params(domain='limited', **FULL))
        assert first['changed'] and first['config_changed']
        stored = lx.parse_xml(conn.lookupByName('limited').XMLDesc(lc.XML_INACTIVE))
        assert stored.find('memtune/hard_limit').text == '524288'
        assert stored.find('memtune/hard_limit').get('unit') == 'KiB'
        assert ll.run_limits(conn, params(domain='limited', **FULL))['changed'] is False
    finally:
        conn.lookupByName('limited').undefine()
