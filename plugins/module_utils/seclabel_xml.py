# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Security label (sVirt) XML for the secvirt.kvm libvirt modules.

SELinux context and MCS parsing, validation, construction and canonicalisation
of a domain's ``<seclabel>``, and the check that a static SELinux label does
not share MCS categories with another guest. Pure XML like libvirt_xml.py,
which explains the canonical form: here it makes libvirt's ``relabel``
defaults explicit and drops the label libvirt generates for a dynamic label.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import re
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_xml import XMLValidationError, canonical, parse_xml


SECLABEL_TYPES = ('dynamic', 'static', 'none')
SECLABEL_MODELS = ('selinux', 'apparmor', 'dac')
MCS_MAX_CATEGORY = 1023
_SELINUX_PART_RE = re.compile(r'^[A-Za-z0-9_.]+$')
_SENSITIVITY_RE = re.compile(r'^s([0-9]|1[0-5])$')
_CATEGORY_RE = re.compile(r'^c([0-9]+)$')
_DAC_PART_RE = re.compile(r'^(\+[0-9]+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$')
_APPARMOR_RE = re.compile(r'^[A-Za-z0-9_.:/+-]+$')


def parse_selinux_context(label):
    """'user:role:type:level' -> (user, role, type, level); validates syntax."""
    if not isinstance(label, str) or label.count(':') < 3:
        raise XMLValidationError('SELinux label %r must be user:role:type:level, e.g. '
                                 'system_u:system_r:svirt_t:s0:c10,c20' % (label,))
    user, role, type_, level = label.split(':', 3)
    for what, part in (('user', user), ('role', role), ('type', type_)):
        if not _SELINUX_PART_RE.match(part):
            raise XMLValidationError('SELinux label %r has an invalid %s %r' % (label, what, part))
    parse_mls_range(level, label)
    return user, role, type_, level


def parse_mls_range(level, label=None):
    """'s0', 's0:c1,c2', 's0-s0:c0.c1023' -> [(sensitivity, categories)]."""
    result = []
    parts = level.split('-')
    if len(parts) > 2:
        raise XMLValidationError('SELinux level %r of %r has more than one range' % (level, label or level))
    for part in parts:
        result.append(_parse_mls_level(part, label or level))
    return result


def _parse_mls_level(level, label):
    sens, _sep, cats = level.partition(':')
    if not _SENSITIVITY_RE.match(sens):
        raise XMLValidationError('SELinux level %r of %r: sensitivity must be s0..s15' % (level, label))
    categories = set()
    if _sep and not cats:
        raise XMLValidationError('SELinux level %r of %r has an empty category list' % (level, label))
    for item in cats.split(',') if cats else []:
        ends = item.split('.')
        if len(ends) > 2:
            raise XMLValidationError('SELinux category %r of %r is not cN or cN.cM' % (item, label))
        numbers = []
        for end in ends:
            match = _CATEGORY_RE.match(end)
            if not match:
                raise XMLValidationError('SELinux category %r of %r is not cN or cN.cM' % (item, label))
            number = int(match.group(1))
            if number > MCS_MAX_CATEGORY:
                raise XMLValidationError('SELinux category c%d of %r is outside c0..c%d'
                                         % (number, label, MCS_MAX_CATEGORY))
            numbers.append(number)
        if len(numbers) == 2 and numbers[0] >= numbers[1]:
            raise XMLValidationError('SELinux category range %r of %r must go upwards' % (item, label))
        categories.update(range(numbers[0], numbers[-1] + 1))
    return sens, frozenset(categories)


def mcs_pair(label):
    """The sVirt MCS part of a static SELinux label: (sensitivity, (N, M)).

    sVirt isolates guests by giving each a pair of categories s0:cN,cM with
    N < M, both in c0..c1023 (libvirt's own dynamic labels use the same
    form). A static label must use exactly that form: without categories, or
    with a single one (s0:c5), a label is dominated by every label that adds
    categories (s0:c5,c9), whose qemu could then open this guest's images;
    ranges (c0.c1023) would let a guest dominate all others.
    """
    _user, _role, _type, level = parse_selinux_context(label)
    if '-' in level:
        raise XMLValidationError('static sVirt label %r must have a single level s0:cN,cM, not a range' % label)
    sens, _sep, cats = level.partition(':')
    items = cats.split(',') if cats else []
    if any('.' in item for item in items) or len(items) > 2:
        raise XMLValidationError('static sVirt label %r must use an MCS pair s0:cN,cM (N < M), '
                                 'not a category range or more than two categories' % label)
    if len(items) < 2:
        raise XMLValidationError('static SELinux label %r has %s MCS category: it needs two categories '
                                 's0:cN,cM (N < M, each c0..c%d), as libvirt\'s dynamic labels use, or every '
                                 'guest whose label adds categories dominates it and can open its images'
                                 % (label, 'one' if items else 'no', MCS_MAX_CATEGORY))
    numbers = [int(_CATEGORY_RE.match(item).group(1)) for item in items]
    if numbers[0] == numbers[1]:
        raise XMLValidationError('MCS pair of %r needs two distinct categories cN,cM with N < M (got c%d,c%d)'
                                 % (label, numbers[0], numbers[1]))
    if numbers[0] > numbers[1]:
        raise XMLValidationError('MCS pair of %r must be cN,cM with N < M (got c%d,c%d)'
                                 % (label, numbers[0], numbers[1]))
    return sens, tuple(numbers)


def mcs_categories(label):
    """Every MCS category an SELinux label can reach (all levels of a range)."""
    level = parse_selinux_context(label)[3]
    categories = set()
    for _sens, cats in parse_mls_range(level, label):
        categories.update(cats)
    return frozenset(categories)


def validate_seclabel(spec):
    """Validate the seclabel options; return the normalised spec.

    spec keys: type, model, label, imagelabel, baselabel, relabel (bool/None).
    """
    spec = dict(spec)
    stype = spec.get('type') or 'dynamic'
    model = spec.get('model')
    spec['type'] = stype
    if stype not in SECLABEL_TYPES:
        raise XMLValidationError('seclabel type must be one of %s' % ', '.join(SECLABEL_TYPES))
    if model is not None and model not in SECLABEL_MODELS:
        raise XMLValidationError('seclabel model must be one of %s' % ', '.join(SECLABEL_MODELS))
    if model is None and stype != 'none':
        raise XMLValidationError('a %s seclabel needs a model (selinux, apparmor or dac)' % stype)
    label, imagelabel, baselabel = spec.get('label'), spec.get('imagelabel'), spec.get('baselabel')
    if stype == 'none':
        if label or imagelabel or baselabel or spec.get('relabel'):
            raise XMLValidationError("type 'none' takes no label, imagelabel, baselabel or relabel")
        return spec
    if stype == 'static':
        if not label:
            raise XMLValidationError('a static seclabel needs a label')
        if baselabel:
            raise XMLValidationError('baselabel only applies to dynamic labels')
    if stype == 'dynamic':
        if label or imagelabel:
            raise XMLValidationError('a dynamic seclabel takes no label/imagelabel (libvirt generates them); '
                                     'use baselabel or type static')
        if spec.get('relabel') is False:
            raise XMLValidationError('libvirt requires relabel=yes for dynamic labels')
        if baselabel and model != 'selinux' and model != 'dac':
            raise XMLValidationError('baselabel is only supported by the selinux and dac models')
    if stype == 'static' and imagelabel and not spec.get('relabel'):
        raise XMLValidationError('imagelabel is only used when relabel is true')
    if model == 'selinux':
        for value in (label, imagelabel, baselabel):
            if value:
                parse_selinux_context(value)
        if stype == 'static':
            pair = mcs_pair(label)
            if imagelabel and mcs_pair(imagelabel) != pair:
                raise XMLValidationError('imagelabel %r and label %r must carry the same MCS categories, '
                                         'or the guest cannot open its own images' % (imagelabel, label))
            spec['mcs'] = pair
    elif model == 'dac':
        for value in (label, imagelabel, baselabel):
            if value and not _valid_dac(value):
                raise XMLValidationError('DAC label %r must be user:group or +uid:+gid' % value)
    elif model == 'apparmor':
        for value in (label, imagelabel):
            if value and not _APPARMOR_RE.match(value):
                raise XMLValidationError('AppArmor profile name %r contains invalid characters' % value)
    return spec


def _valid_dac(value):
    parts = value.split(':')
    return len(parts) == 2 and all(_DAC_PART_RE.match(p) for p in parts)


def build_seclabel(spec):
    """Validated spec -> <seclabel> Element."""
    spec = validate_seclabel(spec)
    elem = ET.Element('seclabel', {'type': spec['type']})
    if spec.get('model'):
        elem.set('model', spec['model'])
    if spec['type'] == 'none':
        return elem
    relabel = spec.get('relabel')
    if relabel is None:
        relabel = spec['type'] == 'dynamic'
    elem.set('relabel', 'yes' if relabel else 'no')
    for key in ('label', 'imagelabel', 'baselabel'):
        if spec.get(key):
            ET.SubElement(elem, key).text = spec[key]
    return elem


def domain_seclabels(domain):
    """{model or None: <seclabel>} of the domain itself (not per-disk labels)."""
    domain = parse_xml(domain, 'domain XML') if not isinstance(domain, ET.Element) else domain
    return dict((lab.get('model'), lab) for lab in domain.findall('seclabel'))


def canonical_seclabel(elem, inactive=True):
    """Canonical string of a <seclabel> ('' for None).

    libvirt always prints relabel (default yes for dynamic, no for static) and
    drops the generated label/imagelabel of a dynamic label from the inactive
    definition.
    """
    if elem is None:
        return ''
    elem = copy.deepcopy(elem)
    stype = elem.get('type') or 'dynamic'
    elem.set('type', stype)
    if stype == 'none':
        elem.attrib.pop('relabel', None)
        for child in list(elem):
            elem.remove(child)
    else:
        relabel = elem.get('relabel')
        if relabel is None:
            relabel = 'yes' if stype == 'dynamic' else 'no'
        elem.set('relabel', 'yes' if relabel in ('yes', 'true', '1') else 'no')
        if stype == 'dynamic' and inactive:
            for tag in ('label', 'imagelabel'):
                for child in elem.findall(tag):
                    elem.remove(child)
    children = sorted(elem, key=lambda c: c.tag)
    for child in list(elem):
        elem.remove(child)
    elem.extend(children)
    return canonical(elem, drop=())


def set_domain_seclabel(domain, seclabel, model):
    """Replace the domain's <seclabel> of ``model`` with ``seclabel`` (None: remove).
    A type='none' label without a model replaces every domain-level seclabel."""
    for old in domain.findall('seclabel'):
        if old.get('model') == model or model is None or old.get('model') is None:
            domain.remove(old)
    if seclabel is not None:
        domain.append(copy.deepcopy(seclabel))
    return domain


def find_mcs_conflicts(own_name, pair, domains):
    """Guests other than ``own_name`` whose SELinux label the MCS pair could
    reach or be reached by.

    A label conflicts when it shares any category with ``pair`` (the labels
    are equal, overlap, or one dominates the other) or when it has no
    category at all (``pair`` dominates it). Sensitivities are not compared
    (sVirt runs guests at s0), which only makes the check stricter.

    domains: iterable of (name, <domain> Element) - pass both the inactive
    definition (static labels) and, for running guests, the live XML (the
    dynamic label libvirt picked). Returns [(name, label)].
    """
    if pair is None:
        return []
    wanted = set(pair[1])
    conflicts = []
    for name, domain in domains:
        if name == own_name:
            continue
        lab = domain_seclabels(domain).get('selinux')
        if lab is None or lab.get('type') == 'none':
            continue
        text = (lab.findtext('label') or '').strip()
        if not text:
            continue
        try:
            other = mcs_categories(text)
        except XMLValidationError:
            continue
        if (wanted & other or not other) and (name, text) not in conflicts:
            conflicts.append((name, text))
    return conflicts
