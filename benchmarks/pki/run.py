# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue server certificates for N simulated hosts two ways and compare, in one run.

per-host   community.crypto as the issue describes it: openssl_privatekey +
           openssl_csr + x509_certificate (provider ownca), one call each per host.
batch      secvirt.kvm: x509_csr per host (key + CSR in place), ONE x509_sign
           call for all hosts (run_once on the controller), x509_install per host
           (verifies against the key, writes the certificate).

Both run through ansible-playbook against the same inventory of N hostnames
with connection local, the same forks, the same CA (ECDSA P-384, key
encrypted) and ECDSA P-256 host keys with the host name as CN and SAN.
Each task's wall time is taken from the json callback (first start to last
end over all hosts), so the signing step is measured on its own as well.

Usage: .venv/bin/python benchmarks/pki/run.py [--sizes 10,100,500] [--quick] [--forks N] [--rerun]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
from ansible_collections.secvirt.kvm.plugins.module_utils import x509  # noqa: E402

PASSPHRASE = "benchmark-only-passphrase"

PER_HOST = """
- name: community.crypto, one call of each module per host
  hosts: all
  gather_facts: false
  tasks:
    - name: key
      community.crypto.openssl_privatekey:
        path: "{{ work }}/per-host/{{ inventory_hostname }}/key.pem"
        type: ECC
        curve: secp256r1
        mode: "0600"
    - name: csr
      community.crypto.openssl_csr:
        path: "{{ work }}/per-host/{{ inventory_hostname }}/req.csr"
        privatekey_path: "{{ work }}/per-host/{{ inventory_hostname }}/key.pem"
        common_name: "{{ inventory_hostname }}.bench.test"
        organization_name: bench
        subject_alt_name: ["DNS:{{ inventory_hostname }}.bench.test"]
        extended_key_usage: [serverAuth, clientAuth]
    - name: sign
      community.crypto.x509_certificate:
        path: "{{ work }}/per-host/{{ inventory_hostname }}/cert.pem"
        csr_path: "{{ work }}/per-host/{{ inventory_hostname }}/req.csr"
        provider: ownca
        ownca_path: "{{ work }}/ca/cacert.pem"
        ownca_privatekey_path: "{{ work }}/ca/cakey.pem"
        ownca_privatekey_passphrase: "{{ passphrase }}"
        ownca_not_after: +365d
        mode: "0644"
"""

BATCH = """
- name: secvirt.kvm, keys and CSRs per host, one signing call, install per host
  hosts: all
  gather_facts: false
  tasks:
    - name: key+csr
      secvirt.kvm.x509_csr:
        keys:
          - name: server
            path: "{{ work }}/batch/{{ inventory_hostname }}/key.pem"
            owner: "{{ user }}"
            group: "{{ user_group }}"
            subject: {CN: "{{ inventory_hostname }}.bench.test"}
            dns: ["{{ inventory_hostname }}.bench.test"]
            cert_path: "{{ work }}/batch/{{ inventory_hostname }}/cert.pem"
      register: req
    - name: sign
      secvirt.kvm.x509_sign:
        ca_cert_path: "{{ work }}/ca/cacert.pem"
        ca_key_path: "{{ work }}/ca/cakey.pem"
        ca_passphrase: "{{ passphrase }}"
        requests: >-
          {%- set out = [] -%}
          {%- for h in ansible_play_hosts -%}
          {%-   set r = hostvars[h].req.requests.server -%}
          {%-   set _ = out.append({'name': h, 'csr': r.csr, 'current': r.current_certificate,
                                    'subject': {'O': 'bench', 'CN': h ~ '.bench.test'},
                                    'dns': [h ~ '.bench.test'], 'profile': 'server'}) -%}
          {%- endfor -%}
          {{ out }}
      run_once: true
      delegate_to: localhost
      register: signed
    - name: install
      secvirt.kvm.x509_install:
        ca_certificate: "{{ ca_pem }}"
        certificates:
          - name: server
            certificate: "{{ signed.certificates[inventory_hostname].certificate }}"
            key_path: "{{ work }}/batch/{{ inventory_hostname }}/key.pem"
            names: ["{{ inventory_hostname }}.bench.test"]
            profile: server
            files:
              - path: "{{ work }}/batch/{{ inventory_hostname }}/cert.pem"
                owner: "{{ user }}"
                group: "{{ user_group }}"
"""


def setup(work, n):
    """Inventory, per-host directories and the shared CA (not timed)."""
    os.makedirs(os.path.join(work, "ca"))
    key, cert = x509.create_ca("ecdsa-p384", {"O": "bench", "CN": "bench"}, 3650)
    with open(os.path.join(work, "ca", "cakey.pem"), "wb") as handle:
        handle.write(x509.private_key_pem(key, PASSPHRASE))
    with open(os.path.join(work, "ca", "cacert.pem"), "wb") as handle:
        handle.write(x509.certificate_pem(cert))
    hosts = ["h%04d" % i for i in range(n)]
    for side in ("per-host", "batch"):
        for host in hosts:
            os.makedirs(os.path.join(work, side, host))
    import grp
    import pwd
    inventory = {"all": {
        "hosts": {h: None for h in hosts},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "work": work, "passphrase": PASSPHRASE, "ca_pem": x509.certificate_pem(cert).decode(),
                 "user": pwd.getpwuid(os.getuid()).pw_name, "user_group": grp.getgrgid(os.getgid()).gr_name}}}
    with open(os.path.join(work, "inventory.json"), "w") as handle:
        json.dump(inventory, handle)
    for name, text in (("per-host.yml", PER_HOST), ("batch.yml", BATCH)):
        with open(os.path.join(work, name), "w") as handle:
            handle.write(text)
    return hosts


def play(work, playbook, forks):
    """Run one playbook; return (wall seconds, {task name: wall seconds})."""
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_FORKS=str(forks),
               ANSIBLE_HOST_KEY_CHECKING="false",
               ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_DEPRECATION_WARNINGS="false",
               ANSIBLE_NOCOLOR="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    out_path = os.path.join(work, playbook + ".out.json")
    start = time.monotonic()
    with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
        rc = subprocess.call(["ansible-playbook", "-i", os.path.join(work, "inventory.json"),
                              os.path.join(work, playbook)], cwd=work, env=env, stdout=out, stderr=err)
    wall = time.monotonic() - start
    if rc != 0:
        with open(out_path) as out, open(out_path + ".err") as err:
            raise SystemExit("%s failed (rc %d):\n%s\n%s" % (playbook, rc, out.read()[-3000:], err.read()[-3000:]))
    with open(out_path) as out:
        result = json.load(out)
    tasks = {}
    for play_ in result["plays"]:
        for task in play_["tasks"]:
            durations = [h for h in [task["task"].get("duration")] if h]
            if durations:
                tasks[task["task"]["name"]] = _seconds(durations[0])
    changed = result["stats"]
    return wall, tasks, sum(s.get("changed", 0) for s in changed.values())


def _seconds(duration):
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return (datetime.strptime(duration["end"], fmt) - datetime.strptime(duration["start"], fmt)).total_seconds()


def check_outputs(work, hosts):
    """Both sides must have produced a valid certificate for every host."""
    ca = x509.load_certificate(open(os.path.join(work, "ca", "cacert.pem"), "rb").read())
    for side in ("per-host", "batch"):
        for host in hosts:
            cert = x509.load_certificate(open(os.path.join(work, side, host, "cert.pem"), "rb").read())
            key = x509.load_private_key(open(os.path.join(work, side, host, "key.pem"), "rb").read())
            problems = x509.verify_certificate(cert, ca, private_key=key, names=[host + ".bench.test"])
            if problems:
                raise SystemExit("%s %s: %s" % (side, host, problems))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="10,100,500", help="comma-separated host counts (default 10,100,500)")
    parser.add_argument("--quick", action="store_true", help="only N=10 and N=50")
    parser.add_argument("--forks", type=int, default=20, help="ansible forks for both sides (default 20)")
    parser.add_argument("--rerun", action="store_true", help="also time a second, no-change run of each side")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    sizes = [10, 50] if args.quick else [int(s) for s in args.sizes.split(",") if s]

    print("cpus=%d forks=%d python=%s cryptography=%s" % (
        os.cpu_count(), args.forks, sys.version.split()[0], __import__("cryptography").__version__))
    header = "%6s  %-9s %9s %10s %9s %9s %9s" % ("N", "approach", "total_s", "keys+csr_s", "sign_s", "install_s", "rerun_s")
    print(header)
    rows = []
    for n in sizes:
        work = tempfile.mkdtemp(prefix="secvirt-pki-bench-%d-" % n)
        try:
            hosts = setup(work, n)
            res = {}
            for side, playbook in (("per-host", "per-host.yml"), ("batch", "batch.yml")):
                wall, tasks, changed = play(work, playbook, args.forks)
                rerun = play(work, playbook, args.forks)[0] if args.rerun else None
                if side == "per-host":
                    keys, sign, install = tasks["key"] + tasks["csr"], tasks["sign"], 0.0
                else:
                    keys, sign, install = tasks["key+csr"], tasks["sign"], tasks["install"]
                res[side] = dict(total=wall, keys=keys, sign=sign, install=install, rerun=rerun, changed=changed)
                print("%6d  %-9s %9.1f %10.1f %9.2f %9.1f %9s" % (
                    n, side, wall, keys, sign, install, "-" if rerun is None else "%.1f" % rerun), flush=True)
            check_outputs(work, hosts)
            total_ratio = res["per-host"]["total"] / res["batch"]["total"]
            sign_ratio = res["per-host"]["sign"] / res["batch"]["sign"]
            rows.append((n, total_ratio, sign_ratio))
            print("%6d  ratio     end-to-end per-host/batch = %.1fx   signing step per-host/batch = %.1fx" % (
                n, total_ratio, sign_ratio), flush=True)
        finally:
            if args.keep:
                print("kept", work)
            else:
                shutil.rmtree(work, ignore_errors=True)
    print("summary: " + "; ".join("N=%d end-to-end %.1fx, signing %.1fx" % r for r in rows))


if __name__ == "__main__":
    main()
