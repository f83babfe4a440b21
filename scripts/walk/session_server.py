# Stand-in for the original session server (the site before the migration).
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ws://cyberbotics1.epfl.ch/2000" if self.path.startswith("/session") else b"original"
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("", 1999), H).serve_forever()
