"""A deliberately small PostgreSQL wire client for what real drivers will not do: send malformed or
oversized messages, read the backend key, send a CancelRequest with any key.

Run as a script (the tests pass its text to `python3 -c` as a captured account):
    pgraw.py MODE HOST PORT [ARGS...]     prints one JSON object
Modes:
    malformed   startup (no password needed: injected credentials), then a Query whose length word
                lies; prints what the server side answered (severity, sqlstate, message) and
                whether the connection was closed
    oversized   startup, then a Query of ARGS[0] bytes
    key         startup, prints the backend key (pid, secret) and keeps the session open until stdin
                closes, answering each stdin line by running it as a Query and printing the result
    cancel      sends CancelRequest(pid=ARGS[0], secret=ARGS[1]) and prints whether it was accepted
                (the connection is closed by the other side either way)
"""

import json
import socket
import struct
import sys


def connect(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, int(port)))
    return s


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def read_message(s):
    head = recv_exact(s, 5)
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    return kind, recv_exact(s, length - 4)


def fields(body):
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def startup(s, user="anyone", database="orders"):
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
    key = None
    while True:
        kind, body = read_message(s)
        if kind == b"K":
            key = struct.unpack("!iI", body[:8])
        elif kind == b"E":
            raise RuntimeError("login failed: " + json.dumps(fields(body)))
        elif kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
            raise RuntimeError("the server asked for a password")
        elif kind == b"Z":
            return key


def answer_after(s):
    """Reads until an ErrorResponse or EOF; returns what the client got."""
    got = {"closed": False}
    try:
        while True:
            kind, body = read_message(s)
            if kind == b"E":
                f = fields(body)
                got.update(severity=f.get("S"), sqlstate=f.get("C"), message=f.get("M"))
            if kind == b"Z":
                got["ready"] = True
                break
    except (EOFError, ConnectionResetError):
        got["closed"] = True
    except socket.timeout:
        got["timeout"] = True
    if not got["closed"]:
        try:
            s.settimeout(3)
            got["closed"] = s.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            got["closed"] = True
    return got


def query(s, sql):
    body = sql.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!I", 4 + len(body)) + body)
    rows, error = [], None
    while True:
        try:
            kind, b = read_message(s)
        except (EOFError, ConnectionResetError):
            return {"rows": rows, "error": error, "closed": True}
        if kind == b"D":
            n = struct.unpack("!H", b[:2])[0]
            pos, row = 2, []
            for _ in range(n):
                ln = struct.unpack("!i", b[pos:pos + 4])[0]
                pos += 4
                row.append(None if ln < 0 else b[pos:pos + ln].decode())
                pos += max(ln, 0)
            rows.append(row)
        elif kind == b"E":
            error = fields(b)
        elif kind == b"Z":
            return {"rows": rows, "error": error}


def main():
    mode, host, port, *args = sys.argv[1:]
    s = connect(host, port)
    if mode == "malformed":
        startup(s)
        # A Query whose length says 3: shorter than the length word itself.
        s.sendall(b"Q" + struct.pack("!I", 3) + b"SELECT 1\0")
        print(json.dumps(answer_after(s)))
    elif mode == "oversized":
        startup(s)
        size = int(args[0])
        body = b"SELECT '" + b"x" * size + b"'\0"
        s.sendall(b"Q" + struct.pack("!I", 4 + len(body)))
        try:
            s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        print(json.dumps(answer_after(s)))
    elif mode == "key":
        pid, secret = startup(s)
        print(json.dumps({"pid": pid, "secret": secret}), flush=True)
        for line in sys.stdin:
            result = query(s, line.strip())
            print(json.dumps(result), flush=True)
            if result.get("closed"):
                break
    elif mode == "cancel":
        s.sendall(struct.pack("!IIiI", 16, 80877102, int(args[0]), int(args[1])))
        try:
            closed = s.recv(1) == b""
        except ConnectionResetError:
            closed = True
        print(json.dumps({"closed": closed}))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
