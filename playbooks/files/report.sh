# shellcheck shell=bash
# Prints what is enforced on this KVM host, as measured on the host itself.
set -u
say() { printf '%-22s %s\n' "$1" "$2"; }
say "libvirt daemons" "$(systemctl is-active libvirtd virtqemud virtproxyd 2>/dev/null | paste -sd/ -)"
say "listening" "$(ss -Hltn '( sport = :16514 or sport = :16509 )' 2>/dev/null | awk '{print $4}' | paste -sd' ' - | sed 's/^$/none/')"
if [ -r /etc/pki/libvirt/servercert.pem ]; then
  say "TLS server cert" "$(openssl x509 -in /etc/pki/libvirt/servercert.pem -noout -subject -enddate 2>/dev/null | paste -sd' ' -)"
  say "TLS chain" "$(openssl verify -CAfile /etc/pki/CA/cacert.pem /etc/pki/libvirt/servercert.pem 2>&1 | tail -1)"
  say "server key mode" "$(stat -c '%a %U:%G' /etc/pki/libvirt/private/serverkey.pem 2>/dev/null)"
else
  say "TLS server cert" "none"
fi
# syscall rules print their key as key=virt_..., file watches as -k virt_...
say "audit rules (virt_)" "$(auditctl -l 2>/dev/null | grep -cE '(key=|-k )virt_') loaded, enabled=$(auditctl -s 2>/dev/null | awk '/^enabled/{print $2}')"
say "LUKS volumes" "$(lsblk -nro NAME,TYPE 2>/dev/null | awk '$2=="crypt"{print $1}' | paste -sd' ' - | sed 's/^$/none/')"
say "VLAN links" "$(ip -o -d link show type vlan 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | paste -sd' ' - | sed 's/^$/none/')"
say "bridges" "$(ip -br link show type bridge 2>/dev/null | awk '{print $1}' | paste -sd' ' - | sed 's/^$/none/')"
say "bridge netfilter" "iptables=$(sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null || echo n/a) arptables=$(sysctl -n net.bridge.bridge-nf-call-arptables 2>/dev/null || echo n/a)"
say "nwfilters" "$(virsh -q -r nwfilter-list 2>/dev/null | wc -l)"
say "libvirt networks" "$(virsh -q -r net-list --all 2>/dev/null | awk '{print $1"("$2")"}' | paste -sd' ' - | sed 's/^$/none/')"
# qemu.conf's console and migration TLS keys (as libvirt reads them at start), and the port filter
qconf() { sed -n "s/^$1 = //p" /etc/libvirt/qemu.conf 2>/dev/null | tail -1; }
say "console TLS" "vnc_tls=$(qconf vnc_tls) verify=$(qconf vnc_tls_x509_verify) vnc_sasl=$(qconf vnc_sasl) spice_tls=$(qconf spice_tls) listen=$(qconf vnc_listen)"
say "migration TLS" "force=$(qconf migrate_tls_force) verify=$(qconf migrate_tls_x509_verify) address=$(qconf migration_address) nbd_tls=$(qconf nbd_tls)"
if nft list table inet secvirt_qemu_tls >/dev/null 2>&1; then
  say "console/migr. filter" "nftables table loaded"
elif [ "$(systemctl is-active firewalld 2>/dev/null)" = active ]; then
  say "console/migr. filter" "firewalld: $(firewall-cmd --list-rich-rules 2>/dev/null | grep -c 'port port=') rich rules for ports"
else
  say "console/migr. filter" "none"
fi
