"""In-memory stand-ins for libvirt-python objects used by the module_utils tests.

They behave like libvirt 9 where the modules depend on it: filters keep their
uuid on redefinition, XMLDesc honours VIR_DOMAIN_XML_INACTIVE, errors carry
libvirt's error codes.
"""
import uuid as uuidlib
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc

CAPS = """<capabilities><host>
  <secmodel><model>apparmor</model><doi>0</doi></secmodel>
  <secmodel><model>dac</model><doi>0</doi><baselabel type='qemu'>+64055:+64055</baselabel></secmodel>
</host></capabilities>"""


class FakeError(Exception):
    def __init__(self, msg, code=1):
        super(FakeError, self).__init__(msg)
        self.code = code
        self.msg = msg

    def get_error_code(self):
        return self.code

    def get_error_message(self):
        return self.msg


class FakeNWFilter(object):
    def __init__(self, conn, xml):
        self.conn = conn
        root = ET.fromstring(xml)
        self._name = root.get('name')
        self._uuid = (root.findtext('uuid') or str(uuidlib.uuid4())).strip()
        for old in root.findall('uuid'):
            root.remove(old)
        node = ET.Element('uuid')
        node.text = self._uuid
        root.insert(0, node)
        self.xml = ET.tostring(root, encoding='unicode')

    def name(self):
        return self._name

    def UUIDString(self):
        return self._uuid

    def XMLDesc(self, flags=0):
        return self.xml

    def undefine(self):
        if self.conn.refuse_undefine:
            raise FakeError('nwfilter is in use', 55)
        del self.conn.filters[self._name]


class FakeBinding(object):
    def __init__(self, portdev, filtername):
        self._portdev, self._filter = portdev, filtername

    def portDev(self):
        return self._portdev

    def filterName(self):
        return self._filter


class FakeDomain(object):
    def __init__(self, conn, name, xml, active=False, persistent=True, live_xml=None):
        self.conn = conn
        self._name = name
        self.inactive = xml
        self.live = live_xml or (xml if active else None)
        self.active = active
        self.persistent = persistent
        self.updates = []
        self.update_error = None
        self.sched = {'cpu_shares': 100, 'vcpu_period': 100000, 'vcpu_quota': -1, 'emulator_period': 100000,
                      'emulator_quota': -1, 'global_period': 100000, 'global_quota': -1}
        self.memory = {'hard_limit': lc_unlimited(), 'soft_limit': lc_unlimited(),
                       'swap_hard_limit': lc_unlimited()}
        self.blkio = {'weight': 100, 'device_weight': '', 'device_read_iops_sec': '',
                      'device_write_iops_sec': '', 'device_read_bytes_sec': '', 'device_write_bytes_sec': ''}
        self.iface_params = {}
        self.calls = []
        self.labels = [['libvirt-%s' % name, 1], ['+64055:+64055', 0]]

    def name(self):
        return self._name

    def isActive(self):
        return 1 if self.active else 0

    def isPersistent(self):
        return 1 if self.persistent else 0

    def XMLDesc(self, flags=0):
        if flags & lc.XML_SECURE and self.conn.readonly:
            raise FakeError('virDomainGetXMLDesc with secure flag: operation forbidden for read only access', 6)
        if flags & lc.XML_INACTIVE or not self.active:
            return self.inactive
        return self.live

    def updateDeviceFlags(self, xml, flags):
        self.updates.append((xml, flags))
        if flags & lc.AFFECT_LIVE and self.update_error:
            raise self.update_error  # pylint: disable=raising-bad-type
        new = ET.fromstring(xml)
        mac = new.find('mac').get('address')
        for attr in (('inactive', lc.AFFECT_CONFIG), ('live', lc.AFFECT_LIVE)):
            if not flags & attr[1]:
                continue
            root = ET.fromstring(getattr(self, attr[0]))
            devices = root.find('devices')
            for index, iface in enumerate(devices.findall('interface')):
                if iface.find('mac').get('address') == mac:
                    position = list(devices).index(iface)
                    devices.remove(iface)
                    devices.insert(position, new)
            setattr(self, attr[0], ET.tostring(root, encoding='unicode'))

    def securityLabelList(self):
        return self.labels

    def schedulerParametersFlags(self, flags):
        return dict(self.sched)

    def setSchedulerParametersFlags(self, params, flags):
        self.calls.append(('sched', params, flags))
        self.sched.update(params)

    def memoryParameters(self, flags):
        return dict(self.memory)

    def setMemoryParameters(self, params, flags):
        self.calls.append(('memory', params, flags))
        # the kernel rounds to pages
        self.memory.update(dict((k, v - v % 4 if v != lc_unlimited() else v) for k, v in params.items()))

    def blkioParameters(self, flags):
        return dict(self.blkio)

    def setBlkioParameters(self, params, flags):
        self.calls.append(('blkio', params, flags))
        self.blkio.update(params)

    def interfaceParameters(self, device, flags):
        base = {'inbound.average': 0, 'inbound.peak': 0, 'inbound.burst': 0, 'inbound.floor': 0,
                'outbound.average': 0, 'outbound.peak': 0, 'outbound.burst': 0}
        base.update(self.iface_params.get(device, {}))
        return base

    def setInterfaceParameters(self, device, params, flags):
        self.calls.append(('iface', device, params, flags))
        self.iface_params.setdefault(device, {}).update(params)


def lc_unlimited():
    return 9007199254740991


class FakeConn(object):
    def __init__(self, readonly=False):
        self.readonly = readonly
        self.filters = {}
        self.domains = {}
        self.bindings = []
        self.refuse_undefine = False
        self.define_error = None
        self.defined = []
        self.caps = CAPS

    # network filters
    def add_filter(self, xml):
        nwf = FakeNWFilter(self, xml)
        self.filters[nwf.name()] = nwf
        return nwf

    def listAllNWFilters(self, flags=0):
        return list(self.filters.values())

    def nwfilterLookupByName(self, name):
        if name not in self.filters:
            raise FakeError("Network filter not found: no nwfilter with matching name '%s'" % name,
                            lc.ERR_NO_NWFILTER)
        return self.filters[name]

    def nwfilterDefineXML(self, xml):
        if self.readonly:
            raise FakeError('read only', 6)
        if self.define_error:
            raise self.define_error  # pylint: disable=raising-bad-type
        self.defined.append(xml)
        name = ET.fromstring(xml).get('name')
        old = self.filters.get(name)
        new = FakeNWFilter(self, xml)
        if old is not None and old.UUIDString() != new.UUIDString():
            raise FakeError("filter '%s' already exists with uuid %s" % (name, old.UUIDString()), 9)
        self.filters[name] = new
        return new

    def listAllNWFilterBindings(self, flags=0):
        return [FakeBinding(p, f) for p, f in self.bindings]

    # domains
    def add_domain(self, name, xml, **kwargs):
        dom = FakeDomain(self, name, xml, **kwargs)
        self.domains[name] = dom
        return dom

    def listAllDomains(self, flags=0):
        return list(self.domains.values())

    def lookupByName(self, name):
        if name not in self.domains:
            raise FakeError("Domain not found: no domain with matching name '%s'" % name, lc.ERR_NO_DOMAIN)
        return self.domains[name]

    def defineXML(self, xml):
        if self.define_error:
            raise self.define_error  # pylint: disable=raising-bad-type
        self.defined.append(xml)
        name = ET.fromstring(xml).findtext('name')
        self.domains[name].inactive = xml
        return self.domains[name]

    def getCapabilities(self):
        return self.caps


class FakeLibvirtModule(object):
    """Stands in for `import libvirt` in open_connection()."""
    libvirtError = FakeError

    def __init__(self, error=None, conn=None):
        self.error = error
        self.conn = conn
        self.handler = None
        self.opened = []

    def registerErrorHandler(self, handler, ctx):
        self.handler = handler

    def open(self, uri):
        self.opened.append((uri, False))
        if self.error:
            raise self.error
        return self.conn if self.conn is not None else FakeConn()

    def openReadOnly(self, uri):
        self.opened.append((uri, True))
        if self.error:
            raise self.error
        return self.conn if self.conn is not None else FakeConn(readonly=True)
