#!/usr/bin/env bash
# The cluster's fault suite (README, High availability): runs each fault
# scenario RUNS times (default 10) with the real coordinators, agents,
# test SMTP server and a load of new visitors behind a model of Apache's
# balancer, and prints a table, one row per scenario, summed over its runs:
# runs passed/failed; sessions placed, refused by a ready member, answered
# by no member; false downs; mails expected, delivered, duplicated, lost,
# unexpected; sessions placed on a drained server (where the scenario
# drains one); the election's time (shortest–longest). Each run logs one
# "fault figures:" line (e2e/faultload_test.go) and fails on any refusal,
# false down, or lost, duplicated or unexpected mail. A failed run's output
# is kept in the log folder named at the end.
#   scripts/faults.sh            # every scenario, 10 times
#   RUNS=3 scripts/faults.sh TestHungMemberCostsNoServer
# Run as root, it also runs the scenarios that need it: network namespaces
# for the partitions, and TestClockStepKeepsPendingMail, which steps this
# machine's wall clock 48 h forward and back (SIMGATE_FAULT_CLOCK=1; a
# run killed meanwhile has the next one put the clock back). Set
# SIMGATE_FAULT_CLOCK=0 to leave the clock alone.
set -uo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
if [ "$(id -u)" = 0 ]; then export SIMGATE_FAULT_CLOCK=${SIMGATE_FAULT_CLOCK:-1}; fi
runs=${RUNS:-10}
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  scenarios=(
    TestFailureDuringElectionIsMailed   # kill -9 of the leader and, within 1 s, an agent
    TestHungMemberCostsNoServer         # SIGSTOP of a follower holding the agents, 20 s
    TestHungLeaderCostsNoServer         # SIGSTOP of the leader holding the agents, 20 s
    TestStepdownWhileSMTPHangsSendsOnce # SIGSTOP of the leader while its mail hangs in SMTP
    TestClockStepKeepsPendingMail       # kill -9 of the leader, mail pending; the clock +48 h, then back (root)
    TestStalledCoordinatorInventsNoFailure
    TestNoSessionToADrainedServerAfterRestart
    TestQuorumLossIsLoud
    TestClusterSurvivesAMember          # kill -9 of the leader under load, mails pending, SMTP down
    TestRollingUpgradeRefusesNoVisitor  # a stop/start rolling upgrade, visitors sent to ready members
    TestRollingReloadRefusesNoVisitor   # the README's rolling upgrade (reload), visitors sent to ready members
    TestPartitionedMemberStepsAside     # a follower, then the leader, cut from the others (network namespaces; root)
    TestCutMembersAgentsFailOver        # the agents' member cut from the others, not from its agents
  )
fi
logs=$(mktemp -d "${TMPDIR:-/tmp}/simgate-faults-XXXXXX")
go test -c -race -o "$logs/e2e.test" ./e2e || exit 1
printf '%-40s %5s %7s %7s %6s %6s %5s %5s %5s %5s %5s %7s  %s\n' \
  scenario runs placed refused errors false mails deliv dup lost unexp drained election
printf '%-40s %5s %7s %7s %6s %6s %5s %5s %5s %5s %5s %7s  %s\n' \
  '' '' '' '' '' downs exp '' '' '' '' placed ''
total_failed=0
for s in "${scenarios[@]}"; do
  pass=0 fail=0
  for i in $(seq 1 "$runs"); do
    out="$logs/$s-$i.log"
    if (cd e2e && "$logs/e2e.test" -test.run "^$s\$" -test.count 1 -test.v >"$out" 2>&1); then
      pass=$((pass + 1))
      grep -ho 'fault figures: .*' "$out" | head -1 >>"$logs/$s.figures"
      rm -f "$out"
    else
      fail=$((fail + 1))
    fi
  done
  total_failed=$((total_failed + fail))
  # Sum the runs' figures; elections as shortest–longest.
  awk -v name="$s" -v runs="$pass/$((pass + fail))" '
    function secs(d) { if (d ~ /ms$/) return substr(d, 1, length(d) - 2) / 1000; sub(/s$/, "", d); return d + 0 }
    { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2]
        if (kv[1] == "election") { if (kv[2] != "-") { e = secs(kv[2]); if (n == 0 || e < lo) lo = e; if (n == 0 || e > hi) hi = e; n++ } }
        else if (kv[2] != "-") sum[kv[1]] += kv[2]; else none[kv[1]] = 1 } }
    function m(k) { return (k in sum) ? sum[k] : "-" }
    END { el = n ? sprintf("%.1f-%.1f s", lo, hi) : "-"
      printf "%-40s %5s %7s %7s %6s %6s %5s %5s %5s %5s %5s %7s  %s\n", name, runs, m("placed"), m("refused"), m("errors"),
        m("false_downs"), m("mails_expected"), m("mails_delivered"), m("mails_duplicated"), m("mails_lost"), m("mails_unexpected"), m("on_drained"), el }
  ' "$logs/$s.figures" 2>/dev/null || printf '%-40s %5s\n' "$s" "$pass/$((pass + fail))"
done
echo "failed runs: $total_failed (logs of failed runs in $logs)"
[ "$total_failed" -eq 0 ]
