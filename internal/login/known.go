package login

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// knownFile is the file's form: addresses a login succeeded from, with
// when last. Addresses only, no secret: a leaked file tells who logged in
// from where, not how.
type knownFile struct {
	V     int                  `json:"v"`
	Known map[string]time.Time `json:"known"`
}

// LoadKnown reads the addresses kept by SaveKnown. A missing file is
// none; a file that does not read is set aside (renamed with a
// .corrupt-<time> suffix) and none are returned, with an error that
// says so: never a reason not to start.
func LoadKnown(path string) (map[string]time.Time, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f knownFile
	if err := json.Unmarshal(data, &f); err != nil || f.V != 1 {
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("%s does not read (%v), and cannot be set aside: %w", path, err, rerr)
		}
		return nil, fmt.Errorf("%s does not read (%v): set aside as %s", path, err, aside)
	}
	return f.Known, nil
}

// SaveKnown writes addrs to path (mode 600), whole or not at all.
func SaveKnown(path string, addrs map[string]time.Time) error {
	data, err := json.Marshal(knownFile{V: 1, Known: addrs})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".known-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
