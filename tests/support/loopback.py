"""A loopback HTTP server a test starts and stops itself: each POST's body goes to `on_post(request, body)`,
which answers it (tests only ever touch 127.0.0.1)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PostServer:
    def __init__(self, on_post: Callable[[BaseHTTPRequestHandler, bytes], None]):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                on_post(self, self.rfile.read(int(self.headers["content-length"])))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
