# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest disk XML helpers: find a disk, point it at a block device, find users.

Plain Python on xml.etree.ElementTree (no lxml, no libvirt import here): the
guest_disk and luks_volume modules pass XML strings in, the unit tests too;
run_guest_disk() takes an open libvirt connection (the tests pass one to
libvirt's test driver).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import LibvirtModuleError, domain_xml

# Attributes of <source> that name the storage for each disk type.
SOURCE_ATTRIBUTES = ('file', 'dev', 'dir', 'name', 'pool', 'volume', 'protocol', 'index')

STATE_NAMES = {0: 'no state', 1: 'running', 2: 'blocked', 3: 'paused', 4: 'shutting down',
               5: 'shut off', 6: 'crashed', 7: 'suspended'}

# What replaces a password in every XML that the module shows or returns.
PASSWORD_MASK = '********'
# passwd='...' of <graphics> (VNC, SPICE, RDP): the secret libvirt prints only
# with VIR_DOMAIN_XML_SECURE. passwdValidTo and the like are no secret.
_PASSWORD_ATTR_RE = re.compile('(\\b(?:passwd|password)\\s*=\\s*)(?:"[^"]*"|\'[^\']*\')')


def mask_passwords(xml):
    """``xml`` with the value of every passwd/password attribute replaced by
    PASSWORD_MASK. For diffs and return values only: the XML written back to
    libvirt must keep the real passwords."""
    if not xml:
        return xml

    def _mask(match):
        quote = match.group(0)[-1]
        return match.group(1) + quote + PASSWORD_MASK + quote
    return _PASSWORD_ATTR_RE.sub(_mask, xml)


def parse_domain(xml):
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LibvirtModuleError('cannot parse the domain XML: %s' % exc)


def find_disk(root, target):
    """The <disk> element whose <target dev=...> is ``target``, or None."""
    for disk in root.findall('./devices/disk'):
        tgt = disk.find('target')
        if tgt is not None and tgt.get('dev') == target:
            return disk
    return None


def describe_disk(disk):
    """Plain facts about one <disk> element."""
    source = disk.find('source')
    driver = disk.find('driver')
    path = None
    if source is not None:
        path = source.get('file') or source.get('dev') or source.get('dir') or source.get('name')
    return {
        'type': disk.get('type'),
        'device': disk.get('device', 'disk'),
        'source': path,
        'format': driver.get('type') if driver is not None else None,
        'readonly': disk.find('readonly') is not None,
        'backing_store': disk.find('backingStore') is not None and len(list(disk.find('backingStore'))) > 0,
        'target': disk.find('target').get('dev') if disk.find('target') is not None else None,
    }


def disk_facts(xml, target):
    root = parse_domain(xml)
    disk = find_disk(root, target)
    if disk is None:
        targets = [d.find('target').get('dev') for d in root.findall('./devices/disk') if d.find('target') is not None]
        raise LibvirtModuleError('guest %s has no disk with target %s (it has: %s)'
                                 % (root.findtext('name'), target, ', '.join(targets) or 'none'))
    return describe_disk(disk)


def is_block_disk_on(facts, dev):
    return facts['type'] == 'block' and facts['source'] == dev and facts['format'] == 'raw'


def switch_to_block(xml, target, dev):
    """Return ``(new_xml, changed)`` with disk ``target`` as type=block on ``dev``.

    Keeps every other setting of the disk (bus, cache, io, serial, boot
    order, address); sets the driver type to raw (the decrypted mapper device
    holds raw data); drops a <backingStore>, which cannot apply to a raw
    block device.
    """
    root = parse_domain(xml)
    disk = find_disk(root, target)
    if disk is None:
        raise LibvirtModuleError('guest %s has no disk with target %s' % (root.findtext('name'), target))
    if disk.get('device', 'disk') not in ('disk', 'lun'):
        raise LibvirtModuleError('disk %s is a %s, not a disk' % (target, disk.get('device')))
    if is_block_disk_on(describe_disk(disk), dev):
        return xml, False
    disk.set('type', 'block')
    source = disk.find('source')
    if source is None:
        source = ET.Element('source')
        disk.insert(1 if disk.find('driver') is not None else 0, source)
    for attr in SOURCE_ATTRIBUTES:
        if attr in source.attrib:
            del source.attrib[attr]
    # Children of <source> describe network/volume storage (hosts, auth,
    # reservations...), meaningless for a local block device; keep seclabels.
    for child in list(source):
        if child.tag != 'seclabel':
            source.remove(child)
    source.set('dev', dev)
    driver = disk.find('driver')
    if driver is None:
        driver = ET.Element('driver', {'name': 'qemu'})
        disk.insert(0, driver)
    driver.set('type', 'raw')
    for backing in disk.findall('backingStore'):
        disk.remove(backing)
    return ET.tostring(root, encoding='unicode'), True


def disk_sources(xml):
    """Every local path a domain's disks use (file or block sources)."""
    root = parse_domain(xml)
    paths = []
    for disk in root.findall('./devices/disk'):
        source = disk.find('source')
        if source is None:
            continue
        for attr in ('file', 'dev'):
            if source.get(attr):
                paths.append(source.get(attr))
    return paths


def same_device(path_a, path_b, stat=os.stat):
    """Whether two paths name the same block device or file."""
    if path_a == path_b:
        return True
    try:
        a = stat(path_a)
        b = stat(path_b)
    except OSError:
        return False
    if a.st_rdev and b.st_rdev:
        return a.st_rdev == b.st_rdev
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def guests_using(domains, path, stat=os.stat):
    """Names of the running guests among ``domains`` whose disks use ``path``.

    ``domains`` is an iterable of ``(name, active, xml)``.
    """
    users = []
    for name, active, xml in domains:
        if not active:
            continue
        if any(same_device(src, path, stat) for src in disk_sources(xml)):
            users.append(name)
    return users


def libvirt_domains(conn):
    """``(name, active, xml)`` for every domain of a libvirt connection."""
    result = []
    for dom in conn.listAllDomains(0):
        result.append((dom.name(), bool(dom.isActive()), dom.XMLDesc(0)))
    return result


def run_guest_disk(conn, params, check_mode=False, diff=False):
    """Query (state=query) or switch (state=present) a guest's disk on ``conn``.

    Returns the module result; raises LibvirtModuleError. The definition that gets
    rewritten is read with VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE so
    that defineXML keeps the graphics passwords. That read needs a read-write
    connection: check mode and query, which use a read-only one, read the
    definition without secrets and write nothing. Every XML in the result
    has its passwords masked.
    """
    name, target, dev = params['domain'], params['target'], params.get('dev')
    present = (params.get('state') or 'present') == 'present'
    writing = present and not check_mode
    try:
        dom = conn.lookupByName(name)
    except Exception as exc:  # libvirt.libvirtError
        raise LibvirtModuleError('no guest named %s: %s' % (name, exc))
    state = STATE_NAMES.get(dom.state()[0], 'unknown')
    xml = domain_xml(dom, inactive=True, secure=writing)
    try:
        facts = disk_facts(xml, target)
    except LibvirtModuleError as exc:
        raise LibvirtModuleError(exc.msg, domain_state=state)
    result = dict(changed=False, disk=facts, domain_state=state)
    if not present:
        return result
    try:
        new_xml, changed = switch_to_block(xml, target, dev)
    except LibvirtModuleError as exc:
        raise LibvirtModuleError(exc.msg, **result)
    if changed and state != 'shut off':
        raise LibvirtModuleError('refusing to move disk %s of guest %s to %s: the guest is %s; shut it down first'
                                 % (target, name, dev, state), **result)
    if changed and writing:
        conn.defineXML(new_xml)
        new_xml = domain_xml(conn.lookupByName(name), inactive=True, secure=True)
    result['changed'] = changed
    if diff:
        result['diff'] = dict(before=mask_passwords(xml), after=mask_passwords(new_xml))
    return result
