// Package testutil holds the helpers every test uses: waiting on a
// condition with a deadline (never a bare sleep), and building
// the real binaries once per test process.
// Tests never pick a port: servers listen on port 0 and say what they bound
// (a cluster's routes, which must be known in advance, are the exception:
// FixedPorts).
package testutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitFor retries check every tick until it returns nil or timeout passes,
// then fails the test with check's last error.
func WaitFor(t testing.TB, timeout, tick time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(tick)
	}
}

// Buffer collects what a process or a logger writes, safe for concurrent
// writers and readers.
type Buffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Main runs a package's tests (call it from TestMain), then removes the
// binaries Binaries built; when a test failed it keeps them and says where.
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		if code == 0 {
			_ = os.RemoveAll(binDir)
		} else {
			fmt.Fprintf(os.Stderr, "testutil: the binaries under test are kept in %s\n", binDir)
		}
	}
	return code
}

// Binaries builds cmd/coordinator and cmd/agent once per test process and
// returns their paths; a package that calls it removes them with Main.
func Binaries(t testing.TB) (coordinator, agent string) {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		binDir, buildErr = os.MkdirTemp("", "simgate-bin-")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"coordinator", "agent"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "./cmd/"+name)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "coordinator"), filepath.Join(binDir, "agent")
}

// SelfSigned makes a throw-away certificate for localhost and 127.0.0.1 that
// is its own CA: trusting its PEM verifies it.
func SelfSigned(t testing.TB, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// TLSFiles writes a SelfSigned certificate and key into a temporary folder
// and returns their paths; the certificate file is also the CA file.
func TLSFiles(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := SelfSigned(t, "simgate test NATS")
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// FixedPorts returns n TCP ports free on 127.0.0.1 now, for what must be
// given its port before it starts: the routes of a cluster, which every
// member must know (JetStream needs its routes configured), Apache's and
// Prometheus's listeners. They are drawn outside the kernel's
// ephemeral range, which every port 0 and outgoing connection comes from,
// so nothing else on the machine takes one between this check and the
// bind. A caller whose program still finds one taken starts again with
// new ones.
func FixedPorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := 32768, 60999
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			lo, _ = strconv.Atoi(f[0])
			hi, _ = strconv.Atoi(f[1])
		}
	}
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		// Below the range, above the well-known and registered-by-habit ports.
		p := 10000 + mrand.IntN(max(lo-10000, 1))
		if p >= lo && p <= hi || slices.Contains(ports, p) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatalf("no %d free ports outside the ephemeral range %d-%d", n, lo, hi)
	}
	return ports
}
