"""The READMEs are kept in sync with the roles' argument specs and plugins/.

Per role: every variable that ``roles/<role>/meta/argument_specs.yml``
declares (in any entry point) has a row in the variable table of
``roles/<role>/README.md``, and every ``<role>_*`` variable that table
documents is declared there. The variable table is the markdown table whose
header's first cell is "variable" (any case); a row documents the names in
backticks in its first cell, in the forms the READMEs use:

- `` `x` `` or several, separated by ``/`` or ``,``: each name;
- `` `x_min/max` ``: ``x_min`` and ``x_max`` (the last ``_`` segment replaced);
- `` `x_dirs` / `_files` ``: a name starting with ``_`` completes a leading
  part of the name before it (here ``x_files``), whichever part gives a
  variable the role has;
- `` `x_*` `` or `` `x_*_content` ``: every declared variable the pattern
  matches (a pattern matching none is reported).

Defaults are not compared. The top-level README.md must name every module of
plugins/modules/ in its module list (the sentence starting "Modules (") and
every role of roles/ in its role table (header first cell "role", rows
`` `secvirt.kvm.<role>` ``), and nothing that does not exist.
"""
import fnmatch
import os
import re
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES_DIR = os.path.join(ROOT, "roles")
MODULES_DIR = os.path.join(ROOT, "plugins", "modules")
COLLECTION = "secvirt.kvm"

ROLES = sorted(r for r in os.listdir(ROLES_DIR) if os.path.isdir(os.path.join(ROLES_DIR, r, "meta")))

# Variables a README documents that are set in defaults/main.yml but left out
# of argument_specs on purpose (their defaults come from vars/<OS>.yml; the
# argument spec's description says so). Each entry must still be in
# defaults/main.yml and still be missing from the argument specs, or the
# entry itself is reported as stale.
DOCUMENTED_NOT_DECLARED = {
    "audit": {"audit_packages", "audit_qemu_binaries", "audit_qemu_user", "audit_libvirt_config_files",
              "audit_reboot_flag_file", "audit_rule_catalogue"},
}

_BACKTICKED = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_tables(text):
    """Yield (header cells, [row cells, ...]) for each markdown table."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|?\s*$", lines[i + 1]):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            yield header, rows
        else:
            i += 1


def declared_variables(role):
    """{variable: [entry points declaring it]} from the role's argument specs."""
    specs = yaml.safe_load(_read(os.path.join(ROLES_DIR, role, "meta", "argument_specs.yml")))
    declared = {}
    for entry_point, spec in sorted((specs.get("argument_specs") or {}).items()):
        for name in (spec or {}).get("options") or {}:
            declared.setdefault(name, []).append(entry_point)
    return declared


def default_variables(role):
    path = os.path.join(ROLES_DIR, role, "defaults", "main.yml")
    return set(yaml.safe_load(_read(path)) or {}) if os.path.exists(path) else set()


def _complete(base, tail, known):
    """Complete ``tail`` (e.g. "files") with a leading part of ``base``.

    Candidates are base cut at each "_", longest first; the first that
    gives a known variable wins, else the one replacing base's last segment.
    """
    cuts = [i for i, c in enumerate(base) if c == "_"]
    candidates = [base[:i] + "_" + tail for i in reversed(cuts)]
    for candidate in candidates:
        if candidate in known:
            return candidate
    return candidates[0] if candidates else tail


def documented_names(cell, known):
    """Names (and glob patterns) documented by a first cell of a variable table."""
    names = []
    last = None
    for span in _BACKTICKED.findall(cell):
        for part in [p.strip() for p in re.split(r"\s*,\s*", span) if p.strip()]:
            pieces = part.split("/")
            head = pieces[0]
            if head.startswith("_") and last:
                head = _complete(last, head[1:], known)
            if "*" not in head and not _NAME.match(head):
                continue
            names.append(head)
            if "*" not in head:
                last = head
            for alt in pieces[1:]:
                alt = alt.strip().lstrip("_")
                if alt:
                    names.append(_complete(head, alt, known))
    return names


def variable_table_names(readme_text, known):
    """All names the README's variable table(s) document, in order."""
    names = []
    tables = 0
    for header, rows in markdown_tables(readme_text):
        if header and header[0].lower() == "variable":
            tables += 1
            for row in rows:
                names.extend(documented_names(row[0], known))
    return tables, names


def docs_problems(role):
    declared = declared_variables(role)
    defaults = default_variables(role)
    exempt = DOCUMENTED_NOT_DECLARED.get(role, set())
    readme = os.path.join(ROLES_DIR, role, "README.md")
    if not os.path.exists(readme):
        return ["roles/%s/README.md is missing" % role]
    tables, names = variable_table_names(_read(readme), set(declared) | defaults)
    if not tables:
        return ["roles/%s/README.md has no variable table (a table whose first header cell is 'variable')" % role]

    covered = set()
    undeclared = []
    for name in names:
        if "*" in name:
            matched = fnmatch.filter(declared, name)
            covered.update(matched)
            if not matched and name.startswith(role + "_"):
                undeclared.append(name)
        else:
            covered.add(name)
            if name.startswith(role + "_") and name not in declared and name not in exempt:
                undeclared.append(name)

    problems = []
    missing = sorted(set(declared) - covered)
    if missing:
        problems.append("roles/%s/README.md: %d variable(s) declared in meta/argument_specs.yml have no row in the "
                        "variable table: %s" % (role, len(missing), ", ".join(
                            "%s (entry point %s)" % (n, "/".join(declared[n])) for n in missing)))
    if undeclared:
        problems.append("roles/%s/README.md: %d variable(s) in the variable table are not declared in "
                        "meta/argument_specs.yml: %s" % (role, len(undeclared), ", ".join(sorted(set(undeclared)))))
    stale = sorted(n for n in exempt if n in declared or n not in defaults or n not in covered)
    if stale:
        problems.append("tests/unit/test_docs_sync.py: DOCUMENTED_NOT_DECLARED[%r] lists %s, which is now declared in "
                        "meta/argument_specs.yml, gone from defaults/main.yml or no longer in the README: remove it"
                        % (role, ", ".join(stale)))
    return problems


@pytest.mark.parametrize("role", ROLES)
def test_role_readme_documents_argument_specs(role):
    problems = docs_problems(role)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def readme_module_list(text):
    """Backticked names of the sentence starting 'Modules (' in README.md."""
    start = text.find("Modules (")
    assert start >= 0, "README.md: no module list (a sentence starting 'Modules (')"
    body = text[start:]
    body = body[body.find("):") + 2:]
    end = re.search(r"`\.(\s|$)", body)
    assert end, "README.md: the module list starting 'Modules (' does not end with '`.'"
    return [n for n in _BACKTICKED.findall(body[:end.start() + 1]) if _NAME.match(n)]


def readme_role_table(text):
    """Role names of README.md's role table (first header cell 'role')."""
    for header, rows in markdown_tables(text):
        if header and header[0].lower() == "role":
            names = []
            for row in rows:
                for span in _BACKTICKED.findall(row[0]):
                    names.append(span[len(COLLECTION) + 1:] if span.startswith(COLLECTION + ".") else span)
            return names
    pytest.fail("README.md: no role table (a table whose first header cell is 'role')")


def test_readme_lists_every_module():
    modules = sorted(f[:-3] for f in os.listdir(MODULES_DIR) if f.endswith(".py") and not f.startswith("_"))
    listed = readme_module_list(_read(os.path.join(ROOT, "README.md")))
    missing = [m for m in modules if m not in listed]
    unknown = sorted(set(listed) - set(modules))
    problems = []
    if missing:
        problems.append("README.md module list ('Modules (...)'): %d module(s) of plugins/modules/ missing: %s"
                        % (len(missing), ", ".join(missing)))
    if unknown:
        problems.append("README.md module list ('Modules (...)'): %d name(s) not in plugins/modules/: %s"
                        % (len(unknown), ", ".join(unknown)))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_readme_role_table_lists_every_role():
    roles = sorted(r for r in os.listdir(ROLES_DIR) if os.path.isdir(os.path.join(ROLES_DIR, r)))
    listed = readme_role_table(_read(os.path.join(ROOT, "README.md")))
    missing = [r for r in roles if r not in listed]
    unknown = sorted(set(listed) - set(roles))
    problems = []
    if missing:
        problems.append("README.md role table: %d role(s) of roles/ missing: %s" % (len(missing), ", ".join(missing)))
    if unknown:
        problems.append("README.md role table: %d row(s) for roles not in roles/: %s" % (len(unknown), ", ".join(unknown)))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# The parser itself, on the forms the READMEs use.
@pytest.mark.parametrize("cell,known,expected", [
    ("`a_b`", set(), ["a_b"]),
    ("`q_vnc` / `q_spice`", set(), ["q_vnc", "q_spice"]),
    ("`q_port_min/max`", set(), ["q_port_min", "q_port_max"]),
    ("`a_libvirt_config_dirs` / `_files`", {"a_libvirt_config_files"}, ["a_libvirt_config_dirs", "a_libvirt_config_files"]),
    ("`r_ca_cert` / `_server_cert` / `_server_key`", {"r_server_cert", "r_server_key"},
     ["r_ca_cert", "r_server_cert", "r_server_key"]),
    ("`e_image_dir_mode` / `_image_mode`", {"e_image_mode"}, ["e_image_dir_mode", "e_image_mode"]),
    ("`a_x_dirs`, `a_y_dirs`", set(), ["a_x_dirs", "a_y_dirs"]),
    ("`c_*_content`", set(), ["c_*_content"]),
])
def test_documented_names_forms(cell, known, expected):
    assert documented_names(cell, known) == expected


def test_problems_name_what_is_missing_where(tmp_path, monkeypatch):
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      demo_a: {}\n      demo_b: {}\n"
        "  other:\n    options:\n      demo_c: {}\n")
    (role / "defaults" / "main.yml").write_text("demo_a: 1\ndemo_b: 2\ndemo_c: 3\n")
    (role / "README.md").write_text("| variable | default |\n|---|---|\n| `demo_a` | 1 |\n| `demo_z` | 9 |\n")
    monkeypatch.setattr(sys.modules[__name__], "ROLES_DIR", str(tmp_path / "roles"))
    problems = docs_problems("demo")
    assert problems == [
        "roles/demo/README.md: 2 variable(s) declared in meta/argument_specs.yml have no row in the variable table: "
        "demo_b (entry point main), demo_c (entry point other)",
        "roles/demo/README.md: 1 variable(s) in the variable table are not declared in meta/argument_specs.yml: demo_z",
    ]
