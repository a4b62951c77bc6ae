# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue server certificates for N hosts two ways and compare, in one run.

per-host   community.crypto as a user writes it: openssl_privatekey +
           openssl_csr on the host, then x509_certificate (provider ownca),
           one call each per host. With --ssh the CSR is fetched to the
           controller, signed there (delegate_to localhost, the CA key stays
           on the controller) and the certificate copied back: 5 tasks.
batch      secvirt.kvm: x509_csr per host (key + CSR in place), ONE x509_sign
           call for all hosts (run_once on the controller), x509_install per host
           (verifies against the key, writes the certificate).

Without --ssh both run against N inventory hostnames with connection local.
With --ssh the benchmark starts its own sshd on 127.0.0.1 (loopback_sshd.py)
and the N hostnames are aliases of it, each with its own directory, its own
SSH connection (ControlPersist) and pipelining. Both sides use the same
forks, the same CA (ECDSA P-384, key encrypted) and ECDSA P-256 host keys
with the host name as CN and SAN. Each task's wall time is taken from the
json callback (first start to last end over all hosts), so the signing step
is measured on its own as well.

Usage: .venv/bin/python benchmarks/pki/run.py [--ssh] [--sizes 10,100,500] [--quick] [--forks N] [--rerun]
"""
import argparse
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
from ansible_collections.secvirt.kvm.plugins.module_utils import x509  # noqa: E402
from loopback_sshd import LoopbackSshd  # noqa: E402

PASSPHRASE = "benchmark-only-passphrase"

SIDES = ("per-host", "batch")

# table column: the tasks (by name, from the playbooks below) whose times it sums
COLUMNS = (("keys", ("key", "csr", "key+csr")), ("fetch", ("fetch",)), ("sign", ("sign",)),
           ("install", ("install", "copy")))

PER_HOST_HEAD = """
- name: community.crypto, one call of each module per host
  hosts: all
  gather_facts: false
  tasks:
    - name: key
      community.crypto.openssl_privatekey:
        path: "{{ host_dir }}/per-host/key.pem"
        type: ECC
        curve: secp256r1
        mode: "0600"
    - name: csr
      community.crypto.openssl_csr:
        path: "{{ host_dir }}/per-host/req.csr"
        privatekey_path: "{{ host_dir }}/per-host/key.pem"
        common_name: "{{ inventory_hostname }}.bench.test"
        organization_name: bench
        subject_alt_name: ["DNS:{{ inventory_hostname }}.bench.test"]
        extended_key_usage: [serverAuth, clientAuth]
"""

# connection local: the "host" can read the CA files in place
PER_HOST_SIGN_LOCAL = """
    - name: sign
      community.crypto.x509_certificate:
        path: "{{ host_dir }}/per-host/cert.pem"
        csr_path: "{{ host_dir }}/per-host/req.csr"
        provider: ownca
        ownca_path: "{{ work }}/ca/cacert.pem"
        ownca_privatekey_path: "{{ work }}/ca/cakey.pem"
        ownca_privatekey_passphrase: "{{ passphrase }}"
        ownca_not_after: +365d
        mode: "0644"
"""

# over SSH the CA key stays on the controller: CSR there, certificate back
PER_HOST_SIGN_SSH = """
    - name: fetch
      ansible.builtin.fetch:
        src: "{{ host_dir }}/per-host/req.csr"
        dest: "{{ controller_dir }}/req.csr"
        flat: true
    - name: sign
      community.crypto.x509_certificate:
        path: "{{ controller_dir }}/cert.pem"
        csr_path: "{{ controller_dir }}/req.csr"
        provider: ownca
        ownca_path: "{{ work }}/ca/cacert.pem"
        ownca_privatekey_path: "{{ work }}/ca/cakey.pem"
        ownca_privatekey_passphrase: "{{ passphrase }}"
        ownca_not_after: +365d
        mode: "0644"
      delegate_to: localhost
    - name: copy
      ansible.builtin.copy:
        src: "{{ controller_dir }}/cert.pem"
        dest: "{{ host_dir }}/per-host/cert.pem"
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
            path: "{{ host_dir }}/batch/key.pem"
            owner: "{{ user }}"
            group: "{{ user_group }}"
            subject: {CN: "{{ inventory_hostname }}.bench.test"}
            dns: ["{{ inventory_hostname }}.bench.test"]
            cert_path: "{{ host_dir }}/batch/cert.pem"
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
            key_path: "{{ host_dir }}/batch/key.pem"
            names: ["{{ inventory_hostname }}.bench.test"]
            profile: server
            files:
              - path: "{{ host_dir }}/batch/cert.pem"
                owner: "{{ user }}"
                group: "{{ user_group }}"
"""


def setup(work, n, sshd=None):
    """Inventory, per-host directories, playbooks and the shared CA (not timed)."""
    os.makedirs(os.path.join(work, "ca"))
    key, cert = x509.create_ca("ecdsa-p384", {"O": "bench", "CN": "bench"}, 3650)
    with open(os.path.join(work, "ca", "cakey.pem"), "wb") as handle:
        handle.write(x509.private_key_pem(key, PASSPHRASE))
    with open(os.path.join(work, "ca", "cacert.pem"), "wb") as handle:
        handle.write(x509.certificate_pem(cert))
    hosts = ["h%04d" % i for i in range(1, n + 1)]
    for host in hosts:
        for side in SIDES:
            os.makedirs(os.path.join(work, "hosts", host, side))
    common = {"work": work, "passphrase": PASSPHRASE, "ca_pem": x509.certificate_pem(cert).decode(),
              "host_dir": "{{ work }}/hosts/{{ inventory_hostname }}",
              "controller_dir": "{{ work }}/controller/{{ inventory_hostname }}",
              "user": pwd.getpwuid(os.getuid()).pw_name, "user_group": grp.getgrgid(os.getgid()).gr_name}
    if sshd is None:
        connection = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        host_vars = {h: None for h in hosts}
    else:
        # The "hosts" run the venv's Python (it has cryptography for both
        # collections). Connection variables go to the group, not to 'all',
        # which the implicit localhost of delegate_to would inherit.
        connection = sshd.inventory_vars(sys.executable)
        host_vars = {h: {"ansible_control_path": sshd.control_path(h),
                         "ansible_remote_tmp": os.path.join(work, "hosts", h, ".ansible-tmp")} for h in hosts}
    inventory = {"all": {"vars": common, "children": {"bench": {"hosts": host_vars, "vars": connection}}}}
    with open(os.path.join(work, "inventory.json"), "w") as handle:
        json.dump(inventory, handle)
    per_host = PER_HOST_HEAD + (PER_HOST_SIGN_LOCAL if sshd is None else PER_HOST_SIGN_SSH)
    for name, text in (("per-host.yml", per_host), ("batch.yml", BATCH)):
        with open(os.path.join(work, name), "w") as handle:
            handle.write(text)
    return hosts


def _call(argv, **kwargs):
    """subprocess.call in a session of its own, so that an interrupted run also ends ansible's workers."""
    with subprocess.Popen(argv, start_new_session=True, **kwargs) as proc:
        try:
            return proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise


def play(work, playbook, forks):
    """Run one playbook; return (wall seconds, {task name: wall seconds}, changed count)."""
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
    with open(out_path, "w", encoding="utf-8") as out, open(out_path + ".err", "w", encoding="utf-8") as err:
        rc = _call(["ansible-playbook", "-i", os.path.join(work, "inventory.json"),
                    os.path.join(work, playbook)], cwd=work, env=env, stdout=out, stderr=err)
    wall = time.monotonic() - start
    if rc != 0:
        with open(out_path, encoding="utf-8") as out, open(out_path + ".err", encoding="utf-8") as err:
            raise SystemExit("%s failed (rc %d):\n%s\n%s" % (playbook, rc, out.read()[-3000:], err.read()[-3000:]))
    with open(out_path, encoding="utf-8") as out:
        result = json.load(out)
    tasks = {}
    for play_ in result["plays"]:
        for task in play_["tasks"]:
            duration = task["task"].get("duration")
            if duration:
                tasks[task["task"]["name"]] = _seconds(duration)
    return wall, tasks, sum(s.get("changed", 0) for s in result["stats"].values())


def _seconds(duration):
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return (datetime.strptime(duration["end"], fmt) - datetime.strptime(duration["start"], fmt)).total_seconds()


def _read(*path):
    with open(os.path.join(*path), "rb") as handle:
        return handle.read()


def check_outputs(work, hosts):
    """Both sides must have left a valid certificate next to its key on every host."""
    ca = x509.load_certificate(_read(work, "ca", "cacert.pem"))
    for host in hosts:
        for side in SIDES:
            cert = x509.load_certificate(_read(work, "hosts", host, side, "cert.pem"))
            key = x509.load_private_key(_read(work, "hosts", host, side, "key.pem"))
            problems = x509.verify_certificate(cert, ca, private_key=key, names=[host + ".bench.test"])
            if problems:
                raise SystemExit("%s %s: %s" % (side, host, problems))


def measure(work, side, forks, rerun, between):
    """Time one side (and its no-change re-run); between() runs after every playbook."""
    wall, tasks, changed = play(work, side + ".yml", forks)
    between()
    row = {"total": wall, "changed": changed, "rerun": None, "rerun_changed": None}
    for column, names in COLUMNS:
        times = [tasks[name] for name in names if name in tasks]
        row[column] = sum(times) if times else None
    if rerun:
        again = play(work, side + ".yml", forks)
        row["rerun"], row["rerun_changed"] = again[0], again[2]
        between()
    return row


def _cell(value, fmt):
    return "-" if value is None else fmt % value


def run_size(n, args, base):
    """Both sides at N hosts; return their rows."""
    work = tempfile.mkdtemp(prefix="n%d-" % n, dir=base)
    sshd = None
    try:
        if args.ssh:
            os.makedirs(os.path.join(work, "ssh"))
            sshd = LoopbackSshd(os.path.join(work, "ssh"), max_startups=2 * args.forks + 10, max_sessions=args.forks + 10)
            sshd.start()
        hosts = setup(work, n, sshd)
        # each playbook starts with cold connections, as a fresh run against real hosts would
        between = sshd.close_connections if sshd else (lambda: None)
        res = {}
        for side in SIDES:
            res[side] = row = measure(work, side, args.forks, args.rerun, between)
            print("%6d  %-9s %9.1f %10s %8s %8s %10s %8s %9s" % (
                n, side, row["total"], _cell(row["keys"], "%.1f"), _cell(row["fetch"], "%.1f"),
                _cell(row["sign"], "%.2f"), _cell(row["install"], "%.1f"), _cell(row["rerun"], "%.1f"),
                "%s/%s" % (row["changed"], _cell(row["rerun_changed"], "%d"))), flush=True)
        check_outputs(work, hosts)
        return res
    finally:
        if sshd is not None:
            sshd.stop()
        if args.keep:
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _ratio(res, key):
    per_host, batch = res["per-host"][key], res["batch"][key]
    return None if per_host is None or not batch else per_host / batch


def _sigterm(signum, frame):  # pylint: disable=unused-argument
    """Turn SIGTERM into SystemExit, so that the finally blocks stop sshd and ansible."""
    raise SystemExit("terminated (signal %d)" % signum)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="10,100,500", help="comma-separated host counts (default 10,100,500)")
    parser.add_argument("--quick", action="store_true", help="only N=10 and N=50")
    parser.add_argument("--forks", type=int, default=20, help="ansible forks for both sides (default 20)")
    parser.add_argument("--rerun", action="store_true", help="also time a second, no-change run of each side")
    parser.add_argument("--ssh", action="store_true",
                        help="reach the hosts over SSH through a private sshd on 127.0.0.1 instead of connection local")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    sizes = [10, 50] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    signal.signal(signal.SIGTERM, _sigterm)

    print("mode=%s cpus=%d forks=%d python=%s cryptography=%s" % (
        "ssh" if args.ssh else "local", os.cpu_count(), args.forks, sys.version.split()[0],
        __import__("cryptography").__version__))
    print("%6s  %-9s %9s %10s %8s %8s %10s %8s %9s" % (
        "N", "approach", "total_s", "keys+csr_s", "fetch_s", "sign_s", "install_s", "rerun_s", "changed"))
    base = tempfile.mkdtemp(prefix="secvirt-pki-bench-")
    rows = []
    try:
        for n in sizes:
            res = run_size(n, args, base)
            ratios = (n, _ratio(res, "total"), _ratio(res, "sign"), _ratio(res, "rerun"))
            rows.append(ratios)
            print("%6d  ratio per-host/batch: end-to-end %sx, signing step %sx, re-run %sx" % (
                n, _cell(ratios[1], "%.1f"), _cell(ratios[2], "%.1f"), _cell(ratios[3], "%.1f")), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("summary: " + "; ".join("N=%d end-to-end %sx, signing %sx, re-run %sx" % (
        n, _cell(t, "%.1f"), _cell(s, "%.1f"), _cell(r, "%.1f")) for n, t, s, r in rows))


if __name__ == "__main__":
    main()
