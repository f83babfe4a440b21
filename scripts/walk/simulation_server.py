# Stand-in for webots-server's simulation server: /load answers a number.
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"12.5" if self.path.startswith("/load") else b"simulation server"
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("", 2000), H).serve_forever()
