# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render virtualization audit rules from data.

The seed guide ships a static 2012 ``audit.rules`` written for SELinux hosts.
Here every rule group of that file is data (see the ``audit`` role's
``audit_rule_catalogue``): a group has a ``key`` (``virt_...``) and rules such
as::

    {path: /etc/pki/libvirt/private/serverkey.pem, not_by: libvirt_daemons}
    {dir: /etc/libvirt, perm: wa}
    {syscalls: [all], perm: wax, by: qemu, obj_type_not: [qemu_t], selinux_only: true,
     fallback: [{syscalls: [execve, execveat], by: qemu}]}

and this module turns them into modern ``auditctl`` lines for the host at hand:

* ``-a always,exit -F path=... -F perm=...`` / ``-F dir=...`` instead of the
  2012 ``-a exit,always`` spelling (the kernel lists them as ``-w`` watches);
  rules that name syscalls get one line per ``-F arch=`` (b64 and b32).
* ``by``/``not_by`` name a *subject class* (``qemu``, ``libvirt_daemons``,
  ``dnsmasq``...). With SELinux enabled it becomes ``-F subj_type=`` /
  ``-F subj_type!=`` as in the seed. Without SELinux (AppArmor or nothing) the
  same events are caught by uid or executable: ``by: qemu`` becomes
  ``-F uid=libvirt-qemu`` (the account every guest runs as), ``not_by:
  libvirt_daemons`` becomes one ``-a never,exit ... -F exe=/usr/sbin/libvirtd``
  line per daemon in front of the ``always`` rule (the kernel allows one
  ``exe`` field per rule, and the first matching exit rule wins).
* SELinux-only rules (``obj_type=virt_image_t``, the ``qemu_t`` cross-domain
  rule) are emitted only with SELinux; their ``fallback`` rules otherwise.
* A watch whose directory does not exist makes ``auditctl -R`` stop at that
  line and leaves the kernel with half a rule set, so such rules are left out
  and reported (``skipped``) instead. The same goes for accounts that do not
  exist and subject classes without a path/exe equivalent.

``audit_kernel`` compares the rendered rules with the ones the kernel runs.

Plain Python, no Ansible import: unit tests call it directly.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import pwd
import re

KEY_PREFIX = 'virt_'
KEY_RE = re.compile(r'^[A-Za-z0-9_.:-]{1,31}$')
NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')
SELINUX_TYPE_RE = re.compile(r'^[a-z][a-z0-9_]*_t$')
SYSCALL_RE = re.compile(r'^[a-z0-9_]+$')
PERM_ORDER = 'rwxa'
ARCHES = ('b64', 'b32')
ACTIONS = ('always', 'never')
RULE_KEYS = frozenset(['action', 'path', 'dir', 'syscalls', 'perm', 'by', 'not_by',
                       'obj_type', 'obj_type_not', 'selinux_only', 'fallback', 'comment'])


class RuleError(ValueError):
    """The rule data is invalid (bad group, unknown subject, bad field)."""


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _clean_path(path):
    path = str(path)
    if len(path) > 1:
        path = path.rstrip('/')
    return path


def normalize_perm(perm):
    """Return the permission letters in auditctl's order (``aw`` -> ``wa``)."""
    perm = str(perm or '')
    bad = set(perm) - set(PERM_ORDER)
    if bad or not perm:
        raise RuleError('perm must be a non-empty combination of r, w, x, a (got %r)' % perm)
    return ''.join(c for c in PERM_ORDER if c in perm)


class Host(object):
    """What the renderer needs to know about the target; injectable for tests."""

    def __init__(self, selinux=False, path_exists=None, is_dir=None, user_exists=None):
        self.selinux = bool(selinux)
        self.path_exists = path_exists or os.path.exists
        self.is_dir = is_dir or os.path.isdir
        self.user_exists = user_exists or _user_exists


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

def validate_subjects(subjects):
    if not isinstance(subjects, dict):
        raise RuleError('subjects must be a dict of subject classes')
    for name, spec in subjects.items():
        if not NAME_RE.match(str(name)):
            raise RuleError('subject class name %r must be lower case letters, digits and _' % name)
        if not isinstance(spec, dict):
            raise RuleError('subject class %s must be a dict' % name)
        unknown = set(spec) - set(['selinux_types', 'user', 'exes', 'description'])
        if unknown:
            raise RuleError('subject class %s: unknown keys %s' % (name, ', '.join(sorted(unknown))))
        for stype in _as_list(spec.get('selinux_types')):
            if not SELINUX_TYPE_RE.match(str(stype)):
                raise RuleError('subject class %s: %r is not an SELinux type (xxx_t)' % (name, stype))
        for exe in _as_list(spec.get('exes')):
            if not str(exe).startswith('/'):
                raise RuleError('subject class %s: executable %r must be an absolute path' % (name, exe))


def _validate_rule(group, rule, subjects, where):
    if not isinstance(rule, dict):
        raise RuleError('%s: a rule must be a dict' % where)
    unknown = set(rule) - RULE_KEYS
    if unknown:
        raise RuleError('%s: unknown keys %s' % (where, ', '.join(sorted(unknown))))
    action = rule.get('action', 'always')
    if action not in ACTIONS:
        raise RuleError('%s: action must be always or never' % where)
    selectors = [k for k in ('path', 'dir', 'syscalls', 'obj_type') if rule.get(k)]
    if not selectors:
        raise RuleError('%s: a rule needs path, dir, syscalls or obj_type' % where)
    if rule.get('path') and rule.get('dir'):
        raise RuleError('%s: path and dir are exclusive' % where)
    if rule.get('syscalls') and (rule.get('path') or rule.get('dir')):
        raise RuleError('%s: syscalls and path/dir are exclusive (a path rule covers every syscall)' % where)
    for p in _as_list(rule.get('path')) + _as_list(rule.get('dir')):
        if not str(p).startswith('/'):
            raise RuleError('%s: %r must be an absolute path' % (where, p))
        if any(c.isspace() for c in str(p)):
            raise RuleError('%s: %r contains white space, which auditctl cannot read back' % (where, p))
    for sc in _as_list(rule.get('syscalls')):
        if not SYSCALL_RE.match(str(sc)):
            raise RuleError('%s: %r is not a syscall name' % (where, sc))
    if rule.get('perm') is not None:
        normalize_perm(rule['perm'])
    if rule.get('by') and rule.get('not_by'):
        raise RuleError('%s: by and not_by are exclusive' % where)
    for ref in ('by', 'not_by'):
        if rule.get(ref) and rule[ref] not in subjects:
            raise RuleError('%s: %s refers to unknown subject class %r' % (where, ref, rule[ref]))
    for t in _as_list(rule.get('obj_type')) + _as_list(rule.get('obj_type_not')):
        if not SELINUX_TYPE_RE.match(str(t)):
            raise RuleError('%s: %r is not an SELinux type (xxx_t)' % (where, t))
    if (rule.get('obj_type') or rule.get('obj_type_not')) and not rule.get('selinux_only'):
        raise RuleError('%s: rules on obj_type only make sense with selinux_only: true' % where)
    for i, fb in enumerate(_as_list(rule.get('fallback'))):
        if isinstance(fb, dict) and (fb.get('fallback') or fb.get('selinux_only')):
            raise RuleError('%s fallback %d: a fallback cannot be SELinux-only or have its own fallback'
                            % (where, i + 1))
        _validate_rule(group, fb, subjects, '%s fallback %d' % (where, i + 1))


def validate_groups(groups, subjects, key_prefix=KEY_PREFIX):
    """Raise RuleError on the first invalid group or rule."""
    validate_subjects(subjects)
    if not isinstance(groups, list):
        raise RuleError('groups must be a list')
    seen = set()
    for group in groups:
        if not isinstance(group, dict) or not group.get('name'):
            raise RuleError('every group needs a name')
        name = group['name']
        if not NAME_RE.match(str(name)):
            raise RuleError('group name %r must be lower case letters, digits and _' % name)
        if name in seen:
            raise RuleError('group %s is listed twice' % name)
        seen.add(name)
        unknown = set(group) - set(['name', 'key', 'description', 'enabled', 'rules'])
        if unknown:
            raise RuleError('group %s: unknown keys %s' % (name, ', '.join(sorted(unknown))))
        key = group.get('key')
        has_always = any(isinstance(r, dict) and r.get('action', 'always') == 'always'
                         for r in _as_list(group.get('rules')))
        if has_always:
            if not key or not KEY_RE.match(str(key)):
                raise RuleError('group %s: key must be 1-31 characters of letters, digits, _.:-' % name)
            if key_prefix and not str(key).startswith(key_prefix):
                raise RuleError('group %s: key %s must start with %s' % (name, key, key_prefix))
        if not _as_list(group.get('rules')):
            raise RuleError('group %s has no rules' % name)
        for i, rule in enumerate(_as_list(group.get('rules'))):
            _validate_rule(group, rule, subjects, 'group %s rule %d' % (name, i + 1))


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

class Rendered(object):
    """Result of rendering: the rule lines per group and what was left out."""

    def __init__(self):
        self.groups = []     # [(group dict, [lines], [notes])]
        self.skipped = []    # [{group, rule, reason}]
        self.directories = set()   # must exist whenever the rules are loaded

    @property
    def rules(self):
        out = []
        for _group, lines, _notes in self.groups:
            out.extend(lines)
        return out

    def keys(self):
        return sorted(set(g.get('key') for g, lines, _n in self.groups if lines and g.get('key')))


def _describe(rule):
    parts = []
    for k in ('action', 'path', 'dir', 'syscalls', 'obj_type', 'perm', 'by', 'not_by'):
        if rule.get(k):
            v = rule[k]
            parts.append('%s=%s' % (k, ','.join(str(x) for x in v) if isinstance(v, list) else v))
    return ' '.join(parts)


def _selector_variants(rule, arches):
    """[(selector fields, needs arch)] for one rule: one entry per path/dir/arch."""
    variants = []
    if rule.get('syscalls'):
        calls = [str(s) for s in _as_list(rule['syscalls'])]
        for arch in arches:
            variants.append((['-F arch=%s' % arch, '-S %s' % ','.join(calls)], None))
    elif rule.get('path') or rule.get('dir'):
        kind = 'path' if rule.get('path') else 'dir'
        for p in _as_list(rule[kind]):
            variants.append((['-F %s=%s' % (kind, _clean_path(p))], (kind, _clean_path(p))))
    else:  # obj_type only
        variants.append(([], None))
    return variants


def _tail_fields(rule):
    fields = []
    if rule.get('perm'):
        fields.append('-F perm=%s' % normalize_perm(rule['perm']))
    for t in _as_list(rule.get('obj_type')):
        fields.append('-F obj_type=%s' % t)
    for t in _as_list(rule.get('obj_type_not')):
        fields.append('-F obj_type!=%s' % t)
    return fields


def _render_rule(group, rule, subjects, host, arches, lines, skipped, directories):
    """Append the lines for one rule (and its exclusions) to ``lines``."""
    key = group.get('key')
    action = rule.get('action', 'always')
    if rule.get('selinux_only') and not host.selinux:
        fallbacks = _as_list(rule.get('fallback'))
        if not fallbacks:
            skipped.append({'group': group['name'], 'rule': _describe(rule),
                            'reason': 'SELinux is not enabled and the rule has no path/exe-based equivalent'})
        for fb in fallbacks:
            _render_rule(group, fb, subjects, host, arches, lines, skipped, directories)
        return

    by = subjects.get(rule['by']) if rule.get('by') else None
    not_by = subjects.get(rule['not_by']) if rule.get('not_by') else None

    # Subject filters: a list of alternative field sets (one rule each) for
    # ``by``; extra fields and leading never-rules for ``not_by``.
    alternatives = [[]]
    extra = []
    exclusions = []      # exe paths that get a never rule in front
    if by is not None:
        if host.selinux and _as_list(by.get('selinux_types')):
            alternatives = [['-F subj_type=%s' % t] for t in _as_list(by['selinux_types'])]
        elif by.get('user'):
            if not host.user_exists(by['user']):
                skipped.append({'group': group['name'], 'rule': _describe(rule),
                                'reason': 'account %s (subject class %s) does not exist'
                                          % (by['user'], rule['by'])})
                return
            alternatives = [['-F uid=%s' % by['user']]]
        else:
            exes = [e for e in _as_list(by.get('exes')) if host.path_exists(e)]
            if not exes:
                skipped.append({'group': group['name'], 'rule': _describe(rule),
                                'reason': 'subject class %s has no %s on this host'
                                          % (rule['by'], 'installed executable' if _as_list(by.get('exes'))
                                             else 'path/exe equivalent without SELinux')})
                return
            alternatives = [['-F exe=%s' % e] for e in exes]
    if not_by is not None:
        if host.selinux and _as_list(not_by.get('selinux_types')):
            extra = ['-F subj_type!=%s' % t for t in _as_list(not_by['selinux_types'])]
        elif not_by.get('user'):
            if host.user_exists(not_by['user']):
                extra = ['-F uid!=%s' % not_by['user']]
            else:
                # Nobody runs as that account yet: nothing to exclude.
                extra = []
        else:
            exclusions = [e for e in _as_list(not_by.get('exes')) if host.path_exists(e)]

    for selector, fs in _selector_variants(rule, arches):
        if fs is not None:
            kind, p = fs
            parent = p if kind == 'dir' else os.path.dirname(p) or '/'
            if not host.is_dir(parent):
                skipped.append({'group': group['name'], 'rule': _describe(dict(rule, **{kind: p})),
                                'reason': 'directory %s does not exist (auditctl would stop loading here)'
                                          % parent})
                continue
            directories.add(parent)
        tail = _tail_fields(rule)
        for exe in exclusions:
            lines.append(' '.join(['-a never,exit'] + selector + tail + ['-F exe=%s' % exe]))
        for alt in alternatives:
            words = ['-a %s,exit' % action] + selector + tail + alt + extra
            if action == 'always':
                words.append('-F key=%s' % key)
            lines.append(' '.join(words))


def render(groups, subjects, host, arches=ARCHES, key_prefix=KEY_PREFIX, switches=None):
    """Render the enabled groups for ``host``; returns a Rendered.

    ``switches`` maps group names to True/False and overrides the groups'
    own ``enabled``.
    """
    validate_groups(groups, subjects, key_prefix)
    switches = dict(switches or {})
    names = [g['name'] for g in groups]
    unknown = sorted(set(switches) - set(names))
    if unknown:
        raise RuleError('switches name unknown groups: %s (known: %s)' % (', '.join(unknown), ', '.join(names)))
    for name, value in switches.items():
        if not isinstance(value, bool):
            raise RuleError('switch %s must be true or false (got %r)' % (name, value))
    arches = list(arches)
    for arch in arches:
        if arch not in ARCHES:
            raise RuleError('arch must be one of %s (got %r)' % (', '.join(ARCHES), arch))
    result = Rendered()
    emitted = set()
    for group in groups:
        if not switches.get(group['name'], group.get('enabled', True)):
            continue
        lines = []
        for rule in _as_list(group.get('rules')):
            _render_rule(group, rule, subjects, host, arches, lines, result.skipped, result.directories)
        unique = []
        for line in lines:
            # A never rule shared by two groups only needs to appear once.
            if line not in emitted:
                emitted.add(line)
                unique.append(line)
        result.groups.append((group, unique, []))
    return result


def render_file(rendered, header=None):
    """The text of the rules file."""
    out = []
    for line in (header or '').splitlines():
        out.append(('## ' + line).rstrip() if not line.startswith('#') else line)
    if out:
        out.append('')
    for group, lines, _notes in rendered.groups:
        title = '## Group %s' % group['name']
        if group.get('key'):
            title += ' (key %s)' % group['key']
        out.append(title)
        for dline in str(group.get('description') or '').strip().splitlines():
            out.append(('## ' + dline.strip()).rstrip())
        for s in rendered.skipped:
            if s['group'] == group['name']:
                out.append('## skipped: %s: %s' % (s['rule'], s['reason']))
        out.extend(lines)
        out.append('')
    return '\n'.join(out).rstrip('\n') + '\n'
