# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throw-away sshd on 127.0.0.1 for the PKI benchmark's --ssh mode.

Host key, client key, authorized_keys, known_hosts and sshd_config all live in
one directory the caller owns; the system's SSH configuration is neither read
nor changed. The only thing outside that directory is /run/sshd, which sshd
insists on (privilege separation) when it runs as root and which the
openssh-server package would create anyway.

    with LoopbackSshd(directory, max_startups=40, max_sessions=20) as sshd:
        sshd.inventory_vars(...)       # for the 'bench' group of an inventory
        ...                            # ansible-playbook runs
        sshd.close_connections()       # between runs, so each starts cold
"""
import getpass
import os
import signal
import socket
import subprocess
import time

SSHD = "/usr/sbin/sshd"

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {directory}/host_ed25519
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# The key files sit under /tmp, which is world-writable (sticky): the strict
# path check would refuse them.
StrictModes no
# Up to 'forks' handshakes run at once; the default MaxStartups (10:30:100)
# starts dropping connections at random above 10 unauthenticated ones.
MaxStartups {max_startups}
MaxSessions {max_sessions}
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel ERROR
"""


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _parents():
    """{pid: parent pid} of all processes visible in /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="ascii", errors="replace") as handle:
                # the command name (field 2) may contain spaces; it is in parentheses
                parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return parents


def _descendants(pid):
    parents = _parents()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.extend(children)
        todo.extend(children)
    return found


def _mentioning(text):
    """Processes whose command line contains text (a path only this benchmark uses)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                if text.encode() in handle.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def _signal_all(pids, signum):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _wait_gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = [pid for pid in pids if os.path.exists("/proc/%d" % pid)]
        if not pids:
            return []
        time.sleep(0.1)
    return pids


class LoopbackSshd:
    """sshd -D on an unprivileged port of 127.0.0.1, accepting one key for the current user."""

    def __init__(self, directory, max_startups, max_sessions):
        self.directory = directory
        self.user = getpass.getuser()
        self.port = None
        self.max_startups = max_startups
        self.max_sessions = max_sessions
        self.control_dir = os.path.join(directory, "cm")
        self.client_key = os.path.join(directory, "client_ed25519")
        self.known_hosts = os.path.join(directory, "known_hosts")
        self.config = os.path.join(directory, "sshd_config")
        self.log = os.path.join(directory, "sshd.log")
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """Make the keys and the config, start sshd and wait until it accepts the benchmark key."""
        if not os.access(SSHD, os.X_OK):
            raise SystemExit("%s is missing: install it first (Debian: apt-get install openssh-server), see benchmarks/pki/README.md" % SSHD)
        os.makedirs(self.control_dir, mode=0o700)
        for key in ("host_ed25519", "client_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "secvirt-pki-bench",
                            "-f", os.path.join(self.directory, key)], check=True)
        with open(self.client_key + ".pub", encoding="ascii") as pub, open(os.path.join(self.directory, "authorized_keys"), "w", encoding="ascii") as out:
            out.write(pub.read())
        self.port = _free_port()
        with open(os.path.join(self.directory, "host_ed25519.pub"), encoding="ascii") as pub, open(self.known_hosts, "w", encoding="ascii") as out:
            out.write("[127.0.0.1]:%d %s" % (self.port, pub.read()))
        with open(self.config, "w", encoding="utf-8") as out:
            out.write(SSHD_CONFIG.format(port=self.port, directory=self.directory, user=self.user,
                                         max_startups=self.max_startups, max_sessions=self.max_sessions))
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with open(self.log, "w", encoding="utf-8") as log:
            # -D: stay in the foreground, so self.process is the listener;
            # -e: errors to the log file instead of syslog
            # the listener outlives this block on purpose: stop() ends it
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                [SSHD, "-D", "-e", "-f", self.config], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self._wait_ready()

    def _client(self, *args):
        return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "IdentityFile=" + self.client_key, "-o", "UserKnownHostsFile=" + self.known_hosts,
                "-o", "StrictHostKeyChecking=yes", "-p", str(self.port)] + list(args)

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                with open(self.log, encoding="utf-8", errors="replace") as log:
                    raise SystemExit("sshd exited with %d:\n%s" % (self.process.returncode, log.read()))
            probe = subprocess.run(self._client(self.user + "@127.0.0.1", "true"),
                                   stdin=subprocess.DEVNULL, capture_output=True, check=False)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise SystemExit("sshd on port %d does not accept the benchmark key: %s" % (
                    self.port, probe.stderr.decode(errors="replace")))
            time.sleep(0.2)

    def ssh_args(self):
        """ssh options for ansible (ansible_ssh_args), the same for every flow.

        -F /dev/null keeps the user's ~/.ssh/config out; ansible adds port,
        user, key and the per-alias ControlPath from the inventory.
        ControlPersist outlives the slowest task of a run, so every alias keeps
        one connection for the whole playbook.
        """
        return " ".join(["-F /dev/null", "-o ControlMaster=auto", "-o ControlPersist=30m",
                         "-o UserKnownHostsFile=" + self.known_hosts, "-o StrictHostKeyChecking=yes"])

    def control_path(self, alias):
        """One ControlPath per alias: all aliases share host, port and user, so ansible's default would give them one connection."""
        return os.path.join(self.control_dir, alias)

    def inventory_vars(self, interpreter):
        """Connection variables for a group of aliases of this sshd."""
        return {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": self.port,
                "ansible_user": self.user, "ansible_ssh_private_key_file": self.client_key,
                "ansible_ssh_args": self.ssh_args(), "ansible_control_path_dir": self.control_dir,
                "ansible_ssh_pipelining": True, "ansible_ssh_timeout": 60,
                "ansible_python_interpreter": interpreter}

    def close_connections(self):
        """End every ControlPersist master (and with it its sshd session)."""
        for name in os.listdir(self.control_dir):
            subprocess.run(["ssh", "-F", "/dev/null", "-o", "ControlPath=" + os.path.join(self.control_dir, name),
                            "-O", "exit", "127.0.0.1"], stdin=subprocess.DEVNULL, capture_output=True, check=False)
        # masters that did not answer: their command line names our control directory
        _signal_all(_wait_gone(_mentioning(self.control_dir), 5), signal.SIGTERM)
        if self.process is not None:
            sessions = _wait_gone(_descendants(self.process.pid), 10)
            _signal_all(sessions, signal.SIGTERM)
            _wait_gone(sessions, 5)

    def stop(self):
        """Close all connections, then stop the listener; nothing of ours keeps running."""
        if os.path.isdir(self.control_dir):
            self.close_connections()
        if self.process is None or self.process.poll() is not None:
            return
        leftovers = _descendants(self.process.pid)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _signal_all(_wait_gone(leftovers, 5), signal.SIGKILL)
