"""XML shared by the unit tests of the libvirt XML helpers (libvirt_xml, nwfilter_xml,
seclabel_xml and limits_xml)."""

DOMAIN = """<domain type='qemu'>
  <name>guest1</name>
  <uuid>0f3c2d8e-1111-4222-8333-944455556666</uuid>
  <memory unit='KiB'>65536</memory>
  <cputune><vcpupin vcpu='0' cpuset='0'/><shares>1024</shares></cputune>
  <devices>
    <interface type='network'>
      <mac address='52:54:00:AA:bb:01'/>
      <source network='default'/>
      <target dev='vnet0'/>
      <model type='e1000'/>
      <filterref filter='clean-traffic'>
        <parameter name='IP' value='192.168.122.50'/>
      </filterref>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:02'/>
      <source bridge='br0'/>
    </interface>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
  <seclabel type='static' model='dac' relabel='no'><label>+970:+970</label></seclabel>
</domain>"""
