#!/usr/bin/env bash
# ansible-test sanity on the collection exactly as users get it: build the
# tarball, install it, and run the tests from the installed copy.
#
# Tests run: every test ansible-test offers except
#   pslint     PowerShell is not installed here and the collection has no .ps1
# The changelog fragments are linted twice: first by the antsibull-changelog
# pinned in requirements-dev.txt (the one `antsibull-changelog release` uses;
# it also checks changelogs/changelog.yaml), then by ansible-test's changelog
# test (the antsibull-changelog version ansible-core pins for it, as Galaxy and
# Automation Hub run it). A malformed fragment fails this script either way.
# --venv: ansible-test makes a virtual environment per test with its own pinned
# requirements, so our .venv pins are never touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH=$root/.venv/bin:$PATH
work=$(mktemp -d "${TMPDIR:-/tmp}/secvirt-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$root"
ansible-galaxy collection build --force --output-path "$work" >/dev/null
ansible-galaxy collection install --force -p "$work/c" "$work"/secvirt-kvm-*.tar.gz >/dev/null 2>/dev/null
cd "$work/c/ansible_collections/secvirt/kvm"
# The import test bootstraps pip from a host CI cannot reach: use our shim
# (see tests/harness/files/get_pip_shim.py) for the pip version it pins.
pip_version=$(grep -hoP "pip='\K[0-9.]+" "$root"/.venv/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -1)
pip_version=${pip_version:-24.2}
mkdir -p ~/.ansible/test/cache
cp "$root/tests/harness/files/get_pip_shim.py" ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
changelog_rc=0
antsibull-changelog lint || changelog_rc=$?
antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml || changelog_rc=$?
if [ $changelog_rc = 0 ]; then
  echo "antsibull-changelog $(antsibull-changelog --version) lint: changelogs/changelog.yaml and" \
    "$(find changelogs/fragments -name '*.y*ml' | wc -l) fragments OK"
else
  echo "antsibull-changelog lint: FAILED (rc=$changelog_rc), see the lines above" >&2
fi
# ansible-test wants a git repository or a plain tree; the installed tree is plain.
# A failed lint above still lets ansible-test run, so one run reports both.
LC_ALL=C.UTF-8 ansible-test sanity --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --venv --color no --skip-test pslint "$@"
exit $changelog_rc
