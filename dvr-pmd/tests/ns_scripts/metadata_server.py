# A stand-in for Nova's metadata API in the metadata proxy test: answers
# every GET with a JSON object of the path and the headers it received, so
# that the test sees what the proxy sent on.
# Usage: metadata_server.py ADDR PORT [--silent]
# --silent: accepts connections and never answers (the proxy's 504).
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        body = json.dumps(
            {"path": self.path, "headers": {k: v for k, v in self.headers.items()}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    if "--silent" in sys.argv[3:]:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1024)
        held = []
        while True:
            c, _ = s.accept()
            held.append(c)
    Server((addr, port), Handler).serve_forever()


main()
