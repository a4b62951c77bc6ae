"""Frames sent from a nested guest's side of its tap device, as if the guest
had sent them: a chardev plus a filter-redirector on the guest NIC's netdev
(QMP through virsh) make QEMU push each frame out of the guest's e1000 into
its tap, where libvirt's network filters see exactly what guest traffic
would meet. The guest needs an e1000 NIC (no vnet header) as its first NIC
(netdev hostnet0). ``host`` is a testinfra host."""
import socket
import struct
import textwrap

SCRIPT = textwrap.dedent(r"""
    import json, socket, struct, subprocess, sys, time
    dom, path = sys.argv[1:3]
    frames = [bytes.fromhex(h) for h in sys.argv[3:]]

    def qmp(cmd):
        return subprocess.run(["virsh", "qemu-monitor-command", dom, json.dumps(cmd)],
                              check=True, capture_output=True, text=True).stdout

    qmp({"execute": "chardev-add", "arguments": {"id": "secvirtinj", "backend": {"type": "socket", "data": {
        "addr": {"type": "unix", "data": {"path": path}}, "server": True, "wait": False}}}})
    qmp({"execute": "object-add", "arguments": {"qom-type": "filter-redirector", "id": "secvirtinjf",
        "netdev": "hostnet0", "queue": "rx", "indev": "secvirtinj"}})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    for frame in frames:
        for _ in range(3):
            sock.sendall(struct.pack("!I", len(frame)) + frame)
            time.sleep(0.5)
    sock.close()
    time.sleep(1)
    qmp({"execute": "object-del", "arguments": {"id": "secvirtinjf"}})
    qmp({"execute": "chardev-remove", "arguments": {"id": "secvirtinj"}})
""")


def _mac(mac):
    return bytes.fromhex(mac.replace(":", ""))


def arp_request(mac, ip, target="10.77.0.1"):
    """A broadcast ARP request from ``mac``/``ip`` asking for ``target``."""
    frame = b"\xff" * 6 + _mac(mac) + b"\x08\x06"
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + _mac(mac) + socket.inet_aton(ip)
    frame += b"\x00" * 6 + socket.inet_aton(target)
    return frame.ljust(60, b"\x00")


def _checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_datagram(src_mac, dst_mac, src_ip, dst_ip, dport, payload):
    """An Ethernet frame carrying one IPv4/UDP datagram (UDP checksum 0: none)."""
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return (_mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + header + udp).ljust(60, b"\x00")


def inject(host, guest, frames):
    """Send each frame (three times) from the running ``guest``'s NIC."""
    domid = host.check_output("virsh domid %s", guest)
    path = "/var/lib/libvirt/qemu/domain-%s-%s/secvirt-inject.sock" % (domid, guest)
    host.run("rm -f /root/secvirt-inject.py")
    cmd = host.run("cat > /root/secvirt-inject.py <<'EOF'\n%s\nEOF\npython3 /root/secvirt-inject.py %s %s %s"
                   % (SCRIPT, guest, path, " ".join(f.hex() for f in frames)))
    assert cmd.rc == 0, cmd.stderr
