"""Tiny servers for the remote namespace, started by conftest.py with nsenter.

    servers.py --log FILE --udp-echo 198.18.0.10:9999 --dns 198.18.0.10:53 --banner 198.18.0.10:7777 \
        --sink 198.18.0.10:7778

- udp-echo: sends every datagram back unchanged.
- dns: answers every datagram with the same bytes and the QR bit set (enough to prove the path).
- banner: a TCP server that writes `banner <port>\n` to each client and closes.
- sink: a TCP server that reads until the client half-closes, then writes `got <bytes>\n`.

Every datagram and connection is logged as one line `<kind> <peer-address> <peer-port> <payload>` to
--log, flushed at once, so tests can prove what did (or did not) arrive. Runs until killed.
"""

import argparse
import socket
import sys
import threading


def split(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, kind, peer, payload=b""):
        text = payload[:200].decode("ascii", "replace").replace("\n", " ")
        with self.lock:
            self.f.write(f"{kind} {peer[0]} {peer[1]} {text}\n")
            self.f.flush()


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def udp_socket(addr):
    host, port = split(addr)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    return s


def tcp_socket(addr):
    host, port = split(addr)
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    return s


def udp_loop(s, log, kind):
    while True:
        data, peer = s.recvfrom(65535)
        log.write(kind, peer, data)
        if kind == "dns" and len(data) >= 3:
            data = data[:2] + bytes([data[2] | 0x80]) + data[3:]
        s.sendto(data, peer)


def banner_loop(s, log):
    port = s.getsockname()[1]
    while True:
        c, peer = s.accept()
        log.write("banner", peer)
        try:
            c.sendall(f"banner {port}\n".encode())
        except OSError:
            pass
        finally:
            c.close()


def sink_loop(s, log):
    """Reads until the client half-closes, then answers `got <bytes>` and closes."""
    def serve(c, peer):
        n = 0
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                n += len(b)
            log.write("sink", peer, str(n).encode())
            c.sendall(f"got {n}\n".encode())
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--udp-echo", action="append", default=[])
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--banner", action="append", default=[])
    p.add_argument("--sink", action="append", default=[])
    a = p.parse_args()
    log = Log(a.log)
    threads = []
    for addr in a.udp_echo:
        threads.append(threading.Thread(target=udp_loop, args=(udp_socket(addr), log, "udp-echo"), daemon=True))
    for addr in a.dns:
        threads.append(threading.Thread(target=udp_loop, args=(udp_socket(addr), log, "dns"), daemon=True))
    for addr in a.banner:
        threads.append(threading.Thread(target=banner_loop, args=(tcp_socket(addr), log), daemon=True))
    for addr in a.sink:
        threads.append(threading.Thread(target=sink_loop, args=(tcp_socket(addr), log), daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
