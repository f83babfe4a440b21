// Package durable writes the coordinator's small files so that a crash
// leaves the old file or the new one, never half of one, and sets aside a
// file that does not read, so that it is never a reason not to start.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Write replaces path with data, mode perm: a temporary file beside it,
// synced, renamed over path, and the folder synced. The folder is made
// when missing (mode 750).
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm) // the umask may have narrowed it, or an old .tmp kept its mode
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// SetAside renames path to path.corrupt-<UTC time> and returns that name.
func SetAside(path string) (string, error) {
	aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return aside, nil
}
