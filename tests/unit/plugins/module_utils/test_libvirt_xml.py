"""Unit tests for plugins/module_utils/libvirt_xml.py (no libvirt needed)."""
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import nwfilter_xml as nfx

from libvirt_xml_samples import DOMAIN


# ---------------------------------------------------------------- generic

def test_parse_xml_refuses_entities_and_garbage():
    with pytest.raises(lx.XMLValidationError, match='DOCTYPE'):
        lx.parse_xml('<!DOCTYPE x [<!ENTITY a "b">]><filter/>')
    with pytest.raises(lx.XMLValidationError, match='not well-formed'):
        lx.parse_xml('<filter>', 'xml')
    with pytest.raises(lx.XMLValidationError, match='empty'):
        lx.parse_xml('  ')
    elem = ET.Element('a')
    copy = lx.parse_xml(elem)
    assert copy is not elem and copy.tag == 'a'


def test_namespaced_elements_keep_their_prefix():
    text = ("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>g</name>"
            "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>"
            "<libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo></metadata>"
            "<qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline></domain>")
    out = lx.to_string(lx.parse_xml(text), pretty=False)
    assert '<qemu:arg value="-no-hpet" />' in out
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in out
    assert '<libosinfo:os id="http://debian.org/debian/12" />' in out
    assert 'ns0:' not in out


def test_canonical_ignores_attribute_order_whitespace_and_uuid():
    first = "<a y='1' x='2'>\n  <uuid>1</uuid>\n  <b> text </b>\n</a>"
    second = '<a x="2" y="1"><b>text</b><uuid>2</uuid></a>'
    assert lx.canonical(first) == lx.canonical(second) == '<a x="2" y="1"><b>text</b></a>'
    assert lx.xml_equal(first, second)
    assert not lx.xml_equal(first, '<a x="2" y="1"><b>other</b></a>')
    # element order is significant (rule order matters to libvirt)
    assert not lx.xml_equal('<a><b/><c/></a>', '<a><c/><b/></a>')


def test_to_string_pretty_prints_without_touching_input():
    elem = lx.parse_xml('<a><b><c/></b><d>x</d></a>')
    text = lx.to_string(elem)
    assert text == '<a>\n  <b>\n    <c />\n  </b>\n  <d>x</d>\n</a>'
    assert elem.find('b').tail is None
    assert lx.to_string(elem, pretty=False) == '<a><b><c /></b><d>x</d></a>'


def test_unified_diff_and_diff_dict():
    assert lx.unified_diff('a\n', 'a\n') == ''
    diff = lx.unified_diff('a\nb\n', 'a\nc\n', 'old', 'new')
    assert '--- old' in diff and '-b' in diff and '+c' in diff
    result = lx.diff_dict('x', 'y', 'before h', 'after h')
    assert result == {'before': 'x\n', 'after': 'y\n', 'before_header': 'before h', 'after_header': 'after h'}
    assert lx.diff_dict(None, '') == {'before': '', 'after': ''}


@pytest.mark.parametrize('mac,expected', [
    ('52:54:00:AB:cd:01', '52:54:00:ab:cd:01'),
    ('52-54-0-ab-cd-1', '52:54:00:ab:cd:01'),
])
def test_normalize_mac(mac, expected):
    assert lx.normalize_mac(mac) == expected


@pytest.mark.parametrize('mac', ['52:54:00:ab:cd', 'zz:54:00:ab:cd:01', '525400abcd01', '52:54:00:ab:cd:001'])
def test_normalize_mac_refuses_garbage(mac):
    with pytest.raises(lx.XMLValidationError):
        lx.normalize_mac(mac)


# ---------------------------------------------------------------- interfaces

def test_find_interface_by_mac_or_target():
    domain = lx.parse_xml(DOMAIN)
    assert lx.find_interface(domain, mac='52:54:00:aa:BB:01') is not None
    assert lx.interface_mac(lx.find_interface(domain, target_dev='vnet0')) == '52:54:00:aa:bb:01'
    assert lx.find_interface(domain, mac='52:54:00:00:00:00') is None
    assert lx.find_interface(domain, target_dev='vnet9') is None
    assert lx.interface_target(lx.find_interface(domain, mac='52:54:00:aa:bb:02')) is None
    assert lx.interface_mac(ET.Element('interface')) is None
    assert lx.domain_interfaces('<domain/>') == []
    assert nfx.domain_filter_references(domain) == [('52:54:00:aa:bb:01', 'clean-traffic')]
