#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: posture
short_description: Measure the security posture of a live KVM host, control by control
version_added: 0.2.0
description:
  - Inspects the host it runs on and returns, for each security control, V(pass), V(fail), V(warn) or
    V(not_applicable) with the evidence that was measured (file modes, configuration keys, command output
    lines, the text of a refused TLS handshake).
  - The controls follow what C(playbooks/site.yml) puts in force and the seed guides (IBM "KVM security"
    and libvirt's "Secure Usage of Libvirt"); each control names the seed section it comes from in
    RV(controls[].references).
  - Reads C(/proc), C(/sys), C(/run) and C(/etc), runs at most C(auditctl -l), C(auditctl -s),
    C(nft -j list ruleset), C(ip -j addr show) and, only while firewalld runs,
    C(firewall-cmd --get-default-zone) and C(firewall-cmd --list-all-zones); reads the running guests,
    the libvirt networks and the security models over a read-only libvirt connection; makes one TLS
    handshake, without a client certificate, to the libvirt TLS port on loopback (or the address it
    listens on) and sends one RPC call (auth-list) to see whether the daemon answers.
  - Never writes anything. A host without libvirt is reported, not refused - the controls that need the
    daemon, its configuration or its guests fail with the reason as evidence. A command that is not
    installed is evidence too.
  - Run it as root (C(become=true)). Without root the image directory listing, the audit status and the
    nftables ruleset cannot be read and the controls that need them say so.
extends_documentation_fragment:
  - secvirt.kvm.attributes.read_only
  - secvirt.kvm.libvirt
author:
  - secvirt.kvm contributors (@secvirt)
options:
  controls:
    description:
      - The controls to run, by ID (V(SVK-TLS-002), or V(TLS-002)) or by area (V(tls), V(consoles),
        V(migration), V(network), V(confinement), V(storage), V(audit)). V(all) or an empty list (the
        default) runs every control.
      - Only what the chosen controls need is read, so O(controls=[audit]) makes no TLS handshake.
    type: list
    elements: str
    default: []
  certificate_min_days:
    description:
      - A certificate (or its CA) that expires within this many days fails SVK-TLS-005.
    type: int
    default: 30
  image_dirs:
    description:
      - The directories that hold guest images (SVK-STO-001, SVK-STO-002 and SVK-STO-003). Absolute paths.
    type: list
    elements: path
    default: [/var/lib/libvirt/images]
  tls_port:
    description:
      - The TCP port libvirt's TLS listener uses (C(tls_port) in C(libvirtd.conf)).
    type: int
    default: 16514
  handshake_timeout:
    description:
      - Seconds to wait for the TCP connection, the TLS handshake and the answer to the RPC call.
    type: float
    default: 5
notes:
  - "Controls and how each is measured:"
  - SVK-TLS-001 - a listening socket on O(tls_port) in C(/proc/net/tcp) or C(/proc/net/tcp6).
  - SVK-TLS-002 - a TLS handshake with Python's C(ssl), trusting nothing (only the refusal is measured), then
    one RPC call. Refused in or after the handshake (the alert or error text is the evidence) passes, an
    answer fails, no answer within O(handshake_timeout) and a port that does not speak TLS warn.
  - SVK-TLS-003 - C(tls_allowed_dn_list) in C(libvirtd.conf) (C(virtproxyd.conf) when only that exists), matched
    like libvirt (fnmatch, case-sensitive) in both DN orders against the subjects of the libvirtd server
    certificate and of the VNC, SPICE and QEMU migration certificates.
  - SVK-TLS-004 - C(listen_tcp) and C(auth_tcp) (libvirt's defaults 0 and sasl when unset) and whether anything
    listens on 16509; C(auth_tcp = "none") with a TCP listener or with C(listen_tcp = 1) fails.
  - SVK-TLS-005 - the libvirtd server certificate (C(cert_file), default C(/etc/pki/libvirt/servercert.pem))
    against C(ca_file) (default C(/etc/pki/CA/cacert.pem)), and the VNC, SPICE and QEMU certificates that are
    present against the C(ca-cert.pem) next to them - signature, validity, O(certificate_min_days).
  - SVK-TLS-006 - C(crl_file) (default C(/etc/pki/CA/cacrl.pem)) and the QEMU C(ca-crl.pem) files that are
    present - nextUpdate in the future and signed by the CA. Not applicable without any CRL.
  - SVK-TLS-007 - while something listens on O(tls_port), the firewall as for SVK-MIG-002 with that one port
    and the nftables table C(inet secvirt_libvirt_remote) of C(secvirt.kvm.libvirt_remote). Not applicable
    when nothing listens there.
  - SVK-CON-001/002/003 - C(qemu.conf) (C(vnc_tls), C(vnc_tls_x509_verify) or C(default_tls_x509_verify),
    C(spice_tls), C(vnc_listen), C(spice_listen)) and what the running guests serve - the QEMU command line
    (C(/proc/<pid>/cmdline)), else the live XML, as C(secvirt.kvm.libvirt_graphics) reads them.
  - SVK-CON-004 - the firewall as for SVK-MIG-002, for the console range (C(remote_display_port_min) and
    C(remote_display_port_max) in C(qemu.conf), libvirt's defaults 5900-65535 when unset).
  - SVK-MIG-001 - C(migrate_tls_force) and C(migrate_tls_x509_verify) (or C(default_tls_x509_verify)) in
    C(qemu.conf).
  - SVK-MIG-002 - with firewalld running, no zone that applies to every source (the default zone, zones with
    interfaces) opens a port of the range (ports, rich rules without a source, target ACCEPT; services are
    listed, not resolved); otherwise the nftables table C(inet secvirt_qemu_tls) has an input rule that drops
    the whole range with no unconditional accept before it. A drop only in another table warns; chains
    reached by jump are not followed.
  - SVK-NET-001 - bridges from C(/sys/class/net) whose ports are tap devices (vnet*, tap*, or with
    C(tun_flags)) and their global addresses (C(ip -j addr show)); the bridge of a libvirt NAT, routed or
    isolated network warns.
  - SVK-NET-002 - C(net.bridge.bridge-nf-call-iptables), C(-ip6tables), C(-arptables) and the bridges' own
    C(nf_call_*) while br_netfilter is loaded.
  - SVK-NET-003 - a C(<filterref>) on every C(<interface>) of each running guest's live XML.
  - SVK-CNF-001 - C(security_driver), C(security_default_confined), C(security_require_confined) in
    C(qemu.conf) and the security models the daemon reports.
  - SVK-CNF-002/003 - the QEMU process of each running guest (C(/run/libvirt/qemu/<name>.pid)) -
    C(/proc/<pid>/attr/current) (AppArmor enforce mode, SELinux enforcing, unique among guests),
    C(/proc/<pid>/status) (uid, Seccomp, CapEff).
  - SVK-STO-001 - lstat of O(image_dirs) (mode within 0711, owned by root) and of what they hold three levels
    down (files without world bits, group bits only for a QEMU group, at most rw).
  - SVK-STO-002 - C(/proc/self/mountinfo) and the device-mapper tree in C(/sys/block) (a C(CRYPT-) uuid on
    the way down) for O(image_dirs) and the running guests' disks; qemu-native LUKS images count too.
    Never fails, warns.
  - SVK-STO-003 - C(/sys/block/loop*/loop/backing_file), connected C(/dev/nbd*), and mounts of image files
    or of a running guest's block device.
  - SVK-IMG-001 - each running guest's disks in its persistent definition (C(<driver type=...>)) and its live
    XML (a C(<backingStore>) with a source that the definition does not declare).
  - SVK-AUD-001/002/003 - C(auditctl -s) (enabled, an audit daemon pid) and C(auditctl -l) (syscall rules and
    file watches with a C(virt_*) key), C(/proc/cmdline), C(audit_level) and C(audit_logging) in
    C(libvirtd.conf) (level 1, libvirt's default, and C(audit_logging = 0) warn).
  - The controls carry no NIST SP 800-125A identifiers - that mapping could not be verified here.
  - Guest controls (SVK-NET-003, SVK-CNF-002, SVK-CNF-003, SVK-IMG-001) are V(not_applicable) when no guest
    runs and fail, with libvirt's error, when the daemon cannot be reached.
seealso:
  - module: secvirt.kvm.hypervisor_info
  - module: secvirt.kvm.libvirt_graphics
'''

EXAMPLES = r'''
- name: Measure the host
  secvirt.kvm.posture:
  become: true
  register: posture

- name: Show what failed
  ansible.builtin.debug:
    msg: "{{ posture.controls | selectattr('status', 'equalto', 'fail') | map(attribute='id') | list }}"

- name: Only the TLS and audit controls, certificates must last 60 days
  secvirt.kvm.posture:
    controls: [tls, audit]
    certificate_min_days: 60
  become: true
'''

RETURN = r'''
controls:
  description: One entry per control run, in ID order.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The control's stable ID, C(SVK-<AREA>-NNN).
      type: str
      sample: SVK-TLS-002
    title:
      description: What the control checks, in one line.
      type: str
      sample: A TLS client without a certificate is refused
    area:
      description: One of V(tls), V(consoles), V(migration), V(network), V(confinement), V(storage), V(audit).
      type: str
      sample: tls
    severity:
      description: V(high), V(medium) or V(low).
      type: str
      sample: high
    status:
      description: V(pass), V(fail), V(warn) or V(not_applicable).
      type: str
      sample: pass
    evidence:
      description: Short lines of what was measured.
      type: list
      elements: str
      sample: ["TLS handshake to 127.0.0.1:16514 without a client certificate",
               "refused_after_handshake: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"]
    references:
      description: The seed sections the control comes from (C(004) is IBM's "KVM security", C(003) libvirt's "Secure Usage of Libvirt").
      type: list
      elements: str
      sample: ["004: Remote management using TLS", "004: Step 7. Verify that remote management is working"]
summary:
  description: How many of the controls run have each status.
  returned: always
  type: dict
  contains:
    pass:
      description: Controls that passed.
      type: int
    fail:
      description: Controls that failed.
      type: int
    warn:
      description: Controls with a warning.
      type: int
    not_applicable:
      description: Controls that do not apply to this host.
      type: int
  sample: {pass: 14, fail: 3, warn: 2, not_applicable: 5}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils import posture as pm
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import uri_argument_spec

# the directory the host's /proc, /sys, /run and /etc are read below;
# the unit tests point it at a temporary tree
HOST_ROOT = '/'


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            controls=dict(type='list', elements='str', default=[]),
            certificate_min_days=dict(type='int', default=30),
            image_dirs=dict(type='list', elements='path', default=['/var/lib/libvirt/images']),
            tls_port=dict(type='int', default=16514),
            handshake_timeout=dict(type='float', default=5),
        ),
        supports_check_mode=True,
    )
    try:
        selected = pm.select_controls(module.params['controls'])
        params = pm.normalize_params(module.params)
    except pm.PostureError as exc:
        module.fail_json(msg=str(exc))

    def run(argv):
        path = module.get_bin_path(argv[0])
        if not path:
            return None
        return module.run_command([path] + list(argv[1:]), environ_update={'LC_ALL': 'C'})

    facts = pm.collect(params, selected, root=HOST_ROOT, run=run)
    module.exit_json(changed=False, **pm.evaluate(facts, params, selected))


if __name__ == '__main__':
    main()
