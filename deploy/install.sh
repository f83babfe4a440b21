#!/bin/sh
# Installs simgate on this machine, line by line what the README's
# "Install" section says. Run it as root from the repository, after
# building the binaries (go build -o bin/ ./cmd/...):
#
#   sudo deploy/install.sh coordinator bin    # the session host (coordinator, Apache rules)
#   sudo deploy/install.sh agent bin          # each simulation machine
#
# BINDIR defaults to the repository's bin/. For an agent, the simulation
# server's own configuration (webots-server's simulation.json, which says
# which repositories it runs) is found under /home/*/webots-server/config/
# simulation/ when there is exactly one, or named by SIMULATION_CONFIG=FILE;
# the unit reads it read-only through a drop-in (ProtectHome hides /home).
#
# With DESTDIR set, everything goes under that folder instead, and nothing
# is started: that is how the tests check it (systemd-analyze verify --root).
set -eu
role=${1:?usage: install.sh coordinator|agent [BINDIR]}
here=$(cd "$(dirname "$0")" && pwd)
bin=${2:-$here/../bin}
if [ ! -d "$bin" ]; then
  echo "install.sh: no $bin: build the binaries first (GOTOOLCHAIN=auto go build -o bin/ ./cmd/coordinator ./cmd/agent) or name their folder" >&2
  exit 2
fi
root=${DESTDIR:-}

case $role in
coordinator)
  # 1. The system user the coordinator runs as (the agent needs none: DynamicUser).
  install -D -m 644 "$here/simgate.sysusers" "$root/usr/lib/sysusers.d/simgate.conf"
  install -d -m 755 "$root/etc"
  if [ -n "$root" ]; then systemd-sysusers --root="$root" simgate.conf; else systemd-sysusers simgate.conf; fi
  # 2. The binary.
  install -D -m 755 "$bin/coordinator" "$root/usr/local/bin/simgate-coordinator"
  # 3. Its configuration: the example once, never over a site's own file.
  install -d -m 755 "$root/etc/simgate"
  if [ ! -e "$root/etc/simgate/session.json" ]; then
    install -m 640 "$here/session.json.example" "$root/etc/simgate/session.json"
    [ -n "$root" ] || chgrp simgate /etc/simgate/session.json
  fi
  # 4. The unit (it creates /var/lib/simgate, where logs and the state store live).
  install -D -m 644 "$here/simgate-coordinator.service" "$root/etc/systemd/system/simgate-coordinator.service"
  # 5. Apache's rules, included from the site's VirtualHost (step printed below).
  install -D -m 644 "$here/apache-simgate.conf" "$root/etc/apache2/simgate.conf"
  # ... or, for several coordinators (nats.cluster), the balancer in front of them.
  install -D -m 644 "$here/apache-simgate-ha.conf" "$root/etc/apache2/simgate-ha.conf"
  unit=simgate-coordinator
  next="edit /etc/simgate/session.json (simgate-coordinator -check /etc/simgate/session.json says what it thinks),
add 'Include /etc/apache2/simgate.conf' inside the VirtualHost of your HTTPS site
(several coordinators: simgate-ha.conf, with proxy_balancer proxy_hcheck lbmethod_byrequests; watchdog is built into Debian's Apache),
then: a2enmod proxy proxy_http proxy_wstunnel rewrite headers && systemctl reload apache2"
  ;;
agent)
  install -D -m 755 "$bin/agent" "$root/usr/local/bin/simgate-agent"
  install -d -m 755 "$root/etc/simgate"
  if [ ! -e "$root/etc/simgate/agent.env" ]; then
    install -m 600 "$here/agent.env.example" "$root/etc/simgate/agent.env"
  fi
  install -D -m 644 "$here/simgate-agent.service" "$root/etc/systemd/system/simgate-agent.service"
  # The simulation server's policy: named (SIMULATION_CONFIG), else the one
  # a running simulation_server.py was started with (its command line),
  # else the only one under /home, else the administrator picks one.
  sim=${SIMULATION_CONFIG:-}
  proc=${PROC:-/proc}
  if [ -z "$sim" ]; then
    for cmdline in "$proc"/[0-9]*/cmdline; do
      [ -r "$cmdline" ] || continue
      args=$(tr '\000' '\n' <"$cmdline" 2>/dev/null) || continue
      case "$args" in *simulation_server.py*) ;; *) continue ;; esac
      cfg=$(printf '%s\n' "$args" | grep '\.json$' | tail -n 1)
      [ -n "$cfg" ] || continue
      case "$cfg" in
      /*) ;;
      *) cfg="$(readlink "${cmdline%/cmdline}/cwd")/$cfg" ;;
      esac
      if [ -e "$root$cfg" ]; then
        sim=$cfg
        echo "the running simulation server (pid $(basename "$(dirname "$cmdline")")) was started with $sim"
        break
      fi
    done
  fi
  if [ -z "$sim" ]; then
    found=$(ls "$root"/home/*/webots-server/config/simulation/*.json 2>/dev/null || true)
    count=$(printf '%s\n' "$found" | grep -c . || true)
    if [ "$count" -eq 1 ]; then
      sim=${found#"$root"}
    elif [ "$count" -gt 1 ]; then
      echo "several simulation server configurations, and no running simulation_server.py names one:"
      i=0
      for f in $found; do
        i=$((i + 1))
        echo "  $i) ${f#"$root"}"
      done
      if [ -t 0 ]; then
        printf 'which one is this server'"'"'s (1-%s, empty for none)? ' "$count"
        read -r pick
        if [ -n "$pick" ] && [ "$pick" -ge 1 ] 2>/dev/null && [ "$pick" -le "$count" ]; then
          sim=$(printf '%s\n' "$found" | sed -n "${pick}p")
          sim=${sim#"$root"}
        fi
      fi
    fi
  fi
  dropin="$root/etc/systemd/system/simgate-agent.service.d"
  if [ -n "$sim" ]; then
    install -d -m 755 "$dropin"
    printf '%s\n' \
      "# Written by install.sh: the simulation server's own configuration, read-only" \
      "# inside the unit (ProtectHome hides /home from it otherwise)." \
      "[Service]" \
      "BindReadOnlyPaths=$sim:/run/simgate-agent/simulation.json" \
      "Environment=SIMGATE_SIMULATION_CONFIG=/run/simgate-agent/simulation.json" >"$dropin/simulation-config.conf"
    echo "the agent reads the simulation server's policy from $sim"
  else
    echo "no simulation server configuration chosen: repository-aware placement is off for this server (SIMULATION_CONFIG=FILE install.sh agent … names one)"
  fi
  unit=simgate-agent
  next="edit /etc/simgate/agent.env (SIMGATE_SERVER exactly as in the coordinator's simulationServers, SIMGATE_NATS)"
  ;;
*)
  echo "install.sh: unknown role '$role': coordinator or agent" >&2
  exit 2
  ;;
esac

if [ -n "$root" ]; then
  echo "installed the $role under $root"
  exit 0
fi
systemctl daemon-reload
echo "installed the $role. Next: $next
and start it: systemctl enable --now $unit"
