"""Pure-logic checks of the VM harness (no VM is booted here)."""
import importlib.util
import json
import os
import socket
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "secvirt_vm", os.path.join(HERE, "..", "..", "harness", "vm.py"))
vm = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(vm)


def test_missing_tool_fails_with_the_fix(capsys, monkeypatch):
    monkeypatch.setattr(vm.shutil, "which", lambda tool: None if tool == "qemu-img" else "/usr/bin/x")
    with pytest.raises(SystemExit) as exc:
        vm.need("qemu-system-x86_64", "qemu-img")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "qemu-img" in err and "qemu-system-x86_64" not in err and "make setup" in err


def test_taken_port_fails_clearly(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit):
            vm.free_port(port)
    assert f"127.0.0.1:{port} is already taken" in capsys.readouterr().err


def test_free_port_is_bindable():
    port = vm.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname() == ("127.0.0.1", port)
        # and a port asked for by number comes back as that number when free
        s.close()
        assert vm.free_port(port) == port


def test_lab_script_gives_every_vm_every_name():
    script = vm.lab_script("station", 1, ["kvmhost", "station"], 1796200000.25, "ab" * 64)
    assert "10.254.0.10 kvmhost.secvirt.test kvmhost" in script
    assert "address 10.254.0.11/24" in script
    fact = json.loads(script.split("secvirt_lab.fact <<'EOF'\n")[1].split("\nEOF")[0])
    assert fact["peers"] == {"kvmhost": "10.254.0.10", "station": "10.254.0.11"}
    assert fact["trunk_interface"] == "eth1" and fact["data_disk"] == "/dev/vdb"


def test_lab_script_sets_the_clock_and_reseeds_the_rng():
    # what a VM resumed from a saved boot needs before anything else runs
    script = vm.lab_script("station", 1, ["kvmhost", "station"], 1796200000.25, "cd" * 64)
    lines = script.splitlines()
    assert lines[1] == "date -u -s @1796200000.250 >/dev/null"
    reseed = next(line for line in lines if line.startswith("python3 -c"))
    assert 'bytes.fromhex("' + "cd" * 64 + '")' in reseed and "0x5207" in reseed
    assert lines.index(reseed) < next(i for i, line in enumerate(lines) if line.startswith("hostnamectl"))


def test_saved_boot_key_separates_every_shape(monkeypatch):
    monkeypatch.setattr(vm, "qemu_version", lambda: "QEMU emulator version 7.2.22")
    base = {"name": "kvmhost", "memory_mb": 1536, "cpus": 2, "image": "virt"}
    first, key = vm.snapshot_dir("/img", base, 0, "tcg")
    assert first.startswith("/img/snapshots/") and "7.2.22" in key
    # the name is not part of the shape: any kvmhost-like VM resumes the same boot
    assert vm.snapshot_dir("/img", dict(base, name="other"), 0, "tcg")[0] == first
    others = [vm.snapshot_dir("/img", dict(base, **change), index, accel)[0]
              for change, index, accel in [({}, 1, "tcg"), ({}, 0, "kvm"), ({"memory_mb": 1024}, 0, "tcg"),
                                           ({"cpus": 1}, 0, "tcg"), ({"image": "plain"}, 0, "tcg"),
                                           ({"data_disk_gb": 8}, 0, "tcg")]]
    assert len(set(others + [first])) == 7
    for setting, value in (("TCG_CPU", "max"), ("TCG_KERNEL_ARGS", "")):
        with monkeypatch.context() as patched:
            patched.setattr(vm, setting, value)
            assert vm.snapshot_dir("/img", base, 0, "tcg")[0] != first
    monkeypatch.setattr(vm, "qemu_version", lambda: "QEMU emulator version 9.2.0")
    assert vm.snapshot_dir("/img", base, 0, "tcg")[0] != first


def test_up_rejects_duplicate_names(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vm, "need", lambda *a: None)
    args = type("A", (), {"state": str(tmp_path / "s"),
                          "platforms": json.dumps([{"name": "a"}, {"name": "a"}])})
    with pytest.raises(SystemExit):
        vm.cmd_up(args)
    assert "unique" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_down_is_safe_on_a_missing_state(tmp_path, capsys):
    args = type("A", (), {"state": str(tmp_path / "never-created")})
    vm.cmd_down(args)
    assert capsys.readouterr().out.strip() == "[]"


def test_reap_only_touches_its_own_run(monkeypatch):
    """A suite's final reap must not kill another run's VMs (e.g. a demo)."""
    procs = {"101": (b"qemu-system-x86_64\0-name\0secvirt-harness-kvmhost\0", b"SECVIRT_RUN_ID=suite-1\0"),
             "102": (b"qemu-system-x86_64\0-name\0secvirt-harness-kvmhost\0", b"SECVIRT_RUN_ID=demo-2\0"),
             "103": (b"python3\0hub.py\0", b"SECVIRT_MARKER=secvirt-harness\0SECVIRT_RUN_ID=suite-1\0"),
             "104": (b"sleep\0", b"SECVIRT_RUN_ID=suite-1\0")}
    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        parts = str(path).split("/")
        if len(parts) == 4 and parts[1] == "proc" and parts[2] in procs:
            import io
            return io.BytesIO(procs[parts[2]][0 if parts[3] == "cmdline" else 1])
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(vm.os, "listdir", lambda path: list(procs) if path == "/proc" else os.listdir(path))
    monkeypatch.setattr("builtins.open", fake_open)
    assert [proc[0] for proc in vm.harness_processes("suite-1")] == [101, 103]
    assert [proc[0] for proc in vm.harness_processes()] == [101, 102, 103]


def test_a_scenario_boots_one_debian_suite_and_passes_it_to_the_image_build(capsys, monkeypatch, tmp_path):
    built = []
    monkeypatch.setattr(vm, "build_image", lambda suite="bookworm": built.append(suite) or vm.die("stop here"))
    args = type("Args", (), {"state": str(tmp_path)})
    args.platforms = json.dumps([{"name": "a", "suite": "trixie"}, {"name": "b"}])
    with pytest.raises(SystemExit):
        vm.boot(args)
    assert "platforms must share one suite of bookworm, trixie: ['bookworm', 'trixie']" in capsys.readouterr().err
    assert built == []
    args.platforms = json.dumps([{"name": "a", "suite": "sid"}])
    with pytest.raises(SystemExit):
        vm.boot(args)
    assert "['sid']" in capsys.readouterr().err and built == []
    # positive control: one known suite reaches the image build
    args.platforms = json.dumps([{"name": "a", "suite": "trixie"}, {"name": "b", "suite": "trixie"}])
    with pytest.raises(SystemExit):
        vm.boot(args)
    assert built == ["trixie"]


def test_a_clone_gets_the_devices_of_its_original_and_its_own_files():
    """vm.py clone resumes a saved state in a new qemu: the devices must be the
    original's (or the state does not load), every file and socket its own."""
    plat = {"name": "kvmhost", "memory_mb": 1536, "cpus": 2}
    common = (plat, 0, "/img", vm.TCG_ACCEL, "qemu64")
    original = vm.qemu_argv(*common, "/s/kvmhost.qcow2", "/s/kvmhost-data.qcow2", 2222,
                            {"trunk": "/s/trunk.sock", "lab": "/s/lab.sock"}, "/s/c.log", "/s/k.pid", "/s/q.sock")
    clone = vm.qemu_argv(*common, "/c/kvmhost.qcow2", "/c/kvmhost-data.qcow2", 3333,
                         {"trunk": "/c/trunk.sock", "lab": "/c/lab.sock"}, "/c/c.log", "/c/k.pid", "/c/q.sock")

    def devices(argv):
        return [argv[i + 1] for i, word in enumerate(argv) if word == "-device"]
    assert devices(original) == devices(clone)
    assert not [w for w in clone if "/s/" in w or "2222" in w]
    assert "unix:/c/q.sock,server=on,wait=off" in clone


def test_clone_inventory_reaches_only_the_clones(tmp_path, monkeypatch):
    """A play against `all` on a clone's inventory must not reach an original
    that was not cloned, nor an original's port."""
    import sys  # pylint: disable=import-outside-toplevel
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("testinfra")
    source = tmp_path / "molecule" / "inventory"
    (source / "group_vars" / "all").mkdir(parents=True)
    (source / "group_vars" / "all" / "molecule.yml").write_text("pki_fqdn: x\n")
    host = {"ansible_host": "127.0.0.1", "ansible_port": 1111, "ansible_private_key_file": "/s/id"}
    station = {"ansible_host": "127.0.0.1", "ansible_port": 2222, "ansible_private_key_file": "/s/id"}
    inventory = {"all": {"hosts": {"kvmhost": host, "station": station}},
                 "kvm_hosts": {"hosts": {"kvmhost": host}}, "management_stations": {"hosts": {"station": station}}}
    (source / "ansible_inventory.yml").write_text(yaml.safe_dump(inventory))
    monkeypatch.setenv("MOLECULE_INVENTORY_FILE", str(source / "ansible_inventory.yml"))
    sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "molecule", "_harness"))
    try:
        import clones  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    into = tmp_path / "clone"
    into.mkdir()
    path = clones._inventory_for([{"instance": "kvmhost", "port": 4444, "identity_file": "/c/id"}], str(into))
    written = yaml.safe_load(open(path))
    assert written["all"]["hosts"] == {"kvmhost": {"ansible_host": "127.0.0.1", "ansible_port": 4444,
                                                   "ansible_private_key_file": "/c/id"}}
    assert written["kvm_hosts"]["hosts"]["kvmhost"]["ansible_port"] == 4444
    assert written["management_stations"]["hosts"] == {}
    assert (into / "inventory" / "group_vars" / "all" / "molecule.yml").read_text() == "pki_fqdn: x\n"


@pytest.mark.parametrize("exits_at", ["sigterm", "sigkill"])
def test_kill_tolerates_a_process_that_exits_on_its_own(monkeypatch, exits_at):
    """A VM that exits between the liveness check and the signal (a loaded CI
    machine: qemu took longer than 5 s to stop after SIGTERM, then was gone
    when SIGKILL came) must not fail the scenario's destroy step
    (CI at ac08f1d: vlan_bridges destroy, ProcessLookupError)."""
    sent = []
    monkeypatch.setattr(vm, "alive", lambda pid: True)
    monkeypatch.setattr(vm.time, "sleep", lambda s: None)

    def fake_kill(pid, sig):
        sent.append(sig)
        if (exits_at == "sigterm" and sig == vm.signal.SIGTERM) or sig == vm.signal.SIGKILL:
            raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(vm.os, "kill", fake_kill)
    vm.kill(12345, "qemu test")
    assert sent[0] == vm.signal.SIGTERM


def test_tcg_runs_the_vcpus_of_a_vm_on_one_thread():
    """Multi-threaded TCG let a vCPU run stale code while the guest kernel
    patched itself (int3 oops in __schedule, CI 2026-12-03/04): the VMs boot
    with single-threaded TCG, and their saved boots are keyed by it."""
    assert vm.TCG_ACCEL == "tcg,thread=single"
    argv = vm.qemu_argv({"name": "kvmhost", "cpus": 2}, 0, "/img", vm.TCG_ACCEL, "qemu64", "/s/o.qcow2", "/s/d.qcow2",
                        2222, {"trunk": "/s/t.sock", "lab": "/s/l.sock"}, "/s/c.log", "/s/p.pid", "/s/q.sock")
    assert argv[argv.index("-accel") + 1] == "tcg,thread=single" and argv[argv.index("-smp") + 1] == "2"


def _fake_qemu(path, version):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version}'\n")
    path.chmod(0o755)


def test_the_vms_run_on_the_cached_qemu_with_its_own_firmware(tmp_path, monkeypatch):
    """fetch-qemu.sh unpacks QEMU 10 into <cache>/qemu/current: vm.py then
    starts every VM (boot, saved boot, clone) with it, its firmware first."""
    monkeypatch.setattr(vm, "CACHE", str(tmp_path))
    monkeypatch.delenv("SECVIRT_QEMU", raising=False)
    assert vm.qemu_command() == ["qemu-system-x86_64"]
    _fake_qemu(tmp_path / "qemu" / "v10" / "usr" / "bin" / "qemu-system-x86_64", "10.0.2")
    (tmp_path / "qemu" / "current").symlink_to("v10")
    root = str(tmp_path / "qemu" / "current")
    command = vm.qemu_command()
    assert command == [root + "/usr/bin/qemu-system-x86_64", "-L", root + "/usr/share/qemu",
                       "-L", root + "/usr/share/seabios"]
    # its version keys the saved boots, so a 7.2 state is never resumed by 10
    assert vm.qemu_version() == "QEMU emulator version 10.0.2"
    argv = vm.qemu_argv({"name": "n"}, 0, "/img", vm.TCG_ACCEL, "qemu64", "/s/o.qcow2", "/s/d.qcow2", 2222,
                        {"trunk": "/s/t.sock", "lab": "/s/l.sock"}, "/s/c.log", "/s/p.pid", "/s/q.sock")
    assert argv[:5] == command and argv[5:7] == ["-name", "secvirt-harness-n"]
    monkeypatch.setenv("SECVIRT_QEMU", "system")
    assert vm.qemu_command() == ["qemu-system-x86_64"]


FETCH = os.path.join(os.path.dirname(__file__), "..", "..", "harness", "fetch-qemu.sh")


@pytest.mark.parametrize("system, cached, says, current", [
    # a machine whose own qemu is 10 or newer (Debian 13) runs on it
    ("10.1.0", True, "the machine's qemu is version 10: the VMs run on it", None),
    # an unpacked copy is reused without touching the network
    ("7.2.22", True, "using v10 (cached)", "v10"),
])
def test_fetch_qemu_decides_without_the_network(tmp_path, system, cached, says, current):
    bin_dir = tmp_path / "bin"
    _fake_qemu(bin_dir / "qemu-system-x86_64", system)
    cache = tmp_path / "cache"
    if cached:
        _fake_qemu(cache / "qemu" / "v10" / "usr" / "bin" / "qemu-system-x86_64", "10.0.2")
        (cache / "qemu" / "current").symlink_to("v10")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SECVIRT_CACHE=str(cache),
               SECVIRT_QEMU_REFRESH="0", SECVIRT_MIRROR="http://192.0.2.1/debian")
    proc = subprocess.run(["bash", FETCH], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stderr
    link = cache / "qemu" / "current"
    assert (os.readlink(link) if link.is_symlink() else None) == current
