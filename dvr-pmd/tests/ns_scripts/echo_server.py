# TCP and UDP echo server of the three-host test's "internet host".
# Usage: echo_server.py ADDR PORT: TCP echo on PORT (every byte sent back until
# the peer closes), UDP echo on PORT + 1 (each datagram sent back).
import asyncio
import resource
import sys

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def echo(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class Udp(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    server = await asyncio.start_server(echo, addr, port, backlog=4096)
    await asyncio.get_running_loop().create_datagram_endpoint(
        Udp, local_addr=(addr, port + 1)
    )
    async with server:
        await server.serve_forever()


asyncio.run(main())
