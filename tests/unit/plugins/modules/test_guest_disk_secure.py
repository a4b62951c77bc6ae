"""guest_disk against libvirt's REAL test driver (test:///default), not a fake.

libvirt-python's test driver runs in this process, without a daemon, and
formats a domain like libvirtd does: graphics passwords (passwd=) appear only
with VIR_DOMAIN_XML_SECURE, which a read-only connection may not ask for.
That is the behaviour that decides whether a rewritten definition keeps the
VNC/SPICE passwords, so these tests use it instead of libvirt_fakes.py or the
fakes of test_storage_modules.py.

The driver's state lives as long as a connection to it is open: the test opens
one read-write connection and hands it to the module (its close() is a no-op),
so the test sees exactly what the module defined. For check mode the module
gets a read-only connection to the same default driver, opened while the
test's connection keeps that state alive.
"""
import json

import libvirt
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.module_utils import guest_disk as G
from ansible_collections.secvirt.kvm.plugins.modules import libvirt_guest_disk as guest_disk

VNC_PASSWORD = 'hunter2vnc'
SPICE_PASSWORD = 'Spice-Pw-77'
NAME = 'gd-secure'
DOMAIN = """<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/var/lib/libvirt/images/gd-secure.qcow2'/><target dev='vda' bus='virtio'/></disk>
<graphics type='vnc' port='-1' autoport='yes' passwd='%s'/>
<graphics type='spice' autoport='yes' passwd='%s'/>
</devices></domain>""" % (NAME, VNC_PASSWORD, SPICE_PASSWORD)
SECURE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


class Borrowed(object):
    """The test's connection lent to the module: its close() must not end it."""

    def __init__(self, conn):
        self._conn = conn

    def close(self):
        return 0

    def __getattr__(self, name):
        return getattr(self._conn, name)


def run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            guest_disk.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def conn(monkeypatch):
    real_open_ro = libvirt.openReadOnly
    connection = libvirt.open('test:///default')
    dom = connection.defineXML(DOMAIN)
    readonly = real_open_ro('test:///default')
    monkeypatch.setattr(libvirt, 'open', lambda uri: Borrowed(connection))
    monkeypatch.setattr(libvirt, 'openReadOnly', lambda uri: Borrowed(readonly))
    yield connection
    dom.undefine()
    readonly.close()
    connection.close()


def no_password_in(result):
    text = json.dumps(result)
    return VNC_PASSWORD not in text and SPICE_PASSWORD not in text


def test_guest_disk_module_keeps_and_masks_graphics_passwords(conn, capsys):
    args = dict(domain=NAME, target='vda', dev='/dev/mapper/gd-secure', uri='test:///default')
    check = run(dict(args, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert check['changed'] and not check.get('failed'), check
    assert no_password_in(check)
    assert "type='file'" in conn.lookupByName(NAME).XMLDesc(SECURE)  # check mode defined nothing

    done = run(dict(args, _ansible_diff=True), capsys)
    assert done['changed'] and not done.get('failed'), done
    stored = conn.lookupByName(NAME).XMLDesc(SECURE)
    assert "<source dev='/dev/mapper/gd-secure'/>" in stored
    # the redefined guest keeps both passwords ...
    assert "passwd='%s'" % VNC_PASSWORD in stored
    assert "passwd='%s'" % SPICE_PASSWORD in stored
    # ... and the module shows neither, only the mask, in before and after alike
    assert no_password_in(done)
    assert done['diff']['before'].count("passwd='%s'" % G.PASSWORD_MASK) == 2
    assert done['diff']['after'].count("passwd='%s'" % G.PASSWORD_MASK) == 2

    again = run(dict(args, _ansible_diff=True), capsys)
    assert not again['changed'] and no_password_in(again)
    assert "passwd='%s'" % VNC_PASSWORD in conn.lookupByName(NAME).XMLDesc(SECURE)
    query = run(dict(args, state='query'), capsys)
    assert query['disk']['source'] == '/dev/mapper/gd-secure' and no_password_in(query)
