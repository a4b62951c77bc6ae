"""Speak RFB/VeNCrypt to a VNC console, as a viewer would (runs on the station).

    python3 console_probe.py HOST PORT MODE [--ca F] [--cert F --key F] [--name N] [--user U  (password on stdin)]

MODE ``types``: the security types the server offers (RFB 3.8).
MODE ``plain``: ask for security type None (1) as a plain RFB client would
and print the server's answer (its failure reason).
MODE ``tls``: VeNCrypt 0.2, the x509 subtype the server offers, the TLS
handshake with the given CA (hostname checked against --name) and client
certificate, then the RFB security result and ServerInit (the desktop name)
over TLS: only a full session prints ``"desktop"``.

With ``--user`` the probe prefers the x509sasl subtype (263, QEMU's
``sasl=on`` with TLS) and logs in with SASL SCRAM-SHA-256 (RFC 5802/7677, no
channel binding); the password is the first line of standard input, never an
argument. It records the server's mechanism list (``sasl_mechs``, as sent:
Cyrus names are upper case), the mechanism used (``sasl_mech``) and checks
the server's SCRAM signature. Without ``--user`` an x509sasl-only server is
still probed up to its mechanism list, then reported as needing ``--user``.

Prints one JSON object; what went wrong is in ``error`` (the exception's
class and message, e.g. the TLS alert) and the step it happened at.
"""
import base64
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import struct
import sys

VENCRYPT = 19
X509_SUBTYPES = {260: "x509none", 261: "x509vnc", 262: "x509plain", 263: "x509sasl"}
X509SASL = 263
SASL_MECH = "SCRAM-SHA-256"
ANON_SUBTYPES = {256: "plain", 257: "tlsnone", 258: "tlsvnc", 259: "tlsplain"}


def recv_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(data), size))
        data += chunk
    return data


def failure_reason(sock):
    length = struct.unpack(">I", recv_exactly(sock, 4))[0]
    return recv_exactly(sock, length).decode("utf-8", "replace")


class ScramError(ValueError):
    """The server's SCRAM messages are malformed, refuse, or fail verification."""


def _scram_attributes(message):
    attrs = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError("malformed SCRAM attribute %r" % part)
        attrs.setdefault(key, value)
    return attrs


class ScramSha256Client(object):
    """Client side of SCRAM-SHA-256 without channel binding (gs2 header ``n,,``).

    The password is used as its UTF-8 bytes (no SASLprep: fine for ASCII).
    """

    GS2_HEADER = "n,,"

    def __init__(self, user, password, nonce=None):
        self.user = user
        self.password = password.encode("utf-8")
        self.nonce = nonce or secrets.token_urlsafe(24)
        self.client_first_bare = None
        self.server_signature = None

    def client_first(self):
        name = self.user.replace("=", "=3D").replace(",", "=2C")
        self.client_first_bare = "n=%s,r=%s" % (name, self.nonce)
        return (self.GS2_HEADER + self.client_first_bare).encode("utf-8")

    def client_final(self, server_first):
        server_first = server_first.decode("utf-8")
        attrs = _scram_attributes(server_first)
        if "m" in attrs:
            raise ScramError("server requires an unsupported extension: %s" % server_first)
        if "e" in attrs:
            raise ScramError("server error: %s" % attrs["e"])
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s"), attrs.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("server nonce does not extend the client nonce: %s" % server_first)
        if salt is None or not iterations.isdigit() or int(iterations) < 1:
            raise ScramError("server-first message lacks a salt or iteration count: %s" % server_first)
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(salt, validate=True), int(iterations))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        without_proof = "c=%s,r=%s" % (base64.b64encode(self.GS2_HEADER.encode()).decode(), nonce)
        auth_message = ",".join((self.client_first_bare, server_first, without_proof)).encode("utf-8")
        client_signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return ("%s,p=%s" % (without_proof, base64.b64encode(proof).decode())).encode("utf-8")

    def check_server_final(self, server_final):
        attrs = _scram_attributes(server_final.decode("utf-8"))
        if "e" in attrs:
            raise ScramError("server error: %s" % attrs["e"])
        if "v" not in attrs:
            raise ScramError("server-final message lacks a signature: %r" % server_final)
        if self.server_signature is None or not hmac.compare_digest(base64.b64decode(attrs["v"]), self.server_signature):
            raise ScramError("server signature does not match: the server does not know the password")


def sasl_send(sock, data):
    """QEMU reads u32 length + data and overwrites the last byte with NUL: send the NUL."""
    if data is None:
        sock.sendall(struct.pack(">I", 0))
    else:
        sock.sendall(struct.pack(">I", len(data) + 1) + data + b"\0")


def sasl_recv(sock):
    """QEMU sends u32 length (0 for no data) + data with its NUL, then u8 complete."""
    length = struct.unpack(">I", recv_exactly(sock, 4))[0]
    data = recv_exactly(sock, length) if length else None
    if data is not None and data.endswith(b"\0"):
        data = data[:-1]
    return data, recv_exactly(sock, 1)[0] == 1


def sasl_login(sock, user, password, out):
    """SCRAM-SHA-256 over QEMU's VNC SASL wire protocol; returns True once the server says complete."""
    out["step"] = "sasl mechlist"
    # TLS 1.3: this is the first read, where a refused client certificate shows.
    mechlist = recv_exactly(sock, struct.unpack(">I", recv_exactly(sock, 4))[0]).decode("ascii", "replace")
    out["sasl_mechs"] = [m for m in mechlist.split(",") if m]
    out["step"] = "sasl"
    if user is None:
        out["error"] = "x509sasl needs --user (password on stdin)"
        return False
    mech = next((m for m in out["sasl_mechs"] if m.upper() == SASL_MECH), None)
    if mech is None:
        out["error"] = "server does not offer %s" % SASL_MECH
        return False
    out["sasl_mech"] = mech
    sock.sendall(struct.pack(">I", len(mech)) + mech.encode("ascii"))  # as spelled by the server, no NUL
    scram = ScramSha256Client(user, password)
    sasl_send(sock, scram.client_first())
    sent = "mechanism name and client-first"
    try:
        server_first, complete = sasl_recv(sock)
        if complete or server_first is None:
            raise ScramError("server ended the exchange instead of sending server-first")
        sasl_send(sock, scram.client_final(server_first))
        sent = "client-final"
        server_final, complete = sasl_recv(sock)
        while not complete and server_final is None:
            sasl_send(sock, None)
            sent = "empty step"
            server_final, complete = sasl_recv(sock)
        if server_final is None:
            raise ScramError("server completed without a server-final message")
        scram.check_server_final(server_final)
        if not complete:
            sasl_send(sock, None)
            sent = "empty step"
            extra, complete = sasl_recv(sock)
            if extra is not None or not complete:
                raise ScramError("server went on after server-final")
    except EOFError as exc:
        raise EOFError("%s (QEMU closed the connection after the %s message: it sends no reason for a failed SASL step)" % (exc, sent))
    return True


def main(argv):
    host, port, mode = argv[1], int(argv[2]), argv[3]
    opts = dict(zip(argv[4::2], argv[5::2]))
    out = {"mode": mode, "step": "connect"}
    user, password = opts.get("--user"), None
    if user is not None:
        password = sys.stdin.readline()
        if password.endswith("\n"):
            password = password[:-1]
        if not password:
            out["error"] = "--user needs the password as the first line of standard input"
            return out
    sock = socket.create_connection((host, port), timeout=15)
    try:
        out["version"] = recv_exactly(sock, 12).decode().strip()
        sock.sendall(b"RFB 003.008\n")
        out["step"] = "security types"
        count = recv_exactly(sock, 1)[0]
        if count == 0:
            out["error"] = "server refused: %s" % failure_reason(sock)
            return out
        out["types"] = list(recv_exactly(sock, count))
        if mode == "types":
            return out
        if mode == "plain":
            sock.sendall(bytes([1]))
            out["step"] = "security result"
            result = struct.unpack(">I", recv_exactly(sock, 4))[0]
            out["result"] = result
            if result != 0:
                out["error"] = "server refused: %s" % failure_reason(sock)
            return out
        sock.sendall(bytes([VENCRYPT]))
        out["step"] = "vencrypt version"
        out["vencrypt"] = list(recv_exactly(sock, 2))
        sock.sendall(bytes([0, 2]))
        if recv_exactly(sock, 1)[0] != 0:
            out["error"] = "server refused VeNCrypt 0.2"
            return out
        count = recv_exactly(sock, 1)[0]
        subtypes = list(struct.unpack(">%dI" % count, recv_exactly(sock, 4 * count)))
        out["subtypes"] = [X509_SUBTYPES.get(s, ANON_SUBTYPES.get(s, str(s))) for s in subtypes]
        chosen = next((s for s in subtypes if s in X509_SUBTYPES and s != X509SASL), None)
        if X509SASL in subtypes and (user is not None or chosen is None):
            chosen = X509SASL
        if chosen is None:
            out["error"] = "no x509 subtype offered"
            return out
        sock.sendall(struct.pack(">I", chosen))
        if recv_exactly(sock, 1)[0] != 1:
            out["error"] = "server refused subtype %d" % chosen
            return out
        out["step"] = "tls handshake"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(opts["--ca"])
        if "--cert" in opts:
            ctx.load_cert_chain(opts["--cert"], opts["--key"])
        tls = ctx.wrap_socket(sock, server_hostname=opts.get("--name", host))
        sock = tls
        out["tls"] = tls.version()
        out["server_subject"] = dict(x[0] for x in tls.getpeercert()["subject"])
        out["server_sha256"] = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
        # TLS 1.3: the server judges the client certificate after the client
        # has finished the handshake; its verdict is the first thing read.
        if chosen == X509SASL and not sasl_login(tls, user, password, out):
            return out
        out["step"] = "security result"
        if chosen == 261:
            out["error"] = "x509vnc needs a VNC password (not set up by this probe)"
            return out
        result = struct.unpack(">I", recv_exactly(tls, 4))[0]
        if result != 0:
            out["error"] = "server refused: %s" % failure_reason(tls)
            return out
        out["step"] = "server init"
        tls.sendall(bytes([1]))
        width, height = struct.unpack(">HH", recv_exactly(tls, 4))
        recv_exactly(tls, 16)
        name = recv_exactly(tls, struct.unpack(">I", recv_exactly(tls, 4))[0]).decode("utf-8", "replace")
        out["desktop"] = {"name": name, "width": width, "height": height}
        out["step"] = "done"
        return out
    except (OSError, EOFError, ssl.SSLError, ValueError) as exc:
        out["error"] = "%s: %s" % (type(exc).__name__, exc)
        return out
    finally:
        sock.close()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv), sort_keys=True))
