#!/usr/bin/env bash
# make demo: boot the built-in disposable KVM host (and a management station),
# run playbooks/site.yml against them with the sample inventory in
# playbooks/inventory/demo/, then print what is now enforced on the host.
# The VMs are destroyed afterwards unless SECVIRT_DEMO_KEEP=1. Arguments are
# passed to ansible-playbook for site.yml (e.g. --tags pki,libvirt_remote).
# The KVM host boots the harness's "virt" disk (libvirt and qemu already
# unpacked: doing it under TCG costs many minutes), so the hypervisor role's
# package step installs only AppArmor's tools there; the station boots the plain disk and installs its
# client packages itself. SECVIRT_DEMO_IMAGE=plain boots a plain KVM host.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH=$root/.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$root/.cache/collections
export ANSIBLE_CONFIG=$root/ansible.cfg
state=$root/.cache/demo
SECVIRT_RUN_ID=demo-$$-$(date +%s)
export SECVIRT_RUN_ID
stage=tests/harness/stage.sh
export SECVIRT_TIMINGS=$root/.cache/demo-timings.tsv
: >"$SECVIRT_TIMINGS"

down() {
  if [ "${SECVIRT_DEMO_KEEP:-0}" = 1 ]; then
    echo "VMs kept: ssh with 'python3 tests/harness/vm.py ssh --state $state kvmhost';"
    echo "stop them with 'python3 tests/harness/vm.py down --state $state'."
  else
    python3 tests/harness/vm.py down --state "$state" >/dev/null
  fi
}
trap down EXIT

# Throw-away secrets for this demo only, kept in the environment (never on
# disk); a real inventory takes them from Ansible Vault.
SECVIRT_DEMO_CA_PASSPHRASE=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
SECVIRT_DEMO_LUKS_PASSPHRASE=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export SECVIRT_DEMO_CA_PASSPHRASE SECVIRT_DEMO_LUKS_PASSPHRASE
export SECVIRT_DEMO_CA_DIR=$state-ca   # the CA key in it is encrypted
rm -rf "$SECVIRT_DEMO_CA_DIR"

"$stage" boot python3 tests/harness/vm.py up --state "$state" \
  --platforms '[{"name": "kvmhost", "image": "'"${SECVIRT_DEMO_IMAGE:-virt}"'", "memory_mb": 2048, "cpus": 2}, {"name": "station", "memory_mb": 768, "cpus": 1}]' \
  >"$state.instances.json"
python3 - "$state.instances.json" >"$state.hosts.yml" <<'PY'
import json, sys
inst = {i["instance"]: i for i in json.load(open(sys.argv[1]))}
def host(name):
    i = inst[name]
    return {"ansible_host": i["address"], "ansible_port": i["port"], "ansible_user": i["user"],
            "ansible_ssh_private_key_file": i["identity_file"],
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"}
print(json.dumps({"kvm_hosts": {"hosts": {"kvmhost": host("kvmhost")}},
                  "management_stations": {"hosts": {"station": host("station")}}}))
PY
"$stage" site.yml ansible-playbook -i "$state.hosts.yml" -i playbooks/inventory/demo playbooks/site.yml "$@"
"$stage" summary ansible-playbook -i "$state.hosts.yml" -i playbooks/inventory/demo playbooks/report.yml
# the posture report: Markdown summary printed, JSON/JUnit/Markdown/HTML kept
"$stage" posture ansible-playbook -i "$state.hosts.yml" -i playbooks/inventory/demo playbooks/posture.yml \
  -e posture_output_dir="$root/.cache/demo-posture"
awk -F'\t' '{printf "  %-12s %-8s %dm%02ds\n", $1, $2, int($3/60), $3%60}' "$SECVIRT_TIMINGS"
