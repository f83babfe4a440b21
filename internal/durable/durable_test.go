package durable

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWrite: the file is replaced whole, with its mode, its folder made;
// no temporary file is left.
func TestWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "f.json")
	for _, tc := range []struct {
		data string
		perm os.FileMode
	}{{"one", 0o600}, {"two, longer", 0o640}, {"3", 0o644}} {
		if err := Write(path, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		fi, _ := os.Stat(path)
		if err != nil || string(got) != tc.data || fi.Mode().Perm() != tc.perm {
			t.Errorf("after writing %q (%v): %q, %v, %v", tc.data, tc.perm, got, fi.Mode().Perm(), err)
		}
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left: %v", err)
	}
}

// TestSetAside: the file moves to a .corrupt-<time> name beside it.
func TestSetAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	aside, err := SetAside(path)
	if err != nil || !strings.HasPrefix(aside, path+".corrupt-") {
		t.Fatalf("set aside as %q: %v", aside, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the file is still in place: %v", err)
	}
	if got, _ := os.ReadFile(aside); string(got) != "{not json" {
		t.Errorf("the file set aside holds %q", got)
	}
	if _, err := SetAside(path); err == nil {
		t.Error("a missing file set aside without an error")
	}
}
