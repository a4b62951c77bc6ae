"""Unit tests for plugins/module_utils/seclabel_xml.py (no libvirt needed)."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import seclabel_xml as slx

from libvirt_xml_samples import DOMAIN


@pytest.mark.parametrize('label', [
    'system_u:system_r:svirt_t:s0:c32,c256',
    'system_u:system_r:svirt_t:s0',
    'system_u:system_r:svirt_t:s0-s0:c0.c1023',
    'system_u:system_r:svirt_t:s15:c0,c1023',
    'user_u:object_r:svirt_image_t:s0:c1,c5,c7.c9',
])
def test_selinux_context_syntax_ok(label):
    assert slx.parse_selinux_context(label)[2].startswith('svirt')


@pytest.mark.parametrize('label,message', [
    ('svirt_t', 'user:role:type:level'),
    (None, 'user:role:type:level'),
    ('system u:system_r:svirt_t:s0', 'invalid user'),
    ('system_u:system_r:svirt-t:s0', 'invalid type'),
    ('system_u:system_r:svirt_t:s16', 'sensitivity'),
    ('system_u:system_r:svirt_t:x0', 'sensitivity'),
    ('system_u:system_r:svirt_t:s0:', 'empty category'),
    ('system_u:system_r:svirt_t:s0:c1024', 'outside c0..c1023'),
    ('system_u:system_r:svirt_t:s0:cx', 'not cN'),
    ('system_u:system_r:svirt_t:s0:c1.c2.c3', 'not cN'),
    ('system_u:system_r:svirt_t:s0:c5.c2', 'upwards'),
    ('system_u:system_r:svirt_t:s0-s0-s0', 'more than one range'),
])
def test_selinux_context_syntax_refused(label, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        slx.parse_selinux_context(label)


def test_parse_mls_range_categories():
    assert slx.parse_mls_range('s0-s0:c0.c3,c7') == [('s0', frozenset()), ('s0', frozenset([0, 1, 2, 3, 7]))]


@pytest.mark.parametrize('label,pair', [
    ('system_u:system_r:svirt_t:s0:c32,c256', ('s0', (32, 256))),
    ('system_u:system_r:svirt_t:s0:c0,c1023', ('s0', (0, 1023))),
])
def test_mcs_pair(label, pair):
    assert slx.mcs_pair(label) == pair


@pytest.mark.parametrize('label,message', [
    ('system_u:system_r:svirt_t:s0:c256,c32', 'N < M'),
    ('system_u:system_r:svirt_t:s0:c5,c5', 'two distinct categories'),
    ('system_u:system_r:svirt_t:s0:c7', 'has one MCS category: it needs two categories'),
    ('system_u:system_r:svirt_t:s0', 'has no MCS category: it needs two categories'),
    ('system_u:system_r:svirt_t:s0:c1,c2,c3', 'MCS pair'),
    ('system_u:system_r:svirt_t:s0:c0.c1023', 'MCS pair'),
    ('system_u:system_r:svirt_t:s0-s0:c1,c2', 'not a range'),
    ('system_u:system_r:svirt_t:s0:c1,c1024', 'outside'),
])
def test_mcs_pair_refused(label, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        slx.mcs_pair(label)


def test_static_selinux_label_needs_two_distinct_categories():
    def static(label):
        return slx.validate_seclabel({'type': 'static', 'model': 'selinux', 'label': label})
    # s0:c5 is dominated by any dynamic label s0:c5,cM: one category does not isolate
    with pytest.raises(lx.XMLValidationError, match='two categories'):
        static('system_u:system_r:svirt_t:s0:c5')
    with pytest.raises(lx.XMLValidationError, match='two categories'):
        static('system_u:system_r:svirt_t:s0')
    with pytest.raises(lx.XMLValidationError, match='two distinct categories'):
        static('system_u:system_r:svirt_t:s0:c5,c5')
    with pytest.raises(lx.XMLValidationError, match='two categories'):
        slx.validate_seclabel({'type': 'static', 'model': 'selinux', 'relabel': True,
                               'label': 'system_u:system_r:svirt_t:s0:c5,c9',
                               'imagelabel': 'system_u:object_r:svirt_image_t:s0:c5'})
    # positive control: a pair of distinct categories in c0..c1023
    assert static('system_u:system_r:svirt_t:s0:c5,c9')['mcs'] == ('s0', (5, 9))
    assert static('system_u:system_r:svirt_t:s0:c0,c1023')['mcs'] == ('s0', (0, 1023))
    # DAC labels are not MCS labels and stay as they were
    assert 'mcs' not in slx.validate_seclabel({'type': 'static', 'model': 'dac', 'label': '+970:+970'})


def test_validate_static_selinux_with_matching_imagelabel():
    spec = slx.validate_seclabel({'type': 'static', 'model': 'selinux', 'relabel': True,
                                  'label': 'system_u:system_r:svirt_t:s0:c32,c256',
                                  'imagelabel': 'system_u:object_r:svirt_image_t:s0:c32,c256'})
    assert spec['mcs'] == ('s0', (32, 256))
    elem = slx.build_seclabel(spec)
    assert lx.to_string(elem, pretty=False) == (
        '<seclabel type="static" model="selinux" relabel="yes"><label>system_u:system_r:svirt_t:s0:c32,c256'
        '</label><imagelabel>system_u:object_r:svirt_image_t:s0:c32,c256</imagelabel></seclabel>')


@pytest.mark.parametrize('spec,message', [
    ({'type': 'static', 'model': 'selinux', 'label': 'system_u:system_r:svirt_t:s0:c1,c2', 'relabel': True,
      'imagelabel': 'system_u:object_r:svirt_image_t:s0:c1,c3'}, 'same MCS categories'),
    ({'type': 'static', 'model': 'selinux', 'label': 'system_u:system_r:svirt_t:s0:c2,c1'}, 'N < M'),
    ({'type': 'static', 'model': 'selinux'}, 'needs a label'),
    ({'type': 'static', 'model': 'dac', 'label': '+1:+1', 'baselabel': 'x'}, 'only applies to dynamic'),
    ({'type': 'static', 'model': 'dac', 'label': '+1:+1', 'imagelabel': '+2:+2'}, 'only used when relabel'),
    ({'type': 'static', 'model': 'dac', 'label': 'qemu'}, 'user:group'),
    ({'type': 'static', 'model': 'dac', 'label': 'qemu:kvm:x'}, 'user:group'),
    ({'type': 'static', 'model': 'apparmor', 'label': 'libvirt profile'}, 'invalid characters'),
    ({'type': 'dynamic', 'model': 'selinux', 'label': 'system_u:system_r:svirt_t:s0'}, 'takes no label'),
    ({'type': 'dynamic', 'model': 'selinux', 'relabel': False}, 'relabel=yes'),
    ({'type': 'dynamic', 'model': 'apparmor', 'baselabel': 'x'}, 'baselabel is only'),
    ({'type': 'dynamic', 'model': 'selinux', 'baselabel': 'svirt_t'}, 'user:role:type:level'),
    ({'type': 'dynamic'}, 'needs a model'),
    ({'type': 'none', 'model': 'dac', 'label': '+1:+1'}, "type 'none'"),
    ({'type': 'random', 'model': 'dac'}, 'type must be'),
    ({'type': 'dynamic', 'model': 'smack'}, 'model must be'),
])
def test_validate_seclabel_refusals(spec, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        slx.validate_seclabel(spec)


@pytest.mark.parametrize('spec,xml', [
    ({'type': 'static', 'model': 'dac', 'label': '+970:+970'},
     '<seclabel type="static" model="dac" relabel="no"><label>+970:+970</label></seclabel>'),
    ({'type': 'static', 'model': 'dac', 'label': 'libvirt-qemu:kvm', 'relabel': True, 'imagelabel': 'root:kvm'},
     '<seclabel type="static" model="dac" relabel="yes"><label>libvirt-qemu:kvm</label>'
     '<imagelabel>root:kvm</imagelabel></seclabel>'),
    ({'type': 'dynamic', 'model': 'apparmor'}, '<seclabel type="dynamic" model="apparmor" relabel="yes" />'),
    ({'model': 'selinux', 'baselabel': 'system_u:system_r:svirt_tcg_t:s0'},
     '<seclabel type="dynamic" model="selinux" relabel="yes"><baselabel>system_u:system_r:svirt_tcg_t:s0'
     '</baselabel></seclabel>'),
    ({'type': 'static', 'model': 'apparmor', 'label': 'libvirt-0f3c2d8e'},
     '<seclabel type="static" model="apparmor" relabel="no"><label>libvirt-0f3c2d8e</label></seclabel>'),
    ({'type': 'none'}, '<seclabel type="none" />'),
    ({'type': 'none', 'model': 'dac'}, '<seclabel type="none" model="dac" />'),
])
def test_build_seclabel(spec, xml):
    assert lx.to_string(slx.build_seclabel(spec), pretty=False) == xml


def test_canonical_seclabel_applies_libvirt_defaults():
    wanted = slx.build_seclabel({'type': 'static', 'model': 'dac', 'label': '+970:+970'})
    dumped = lx.parse_xml("<seclabel model='dac' type='static' relabel='no'>\n <label>+970:+970</label>\n</seclabel>")
    assert slx.canonical_seclabel(wanted) == slx.canonical_seclabel(dumped)
    # the dynamic label libvirt generated is not part of the definition
    live = lx.parse_xml("<seclabel type='dynamic' model='apparmor' relabel='yes'><label>libvirt-1</label>"
                        "<imagelabel>libvirt-1</imagelabel></seclabel>")
    assert slx.canonical_seclabel(live) == slx.canonical_seclabel(slx.build_seclabel({'model': 'apparmor'}))
    assert slx.canonical_seclabel(live, inactive=False) != slx.canonical_seclabel(slx.build_seclabel(
        {'model': 'apparmor'}), inactive=False)
    assert slx.canonical_seclabel(lx.parse_xml("<seclabel type='dynamic' model='apparmor'/>")) == \
        slx.canonical_seclabel(lx.parse_xml("<seclabel type='dynamic' model='apparmor' relabel='yes'/>"))
    assert slx.canonical_seclabel(lx.parse_xml("<seclabel model='dac' relabel='true'/>")) == \
        slx.canonical_seclabel(lx.parse_xml("<seclabel type='dynamic' model='dac'/>"))
    assert slx.canonical_seclabel(lx.parse_xml("<seclabel type='none' relabel='no'><label>x</label></seclabel>")) == \
        '<seclabel type="none" />'
    assert slx.canonical_seclabel(None) == ''
    assert slx.canonical_seclabel(wanted) != slx.canonical_seclabel(
        slx.build_seclabel({'type': 'static', 'model': 'dac', 'label': '+971:+971'}))


def test_domain_seclabels_and_set_domain_seclabel():
    domain = lx.parse_xml(DOMAIN)
    labels = slx.domain_seclabels(DOMAIN)
    assert sorted(labels) == ['apparmor', 'dac']
    new = slx.build_seclabel({'type': 'static', 'model': 'dac', 'label': '+971:+971'})
    slx.set_domain_seclabel(domain, new, 'dac')
    assert slx.domain_seclabels(domain)['dac'].findtext('label') == '+971:+971'
    assert len(domain.findall('seclabel')) == 2
    slx.set_domain_seclabel(domain, None, 'dac')
    assert sorted(slx.domain_seclabels(domain)) == ['apparmor']
    slx.set_domain_seclabel(domain, slx.build_seclabel({'type': 'none'}), None)
    assert [s.get('type') for s in domain.findall('seclabel')] == ['none']


def _guest(name, label, stype='static'):
    return (name, lx.parse_xml("<domain><name>%s</name><seclabel type='%s' model='selinux'><label>%s</label>"
                               "</seclabel></domain>" % (name, stype, label)))


def test_find_mcs_conflicts_across_guests():
    pair = ('s0', (32, 256))
    guests = [
        _guest('self', 'system_u:system_r:svirt_t:s0:c32,c256'),
        _guest('other', 'system_u:system_r:svirt_t:s0:c32,c256'),
        _guest('running', 'system_u:system_r:svirt_t:s0:c32,c256', 'dynamic'),
        _guest('other', 'system_u:system_r:svirt_t:s0:c32,c256'),  # inactive + live of one guest
        _guest('overlapping', 'system_u:system_r:svirt_t:s0:c33,c256'),
        _guest('disjoint', 'system_u:system_r:svirt_t:s0:c33,c257'),
        _guest('uncategorised', 'system_u:system_r:svirt_t:s0'),
        _guest('everything', 'system_u:system_r:svirt_t:s0-s0:c0.c1023'),
        _guest('broken', 'garbage'),
        ('unlabelled', lx.parse_xml('<domain/>')),
        ('nolabel', lx.parse_xml("<domain><seclabel type='dynamic' model='selinux'/></domain>")),
        ('none', lx.parse_xml("<domain><seclabel type='none' model='selinux'/></domain>")),
    ]
    conflicts = [
        ('other', 'system_u:system_r:svirt_t:s0:c32,c256'),
        ('running', 'system_u:system_r:svirt_t:s0:c32,c256'),
        # one shared category is enough: either guest's qemu could open files of the other
        ('overlapping', 'system_u:system_r:svirt_t:s0:c33,c256'),
        # s0:c32,c256 dominates a label without categories
        ('uncategorised', 'system_u:system_r:svirt_t:s0'),
        # a range dominates every pair
        ('everything', 'system_u:system_r:svirt_t:s0-s0:c0.c1023')]
    assert slx.find_mcs_conflicts('self', pair, guests) == conflicts
    # sensitivities are not compared
    assert slx.find_mcs_conflicts('self', ('s1', (32, 256)), guests) == conflicts
    assert slx.find_mcs_conflicts('self', ('s0', (34, 1000)), guests) == conflicts[-2:]
    assert slx.find_mcs_conflicts('self', None, guests) == []
