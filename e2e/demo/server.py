"""The lab's demo backend: answers every GET with the pod's name, its node's name and the
client address it saw, as one line `pod=... node=... client=...`.

A threaded server with a listen backlog of 4,096, so that a burst of new connections (every
client retrying at once after a failover) waits in the queue instead of being refused; a
backend with a small backlog shows up as failed requests that are not the load balancer's.
Listens on port 8080 on IPv6 and IPv4; exits at once on SIGTERM.
"""

import http.server
import os
import signal
import socket
import sys

POD = os.environ.get("POD_NAME", "")
NODE = os.environ.get("NODE_NAME", "")


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    request_queue_size = 4096
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        client = self.client_address[0].removeprefix("::ffff:")
        body = f"pod={POD} node={NODE} client={client}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
Server(("::", 8080), Handler).serve_forever()
