# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reports and a gate from the results of secvirt.kvm.posture on several hosts.

Every filter takes ``{hostname: module_result}``. A module result holds
``controls`` (a list of ``{id, title, area, severity, status, evidence,
references}``) and ``summary``; a host whose result has no ``controls`` (the
module failed, or the host was unreachable) is reported as an error with the
result's ``msg``. The documentation of each filter is in ``<filter>.yml`` next
to this file (several filters in one file), as ansible-doc expects.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import html
import re
import xml.etree.ElementTree as ET

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

STATUSES = ('fail', 'warn', 'pass', 'not_applicable')
SEVERITIES = ('high', 'medium', 'low')
_SEVERITY_RANK = {'low': 1, 'medium': 2, 'high': 3}
_GATE_THRESHOLD = {'none': None, 'low': 1, 'medium': 2, 'high': 3}
_STATUS_LABEL = {'fail': 'FAIL', 'warn': 'WARN', 'pass': 'PASS', 'not_applicable': 'N/A'}

# Characters XML 1.0 cannot hold, even escaped: C0 controls but tab, newline
# and carriage return, lone surrogates, U+FFFE and U+FFFF. ElementTree writes
# them unchanged (an invalid document), so they are shown as \xNN instead.
_XML_ILLEGAL = re.compile(u'[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_SHORT = 120


def _printable(value):
    """Text for any value, without the characters XML 1.0 cannot hold."""
    if value is None:
        return u''
    return _XML_ILLEGAL.sub(lambda m: u'\\x%02x' % ord(m.group()) if ord(m.group()) < 0x100 else u'\\u%04x' % ord(m.group()),
                            to_text(value, errors='surrogate_then_replace'))


def _lines(value):
    """A list of text lines from a list (or a single value) of evidence or references."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        value = [value]
    return [_printable(v) for v in value]


def _first_line(lines):
    for line in lines:
        text = line.strip()
        if text:
            return text.splitlines()[0]
    return u''


def _short(text, width=_SHORT):
    return text if len(text) <= width else text[:width - 1] + u'\u2026'


class _Host(object):
    """One host's result, checked: controls in module order, or the error."""

    def __init__(self, name, result):
        self.name = _printable(name)
        self.error = None
        self.controls = []
        if not isinstance(result, dict):
            self.error = u'not a posture result: %s' % _short(_printable(result))
            return
        controls = result.get('controls')
        if not isinstance(controls, list):
            reason = u'unreachable' if result.get('unreachable') else (u'failed' if result.get('failed') else u'skipped' if result.get('skipped') else None)
            msg = _printable(result.get('msg', u''))
            self.error = u'no posture result' + (u' (%s)' % reason if reason else u'') + (u': %s' % msg if msg else u'')
            return
        for index, control in enumerate(controls):
            if not isinstance(control, dict):
                raise AnsibleFilterError('posture result of %s: control %d is not a dict' % (self.name, index))
            status = control.get('status')
            if status not in STATUSES:
                raise AnsibleFilterError('posture result of %s: control %s has status %r, not one of %s'
                                         % (self.name, control.get('id', index), status, ', '.join(STATUSES)))
            severity = control.get('severity')
            self.controls.append({
                'id': _printable(control.get('id') or u'control-%d' % index),
                'title': _printable(control.get('title', u'')),
                'area': _printable(control.get('area') or u'other'),
                'severity': _printable(severity) if severity else u'unknown',
                'status': status,
                'evidence': _lines(control.get('evidence')),
                'references': _lines(control.get('references')),
            })

    def counts(self):
        counts = dict((status, 0) for status in STATUSES)
        for control in self.controls:
            counts[control['status']] += 1
        return counts

    def summary(self):
        if self.error:
            return self.error
        counts = self.counts()
        return u'%d fail, %d warn, %d pass, %d not applicable (%d controls)' % (
            counts['fail'], counts['warn'], counts['pass'], counts['not_applicable'], len(self.controls))

    def ordered(self):
        """Failures first, then warnings, passes and not applicable; each by severity (high first) and id."""
        return sorted(self.controls, key=lambda c: (STATUSES.index(c['status']),
                                                    -_SEVERITY_RANK.get(c['severity'], 0), c['id']))


def _hosts(results):
    if not isinstance(results, dict):
        raise AnsibleFilterError('posture reports take a dict {hostname: posture result}, not %s' % type(results).__name__)
    return [_Host(name, results[name]) for name in sorted(results, key=to_text)]


# --- JUnit -------------------------------------------------------------------

def posture_junit(results):
    """JUnit XML: a testsuite per host, a testcase per control.

    fail is a <failure>, not_applicable <skipped/>, warn a passing testcase
    with its evidence in <system-out>: JUnit has no warning state, and a warn
    does not break posture_gate either, so a CI job does not go red on advice.
    """
    hosts = _hosts(results)
    root = ET.Element('testsuites', name='secvirt.kvm.posture')
    totals = {'tests': 0, 'failures': 0, 'errors': 0, 'skipped': 0}
    for host in hosts:
        suite = ET.SubElement(root, 'testsuite', name=host.name, hostname=host.name)
        counts = {'tests': 0, 'failures': 0, 'errors': 0, 'skipped': 0}
        if host.error:
            case = ET.SubElement(suite, 'testcase', classname='%s.posture' % host.name, name='posture result')
            ET.SubElement(case, 'error', message=host.error, type='no_result').text = host.error
            counts['tests'] = counts['errors'] = 1
        for control in host.controls:
            counts['tests'] += 1
            case = ET.SubElement(suite, 'testcase', classname='%s.%s' % (host.name, control['area']),
                                 name=(u'%s %s' % (control['id'], control['title'])).strip())
            details = u'\n'.join(control['evidence'])
            if control['references']:
                details += u'\nReferences:\n' + u'\n'.join(control['references'])
            if control['status'] == 'fail':
                counts['failures'] += 1
                failure = ET.SubElement(case, 'failure', type=control['severity'],
                                        message=u'%s (%s): %s' % (control['id'], control['severity'],
                                                                  _first_line(control['evidence']) or control['title']))
                failure.text = details
            elif control['status'] == 'not_applicable':
                counts['skipped'] += 1
                reason = _first_line(control['evidence'])
                ET.SubElement(case, 'skipped', message=u'not applicable' + (u': %s' % reason if reason else u''))
            elif control['status'] == 'warn':
                ET.SubElement(case, 'system-out').text = u'WARN (%s): %s' % (control['severity'], details)
            elif control['evidence']:
                ET.SubElement(case, 'system-out').text = details
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    if hasattr(ET, 'indent'):  # Python 3.9+
        ET.indent(root)
    return u'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding='unicode') + u'\n'


# --- Markdown ----------------------------------------------------------------

_MD_SPECIAL = re.compile(r'([\\`*_\[\]|])')


def _md_text(text):
    """Plain text in a table cell: no markup, no HTML, no line break, no cell break."""
    text = _MD_SPECIAL.sub(r'\\\1', u' '.join(text.split()))
    return text.replace(u'&', u'&amp;').replace(u'<', u'&lt;').replace(u'>', u'&gt;')


def _md_code(text):
    """Text as a code span (literal: no markup, no HTML), safe in a table cell."""
    text = u' '.join(text.split()).replace(u'|', u'\\|')
    if not text:
        return u''
    longest = max([len(run) for run in re.findall(u'`+', text)] or [0])
    fence = u'`' * (longest + 1)
    pad = u' ' if text.startswith(u'`') or text.endswith(u'`') else u''
    return u'%s%s%s%s%s' % (fence, pad, text, pad, fence)


def posture_markdown(results):
    hosts = _hosts(results)
    out = [u'# Security posture', u'']
    for host in hosts:
        out += [u'## %s' % _md_text(host.name), u'', u'**%s**: %s' % (_md_text(host.name), _md_text(host.summary())), u'']
        if not host.controls:
            continue
        out += [u'| ID | Status | Severity | Title | Evidence |', u'|---|---|---|---|---|']
        for control in host.ordered():
            status = _STATUS_LABEL[control['status']]
            if control['status'] == 'fail':
                status = u'**%s**' % status
            evidence = _md_code(_short(_first_line(control['evidence'])))
            if len(control['evidence']) > 1:
                evidence += u' (+%d more)' % (len(control['evidence']) - 1)
            cells = (_md_text(control['id']), status, _md_text(control['severity']), _md_text(control['title']), evidence)
            out.append(u'| %s | %s | %s | %s | %s |' % cells)
        out.append(u'')
    return u'\n'.join(out)


# --- HTML --------------------------------------------------------------------

# Inline only: the page loads nothing (the policy forbids any fetch and any script).
_CSS = u'''
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.status { font-weight: bold; white-space: nowrap; }
tr.fail td.status { background: #f8d0d0; color: #8b0000; }
tr.warn td.status { background: #fff0c0; color: #7a5200; }
tr.pass td.status { background: #d4f0d4; color: #1b5e20; }
tr.not_applicable td.status { background: #e8e8e8; color: #555; }
p.error { background: #f8d0d0; color: #8b0000; padding: 0.5em; }
details summary { cursor: pointer; }
pre { white-space: pre-wrap; margin: 0.3em 0; }
.summary { font-weight: bold; }
'''


def _e(text):
    return html.escape(text, quote=True)


def posture_html(results):
    hosts = _hosts(results)
    out = [u'<!DOCTYPE html>', u'<html lang="en">', u'<head>', u'<meta charset="utf-8">',
           u'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
           u'<title>Security posture</title>', u'<style>%s</style>' % _CSS, u'</head>', u'<body>',
           u'<h1>Security posture</h1>', u'<ul>']
    for host in hosts:
        out.append(u'<li><strong>%s</strong>: %s</li>' % (_e(host.name), _e(host.summary())))
    out.append(u'</ul>')
    for host in hosts:
        out += [u'<section>', u'<h2>%s</h2>' % _e(host.name)]
        if host.error:
            out += [u'<p class="error">%s</p>' % _e(host.error), u'</section>']
            continue
        out.append(u'<p class="summary">%s</p>' % _e(host.summary()))
        out += [u'<table>', u'<thead><tr><th>ID</th><th>Status</th><th>Severity</th><th>Area</th><th>Title</th>'
                u'<th>Evidence</th></tr></thead>', u'<tbody>']
        for control in host.ordered():
            evidence = control['evidence']
            body = u''.join(u'<pre>%s</pre>' % _e(line) for line in evidence)
            if control['references']:
                body += u'<p>References:</p><ul>%s</ul>' % u''.join(u'<li>%s</li>' % _e(r) for r in control['references'])
            cell = u''
            if body:
                summary = _short(_first_line(evidence)) or u'references'
                if len(evidence) > 1:
                    summary += u' (+%d more)' % (len(evidence) - 1)
                cell = u'<details><summary>%s</summary>%s</details>' % (_e(summary), body)
            out.append(u'<tr class="%s"><td>%s</td><td class="status">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>'
                       % (control['status'], _e(control['id']), _STATUS_LABEL[control['status']], _e(control['severity']),
                          _e(control['area']), _e(control['title']), cell))
        out += [u'</tbody>', u'</table>', u'</section>']
    out += [u'</body>', u'</html>', u'']
    return u'\n'.join(out)


# --- Gate --------------------------------------------------------------------

def posture_gate(results, required=None, fail_on_severity='none'):
    """One line per host and control that breaks the gate; empty when it holds.

    A control breaks it when it fails and is required or at least as severe
    as fail_on_severity; a required control a host did not report breaks it
    too, and so does a host without a result. warn and not_applicable never do.
    """
    threshold_name = 'none' if fail_on_severity is None else to_text(fail_on_severity).lower()
    if threshold_name not in _GATE_THRESHOLD:
        raise AnsibleFilterError('posture_gate: fail_on_severity must be one of %s, not %r'
                                 % (', '.join(_GATE_THRESHOLD), fail_on_severity))
    threshold = _GATE_THRESHOLD[threshold_name]
    if required is None:
        required = []
    elif isinstance(required, str):
        required = [required]
    elif not isinstance(required, (list, tuple)):
        raise AnsibleFilterError('posture_gate: required must be a list of control ids, not %s' % type(required).__name__)
    required = [_printable(r) for r in required]
    broken = []
    for host in _hosts(results):
        if host.error:
            broken.append(u'%s: %s' % (host.name, host.error))
            continue
        seen = set()
        for control in host.controls:
            seen.add(control['id'])
            if control['status'] != 'fail':
                continue
            # A severity outside the schema counts as high: the gate errs on the safe side.
            severe = threshold is not None and _SEVERITY_RANK.get(control['severity'], 3) >= threshold
            if severe or control['id'] in required:
                first = _first_line(control['evidence']) or control['title']
                broken.append(u'%s: %s (%s) fail: %s' % (host.name, control['id'], control['severity'], first))
        for control_id in required:
            if control_id not in seen:
                broken.append(u'%s: %s is required but missing from the results' % (host.name, control_id))
    return broken


class FilterModule(object):
    def filters(self):
        return {
            'posture_junit': posture_junit,
            'posture_markdown': posture_markdown,
            'posture_html': posture_html,
            'posture_gate': posture_gate,
        }
