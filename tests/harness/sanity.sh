#!/usr/bin/env bash
# ansible-test sanity on the collection exactly as users get it: build the
# tarball, install it, and run the tests from the installed copy.
#
# Tests run: every test ansible-test offers except
#   pslint     PowerShell is not installed here and the collection has no .ps1
#   changelog  needs antsibull-changelog's config; changelogs/ is checked by
#              yamllint instead
# ansible-test installs each test's pinned requirements itself (--requirements).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH=$root/.venv/bin:$PATH
work=$(mktemp -d "${TMPDIR:-/tmp}/secvirt-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$root"
ansible-galaxy collection build --force --output-path "$work" >/dev/null
ansible-galaxy collection install -p "$work/c" "$work"/secvirt-kvm-*.tar.gz >/dev/null
cd "$work/c/ansible_collections/secvirt/kvm"
# ansible-test wants a git repository or a plain tree; the installed tree is plain.
LC_ALL=C.UTF-8 ansible-test sanity --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --requirements --color no --skip-test pslint --skip-test changelog "$@"
