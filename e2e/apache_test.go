package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// apacheFront runs a real Apache (Debian's apache2) in front of f, with the
// site's rules as the README's Apache section installs them: the
// VirtualHost includes deploy/apache-simgate.conf, its ports (1999 and
// 4223) replaced by the ones f bound. It returns Apache's host:port. The
// test is skipped where apache2 is not installed (.ci/run installs it).
func apacheFront(t *testing.T, f *farm) string {
	t.Helper()
	bin, err := exec.LookPath("apache2")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/apache2"); err != nil {
			t.Skip("apache2 is not installed (.ci/run installs it)")
		}
	}
	modules := "/usr/lib/apache2/modules"
	if _, err := os.Stat(filepath.Join(modules, "mod_proxy_wstunnel.so")); err != nil {
		t.Skipf("Apache's modules: %v", err)
	}
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755) // Apache's workers run as www-data
	rules, err := os.ReadFile("../deploy/apache-simgate.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := strings.ReplaceAll(string(rules), "localhost:1999", "127.0.0.1:"+strconv.Itoa(f.bound.HTTPPort))
	if ws := f.bound.NATSWebsocketURL; ws != "" {
		site = strings.ReplaceAll(site, "localhost:4223", strings.TrimPrefix(ws, "ws://"))
	}
	port := testutil.FixedPorts(t, 1)[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var conf strings.Builder
	fmt.Fprintf(&conf, "ServerRoot /etc/apache2\nDefaultRuntimeDir %[1]s\nPidFile %[1]s/apache2.pid\nMutex file:%[1]s default\n", dir)
	for _, m := range []string{"mpm_event", "authz_core", "headers", "proxy", "proxy_http", "proxy_wstunnel", "rewrite"} {
		fmt.Fprintf(&conf, "LoadModule %s_module %s/mod_%s.so\n", m, modules, m)
	}
	if os.Geteuid() == 0 {
		conf.WriteString("User www-data\nGroup www-data\n")
	}
	fmt.Fprintf(&conf, "Listen %[2]s\nServerName localhost\nErrorLog %[1]s/error.log\nLogLevel warn\nDocumentRoot %[1]s\n"+
		"<VirtualHost %[2]s>\n    ServerName localhost\n    DocumentRoot %[1]s\n    Include %[1]s/simgate.conf\n</VirtualHost>\n", dir, addr)
	for name, content := range map[string]string{"httpd.conf": conf.String(), "simgate.conf": site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := start(t, bin, "-f", filepath.Join(dir, "httpd.conf"), "-DFOREGROUND")
	t.Cleanup(func() {
		// Apache's workers are its children: a stop, not a kill, ends them.
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("Apache's error log:\n%s", log)
			}
		}
	})
	testutil.WaitFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if a.exited() {
			t.Fatalf("apache2 exited: %s", a.out.String())
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr
}
