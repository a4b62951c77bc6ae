"""Unit tests for plugins/module_utils/libvirt_network.py with a fake libvirt connection."""
import uuid as uuidlib
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_network as ln
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import LibvirtModuleError

DEFAULT_NAT = """<network>
  <name>default</name>
  <uuid>0b1e3c2a-6d0e-4a4b-9b55-1c8c4a0f0e11</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:12:34:56'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>
"""


class FakeError(Exception):
    def __init__(self, code, msg):
        super(FakeError, self).__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code


class FakeNetwork(object):
    def __init__(self, conn, xml, persistent=True):
        self.conn = conn
        root = ET.fromstring(xml)
        if root.find('uuid') is None:
            u = ET.SubElement(root, 'uuid')
            u.text = str(uuidlib.uuid4())
        self.uuid = root.findtext('uuid')
        self.name = root.findtext('name')
        self.xml = ET.tostring(root, encoding='unicode')
        self.live_xml = None
        self.persistent = persistent
        self.auto = False
        self.ports = []

    def XMLDesc(self, flags=0):
        if flags & ln.VIR_NETWORK_XML_INACTIVE or self.live_xml is None:
            return self.xml
        return self.live_xml

    def UUIDString(self):
        return self.uuid

    def isActive(self):
        return self.live_xml is not None

    def isPersistent(self):
        return self.persistent

    def autostart(self):
        return 1 if self.auto else 0

    def setAutostart(self, flag):
        self.conn.calls.append(('setAutostart', self.name, flag))
        self.auto = bool(flag)

    def create(self):
        self.conn.calls.append(('create', self.name))
        if self.live_xml is not None:
            raise FakeError(55, 'network is already active')
        self.live_xml = self.xml

    def destroy(self):
        self.conn.calls.append(('destroy', self.name))
        self.live_xml = None
        if not self.persistent:
            del self.conn.networks[self.name]

    def undefine(self):
        self.conn.calls.append(('undefine', self.name))
        if self.live_xml is None:
            del self.conn.networks[self.name]
        else:
            self.persistent = False

    def listAllPorts(self):
        return [FakePort(p) for p in self.ports]


class FakePort(object):
    def __init__(self, u):
        self.u = u

    def getUUIDString(self):
        return self.u


class FakeConn(object):
    def __init__(self):
        self.networks = {}
        self.calls = []

    def networkLookupByName(self, name):
        if name not in self.networks:
            raise FakeError(ln.VIR_ERR_NO_NETWORK, 'Network not found: no network with matching name %r' % name)
        return self.networks[name]

    def networkDefineXML(self, xml):
        self.calls.append(('define', xml))
        root = ET.fromstring(xml)
        name = root.findtext('name')
        # libvirt adds a uuid and keeps the one given
        old = self.networks.get(name)
        if old is not None:
            if root.findtext('uuid') not in (None, old.uuid):
                raise FakeError(9, 'network %s already exists with uuid %s' % (name, old.uuid))
            if root.find('uuid') is None:
                ET.SubElement(root, 'uuid').text = old.uuid
            old.xml = ET.tostring(root, encoding='unicode')
            old.persistent = True
            return old
        self.networks[name] = FakeNetwork(self, xml)
        return self.networks[name]


def present(name='web', bridge='br-web', **kw):
    p = {'name': name, 'state': 'present', 'bridge': bridge, 'autostart': True, 'active': True, 'force': False}
    p.update(kw)
    return p


def absent(name='default', **kw):
    p = {'name': name, 'state': 'absent', 'bridge': None, 'autostart': True, 'active': True, 'force': False}
    p.update(kw)
    return p


def test_wanted_xml_is_a_bridge_forward_network():
    root = ET.fromstring(ln.bridge_network_xml('web', 'br-web'))
    assert root.findtext('name') == 'web'
    assert root.find('forward').attrib == {'mode': 'bridge'}
    assert root.find('bridge').attrib == {'name': 'br-web'}
    assert root.find('ip') is None and root.find('uuid') is None


@pytest.mark.parametrize('name,bridge', [('', 'br0'), ('a/b', 'br0'), ('web', 'b' * 16), ('web', None)])
def test_bad_names_are_refused(name, bridge):
    with pytest.raises(LibvirtModuleError):
        ln.bridge_network_xml(name, bridge)


def test_canonical_ignores_uuid_whitespace_and_attribute_order():
    a = "<network><name>w</name><uuid>1</uuid><forward mode='bridge'/><bridge name='b' stp='on'/></network>"
    b = "<network>\n  <name> w </name>\n  <forward mode='bridge'/>\n  <bridge stp='on' name='b'/>\n</network>"
    assert ln.canonical(a) == ln.canonical(b)
    assert ln.canonical(a) != ln.canonical(a.replace("name='b'", "name='c'"))


def test_canonical_rejects_garbage():
    with pytest.raises(LibvirtModuleError):
        ln.canonical('<network>')
    with pytest.raises(LibvirtModuleError):
        ln.canonical('<domain/>')


def test_describe_nat_network():
    assert ln.describe(DEFAULT_NAT) == {'name': 'default', 'forward_mode': 'nat', 'bridge': 'virbr0'}


def test_define_start_autostart_then_idempotent():
    conn = FakeConn()
    result = ln.run_network(conn, present())
    assert result['changed'] and result['actions'] == ['define', 'start', 'autostart']
    net = conn.networks['web']
    assert net.isActive() and net.autostart()
    assert ln.describe(net.XMLDesc(ln.VIR_NETWORK_XML_INACTIVE)) == {
        'name': 'web', 'forward_mode': 'bridge', 'bridge': 'br-web'}
    assert result['diff']['before'] == '' and "<bridge name=\"br-web\"" in result['diff']['after']
    conn.calls = []
    again = ln.run_network(conn, present())
    assert not again['changed'] and again['actions'] == [] and conn.calls == []
    assert again['diff']['before'] == again['diff']['after']


def test_check_mode_reports_without_calling_libvirt():
    conn = FakeConn()
    result = ln.run_network(conn, present(), check_mode=True)
    assert result['changed'] and result['actions'] == ['define', 'start', 'autostart']
    assert conn.calls == [] and conn.networks == {}


def test_changed_bridge_is_redefined_keeping_the_uuid_and_restarted_when_unused():
    conn = FakeConn()
    ln.run_network(conn, present())
    old_uuid = conn.networks['web'].uuid
    result = ln.run_network(conn, present(bridge='br-new'))
    assert result['actions'] == ['redefine', 'restart']
    net = conn.networks['web']
    assert net.uuid == old_uuid and ln.describe(net.XMLDesc(0))['bridge'] == 'br-new'
    assert not ln.run_network(conn, present(bridge='br-new'))['changed']


def test_changed_network_with_guests_attached_is_not_restarted():
    conn = FakeConn()
    ln.run_network(conn, present())
    conn.networks['web'].ports = ['port-1']
    result = ln.run_network(conn, present(bridge='br-new'))
    assert result['actions'] == ['redefine'] and result['restart_pending']
    assert 'not restarted' in result['warnings'][0]
    assert ('destroy', 'web') not in conn.calls


def test_nat_network_is_not_silently_converted():
    conn = FakeConn()
    conn.networks['default'] = FakeNetwork(conn, DEFAULT_NAT)
    with pytest.raises(LibvirtModuleError, match='forward mode nat'):
        ln.run_network(conn, present(name='default', bridge='br-web'))


def test_remove_default_network():
    conn = FakeConn()
    conn.networks['default'] = FakeNetwork(conn, DEFAULT_NAT)
    conn.networks['default'].create()
    conn.networks['default'].auto = True
    result = ln.run_network(conn, absent())
    assert result['changed'] and result['actions'] == ['stop', 'undefine']
    assert 'default' not in conn.networks
    assert 'virbr0' in result['diff']['before'] and result['diff']['after'] == ''
    assert not ln.run_network(conn, absent())['changed']


def test_remove_in_check_mode_changes_nothing():
    conn = FakeConn()
    conn.networks['default'] = FakeNetwork(conn, DEFAULT_NAT)
    result = ln.run_network(conn, absent(), check_mode=True)
    assert result['changed'] and result['actions'] == ['undefine']
    assert 'default' in conn.networks


def test_remove_refused_while_guests_are_attached():
    conn = FakeConn()
    conn.networks['default'] = FakeNetwork(conn, DEFAULT_NAT)
    conn.networks['default'].create()
    conn.networks['default'].ports = ['p1', 'p2']
    with pytest.raises(LibvirtModuleError, match='2 guest interface'):
        ln.run_network(conn, absent())
    assert ln.run_network(conn, absent(force=True))['changed']


def test_stopped_network_is_started_and_autostart_turned_off_on_request():
    conn = FakeConn()
    ln.run_network(conn, present(active=False, autostart=False))
    net = conn.networks['web']
    assert not net.isActive() and not net.autostart()
    result = ln.run_network(conn, present())
    assert result['actions'] == ['start', 'autostart']


def test_other_libvirt_errors_propagate():
    class Broken(FakeConn):
        def networkLookupByName(self, name):
            raise FakeError(38, 'cannot connect')
    with pytest.raises(FakeError):
        ln.run_network(Broken(), present())
