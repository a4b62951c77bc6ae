"""qemu_tls on Debian 13 (libvirt 11, QEMU 10): consoles over TLS, proven by
speaking the protocols from the management station.

Each test defines and starts its own tiny nested guest (no OS, 32 MiB, TCG)
after site.yml converged, so what is checked is what libvirt starts from the
qemu.conf the role wrote; each test removes its guest again. The refusals
come with the reason the server gave: QEMU's own ``vnc_auth_fail`` trace
(turned on in that guest through its monitor) for the TLS refusals, the RFB
failure string for a plain client.
"""
import json
import os
import re
import shutil
import sys

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import clones  # noqa: E402  pylint: disable=wrong-import-position
import consoles  # noqa: E402  pylint: disable=wrong-import-position
import firewalld  # noqa: E402  pylint: disable=wrong-import-position
import listeners  # noqa: E402  pylint: disable=wrong-import-position
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
KVM = RUNNER.get_host("kvmhost")
STATION = RUNNER.get_host("station")
VIRSH = nested_guests.VIRSH
LAB_IP = "10.254.0.10"
NAME = "kvmhost.secvirt.test"
CA = "/etc/pki/CA/cacert.pem"
NOCOLOR = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def _push_probe(station=STATION):
    consoles.push_probe(station)


def _probe(port, mode, *args, **kwargs):
    """``password``: given to the probe on its standard input (for ``--user``)."""
    return consoles.probe(kwargs.get("station", STATION), LAB_IP, port, mode, *args, password=kwargs.get("password"))


def _port(guest, attribute):
    xml = KVM.check_output(VIRSH + " dumpxml %s", guest)
    match = re.search(r"<graphics type='(?:vnc|spice)'[^>]*\b%s='(\d+)'" % attribute, xml)
    return int(match.group(1)) if match else None


def _guest_log(guest, needle):
    return consoles.guest_log(KVM, guest, needle)


def test_vnc_offers_only_vencrypt_x509_and_needs_a_client_certificate_of_the_ca():
    guest = "tlsvnc"
    nested_guests.define(KVM, guest, disk=False, devices="<graphics type='vnc' autoport='yes'/>")
    try:
        KVM.check_output(VIRSH + " start %s", guest)
        port = _port(guest, "port")
        assert 5900 <= port <= 5999, port
        # the qemu.conf the role wrote: listen on the management address, x509 creds that verify the peer
        argv = KVM.check_output("tr '\\0' ' ' < /proc/$(cat /run/libvirt/qemu/%s.pid)/cmdline", guest)
        assert "-vnc %s:%d,tls-creds=" % (LAB_IP, port - 5900) in argv, argv
        assert '"dir":"/etc/pki/libvirt-vnc","endpoint":"server","verify-peer":true' in argv, argv
        KVM.check_output(VIRSH + " qemu-monitor-command %s --hmp 'trace-event vnc_auth_fail on'", guest)
        _push_probe()
        STATION.check_output(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /root/other.key "
            "-out /root/other.crt -subj '/O=secvirt-demo/OU=virtualization/CN=station' -days 2")

        # A plain RFB client finds nothing but VeNCrypt, and asking for None is refused.
        offered = _probe(port, "types")
        assert offered["version"] == "RFB 003.008" and offered["types"] == [19], offered
        plain = _probe(port, "plain")
        assert plain["result"] == 1 and plain["error"].startswith("server refused: Authentication failed"), plain

        # Positive control: the station's client certificate (from the pki role) gets a whole session over TLS.
        good = _probe(port, "tls", "--ca", CA, "--name", NAME,
                      "--cert", "/etc/pki/libvirt/clientcert.pem", "--key", "/etc/pki/libvirt/private/clientkey.pem")
        assert good["subtypes"] == ["x509none"], good          # no anonymous-TLS or plain subtype
        assert good["tls"] == "TLSv1.3" and good["server_subject"]["commonName"] == NAME, good
        assert good["step"] == "done" and good["desktop"]["name"] == "QEMU (%s)" % guest, good

        # No client certificate: the handshake ends, then QEMU drops the client, and says why.
        bare = _probe(port, "tls", "--ca", CA, "--name", NAME)
        assert bare["step"] == "security result" and "desktop" not in bare and "EOFError" in bare["error"], bare
        assert "message=TLS handshake failed reason=Verify failed: No certificate was found." in \
            _guest_log(guest, "No certificate was found"), "QEMU did not say why it dropped the client"

        # A client certificate from another CA (same subject): refused for its issuer.
        other = _probe(port, "tls", "--ca", CA, "--name", NAME, "--cert", "/root/other.crt", "--key", "/root/other.key")
        assert other["step"] == "security result" and "desktop" not in other, other
        assert "reason=The certificate hasn't got a known issuer" in _guest_log(guest, "known issuer"), \
            "QEMU did not say why it dropped the client"
    finally:
        nested_guests.remove(KVM, guest)
        STATION.run("rm -f /root/other.key /root/other.crt")


def test_spice_secure_guest_serves_only_tls_and_the_role_secures_a_plaintext_definition():
    secure, plain = "tlsspice", "plainspice"
    nested_guests.define(KVM, secure, disk=False, devices="<graphics type='spice' autoport='yes' defaultMode='secure'/>")
    nested_guests.define(KVM, plain, disk=False, devices="<graphics type='spice' autoport='yes'/>")
    try:
        KVM.check_output(VIRSH + " start %s", secure)
        tls_port = _port(secure, "tlsPort")
        assert tls_port and 5900 <= tls_port <= 5999
        assert _port(secure, "port") in (None, -1)
        pid = KVM.check_output("cat /run/libvirt/qemu/%s.pid", secure).strip()
        listening = KVM.check_output("ss -Htlnp | grep 'pid=%s,' || true", pid)
        assert re.findall(r"\S+:(\d+)\s", listening) == [str(tls_port)], listening  # no plaintext port at all
        assert "%s:%d" % (LAB_IP, tls_port) in listening, listening                  # on the management address
        # the TLS port: a verified handshake with the host's QEMU certificate, for the host's name
        handshake = STATION.run(
            "echo | timeout 20 openssl s_client -connect %s:%s -CAfile %s -verify_hostname %s -verify_return_error",
            LAB_IP, str(tls_port), CA, NAME)
        assert "Verify return code: 0 (ok)" in handshake.stdout, handshake.stdout + handshake.stderr
        assert "subject=O=secvirt-demo, OU=qemu, CN=%s" % NAME in handshake.stdout, handshake.stdout
        # the wrong name is refused by the client's verification (the control for the check above)
        wrong = STATION.run("echo | timeout 20 openssl s_client -connect %s:%s -CAfile %s -verify_hostname other.test "
                            "-verify_return_error", LAB_IP, str(tls_port), CA)
        assert "hostname mismatch" in wrong.stdout + wrong.stderr, wrong.stdout + wrong.stderr

        # The role reports the definition that would keep a plaintext port, and changes it only when asked.
        report = ansible_cli.run_role("qemu_tls", "kvm_hosts", role_vars={"qemu_tls_fix_guest_graphics": False}, env=NOCOLOR)
        assert report.returncode == 0, report.stdout[-3000:]
        flat = " ".join(report.stdout.split())  # the callback folds long messages
        assert "qemu_tls on kvmhost: %s would start a SPICE console with a plaintext port" % plain in flat, flat[-3000:]
        assert "defaultMode" not in KVM.check_output(VIRSH + " dumpxml --inactive %s", plain)
        fixed = ansible_cli.run_role("qemu_tls", "kvm_hosts", role_vars={"qemu_tls_fix_guest_graphics": True}, env=NOCOLOR)
        assert fixed.returncode == 0, fixed.stdout[-3000:]
        assert re.search(r"kvmhost\s+: ok=\d+\s+changed=1\s", fixed.stdout), fixed.stdout[-3000:]
        assert "defaultMode='secure'" in KVM.check_output(VIRSH + " dumpxml --inactive %s", plain)
        # and the secured guest really starts without a plaintext port
        KVM.check_output(VIRSH + " start %s", plain)
        argv = KVM.check_output("tr '\\0' ' ' < /proc/$(cat /run/libvirt/qemu/%s.pid)/cmdline", plain)
        spice = re.search(r"-spice (\S+)", argv).group(1)
        assert spice.startswith("tls-port=") and ",port=" not in spice and "x509-dir=/etc/pki/libvirt-spice" in spice, spice
    finally:
        nested_guests.remove(KVM, secure)
        nested_guests.remove(KVM, plain)


def _drops(chain):
    """Packets the migration ports' drop rule counted (not the peers' accept rule)."""
    return int(re.search(r"^\s*tcp dport 49152-49215 counter packets (\d+) bytes \d+ drop", chain, re.M).group(1))


def test_console_ports_open_to_the_management_network_migration_ports_dropped_for_it():
    """The station is on the management network and is not a hypervisor."""
    pids = listeners.start_http(KVM, LAB_IP, [5990, 49200])   # returns once both listen
    try:
        before = KVM.check_output("nft list chain inet secvirt_qemu_tls input")
        console = STATION.run("timeout 10 python3 -c \"import socket; socket.create_connection(('%s', 5990), 5); print('open')\"", LAB_IP)
        assert console.stdout.strip() == "open", console.stderr                       # positive control
        migration = STATION.run("timeout 10 python3 -c \"import socket; socket.create_connection(('%s', 49200), 5)\"", LAB_IP)
        assert migration.rc != 0 and "TimeoutError" in migration.stderr, migration.stderr  # dropped, not refused
        # ... by the role's migration rule: its drop counter grew
        after = KVM.check_output("nft list chain inet secvirt_qemu_tls input")
        assert _drops(after) > _drops(before), after
        assert KVM.run("timeout 5 python3 -c \"import socket; socket.create_connection(('%s', 49200), 3)\"", LAB_IP).rc == 0
    finally:
        KVM.run("kill %s" % " ".join(pids))


def test_check_mode_predicts_the_first_run_and_changes_nothing():
    """On a clone of the KVM host, with what qemu_tls puts in force taken
    away (vnc_tls and migrate_tls_force out of qemu.conf, the port filter
    unloaded) and a guest started meanwhile with a plaintext VNC console:
    --check --diff reports the changes and makes none; the real run (with
    qemu_tls_restart_guests) then changes exactly what was predicted, the
    guest's new QEMU serves VNC over TLS and the guest kept running; a third
    run changes nothing."""
    guest = "oldvnc"
    with clones.cloned("qemu-tls-check", ["kvmhost"]) as clone:
        host = clone.host("kvmhost")
        host.check_output("sed -i -e '/^vnc_tls = /d' -e '/^migrate_tls_force = /d' /etc/libvirt/qemu.conf "
                          "&& systemctl restart libvirtd && nft delete table inet secvirt_qemu_tls")
        nested_guests.define(host, guest, disk=False, devices="<graphics type='vnc' autoport='yes'/>")
        host.check_output(VIRSH + " start %s", guest)
        old_pid = host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip()
        assert ",tls-creds=" not in host.check_output("tr '\\0' ' ' < /proc/%s/cmdline" % old_pid)
        fresh = host.check_output("sha256sum /etc/libvirt/qemu.conf")
        json_out = dict(NOCOLOR, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
        restart = {"qemu_tls_restart_guests": True}
        check = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=json_out, role_vars=restart,
                                     args=["--check", "--diff"])
        assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
        predicted = ansible_cli.changed_tasks(check, "kvmhost")
        # (the clone's inventory has no peer, so the filter file itself differs too)
        assert {"Predict the load of the port filter (check mode)", "Turn TLS on for consoles, migration and NBD, key by key",
                "Predict the restart of libvirt (check mode)",
                "Read every guest's consoles, secure SPICE definitions if asked, reload renewed VNC certificates"} <= set(predicted), predicted
        assert host.check_output("sha256sum /etc/libvirt/qemu.conf") == fresh               # nothing written
        assert host.run("nft list table inet secvirt_qemu_tls").rc != 0                      # nothing loaded
        assert host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip() == old_pid  # guest untouched

        real = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=json_out, role_vars=restart)
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-2000:]
        made = ansible_cli.changed_tasks(real, "kvmhost")
        expected = {"Predict the load of the port filter (check mode)": "Load the port filter (the running one is not the intended one)",
                    "Predict the restart of libvirt (check mode)": "Restart the daemon that reads qemu.conf"}
        assert sorted(made) == sorted(expected.get(name, name) for name in predicted), (predicted, made)
        assert "vnc_tls = 1" in host.check_output("cat /etc/libvirt/qemu.conf")
        assert host.check_output(VIRSH + " domstate %s", guest).strip() == "running"
        new_pid = host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip()
        assert new_pid != old_pid
        assert ",tls-creds=" in host.check_output("tr '\\0' ' ' < /proc/%s/cmdline" % new_pid)

        again = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=json_out, role_vars=restart)
        assert again.returncode == 0 and ansible_cli.changed_tasks(again, "kvmhost") == [], again.stdout[-3000:]


def _task_result(run, host, name):
    result = json.loads(run.stdout)
    return [task["hosts"][host] for play in result["plays"] for task in play["tasks"]
            if task["task"]["name"].endswith(name) and host in task["hosts"]][-1]


def test_a_renewed_vnc_certificate_reaches_the_running_guest_without_a_restart(tmp_path):
    """On clones of the host and the station, with a copy of the CA: the pki
    role renews every certificate; qemu_tls then makes the running guest's
    QEMU (same process) serve the new VNC certificate (libvirt 11.3:
    virDomainGraphicsReload), and the next run reloads nothing."""
    guest = "renewvnc"
    ca_dir = str(tmp_path / "ca")
    shutil.copytree(os.environ["SECVIRT_DEMO_CA_DIR"], ca_dir)
    client = ["--ca", CA, "--name", NAME, "--cert", "/etc/pki/libvirt/clientcert.pem",
              "--key", "/etc/pki/libvirt/private/clientkey.pem"]
    with clones.cloned("qemu-tls-renew", ["kvmhost", "station"]) as clone:
        host, station = clone.host("kvmhost"), clone.host("station")
        nested_guests.define(host, guest, disk=False, devices="<graphics type='vnc' autoport='yes'/>")
        host.check_output(VIRSH + " start %s", guest)
        pid = host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip()
        port = int(re.search(r"<graphics type='vnc' port='(\d+)'", host.check_output(VIRSH + " dumpxml %s", guest)).group(1))
        _push_probe(station)
        before = _probe(port, "tls", *client, station=station)
        assert before["step"] == "done", before
        renew = ansible_cli.run_role("pki", "all", inventory=clone.inventory, timeout=1200, env=NOCOLOR,
                                     role_vars={"pki_ca_dir": ca_dir, "pki_force_renew": True,
                                                "pki_ca_passphrase": os.environ["SECVIRT_DEMO_CA_PASSPHRASE"]})
        assert renew.returncode == 0, renew.stdout[-3000:] + renew.stderr[-2000:]
        new_cert = host.check_output("openssl x509 -in /etc/pki/libvirt-vnc/server-cert.pem -outform DER | sha256sum").split()[0]
        assert new_cert != before["server_sha256"]
        # the guest still serves the certificate it started with
        assert _probe(port, "tls", *client, station=station)["server_sha256"] == before["server_sha256"]

        json_out = dict(NOCOLOR, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
        reload_run = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=json_out)
        assert reload_run.returncode == 0, reload_run.stdout[-3000:] + reload_run.stderr[-2000:]
        graphics = _task_result(reload_run, "kvmhost", "reload renewed VNC certificates")
        assert graphics["reloaded"] == [guest] and graphics["changed"], graphics
        after = _probe(port, "tls", *client, station=station)
        assert after["step"] == "done" and after["server_sha256"] == new_cert, after
        assert host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip() == pid   # same QEMU process

        again = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=json_out)
        graphics = _task_result(again, "kvmhost", "reload renewed VNC certificates")
        assert graphics["reloaded"] == [] and not graphics["changed"], graphics


def test_firewalld_backend_and_per_user_vnc_logins_on_a_clone():
    """On clones of the host and the station: firewalld is installed and
    running (woken from the virt disk's dormant install), with a stray
    opening of VNC ports to everyone. qemu_tls
    (firewall backend auto) turns to firewalld: rich rules for the console
    range from the management network, the stray opening and the role's
    nftables table gone, ssh kept; the station reaches a console port but
    not the migration range, refused by firewalld. With qemu_tls_vnc_sasl
    the confined QEMU (AppArmor, from the hypervisor role) asks for a SCRAM
    login inside TLS: the right password opens the console, a wrong one is
    dropped with QEMU's reason. A second run changes nothing."""
    guest = "saslvnc"
    user, password = "viewer", "clone-only-Vnc-login-8c2e"
    sasl = {"qemu_tls_vnc_sasl": True, "qemu_tls_vnc_sasl_users": [{"name": user, "password": password}]}
    client = ["--ca", CA, "--name", NAME, "--cert", "/etc/pki/libvirt/clientcert.pem",
              "--key", "/etc/pki/libvirt/private/clientkey.pem"]
    with clones.cloned("qemu-tls-firewalld", ["kvmhost", "station"]) as clone:
        host, station = clone.host("kvmhost"), clone.host("station")
        # installed in the virt disk but dormant (tests/harness/packages.txt)
        firewalld.wake(host)
        host.check_output("firewall-cmd --permanent --add-port=5900-5903/tcp && firewall-cmd --add-port=5900-5903/tcp")
        assert host.run("nft list table inet secvirt_qemu_tls").rc == 0     # the nftables backend's, from converge

        run = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=NOCOLOR, role_vars=sasl)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        wanted = ['rule family="ipv4" source address="10.254.0.0/24" port port="5900-5999" protocol="tcp" accept']
        for scope in ("", "--permanent "):
            zone = "firewall-cmd %s--zone=public" % scope
            # (the clone's inventory has no peer hypervisor: no migration rule)
            assert host.check_output(zone + " --list-rich-rules").splitlines() == wanted
            assert host.check_output(zone + " --list-ports").split() == []
            assert "ssh" in host.check_output(zone + " --list-services").split()
        assert host.run("nft list table inet secvirt_qemu_tls").rc != 0
        assert "secvirt-qemu-tls" not in host.check_output("cat /etc/nftables.conf")
        # the database: QEMU's group may read it, nobody else; no password in it
        assert host.check_output("stat -c '%U:%G %a' /etc/sasl2/qemu-vnc-passwd.db").strip() == "root:libvirt-qemu 640"
        assert host.run("grep -c -a -F %s /etc/sasl2/qemu-vnc-passwd.db", password).stdout.strip() == "0"
        assert "mech_list: scram-sha-256" in host.check_output("cat /etc/sasl2/qemu.conf")

        pids = listeners.start_http(host, LAB_IP, [5990, 49200])
        try:
            reach = "timeout 10 python3 -c \"import socket; socket.create_connection(('%s', %d), 5); print('open')\""
            console = station.run(reach % (LAB_IP, 5990))
            assert console.stdout.strip() == "open", console.stderr                    # positive control
            migration = station.run(reach % (LAB_IP, 49200))
            # firewalld's zone rejects with icmp-host-prohibited
            assert migration.rc != 0 and "No route to host" in migration.stderr, migration.stderr
        finally:
            host.run("kill %s" % " ".join(pids))

        nested_guests.define(host, guest, disk=False, devices="<graphics type='vnc' autoport='yes'/>")
        host.check_output(VIRSH + " start %s", guest)
        pid = host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip()
        assert host.check_output("cat /proc/%s/attr/current", pid).startswith("libvirt-")   # confined
        port = int(re.search(r"<graphics type='vnc' port='(\d+)'", host.check_output(VIRSH + " dumpxml %s", guest)).group(1))
        host.check_output(VIRSH + " qemu-monitor-command %s --hmp 'trace-event vnc_auth_fail on'", guest)
        _push_probe(station)
        good = _probe(port, "tls", *client, "--user", user, station=station, password=password)
        assert good["subtypes"] == ["x509sasl"] and good["sasl_mechs"] == ["SCRAM-SHA-256"], good
        assert good["step"] == "done" and good["desktop"]["name"] == "QEMU (%s)" % guest, good
        wrong = _probe(port, "tls", *client, "--user", user, station=station, password=password + "x")
        assert wrong["step"] == "sasl" and "desktop" not in wrong, wrong
        log = consoles.guest_log(host, guest, "Cannot step SASL auth")
        assert re.search(r"Cannot step SASL auth reason=SASL\(-13\): authentication failure", log), log[-2000:]

        again = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=NOCOLOR, role_vars=sasl)
        assert again.returncode == 0 and " changed=0 " in " ".join(again.stdout.split()) + " ", again.stdout[-3000:]
