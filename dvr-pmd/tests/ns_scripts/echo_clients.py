# Clients of echo_server.py for the three-host test; prints one JSON object.
#
#   echo_clients.py many HOST PORT N
#       Opens N TCP connections at once and holds them all open (a barrier:
#       nobody sends before all N are connected), then each sends its own bytes
#       (a length and content derived from its index) and checks that exactly
#       those bytes come back. {"connected", "intact", "bad", "errors",
#       "local_ports"}.
#   echo_clients.py exhaust HOST PORT HELD EXTRA
#       Connects HELD TCP connections (each must succeed) and keeps them; then
#       tries EXTRA more at once, each given 3 s to connect; then checks an echo on
#       every held one. The same with UDP to PORT + 1: HELD sockets from
#       distinct ports (each must get its echo), EXTRA more at once (2 s each), then
#       the held ones again. {"tcp_held", "tcp_extra_connected",
#       "tcp_held_intact", "udp_held", "udp_extra_answered",
#       "udp_held_again"}.
import asyncio
import hashlib
import json
import resource
import socket
import sys
import threading

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def payload(i):
    """Distinct bytes per connection: 500..3500 bytes of a SHA-256 chain."""
    n = 500 + (i * 7919) % 3000
    out = bytearray()
    block = f"conn-{i}".encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


async def many(host, port, n):
    barrier = asyncio.Barrier(n + 1)
    errors = []

    async def one(i):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), 30
            )
        except Exception as e:  # noqa: BLE001: reported
            errors.append(f"connect {i}: {e!r}")
            await barrier.abort()
            return None
        local = writer.get_extra_info("sockname")[1]
        try:
            await asyncio.wait_for(barrier.wait(), 120)
            data = payload(i)
            writer.write(data)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(len(data)), 60)
            writer.close()
            return (local, got == data)
        except Exception as e:  # noqa: BLE001: reported
            errors.append(f"conn {i}: {e!r}")
            writer.close()
            return (local, False)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    try:
        # Every connection is up at once here.
        await asyncio.wait_for(barrier.wait(), 120)
        all_up = True
    except Exception:  # noqa: BLE001: the counts say it
        all_up = False
    results = await asyncio.gather(*tasks)
    done = [r for r in results if r is not None]
    return {
        "all_up_at_once": all_up,
        "connected": len(done),
        "intact": sum(1 for _, ok in done if ok),
        "bad": sum(1 for _, ok in done if not ok),
        "errors": errors[:10],
        "local_ports": sorted(p for p, _ in done),
    }


def exhaust(host, port, held, extra):
    out = {}
    conns = []
    for i in range(held):
        s = socket.create_connection((host, port), timeout=10)
        conns.append(s)
    out["tcp_held"] = len(conns)
    # The extra ones at once (each has 3 s).
    extra_ok = []

    def attempt():
        try:
            s = socket.create_connection((host, port), timeout=3)
            extra_ok.append(1)
            s.close()
        except OSError:
            pass

    threads = [threading.Thread(target=attempt) for _ in range(extra)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    extra_ok = len(extra_ok)
    out["tcp_extra_connected"] = extra_ok
    intact = 0
    for i, s in enumerate(conns):
        data = payload(10000 + i)
        s.settimeout(10)
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            b = s.recv(65536)
            if not b:
                break
            got += b
        intact += got == data
    out["tcp_held_intact"] = intact

    def udp_echo(s, i, wait):
        data = payload(20000 + i)[:200]
        s.settimeout(wait)
        s.sendto(data, (host, port + 1))
        try:
            got, _ = s.recvfrom(65536)
            return got == data
        except OSError:
            return False

    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(held)]
    out["udp_held"] = sum(udp_echo(s, i, 5) for i, s in enumerate(socks))
    extras = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(extra)]
    answered = []
    threads = [
        threading.Thread(target=lambda s=s, i=i: answered.append(udp_echo(s, 100 + i, 2)))
        for i, s in enumerate(extras)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["udp_extra_answered"] = sum(answered)
    out["udp_held_again"] = sum(udp_echo(s, 200 + i, 5) for i, s in enumerate(socks))
    for s in conns + socks + extras:
        s.close()
    return out


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "many":
        out = asyncio.run(many(host, port, int(sys.argv[4])))
    elif mode == "exhaust":
        out = exhaust(host, port, int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(f"unknown mode {mode}")
    print(json.dumps(out))


main()
