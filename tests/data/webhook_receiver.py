#!/usr/bin/python3
"""A tiny webhook receiver for the alert tests: listens on 127.0.0.1 (port 0: any free
one), prints the port on its first line, and appends one JSON line per request to LOG:
{"status": the answer it gave, "body": the parsed JSON body}. The first FAIL requests are
answered 503, to exercise the sender's retries.

usage: webhook_receiver.py LOG [FAIL]"""
import http.server
import json
import sys

LOG = sys.argv[1]
FAIL = int(sys.argv[2]) if len(sys.argv) > 2 else 0
seen = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        seen += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 503 if seen <= FAIL else 200
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
            status = 400
        with open(LOG, "a") as f:
            f.write(json.dumps({"status": status, "content_type": self.headers.get("Content-Type"), "body": parsed}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
