"""docs/seed-mapping.md stays true to the code and the tests.

The page maps every section of the two specification documents (004, IBM's
"KVM security"; 003, libvirt's "Secure Usage of Libvirt") to the roles and
modules that implement it, the posture controls that measure it and the
tests that prove it. Checked here:

- every posture control ID the page names exists in the catalogue of
  ``plugins/module_utils/posture.py``, and every control there is named;
- every section a control references (``"004: <section>"``) has a row in
  that document's table, and the row lists the control;
- every test reference ``path::name`` names a file that exists and defines
  ``def name``;
- every ``secvirt.kvm.<name>`` is a role, module, filter or playbook of the
  collection;
- the rows are well formed (a known status, what implements it, tests for
  what is implemented), and the console and migration sections agree with
  docs/consoles-migration.md.
"""
import os
import re

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import posture

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "seed-mapping.md")
CONSOLES_DOC = os.path.join(ROOT, "docs", "consoles-migration.md")

STATUSES = ("implemented", "implemented (module)", "partly", "not implemented", "no requirement")
CONTROL_ID = re.compile(r"\bSVK-[A-Z]{3}-\d{3}\b")
TEST_REF = re.compile(r"((?:molecule|tests)/[A-Za-z0-9_./-]+\.py)::([A-Za-z_][A-Za-z0-9_]*)")
COLLECTION_NAME = re.compile(r"\bsecvirt\.kvm\.([a-z_][a-z0-9_]*)")
DOC_HEADING = re.compile(r"^## (00[34])\b")
NONE = ("—", "-", "")


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def section_rows(text):
    """{document: [row dict, ...]} of the section tables (first header cell "section") under "## 004" / "## 003"."""
    rows = {}
    document = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        heading = DOC_HEADING.match(lines[i])
        if lines[i].startswith("## "):
            document = heading.group(1) if heading else None
        if document and lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = [h.lower() for h in _cells(lines[i])]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                if header[0] == "section":
                    cells = _cells(lines[i])
                    assert len(cells) == len(header), "docs/seed-mapping.md: a row with %d cells, not %d: %s" % (
                        len(cells), len(header), lines[i][:120])
                    rows.setdefault(document, []).append(dict(zip(header, cells)))
                i += 1
            continue
        i += 1
    return rows


@pytest.fixture(scope="module")
def text():
    return _read(DOC)


@pytest.fixture(scope="module")
def rows(text):
    found = section_rows(text)
    assert sorted(found) == ["003", "004"], "docs/seed-mapping.md: no section table under '## 004' or '## 003': %s" % sorted(found)
    return found


def find_row(rows, document, section):
    """The row of a section, named as the seed names it; steps may carry their parent ("<parent> / Step 5. ...")."""
    return [row for row in rows.get(document, []) if row["section"] == section or row["section"].endswith(" / " + section)]


def test_every_control_is_named_and_every_named_control_exists(text):
    named = set(CONTROL_ID.findall(text))
    unknown = sorted(named - set(posture.CATALOG))
    missing = sorted(set(posture.CATALOG) - named)
    assert not unknown, "docs/seed-mapping.md names controls posture.py does not have: %s" % ", ".join(unknown)
    assert not missing, "docs/seed-mapping.md does not name these controls of posture.py: %s" % ", ".join(missing)


def test_each_section_a_control_references_lists_that_control(rows):
    problems = []
    for cid, entry in sorted(posture.CATALOG.items()):
        for reference in entry[3]:
            document, _sep, section = reference.partition(": ")
            found = find_row(rows, document, section)
            if len(found) != 1:
                problems.append("%s references %r: %d rows for it in the %s table" % (cid, reference, len(found), document))
            elif cid not in CONTROL_ID.findall(found[0]["posture"]):
                problems.append("%s references %r, whose row lists %s" % (cid, reference, found[0]["posture"] or "nothing"))
    assert not problems, "docs/seed-mapping.md:\n" + "\n".join(problems)


def test_posture_cells_hold_control_ids_only(rows):
    bad = [(document, row["section"], row["posture"]) for document, table in sorted(rows.items()) for row in table
           if row["posture"] not in NONE and CONTROL_ID.sub("", row["posture"]).replace(",", "").strip()]
    assert not bad, "posture cells must be control IDs separated by commas, or a dash: %s" % bad


def test_every_test_reference_names_an_existing_test(text):
    references = sorted(set(TEST_REF.findall(text)))
    assert len(references) > 50, "docs/seed-mapping.md: only %d test references found" % len(references)
    problems = []
    for path, name in references:
        full = os.path.join(ROOT, path)
        if not os.path.isfile(full):
            problems.append("%s::%s: no such file" % (path, name))
        elif not re.search(r"^\s*def %s\(" % re.escape(name), _read(full), re.M):
            problems.append("%s::%s: the file defines no %s" % (path, name, name))
    assert not problems, "docs/seed-mapping.md:\n" + "\n".join(problems)


def collection_names():
    names = set()
    names.update(d for d in os.listdir(os.path.join(ROOT, "roles")) if os.path.isdir(os.path.join(ROOT, "roles", d, "tasks")))
    for directory, suffixes in (("plugins/modules", (".py",)), ("plugins/filter", (".py", ".yml")), ("playbooks", (".yml",))):
        for entry in os.listdir(os.path.join(ROOT, directory)):
            stem, ext = os.path.splitext(entry)
            if ext in suffixes and not stem.startswith("_"):
                names.add(stem)
    return names


def test_every_role_and_module_named_exists(text):
    named = set(COLLECTION_NAME.findall(text))
    assert named, "docs/seed-mapping.md names no secvirt.kvm.<name>"
    unknown = sorted(named - collection_names())
    assert not unknown, "docs/seed-mapping.md names what the collection does not have: %s" % ", ".join(
        "secvirt.kvm." + n for n in unknown)


def test_rows_are_well_formed(rows):
    problems = []
    for document, table in sorted(rows.items()):
        sections = [row["section"] for row in table]
        problems += ["%s: section %r twice" % (document, s) for s in sorted(set(sections)) if sections.count(s) > 1]
        for row in table:
            where = "%s %r" % (document, row["section"])
            if row["status"] not in STATUSES:
                problems.append("%s: status %r is none of %s" % (where, row["status"], ", ".join(STATUSES)))
            if not row["implemented by"] or row["implemented by"] in NONE:
                problems.append("%s: says nothing in 'implemented by' (what implements it, or why not)" % where)
            if row["status"].startswith("implemented") and not TEST_REF.search(row["proven by"]):
                problems.append("%s: implemented, but no test named" % where)
            if row["status"] in ("not implemented", "no requirement") and CONTROL_ID.search(row["posture"]):
                problems.append("%s: %s, yet lists posture controls" % (where, row["status"]))
    assert not problems, "docs/seed-mapping.md:\n" + "\n".join(problems)


def test_console_and_migration_sections_agree_with_consoles_migration_md(text, rows):
    assert "(consoles-migration.md)" in text, "docs/seed-mapping.md does not link docs/consoles-migration.md"
    checked = 0
    for line in _read(CONSOLES_DOC).splitlines():
        match = re.match(r'^\|\s*(?:guide|secure usage) \((00[34])\), "([^"]+)"\s*\|\s*([^|]+)\|', line)
        if not match:
            continue
        document, section, status = match.group(1), match.group(2), match.group(3).strip()
        found = find_row(rows, document, section)
        assert len(found) == 1, "docs/seed-mapping.md: no single row for %s %r, which consoles-migration.md maps" % (document, section)
        assert status.startswith("implemented") == found[0]["status"].startswith("implemented"), (
            "%s %r: consoles-migration.md says %r, seed-mapping.md %r" % (document, section, status, found[0]["status"]))
        checked += 1
    assert checked >= 3, "docs/consoles-migration.md: found only %d section rows to compare" % checked
