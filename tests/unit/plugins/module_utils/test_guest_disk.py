"""Unit tests for plugins/module_utils/guest_disk.py."""
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import guest_disk as G
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import LibvirtModuleError

DOMAIN = """<domain type='qemu'>
  <name>kvm01</name>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native'/>
      <source file='/var/lib/libvirt/images/kvm01.qcow2'/>
      <backingStore type='file'><format type='raw'/><source file='/var/lib/libvirt/images/base.raw'/></backingStore>
      <target dev='vda' bus='virtio'/>
      <serial>kvm01-root</serial>
      <boot order='1'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/srv/iso/debian.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='pool/img'><host name='ceph1' port='6789'/></source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <target dev='vdc' bus='virtio'/>
    </disk>
  </devices>
</domain>"""


def disk(xml, target):
    return G.find_disk(ET.fromstring(xml), target)


def test_disk_facts():
    facts = G.disk_facts(DOMAIN, 'vda')
    assert facts == {'type': 'file', 'device': 'disk', 'source': '/var/lib/libvirt/images/kvm01.qcow2',
                     'format': 'qcow2', 'readonly': False, 'backing_store': True, 'target': 'vda'}
    cdrom = G.disk_facts(DOMAIN, 'sda')
    assert cdrom['device'] == 'cdrom' and cdrom['readonly'] is True
    assert G.disk_facts(DOMAIN, 'vdb')['source'] == 'pool/img'
    assert G.disk_facts(DOMAIN, 'vdc')['source'] is None and G.disk_facts(DOMAIN, 'vdc')['format'] is None


def test_missing_disk_names_the_alternatives():
    with pytest.raises(LibvirtModuleError) as err:
        G.disk_facts(DOMAIN, 'vdz')
    assert 'has: vda, sda, vdb, vdc' in str(err.value)
    with pytest.raises(LibvirtModuleError):
        G.switch_to_block(DOMAIN, 'vdz', '/dev/mapper/x')


def test_bad_xml():
    with pytest.raises(LibvirtModuleError):
        G.parse_domain('<domain>')


def test_switch_to_block_keeps_the_rest():
    new, changed = G.switch_to_block(DOMAIN, 'vda', '/dev/mapper/kvm01')
    assert changed
    vda = disk(new, 'vda')
    assert vda.get('type') == 'block'
    assert vda.find('source').attrib == {'dev': '/dev/mapper/kvm01'}
    assert vda.find('driver').attrib == {'name': 'qemu', 'type': 'raw', 'cache': 'none', 'io': 'native'}
    assert vda.find('backingStore') is None
    assert vda.findtext('serial') == 'kvm01-root'
    assert vda.find('boot').get('order') == '1'
    assert vda.find('target').attrib == {'dev': 'vda', 'bus': 'virtio'}
    # other disks untouched
    assert disk(new, 'sda').find('source').get('file') == '/srv/iso/debian.iso'
    assert G.is_block_disk_on(G.disk_facts(new, 'vda'), '/dev/mapper/kvm01')
    again, changed_again = G.switch_to_block(new, 'vda', '/dev/mapper/kvm01')
    assert not changed_again and again == new


def test_switch_network_disk_drops_hosts():
    new, changed = G.switch_to_block(DOMAIN, 'vdb', '/dev/mapper/x')
    source = disk(new, 'vdb').find('source')
    assert changed and source.attrib == {'dev': '/dev/mapper/x'} and list(source) == []


def test_switch_disk_without_source_or_driver():
    new, _changed = G.switch_to_block(DOMAIN, 'vdc', '/dev/mapper/y')
    vdc = disk(new, 'vdc')
    assert vdc.find('source').get('dev') == '/dev/mapper/y'
    assert vdc.find('driver').attrib == {'name': 'qemu', 'type': 'raw'}
    assert [child.tag for child in vdc][:2] == ['driver', 'source']


def test_cdrom_cannot_become_a_block_disk():
    with pytest.raises(LibvirtModuleError):
        G.switch_to_block(DOMAIN, 'sda', '/dev/mapper/x')


class St(object):
    def __init__(self, rdev=0, dev=1, ino=1):
        self.st_rdev, self.st_dev, self.st_ino = rdev, dev, ino


def fake_stat(path):
    table = {'/dev/mapper/kvm01': St(rdev=0xfd03), '/dev/dm-3': St(rdev=0xfd03),
             '/dev/dm-4': St(rdev=0xfd04), '/a': St(dev=1, ino=5), '/b': St(dev=1, ino=5)}
    if path not in table:
        raise OSError(2, 'missing')
    return table[path]


def test_same_device():
    assert G.same_device('/x', '/x', fake_stat)
    assert G.same_device('/dev/dm-3', '/dev/mapper/kvm01', fake_stat)
    assert not G.same_device('/dev/dm-4', '/dev/mapper/kvm01', fake_stat)
    assert G.same_device('/a', '/b', fake_stat)
    assert not G.same_device('/nope', '/a', fake_stat)


def test_guests_using():
    on_mapper = G.switch_to_block(DOMAIN, 'vda', '/dev/dm-3')[0]
    domains = [('kvm01', True, on_mapper), ('kvm02', False, on_mapper), ('kvm03', True, DOMAIN)]
    assert G.guests_using(domains, '/dev/mapper/kvm01', fake_stat) == ['kvm01']
    assert G.disk_sources(DOMAIN) == ['/var/lib/libvirt/images/kvm01.qcow2', '/srv/iso/debian.iso']


def test_libvirt_domains():
    class Dom(object):
        def __init__(self, name, active):
            self._name, self._active = name, active

        def name(self):
            return self._name

        def isActive(self):
            return self._active

        def XMLDesc(self, flags):
            return '<domain><name>%s</name></domain>' % self._name

    class Conn(object):
        def listAllDomains(self, flags):
            return [Dom('a', 1), Dom('b', 0)]

    assert G.libvirt_domains(Conn()) == [('a', True, '<domain><name>a</name></domain>'),
                                         ('b', False, '<domain><name>b</name></domain>')]


def test_mask_passwords():
    xml = ("<domain><devices><graphics type='vnc' passwd='s3cret' passwdValidTo='2030-01-01T00:00:00'/>"
           '<graphics type="spice" passwd="it\'s"/><graphics type="rdp" password = "x"/></devices></domain>')
    masked = G.mask_passwords(xml)
    assert masked == ("<domain><devices><graphics type='vnc' passwd='********' "
                      "passwdValidTo='2030-01-01T00:00:00'/><graphics type=\"spice\" passwd=\"********\"/>"
                      '<graphics type="rdp" password = "********"/></devices></domain>')
    assert G.mask_passwords(DOMAIN) == DOMAIN and G.mask_passwords('') == ''


SECURE_DOMAIN = """<domain type='test'><name>gd-direct</name><memory>65536</memory><os><type>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>
<source file='/var/lib/libvirt/images/gd-direct.img'/><target dev='vda' bus='virtio'/></disk>
<graphics type='vnc' port='-1' autoport='yes' passwd='Vnc-Pass-9'/></devices></domain>"""


def test_run_guest_disk_on_real_test_driver_keeps_passwords():
    """libvirt's REAL test driver (test:///default, in-process, no daemon), not
    libvirt_fakes.py: its XMLDesc prints passwd= only with VIR_DOMAIN_XML_SECURE,
    like libvirtd. One connection, passed straight to run_guest_disk()."""
    libvirt = pytest.importorskip('libvirt')
    conn = libvirt.open('test:///default')
    dom = conn.defineXML(SECURE_DOMAIN)
    try:
        params = {'domain': 'gd-direct', 'target': 'vda', 'dev': '/dev/mapper/gd-direct', 'state': 'present'}
        result = G.run_guest_disk(conn, params, diff=True)
        assert result['changed'] and result['domain_state'] == 'shut off'
        secure = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        stored = conn.lookupByName('gd-direct').XMLDesc(secure)
        assert "passwd='Vnc-Pass-9'" in stored and "<source dev='/dev/mapper/gd-direct'/>" in stored
        assert 'Vnc-Pass-9' not in repr(result)
        assert "passwd='********'" in result['diff']['before'] and "passwd='********'" in result['diff']['after']
        assert G.run_guest_disk(conn, params)['changed'] is False
        with pytest.raises(LibvirtModuleError, match='no guest named nope'):
            G.run_guest_disk(conn, dict(params, domain='nope'))
        dom.create()
        with pytest.raises(LibvirtModuleError, match='the guest is running') as err:
            G.run_guest_disk(conn, dict(params, dev='/dev/mapper/other'))
        assert err.value.details['domain_state'] == 'running'
        dom.destroy()
    finally:
        dom.undefine()
        conn.close()
