"""Speak RFB/VeNCrypt to a VNC console, as a viewer would (runs on the station).

    python3 console_probe.py HOST PORT MODE [--ca F] [--cert F --key F] [--name N]

MODE ``types``: the security types the server offers (RFB 3.8).
MODE ``plain``: ask for security type None (1) as a plain RFB client would
and print the server's answer (its failure reason).
MODE ``tls``: VeNCrypt 0.2, the x509 subtype the server offers, the TLS
handshake with the given CA (hostname checked against --name) and client
certificate, then the RFB security result and ServerInit (the desktop name)
over TLS: only a full session prints ``"desktop"``.

Prints one JSON object; what went wrong is in ``error`` (the exception's
class and message, e.g. the TLS alert) and the step it happened at.
"""
import hashlib
import json
import socket
import ssl
import struct
import sys

VENCRYPT = 19
X509_SUBTYPES = {260: "x509none", 261: "x509vnc", 262: "x509plain"}
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


def main(argv):
    host, port, mode = argv[1], int(argv[2]), argv[3]
    opts = dict(zip(argv[4::2], argv[5::2]))
    out = {"mode": mode, "step": "connect"}
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
        chosen = next((s for s in subtypes if s in X509_SUBTYPES), None)
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
