"""Unit tests for plugins/module_utils/limits_xml.py (no libvirt needed)."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import limits_xml as lmx

from libvirt_xml_samples import DOMAIN


@pytest.mark.parametrize('value,kib', [
    (1024, 1024), ('1024', 1024), ('512M', 524288), ('512MiB', 524288), ('1G', 1048576),
    ('2GiB', 2097152), ('1GB', 976563), ('1000KB', 977), ('1T', 1073741824), ('4096b', 4),
    ('1 g', 1048576), ('unlimited', lmx.MEMORY_UNLIMITED_KIB), (None, None), ('1tb', 976562500),
    ('1000mb', 976563), ('1bytes', 1), ('1k', 1),
])
def test_size_to_kib(value, kib):
    assert lmx.size_to_kib(value) == kib


@pytest.mark.parametrize('value', ['lots', '1.5G', '-1', '10 parsecs', '1XB'])
def test_size_to_kib_refuses(value):
    with pytest.raises(lx.XMLValidationError):
        lmx.size_to_kib(value)


LIMITED = """<domain>
  <cputune><shares>512</shares><vcpupin vcpu='0' cpuset='0'/><period>100000</period><quota>50000</quota></cputune>
  <memtune><hard_limit unit='MiB'>512</hard_limit><min_guarantee unit='KiB'>1</min_guarantee></memtune>
  <blkiotune><weight>300</weight>
    <device><path>/dev/vdb</path><read_iops_sec>200</read_iops_sec></device></blkiotune>
  <devices>
    <interface type='network'><mac address='52:54:00:aa:bb:01'/>
      <bandwidth><inbound average='1000' peak='2000' burst='64'/><outbound average='500'/></bandwidth>
    </interface>
    <interface type='network'><mac address='52:54:00:aa:bb:02'/></interface>
    <interface type='network'/>
  </devices>
</domain>"""


def test_read_limits():
    domain = lx.parse_xml(LIMITED)
    assert lmx.read_limits(domain) == {
        'cputune': {'shares': 512, 'period': 100000, 'quota': 50000},
        'memtune': {'hard_limit': 524288},
        'blkio_weight': 300,
        'blkio_devices': {'/dev/vdb': {'read_iops_sec': 200}},
        'bandwidth': {'52:54:00:aa:bb:01': {'inbound': {'average': 1000, 'peak': 2000, 'burst': 64},
                                            'outbound': {'average': 500}},
                      '52:54:00:aa:bb:02': {}},
    }
    empty = lmx.read_limits(lx.parse_xml('<domain/>'))
    assert empty == {'cputune': {}, 'memtune': {}, 'blkio_weight': None, 'blkio_devices': {}, 'bandwidth': {}}
    assert lmx.limits_text(lx.parse_xml('<domain/>')) == ''


def test_apply_limits_round_trip_and_removals():
    domain = lx.parse_xml(DOMAIN)
    lmx.apply_limits(domain, {
        'cputune': {'quota': 20000, 'period': 100000, 'emulator_quota': -1},
        'memtune': {'hard_limit': 262144, 'soft_limit': 131072},
        'blkio_weight': 500,
        'blkio_devices': {'/dev/vdb': {'read_bytes_sec': 1048576, 'write_iops_sec': 100}},
        'bandwidth': {'52:54:00:aa:bb:01': {'inbound': {'average': 1000, 'burst': 64}, 'outbound': None}},
    })
    limits = lmx.read_limits(domain)
    assert limits['cputune'] == {'shares': 1024, 'period': 100000, 'quota': 20000, 'emulator_quota': -1}
    # the pinning that was there survives
    assert domain.find('cputune/vcpupin') is not None
    assert limits['memtune'] == {'hard_limit': 262144, 'soft_limit': 131072}
    assert domain.find('memtune/hard_limit').get('unit') == 'KiB'
    assert limits['blkio_weight'] == 500
    assert limits['blkio_devices'] == {'/dev/vdb': {'read_bytes_sec': 1048576, 'write_iops_sec': 100}}
    assert limits['bandwidth']['52:54:00:aa:bb:01'] == {'inbound': {'average': 1000, 'burst': 64}}
    text = lmx.limits_text(domain)
    assert '<hard_limit unit="KiB">262144</hard_limit>' in text
    assert '<interface mac="52:54:00:aa:bb:01">' in text and 'average="1000"' in text

    lmx.apply_limits(domain, {
        'memtune': {'hard_limit': lmx.MEMORY_UNLIMITED_KIB, 'soft_limit': lmx.MEMORY_UNLIMITED_KIB},
        'blkio_devices': {'/dev/vdb': {'read_bytes_sec': 0, 'write_iops_sec': 0}},
        'bandwidth': {'52:54:00:aa:bb:01': {'inbound': {'average': 0}}},
    })
    limits = lmx.read_limits(domain)
    assert limits['memtune'] == {} and domain.find('memtune') is None
    assert limits['blkio_devices'] == {}
    assert limits['bandwidth']['52:54:00:aa:bb:01'] == {}
    assert lx.find_interface(domain, mac='52:54:00:aa:bb:01').find('bandwidth') is None


def test_apply_limits_keeps_unrelated_children_and_order():
    domain = lx.parse_xml(LIMITED)
    lmx.apply_limits(domain, {'memtune': {'soft_limit': 1024, 'hard_limit': lmx.MEMORY_UNLIMITED_KIB}})
    assert [c.tag for c in domain.find('memtune')] == ['soft_limit', 'min_guarantee']
    lmx.apply_limits(domain, {'cputune': {'shares': 100}, 'blkio_weight': 200,
                              'bandwidth': {'52:54:00:aa:bb:02': {'outbound': {'average': 10}}}})
    assert [c.tag for c in domain.find('cputune')] == ['shares', 'period', 'quota', 'vcpupin']
    assert lmx.read_limits(domain)['bandwidth']['52:54:00:aa:bb:02'] == {'outbound': {'average': 10}}


def test_apply_limits_unknown_interface():
    with pytest.raises(lx.XMLValidationError, match='no interface with MAC'):
        lmx.apply_limits(lx.parse_xml(DOMAIN), {'bandwidth': {'52:54:00:00:00:09': {}}})
