package e2e

import (
	"bufio"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestHostileHeartbeats publishes every kind of bad heartbeat at a running
// coordinator: each is dropped and counted, the registry does not move, and
// the coordinator keeps serving.
func TestHostileHeartbeats(t *testing.T) {
	const target, fence = "127.0.0.1/3110", "127.0.0.1/3108"
	f := startFarm(t, map[string]any{"simulationServers": []string{target, fence}})
	p := f.publisher(t, "hostile")
	p.send(target, "up", 42, 60)
	f.waitState(t, target, 5*time.Second, "up")
	baseline := f.servers(t)[target]

	deep := strings.Repeat("[", 2000) + strings.Repeat("]", 2000)
	ok := func(extra string) string {
		return `{"v":1,"server":"127.0.0.1/3110","status":"up","load":1,"interval":1` + extra + `}`
	}
	cases := []struct {
		name, subject, payload, reason string
	}{
		{"malformed JSON", "", `{"v":1,"server":`, "schema"},
		{"not an object", "", `[1,2,3]`, "schema"},
		{"empty", "", ``, "schema"},
		{"deep nesting", "", ok(`,"x":` + deep), "schema"},
		{"deep nesting, no key", "", deep, "schema"},
		{"load as string", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":"1","interval":1}`, "schema"},
		{"v as string", "", `{"v":"1","server":"127.0.0.1/3110","status":"up","load":1,"interval":1}`, "schema"},
		{"server as number", "", `{"v":1,"server":5,"status":"up","load":1,"interval":1}`, "schema"},
		{"NaN", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":NaN,"interval":1}`, "schema"},
		{"Infinity", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":Infinity,"interval":1}`, "schema"},
		{"overflowing number", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":1e999,"interval":1}`, "schema"},
		{"load above 100", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":100.5,"interval":1}`, "schema"},
		{"negative load", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":-1,"interval":1}`, "schema"},
		{"cpu above 100", "", ok(`,"cpu":1000`), "schema"},
		{"interval zero", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":1,"interval":0}`, "schema"},
		{"interval too long", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","load":1,"interval":61}`, "schema"},
		{"negative sessions", "", ok(`,"sessions":-3`), "schema"},
		{"fractional sessions", "", ok(`,"sessions":1.5`), "schema"},
		{"version 2", "", `{"v":2,"server":"127.0.0.1/3110","status":"up","load":1,"interval":1}`, "schema"},
		{"unknown status", "", `{"v":1,"server":"127.0.0.1/3110","status":"asleep","load":1,"interval":1}`, "schema"},
		{"missing load", "", `{"v":1,"server":"127.0.0.1/3110","status":"up","interval":1}`, "schema"},
		{"bad time", "", ok(`,"time":"yesterday"`), "schema"},
		{"duplicate key, last out of range", "", ok(`,"load":300`), "schema"},
		{"invalid UTF-8", "", "{\"v\":1,\"server\":\"127.0.0.1/3110\xff\",\"status\":\"up\",\"load\":1,\"interval\":1}", "schema"},
		{"unknown server", "simgate.load.127_0_0_1_3109", `{"v":1,"server":"127.0.0.1/3109","status":"up","load":1,"interval":1}`, "unknown-server"},
		{"subject of another node", "simgate.load.127_0_0_1_3108", ok(""), "subject"},
		{"subject too deep", "simgate.load.127_0_0_1_3110.x", ok(""), "subject"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subject := tc.subject
			if subject == "" {
				subject = "simgate.load.127_0_0_1_3110"
			}
			before := f.scrape(t).value("simgate_heartbeats_dropped_total", "reason", tc.reason)
			if err := p.nc.Publish(subject, []byte(tc.payload)); err != nil {
				t.Fatal(err)
			}
			// A good heartbeat from another server, sent after: once it is
			// applied, the intake has handled the hostile one.
			fenceLoad := float64(i + 1) // unique per case: the previous case's fence cannot pass for this one's
			p.send(fence, "up", fenceLoad, 60)
			testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
				if l := f.servers(t)[fence].Load; l != fenceLoad {
					return fmt.Errorf("fence heartbeat not applied yet")
				}
				return nil
			})
			if got := f.scrape(t).value("simgate_heartbeats_dropped_total", "reason", tc.reason); got != max(before, 0)+1 {
				t.Errorf("dropped{reason=%q} went from %v to %v, want one more", tc.reason, before, got)
			}
			if now := f.servers(t)[target]; !reflect.DeepEqual(now, baseline) {
				t.Errorf("the target moved: %+v, was %+v", now, baseline)
			}
		})
	}

	// Oversize: the embedded server's 4 KiB limit cuts a raw client off.
	host := strings.TrimPrefix(f.nats, "nats://")
	conn, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	sizeBefore := f.scrape(t).value("simgate_heartbeats_dropped_total", "reason", "size")
	big := strings.Repeat("x", 5000)
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"name\":\"hostile-raw\"}\r\nPUB simgate.load.127_0_0_1_3110 %d\r\n%s\r\n", len(big), big)
	var answer string
	for !strings.HasPrefix(answer, "-ERR") {
		if answer, err = r.ReadString('\n'); err != nil {
			t.Fatalf("no error for an oversize heartbeat: %v", err)
		}
	}
	if !strings.Contains(answer, "Maximum Payload") {
		t.Errorf("oversize heartbeat answered %q", answer)
	}
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := f.scrape(t).value("simgate_heartbeats_dropped_total", "reason", "size"); got != max(sizeBefore, 0)+1 {
			return fmt.Errorf("dropped{reason=size} = %v, want %v", got, max(sizeBefore, 0)+1)
		}
		return nil
	})

	if now := f.servers(t)[target]; !reflect.DeepEqual(now, baseline) {
		t.Errorf("the target moved: %+v, was %+v", now, baseline)
	}
	expectPrefix(t, f.base+"/session", "ws://")
	if resp, body, err := get(f.base + "/healthz"); err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Errorf("/healthz after the hostile heartbeats: %v %q", err, body)
	}
}
