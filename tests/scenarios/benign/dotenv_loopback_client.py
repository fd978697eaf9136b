# expect: none
# about: a tool reads the workspace .env and calls a loopback API server with its token
import http.server
import os
import threading
import urllib.request

ws = os.environ["WS"]
with open(os.path.join(ws, ".env"), "w") as f:
    f.write("API_TOKEN=dev-token-123\nAPI_URL=http://127.0.0.1\n")


class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.headers.get("Authorization") else 401)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


srv = http.server.HTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
with open(os.path.join(ws, ".env")) as f:
    env = dict(line.strip().split("=", 1) for line in f if "=" in line)
req = urllib.request.Request(f"http://127.0.0.1:{srv.server_port}/v1/items",
                             headers={"Authorization": "Bearer " + env["API_TOKEN"]})
for _ in range(3):
    urllib.request.urlopen(req, timeout=10).read()
srv.shutdown()
