# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Connection and lookup helpers shared by the secvirt.kvm libvirt modules.

Plain Python on top of libvirt-python: the modules call these, the unit tests
call them with fake connections. Every failure meant for the user is raised as
LibvirtModuleError with a message that says what to do about it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback
import xml.etree.ElementTree as ET

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

HAS_LIBVIRT = libvirt is not None

# Constants from libvirt.h, so that this module also imports without libvirt
AFFECT_CURRENT = 0
AFFECT_LIVE = 1
AFFECT_CONFIG = 2
XML_SECURE = 1
XML_INACTIVE = 2
ERR_OPERATION_INVALID = 55
ERR_NO_DOMAIN = 42
ERR_NO_NWFILTER = 62
ERR_OPERATION_UNSUPPORTED = 84
ERR_CONFIG_UNSUPPORTED = 67
ERR_NO_SUPPORT = 3
ERR_ARGUMENT_UNSUPPORTED = 74
# errors that mean "libvirt cannot do this to a running guest"
LIVE_UNSUPPORTED_ERRORS = (ERR_OPERATION_UNSUPPORTED, ERR_CONFIG_UNSUPPORTED, ERR_NO_SUPPORT,
                           ERR_ARGUMENT_UNSUPPORTED, ERR_OPERATION_INVALID)
LIBVIRT_PACKAGE = 'libvirt-python (Debian/Ubuntu: python3-libvirt, RHEL/Fedora: python3-libvirt)'
DEFAULT_URI = 'qemu:///system'


def uri_argument_spec():
    """The argument spec entry of the `uri` option (documented by the secvirt.kvm.libvirt fragment)."""
    return dict(uri=dict(type='str', default=DEFAULT_URI))


class LibvirtModuleError(Exception):
    """An error whose message is shown to the user as the module's msg."""

    def __init__(self, msg, **details):
        super(LibvirtModuleError, self).__init__(msg)
        self.msg = msg
        self.details = details


def require_libvirt(module):
    """fail_json with Ansible's standard message when libvirt-python is missing."""
    if not HAS_LIBVIRT:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib(LIBVIRT_PACKAGE), exception=LIBVIRT_IMPORT_ERROR)


def error_code(exc):
    getter = getattr(exc, 'get_error_code', None)
    return getter() if getter else None


def error_message(exc):
    getter = getattr(exc, 'get_error_message', None)
    text = getter() if getter else None
    return text or str(exc)


def _quiet(_ctx, _err):
    """libvirt prints every error to stderr unless a handler is registered."""


def describe_connect_error(uri, exc):
    text = error_message(exc)
    lowered = text.lower()
    if 'permission denied' in lowered or 'authentication' in lowered or 'polkit' in lowered:
        return ('permission denied connecting to libvirt at %s: run the task as root (become: true) '
                'or as a member of the libvirt group: %s' % (uri, text))
    if 'no such file' in lowered or 'failed to connect socket' in lowered or 'connection refused' in lowered:
        return ('cannot connect to libvirt at %s: the daemon is not running or its socket is missing '
                '(install libvirt-daemon-system and start libvirtd.socket, or virtqemud.socket and '
                'virtnwfilterd.socket for the modular daemons): %s' % (uri, text))
    return 'cannot connect to libvirt at %s: %s' % (uri, text)


def open_connection(uri, readonly=False, lv=None):
    """Open a (read-only) connection or raise LibvirtModuleError."""
    lv = lv or libvirt
    if lv is None:
        raise LibvirtModuleError('the Python module libvirt is missing: install %s' % LIBVIRT_PACKAGE)
    lv.registerErrorHandler(_quiet, None)
    try:
        conn = lv.openReadOnly(uri) if readonly else lv.open(uri)
    except lv.libvirtError as exc:
        raise LibvirtModuleError(describe_connect_error(uri, exc))
    if conn is None:  # very old bindings returned None instead of raising
        raise LibvirtModuleError('cannot connect to libvirt at %s' % uri)
    return conn


def run_libvirt_module(module, work, readonly=None, user_errors=()):
    """The ending every libvirt module shares: open the connection (read-only
    in check mode unless ``readonly`` says otherwise), call ``work(conn)`` for
    the result dict, close the connection, and report.

    LibvirtModuleError, the ``user_errors`` (e.g. XML validation) and any
    libvirt error become fail_json with their message. The result's
    ``warnings`` go through module.warn; its ``diff`` is returned only when
    Ansible runs with --diff.
    """
    require_libvirt(module)
    if readonly is None:
        readonly = module.check_mode
    conn = None
    try:
        conn = open_connection(module.params['uri'], readonly=readonly)
        result = work(conn)
    except LibvirtModuleError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except user_errors as exc:  # pylint: disable=catching-non-exception
        module.fail_json(msg=str(exc))
    except Exception as exc:  # libvirt.libvirtError and friends
        module.fail_json(msg='libvirt error: %s' % error_message(exc))
    finally:
        close = getattr(conn, 'close', None)
        if close is not None:
            try:
                close()
            except Exception:  # closing never hides the module's own outcome
                pass
    for warning in result.pop('warnings', []):
        module.warn(warning)
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    module.exit_json(**result)


def lookup_domain(conn, name):
    try:
        return conn.lookupByName(name)
    except Exception as exc:
        if error_code(exc) == ERR_NO_DOMAIN:
            raise LibvirtModuleError('guest %s is not defined on this host' % name)
        raise


def lookup_nwfilter(conn, name):
    """The virNWFilter called name, or None."""
    try:
        return conn.nwfilterLookupByName(name)
    except Exception as exc:
        if error_code(exc) == ERR_NO_NWFILTER:
            return None
        raise


def domain_xml(dom, inactive=False, secure=False):
    """The guest's XML. secure=True keeps secrets (needs a read-write
    connection); use it whenever the XML is written back with defineXML."""
    flags = (XML_INACTIVE if inactive else 0) | (XML_SECURE if secure else 0)
    return dom.XMLDesc(flags)


def domain_definitions(conn, secure=False):
    """[(name, inactive XML, live XML or None)] of every guest on the host."""
    result = []
    for dom in conn.listAllDomains(0):
        live = domain_xml(dom, secure=secure) if dom.isActive() else None
        inactive = domain_xml(dom, inactive=True, secure=secure) if dom.isPersistent() else live
        result.append((dom.name(), inactive, live))
    return result


def host_security_models(conn):
    """Security drivers of the host, in the order of virDomainGetSecurityLabelList."""
    caps = ET.fromstring(conn.getCapabilities())
    models = []
    for secmodel in caps.findall('./host/secmodel'):
        models.append({'model': (secmodel.findtext('model') or '').strip(),
                       'doi': (secmodel.findtext('doi') or '').strip()})
    return models


def live_security_labels(conn, dom):
    """[{'model', 'label', 'enforcing'}] of a running guest (the labels the
    security drivers really put on the qemu process)."""
    models = host_security_models(conn)
    labels = []
    try:
        entries = dom.securityLabelList()
    except Exception as exc:
        # drivers without the list call (libvirt's test driver) only know the primary label
        if error_code(exc) != ERR_NO_SUPPORT:
            raise
        entries = [dom.securityLabel()]
    for index, entry in enumerate(entries):
        model = models[index]['model'] if index < len(models) else None
        labels.append({'model': model, 'label': entry[0], 'enforcing': bool(entry[1])})
    return labels


def nwfilter_bindings(conn):
    """[{'portdev', 'filter'}] of the filters instantiated on running guests."""
    lister = getattr(conn, 'listAllNWFilterBindings', None)
    if lister is None:  # pragma: no cover - libvirt < 4.5
        return []
    try:
        bindings = lister(0)
    except Exception:
        return []
    return [{'portdev': b.portDev(), 'filter': b.filterName()} for b in bindings]
