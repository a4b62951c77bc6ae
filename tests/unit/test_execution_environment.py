"""The execution environment files (meta/execution-environment.yml,
requirements.txt, bindep.txt) as ansible-builder reads them, without building
an image.

ansible-builder is pinned in requirements-dev.txt (`make setup`); it runs from
the same bin directory as the Python running these tests.
"""
import ast
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from bindep.depends import Depends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EE_FILE = os.path.join(ROOT, "meta", "execution-environment.yml")
BUILDER = os.path.join(os.path.dirname(sys.executable), "ansible-builder")

# Third-party modules imported under plugins/ and the distribution that
# provides each (what requirements.txt must list).
DISTRIBUTIONS = {"cryptography": "cryptography", "libvirt": "libvirt-python"}


def _lines(path):
    """The entries of a requirements or bindep file: no blanks, no comments."""
    with open(path, encoding="utf-8") as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


def _builder(*args, cwd):
    if not os.access(BUILDER, os.X_OK):
        pytest.fail(f"{BUILDER} is missing: `make setup` installs the ansible-builder pinned in requirements-dev.txt")
    proc = subprocess.run([BUILDER, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"ansible-builder {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _copy_collection_files(dest):
    """The files ansible-builder reads from the collection, in its layout."""
    os.makedirs(os.path.join(dest, "meta"))
    for name in ("requirements.txt", "bindep.txt", "galaxy.yml", "meta/execution-environment.yml"):
        shutil.copy(os.path.join(ROOT, name), os.path.join(dest, name))


def test_ee_file_names_the_collection_files():
    with open(EE_FILE, encoding="utf-8") as f:
        ee = yaml.safe_load(f)
    assert ee == {"version": 3, "dependencies": {"python": "requirements.txt", "system": "bindep.txt"}}


def test_create_writes_a_build_context_with_the_collection_requirements(tmp_path):
    # The dependency paths of the collection's file are relative to the
    # collection root, so the definition is put there for `create` (which
    # reads paths relative to the definition) and validated as a v3 file.
    src = tmp_path / "src"
    _copy_collection_files(src)
    shutil.copy(src / "meta" / "execution-environment.yml", src / "execution-environment.yml")
    _builder("create", "-f", str(src / "execution-environment.yml"), "-c", str(tmp_path / "context"),
             "--output-filename", "Containerfile", cwd=tmp_path)

    build = tmp_path / "context" / "_build"
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert (build / "requirements.txt").read_text() == (src / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (src / "bindep.txt").read_text()
    assert "COPY _build/requirements.txt requirements.txt" in containerfile
    assert "COPY _build/bindep.txt bindep.txt" in containerfile
    assert "--user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    for script in ("assemble", "install-from-bindep", "introspect.py"):
        assert (build / "scripts" / script).is_file()


def test_introspect_finds_the_collection_requirements(tmp_path):
    # What an EE build that installs secvirt.kvm from Galaxy does with it.
    _copy_collection_files(tmp_path / "collections" / "ansible_collections" / "secvirt" / "kvm")
    _builder("introspect", str(tmp_path / "collections"), "--write-pip", str(tmp_path / "pip.txt"),
             "--write-bindep", str(tmp_path / "bindep.txt"), cwd=tmp_path)

    assert _lines(tmp_path / "pip.txt") == _lines(os.path.join(ROOT, "requirements.txt"))
    assert _lines(tmp_path / "bindep.txt") == _lines(os.path.join(ROOT, "bindep.txt"))
    assert "# from collection secvirt.kvm" in (tmp_path / "pip.txt").read_text()


def test_requirements_list_every_third_party_import_of_the_plugins():
    imported = set()
    for directory, _dirs, files in os.walk(os.path.join(ROOT, "plugins")):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "ansible", "ansible_collections"}
    unknown = third_party - set(DISTRIBUTIONS)
    assert not unknown, f"add {sorted(unknown)} to requirements.txt and to DISTRIBUTIONS here"
    listed = {line.split("==")[0].lower() for line in _lines(os.path.join(ROOT, "requirements.txt"))}
    assert listed == {DISTRIBUTIONS[m] for m in third_party}
    assert all("==" in line for line in _lines(os.path.join(ROOT, "requirements.txt")))


# Every role a package plays in the image, per package family: "compile" is
# the builder stage where pip builds libvirt-python, "run" the final image.
ROLES = {
    "compile": {
        "libvirt headers": ("libvirt-dev", "libvirt-devel"),
        "pkg-config": ("pkg-config", "pkgconf-pkg-config"),
        "C compiler": ("gcc", "gcc"),
        "Python headers": ("python3-dev", "python3-devel"),
    },
    "run": {
        "libvirt client library": ("libvirt0", "libvirt-libs"),
        "SASL SCRAM": ("libsasl2-modules", "cyrus-sasl-scram"),
        "SASL GSSAPI": ("libsasl2-modules-gssapi-mit", "cyrus-sasl-gssapi"),
        "ssh client": ("openssh-client", "openssh-clients"),
        "qemu-img": ("qemu-utils", "qemu-img"),
    },
}


@pytest.mark.parametrize("family", ["dpkg", "rpm"])
def test_bindep_gives_both_package_families_every_role(family):
    index = 0 if family == "dpkg" else 1
    with open(os.path.join(ROOT, "bindep.txt"), encoding="utf-8") as f:
        depends = Depends(f.read())

    def packages(profile):
        return {rule[0] for rule in depends.active_rules([f"platform:{family}", profile])}

    compile_only = {names[index] for names in ROLES["compile"].values()}
    run = {names[index] for names in ROLES["run"].values()}
    # bindep's default profile is what ansible-builder installs in the final image
    assert packages("default") == run
    assert packages("compile") == run | compile_only
