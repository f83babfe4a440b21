package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A store that stops the coordinator is set aside, never a reason not to
// run (README, Security): one flipped byte in a message block made the
// embedded server build a 6 GB index and die of it at every start.
//
// Guard runs before the embedded server opens dir's JetStream store. A
// marker file says a start is under way; Done removes it once the store
// is open. A marker found at start means the last start died on the store
// (out of memory, a panic in its recovery): the store is moved aside, to
// jetstream.aside-<time>, and the coordinator starts afresh, with one ERROR
// line and the count of entries lost, as the manifest last recorded it.

const (
	markerFile   = "starting"
	manifestFile = "state-manifest.json"
	jetstreamDir = "jetstream"
)

// manifest is what the state bucket held at its last write, kept beside the
// store: what a store set aside, or one that reads as empty, lost.
type manifest struct {
	Entries uint64    `json:"entries"`
	At      time.Time `json:"at"`
}

// ManifestPath is where the manifest of the store in dir is kept.
func ManifestPath(dir string) string { return filepath.Join(dir, manifestFile) }

func readManifest(path string) (manifest, bool) {
	var m manifest
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &m) != nil {
		return manifest{}, false
	}
	return m, true
}

func writeManifest(path string, m manifest) error {
	data, _ := json.Marshal(m)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Guard prepares dir's store for a start: a store the last start died on is
// moved aside. Call Done once the store is open (or the start failed
// for a reason of its own).
func Guard(dir string, log *slog.Logger) (*Start, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	marker := filepath.Join(dir, markerFile)
	if data, err := os.ReadFile(marker); err == nil {
		if err := setAside(dir, "the last start did not finish opening it (it died: "+strings.TrimSpace(string(data))+")", log); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	if err := os.WriteFile(marker, []byte("start at "+time.Now().UTC().Format(time.RFC3339)+", pid "+strconv.Itoa(os.Getpid())+"\n"), 0o640); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	return &Start{dir: dir, log: log}, nil
}

// Start is a start under way on a guarded store.
type Start struct {
	dir string
	log *slog.Logger
}

// Done says the start got past opening the store, whether it opened or
// the start failed for another reason: the next start need not doubt it.
func (s *Start) Done() {
	if err := os.Remove(filepath.Join(s.dir, markerFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("cannot remove the state store's start marker", "error", err)
	}
}

// Failed sets the store aside after the embedded server refused to open it
// (an error rather than a crash): the caller starts again on a fresh one.
func (s *Start) Failed(cause error) error {
	return setAside(s.dir, cause.Error(), s.log)
}

// setAside moves dir's JetStream store aside and says what was lost.
func setAside(dir, why string, log *slog.Logger) error {
	js := filepath.Join(dir, jetstreamDir)
	if _, err := os.Stat(js); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	aside := filepath.Join(dir, jetstreamDir+".aside-"+time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(js, aside); err != nil {
		return fmt.Errorf("setting the state store aside: %w", err)
	}
	lost := "unknown"
	if m, ok := readManifest(ManifestPath(dir)); ok {
		lost = strconv.FormatUint(m.Entries, 10)
		_ = os.Remove(ManifestPath(dir))
	}
	log.Error("state store set aside: starting afresh", "reason", why, "aside", aside, "entries_lost", lost,
		"what", "pending mails, mail hold-off states and drains; the drains must be made again")
	return nil
}
