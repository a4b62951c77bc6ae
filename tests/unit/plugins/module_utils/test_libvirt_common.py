"""Unit tests for plugins/module_utils/libvirt_common.py."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc

from libvirt_fakes import FakeConn, FakeError, FakeLibvirtModule


def test_open_connection_read_only_and_read_write():
    lv = FakeLibvirtModule()
    assert lc.open_connection('qemu:///system', readonly=True, lv=lv).readonly is True
    assert lc.open_connection('qemu:///system', lv=lv).readonly is False
    assert lv.opened == [('qemu:///system', True), ('qemu:///system', False)]
    # libvirt's default handler would print every error on stderr
    assert lv.handler is not None and lv.handler(None, None) is None


@pytest.mark.parametrize('message,expected', [
    ("Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory",
     'daemon is not running or its socket is missing'),
    ("Failed to connect socket to '/var/run/libvirt/virtqemud-sock': Connection refused",
     'virtqemud.socket'),
    ("Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
     'become: true'),
    ('authentication unavailable: no polkit agent available', 'libvirt group'),
    ('internal error: something else', 'cannot connect to libvirt at qemu:///system: internal error'),
])
def test_open_connection_explains_failures(message, expected):
    lv = FakeLibvirtModule(error=FakeError(message, 38))
    with pytest.raises(lc.LibvirtModuleError, match=expected.replace('(', r'\(').replace(')', r'\)')):
        lc.open_connection('qemu:///system', lv=lv)


def test_open_connection_none_and_missing_module(monkeypatch):
    lv = FakeLibvirtModule()
    lv.open = lambda uri: None
    with pytest.raises(lc.LibvirtModuleError, match='cannot connect'):
        lc.open_connection('qemu:///system', lv=lv)
    monkeypatch.setattr(lc, 'libvirt', None)
    with pytest.raises(lc.LibvirtModuleError, match='python3-libvirt'):
        lc.open_connection('qemu:///system')


class FakeModule(object):
    def __init__(self):
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise SystemExit(1)


def test_require_libvirt(monkeypatch):
    module = FakeModule()
    monkeypatch.setattr(lc, 'HAS_LIBVIRT', True)
    lc.require_libvirt(module)
    assert module.failed is None
    monkeypatch.setattr(lc, 'HAS_LIBVIRT', False)
    monkeypatch.setattr(lc, 'LIBVIRT_IMPORT_ERROR', 'Traceback: ImportError')
    with pytest.raises(SystemExit):
        lc.require_libvirt(module)
    assert 'python3-libvirt' in module.failed['msg'] and module.failed['exception'] == 'Traceback: ImportError'


def test_error_helpers():
    assert lc.error_code(FakeError('x', 42)) == 42
    assert lc.error_code(ValueError('x')) is None
    assert lc.error_message(FakeError('boom', 1)) == 'boom'
    assert lc.error_message(ValueError('plain')) == 'plain'
    assert lc.LibvirtModuleError('m', a=1).details == {'a': 1}


def test_lookups():
    conn = FakeConn()
    conn.add_domain('g', '<domain><name>g</name></domain>')
    assert lc.lookup_domain(conn, 'g').name() == 'g'
    with pytest.raises(lc.LibvirtModuleError, match='guest nope is not defined'):
        lc.lookup_domain(conn, 'nope')
    assert lc.lookup_nwfilter(conn, 'nope') is None
    conn.add_filter("<filter name='f'/>")
    assert lc.lookup_nwfilter(conn, 'f').name() == 'f'

    def broken(_name):
        raise FakeError('connection lost', 38)
    conn.lookupByName = broken
    conn.nwfilterLookupByName = broken
    with pytest.raises(FakeError):
        lc.lookup_domain(conn, 'g')
    with pytest.raises(FakeError):
        lc.lookup_nwfilter(conn, 'f')


def test_domain_xml_flags_and_definitions():
    conn = FakeConn(readonly=True)
    dom = conn.add_domain('run', '<domain><name>run</name></domain>', active=True,
                          live_xml="<domain id='1'><name>run</name></domain>")
    conn.add_domain('off', '<domain><name>off</name></domain>')
    conn.add_domain('trans', None, active=True, persistent=False, live_xml="<domain id='2'/>")
    assert lc.domain_xml(dom) == "<domain id='1'><name>run</name></domain>"
    assert lc.domain_xml(dom, inactive=True) == '<domain><name>run</name></domain>'
    with pytest.raises(FakeError, match='read only'):
        lc.domain_xml(dom, secure=True)
    assert lc.domain_definitions(conn) == [
        ('run', '<domain><name>run</name></domain>', "<domain id='1'><name>run</name></domain>"),
        ('off', '<domain><name>off</name></domain>', None),
        ('trans', "<domain id='2'/>", "<domain id='2'/>"),
    ]


def test_security_models_and_live_labels():
    conn = FakeConn()
    dom = conn.add_domain('g', '<domain/>', active=True)
    assert lc.host_security_models(conn) == [{'model': 'apparmor', 'doi': '0'}, {'model': 'dac', 'doi': '0'}]
    dom.labels = [['libvirt-x', 1], ['+1:+1', 0], ['extra', 0]]
    assert lc.live_security_labels(conn, dom) == [
        {'model': 'apparmor', 'label': 'libvirt-x', 'enforcing': True},
        {'model': 'dac', 'label': '+1:+1', 'enforcing': False},
        {'model': None, 'label': 'extra', 'enforcing': False}]


def test_nwfilter_bindings():
    conn = FakeConn()
    conn.bindings = [('vnet0', 'clean-traffic')]
    assert lc.nwfilter_bindings(conn) == [{'portdev': 'vnet0', 'filter': 'clean-traffic'}]

    def unsupported(_flags):
        raise FakeError('this function is not supported by the connection driver', 3)
    conn.listAllNWFilterBindings = unsupported
    assert lc.nwfilter_bindings(conn) == []


def test_real_libvirt_python_is_importable_here():
    # the controller venv carries libvirt-python 9.0 like the Debian 12 targets
    assert lc.HAS_LIBVIRT is True
    conn = lc.open_connection('test:///default', readonly=True)
    assert lc.lookup_domain(conn, 'test').name() == 'test'
    assert lc.live_security_labels(conn, lc.lookup_domain(conn, 'test'))[0]['label'] == 'libvirt-test'


def test_constants_match_libvirt_python():
    import libvirt
    for ours, theirs in (('AFFECT_LIVE', 'VIR_DOMAIN_AFFECT_LIVE'), ('AFFECT_CONFIG', 'VIR_DOMAIN_AFFECT_CONFIG'),
                         ('XML_SECURE', 'VIR_DOMAIN_XML_SECURE'), ('XML_INACTIVE', 'VIR_DOMAIN_XML_INACTIVE'),
                         ('ERR_NO_DOMAIN', 'VIR_ERR_NO_DOMAIN'), ('ERR_NO_NWFILTER', 'VIR_ERR_NO_NWFILTER'),
                         ('ERR_OPERATION_INVALID', 'VIR_ERR_OPERATION_INVALID'),
                         ('ERR_OPERATION_UNSUPPORTED', 'VIR_ERR_OPERATION_UNSUPPORTED'),
                         ('ERR_CONFIG_UNSUPPORTED', 'VIR_ERR_CONFIG_UNSUPPORTED'), ('ERR_NO_SUPPORT', 'VIR_ERR_NO_SUPPORT'),
                         ('ERR_ARGUMENT_UNSUPPORTED', 'VIR_ERR_ARGUMENT_UNSUPPORTED')):
        assert getattr(lc, ours) == getattr(libvirt, theirs), ours
