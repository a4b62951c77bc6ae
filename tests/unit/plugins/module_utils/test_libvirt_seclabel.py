"""Unit tests for plugins/module_utils/libvirt_seclabel.py against fake libvirt objects."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_seclabel as sl
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import seclabel_xml as slx

from libvirt_fakes import FakeConn, FakeError

GUEST = "<domain type='qemu'><name>%s</name><memory>65536</memory><devices/>%s</domain>"
SELINUX_CAPS = "<capabilities><host><secmodel><model>selinux</model><doi>0</doi></secmodel>" \
               "<secmodel><model>dac</model><doi>0</doi></secmodel></host></capabilities>"
LABEL = 'system_u:system_r:svirt_t:s0:c32,c256'


def params(**kwargs):
    result = {'domain': 'guest1', 'model': 'dac', 'type': 'static', 'label': '+970:+970', 'imagelabel': None,
              'baselabel': None, 'relabel': None, 'state': 'present', 'check_unique': True,
              'require_host_model': True}
    result.update(kwargs)
    return result


@pytest.fixture
def conn():
    conn = FakeConn()
    conn.add_domain('guest1', GUEST % ('guest1', "<seclabel type='dynamic' model='apparmor' relabel='yes'/>"))
    return conn


def test_static_dac_label_define_and_idempotent(conn):
    result = sl.run_seclabel(conn, params())
    assert result['changed'] and not result['restart_required'] and not result['active']
    dom = conn.domains['guest1']
    labels = slx.domain_seclabels(dom.inactive)
    assert labels['dac'].findtext('label') == '+970:+970' and labels['dac'].get('relabel') == 'no'
    assert 'apparmor' in labels  # the other model's label stays
    assert result['host_models'] == ['apparmor', 'dac']
    assert result['diff']['before'] == '' and '+970:+970' in result['diff']['after']
    again = sl.run_seclabel(conn, params())
    assert again['changed'] is False and len(conn.defined) == 1
    assert again['seclabel'] == result['seclabel']


def test_check_mode_and_running_guest_needs_restart(conn):
    dom = conn.domains['guest1']
    dom.active = True
    dom.live = GUEST % ('guest1', "<seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64055</label>"
                        "<imagelabel>+64055:+64055</imagelabel></seclabel>")
    result = sl.run_seclabel(conn, params(), check_mode=True, secure=False)
    assert result['changed'] and result['restart_required'] and conn.defined == []
    assert result['live_labels'] == [{'model': 'apparmor', 'label': 'libvirt-guest1', 'enforcing': True},
                                     {'model': 'dac', 'label': '+64055:+64055', 'enforcing': False}]
    assert result['live_label'] == '+64055:+64055' and result['live_imagelabel'] == '+64055:+64055'
    assert 'next start' in result['warnings'][0]
    result = sl.run_seclabel(conn, params(model='apparmor', type='dynamic', label=None))
    assert result['changed'] is False and result['live_label'] == 'libvirt-guest1'
    assert result['live_imagelabel'] is None


def test_absent_removes_label(conn):
    result = sl.run_seclabel(conn, params(model='apparmor', state='absent'))
    assert result['changed'] and 'apparmor' not in slx.domain_seclabels(conn.domains['guest1'].inactive)
    assert result['seclabel'] == ''
    assert sl.run_seclabel(conn, params(model='apparmor', state='absent'))['changed'] is False
    with pytest.raises(lc.LibvirtModuleError, match='model is required'):
        sl.run_seclabel(conn, params(model=None, state='absent'))


def test_type_none_without_model(conn):
    result = sl.run_seclabel(conn, params(model=None, type='none', label=None))
    assert result['changed']
    assert [(s.get('type'), s.get('model')) for s in lx.parse_xml(conn.domains['guest1'].inactive).findall(
        'seclabel')] == [('none', None)]
    assert sl.run_seclabel(conn, params(model=None, type='none', label=None))['changed'] is False


def test_invalid_label_fails_before_any_change(conn):
    with pytest.raises(lc.LibvirtModuleError, match='user:group'):
        sl.run_seclabel(conn, params(label='nobody'))
    assert conn.defined == []


def test_model_not_on_host(conn):
    with pytest.raises(lc.LibvirtModuleError, match='no selinux security driver .*apparmor, dac'):
        sl.run_seclabel(conn, params(model='selinux', label=LABEL))
    result = sl.run_seclabel(conn, params(model='selinux', label=LABEL, require_host_model=False))
    assert result['changed'] and 'will not start here' in result['warnings'][0]


def test_duplicate_mcs_pair_refused(conn):
    conn.caps = SELINUX_CAPS
    conn.add_domain('other', GUEST % ('other', "<seclabel type='static' model='selinux' relabel='no'>"
                                               "<label>%s</label></seclabel>" % LABEL))
    with pytest.raises(lc.LibvirtModuleError, match=r'already used by other \(system_u') as err:
        sl.run_seclabel(conn, params(model='selinux', label=LABEL))
    assert err.value.details['conflicts'] == [{'domain': 'other', 'label': LABEL}]
    assert conn.defined == []
    # a running guest's dynamic pair counts as well
    runner = conn.add_domain('runner', GUEST % ('runner', "<seclabel type='dynamic' model='selinux'/>"),
                             active=True, live_xml=GUEST % ('runner', "<seclabel type='dynamic' model='selinux' "
                                                            "relabel='yes'><label>system_u:system_r:svirt_t:s0:c1,c2"
                                                            "</label></seclabel>"))
    assert runner.isActive()
    with pytest.raises(lc.LibvirtModuleError, match='runner'):
        sl.run_seclabel(conn, params(model='selinux', label='system_u:system_r:svirt_t:s0:c1,c2'))
    # the guest holding the pair may keep it
    assert sl.run_seclabel(conn, params(domain='other', model='selinux', label=LABEL))['changed'] is False
    # check_unique=false lets an operator share a pair on purpose
    assert sl.run_seclabel(conn, params(model='selinux', label=LABEL, check_unique=False))['changed']
    with pytest.raises(lc.LibvirtModuleError, match='already used by guest1'):
        sl.run_seclabel(conn, params(domain='other', model='selinux', label=LABEL))


def test_selinux_label_without_two_categories_refused(conn):
    conn.caps = SELINUX_CAPS
    for label in ('system_u:system_r:svirt_t:s0', 'system_u:system_r:svirt_t:s0:c5'):
        with pytest.raises(lc.LibvirtModuleError, match='needs two categories'):
            sl.run_seclabel(conn, params(model='selinux', label=label))
    assert conn.defined == []


def test_transient_guest_and_libvirt_refusal(conn):
    conn.add_domain('transient', None, active=True, persistent=False, live_xml=GUEST % ('transient', ''))
    with pytest.raises(lc.LibvirtModuleError, match='transient'):
        sl.run_seclabel(conn, params(domain='transient'))
    conn.define_error = FakeError('unsupported configuration: security label', 67)
    with pytest.raises(lc.LibvirtModuleError, match='refused the security label for guest guest1: unsupported'):
        sl.run_seclabel(conn, params())
    with pytest.raises(lc.LibvirtModuleError, match='guest nope is not defined'):
        sl.run_seclabel(conn, params(domain='nope'))


NODE = """<node>
  <domain type='test'><name>mcs-holder</name><memory>65536</memory><os><type>hvm</type></os>
    <seclabel type='static' model='selinux' relabel='no'><label>%s</label></seclabel></domain>
  <domain type='test'><name>mcs-newcomer</name><memory>65536</memory><os><type>hvm</type></os></domain>
</node>""" % LABEL


def test_duplicate_pair_against_real_libvirt_test_driver(tmp_path):
    # libvirt-python and libvirt's own test driver: real XML from the daemon code
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    conn = lc.open_connection('test://%s' % node)
    with pytest.raises(lc.LibvirtModuleError, match='already used by mcs-holder'):
        sl.run_seclabel(conn, params(domain='mcs-newcomer', model='selinux', label=LABEL, require_host_model=False))
    result = sl.run_seclabel(conn, params(domain='mcs-newcomer', model='selinux', require_host_model=False,
                                          label='system_u:system_r:svirt_t:s0:c33,c257'))
    assert result['changed'] and result['host_models'] == ['testSecurity']
    stored = slx.domain_seclabels(conn.lookupByName('mcs-newcomer').XMLDesc(lc.XML_INACTIVE))['selinux']
    assert stored.findtext('label') == 'system_u:system_r:svirt_t:s0:c33,c257'
    # what libvirt stored compares equal to the request: the next run is a no-op
    again = sl.run_seclabel(conn, params(domain='mcs-newcomer', model='selinux', require_host_model=False,
                                         label='system_u:system_r:svirt_t:s0:c33,c257'))
    assert again['changed'] is False


OVERLAP_NODE = """<node>
  <domain type='test'><name>mcs-holder</name><memory>65536</memory><os><type>hvm</type></os>
    <seclabel type='static' model='selinux' relabel='no'><label>%s</label></seclabel></domain>
  <domain type='test'><name>mcs-newcomer</name><memory>65536</memory><os><type>hvm</type></os></domain>
</node>""" % LABEL


def test_label_sharing_one_category_with_another_guest_refused(tmp_path):
    # libvirt's real test driver (test://<node file>), as in the test above
    node = tmp_path / 'node.xml'
    node.write_text(OVERLAP_NODE)
    conn = lc.open_connection('test://%s' % node)
    args = dict(domain='mcs-newcomer', model='selinux', require_host_model=False)
    # c256 is shared with mcs-holder's s0:c32,c256: either guest could open the other's files
    shared = 'system_u:system_r:svirt_t:s0:c33,c256'
    with pytest.raises(lc.LibvirtModuleError, match='mcs-holder') as err:
        sl.run_seclabel(conn, params(label=shared, **args))
    assert err.value.details['conflicts'] == [{'domain': 'mcs-holder', 'label': LABEL}]
    assert 'seclabel' not in conn.lookupByName('mcs-newcomer').XMLDesc(lc.XML_INACTIVE)
    # positive control: a pair disjoint from every other guest's categories
    disjoint = 'system_u:system_r:svirt_t:s0:c33,c257'
    result = sl.run_seclabel(conn, params(label=disjoint, **args))
    assert result['changed']
    stored = slx.domain_seclabels(conn.lookupByName('mcs-newcomer').XMLDesc(lc.XML_INACTIVE))['selinux']
    assert stored.findtext('label') == disjoint
