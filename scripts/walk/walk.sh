#!/bin/bash
# The newcomer walk (issue 32): a clean Debian 12 booted with systemd
# (debootstrap + systemd-nspawn), made into the original's site (the seed's
# session.json and webots-server configs, the guide's Apache rules on HTTPS,
# stand-ins for session_server.py and simulation_server.py), then migrated
# and secured with the README's commands only (steps.txt), ending with an
# agent on an nkey over TLS and over wss://…/nats. Not part of CI: it needs
# root, a Debian mirror and the Go module proxy, and ports 80, 443, 1999,
# 2000, 4222 and 4223 free (the container shares this machine's network).
#
#   sudo scripts/walk/walk.sh            # transcript in /var/tmp/simgate-walk/transcript.txt
#
# Two things come from this machine, not the README: its CA certificates
# (where a proxy intercepts TLS) and Go, copied to /usr/local/go as the
# README says to unpack Go's release there. The site's HTTPS certificate is
# a self-signed one trusted inside, standing in for Let's Encrypt's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
W=${WALK_ROOT:-/var/tmp/simgate-walk}
D=$W/deb
out=$W/transcript.txt
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
for p in 80 443 1999 2000 4222 4223; do
  if ss -ltn "sport = :$p" | grep -q LISTEN; then echo "port $p is taken here" >&2; exit 2; fi
done
command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null ||
  apt-get install -y -q debootstrap systemd-container >/dev/null

mkdir -p "$W"
# A clean Debian each time: debootstrap once, kept as a tarball.
if [ ! -s "$W/pristine.tar" ]; then
  rm -rf "$D"
  debootstrap --include=systemd,systemd-sysv,dbus,ca-certificates,curl,git,apache2,jq,iproute2,python3,openssl,procps,ssl-cert \
    bookworm "$D" http://deb.debian.org/debian >"$W/debootstrap.log"
  tar -C "$D" -cf "$W/pristine.tar.tmp" . && mv "$W/pristine.tar.tmp" "$W/pristine.tar"
fi
rm -rf "$D" && mkdir -p "$D" && tar -C "$D" -xf "$W/pristine.tar"
echo cyberbotics1 >"$D/etc/hostname"
# The site's name is this host; the seed's mail server must not be reached.
printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 cyberbotics1.epfl.ch cyberbotics1\n127.0.0.1 mail.infomaniak.com\n' >"$D/etc/hosts"
cp -a /usr/local/share/ca-certificates/. "$D/usr/local/share/ca-certificates/" 2>/dev/null || true
cp -a "$(go env GOROOT)" "$D/usr/local/go"
git clone -q "$repo" "$D/root/simgate"

# The original's site.
h=$D/home/cyberbotics
mkdir -p "$h/webots-server/config" "$h/.config/autostart"
cp -r "$repo/../shared/seed/webots-server-config/session" "$repo/../shared/seed/webots-server-config/simulation" "$h/webots-server/config/"
cp "$repo/../shared/seed/session.json" "$h/webots-server/config/session/session.json"
cp "$here/session_server.py" "$here/simulation_server.py" "$h/webots-server/"
printf '[Desktop Entry]\nName=session_server\nExec=python /home/cyberbotics/webots-server/session_server.py /home/cyberbotics/webots-server/config/session/session.json\nType=Application\nX-GNOME-Autostart-enabled=true\n' \
  >"$h/.config/autostart/session_server.desktop"
cat >"$D/root/site.sh" <<'EOF'
set -e
# The site's HTTPS certificate, for its name, trusted on this machine: what
# Let's Encrypt gives a real site (the coordinator polls the server through
# Apache, https://cyberbotics1.epfl.ch/2000/load, and verifies it).
make-ssl-cert generate-default-snakeoil --force-overwrite
update-ca-certificates --fresh >/dev/null 2>&1 || true
id cyberbotics >/dev/null 2>&1 || useradd -m -s /bin/bash cyberbotics
chown -R cyberbotics: /home/cyberbotics
cd /home/cyberbotics/webots-server
su cyberbotics -c "setsid python3 session_server.py config/session/session.json >/dev/null 2>&1 < /dev/null &"
su cyberbotics -c "setsid python3 simulation_server.py config/simulation/cyberbotics1.json >/dev/null 2>&1 < /dev/null &"
a2enmod -q ssl proxy proxy_http proxy_wstunnel rewrite
cat >/etc/apache2/sites-available/000-default-le-ssl.conf <<'EOT'
<IfModule mod_ssl.c>
<VirtualHost *:443>
    ServerName cyberbotics1.epfl.ch
    DocumentRoot /var/www/html
    SSLEngine on
    SSLCertificateFile /etc/ssl/certs/ssl-cert-snakeoil.pem
    SSLCertificateKeyFile /etc/ssl/private/ssl-cert-snakeoil.key
    RewriteEngine on
    # port redirection rules (for session_server.py, simulation_server.py and webots)
    # websockets (should come first)
    RewriteCond %{HTTP:Upgrade} websocket [NC]
    RewriteCond %{HTTP:Connection} upgrade [NC]
    RewriteRule ^/(\d*)/(.*)$ "ws://localhost:$1/$2" [P,L]
    # http traffic (should come after websocket)
    RewriteRule ^/load$ "http://localhost:1999/load" [P,L]
    RewriteRule ^/monitor$ "http://localhost:1999/monitor" [P,L]
    RewriteRule ^/session$ "http://localhost:1999/session" [P,L]
    RewriteRule ^/(\d*)/(.*)$ "http://localhost:$1/$2" [P,L]
</VirtualHost>
</IfModule>
EOT
a2ensite -q 000-default-le-ssl
systemctl restart apache2
sleep 1
echo "the original's site answers: $(curl -sk https://cyberbotics1.epfl.ch/session)"
EOF
# Each README command from its own file: pkill -f reads command lines.
cat >"$D/root/run-steps.sh" <<'EOF'
cd /root/simgate
while IFS= read -r c; do
  case $c in ''|'#'*) continue ;; esac
  # The wss:// step: Apache's certificate is what Let's Encrypt gives a real
  # site; here the NATS CA's, so that the agent's SIMGATE_CA verifies both.
  case $c in "jq '.nats.websocket"*)
    sed -i 's|/etc/ssl/certs/ssl-cert-snakeoil.pem|/etc/simgate/nats-cert.pem|; s|/etc/ssl/private/ssl-cert-snakeoil.key|/etc/simgate/nats-key.pem|' /etc/apache2/sites-available/000-default-le-ssl.conf
    systemctl reload apache2 ;;
  esac
  printf '\n$ %s\n' "$c"; printf '%s\n' "$c" >/root/.cmd; (cd /root/simgate && sh /root/.cmd) 2>&1; echo "[exit $?]"
done </root/steps.txt
EOF
cp "$here/steps.txt" "$D/root/steps.txt"

setsid systemd-nspawn -D "$D" --register=no --keep-unit --console=pipe -b >"$W/nspawn.log" 2>&1 &
nspawn=$!
trap 'kill $nspawn 2>/dev/null; wait $nspawn 2>/dev/null || true' EXIT
pid=
for _ in $(seq 100); do
  pid=$(pgrep -n -x systemd || true)
  [ -n "$pid" ] && nsenter -t "$pid" -a -- /bin/systemctl is-system-running --wait >/dev/null 2>&1 && break
  sleep 0.2
done
[ -n "$pid" ] || { echo "the container did not boot: $W/nspawn.log" >&2; exit 1; }
inside() { nsenter -t "$pid" -a -- /usr/bin/env -i HOME=/root TERM=dumb \
  PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash "$@"; }
inside /root/site.sh
inside /root/run-steps.sh | tee "$out"

# What the walk must reach.
fail=0
want() { grep -q -- "$1" "$out" || { echo "MISSING: $2" >&2; fail=1; }; }
want 'configuration OK' "-check accepts the seed's session.json"
want 'cyberbotics1.epfl.ch/2000 agent up' "the agent takes its server over"
want 'NRestarts=1' "a crashed agent is restarted by its unit"
want 'nats=wss://cyberbotics1.epfl.ch/nats' "the agent over wss://"
want '^101$' "the monitor page's WebSocket through Apache"
[ "$(grep -c 'cyberbotics1.epfl.ch/2000 agent up' "$out")" -ge 3 ] || { echo "MISSING: the agent up over nats://, tls:// + nkey and wss://" >&2; fail=1; }
[ $fail = 0 ] && echo "the walk reached a working site: $out"
exit $fail
