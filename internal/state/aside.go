package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/simgate/simgate/internal/durable"
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
// marker file says a start is under way, and how many before it died
// there; Done removes it once the store is open. One start that died is
// no proof against the store (a kill -9 or a power cut within the start's
// window set a healthy store aside, issue 30): only after asideAfter
// starts in a row died on it (out of memory, a panic in its recovery,
// each restarted by systemd) is the store moved aside, to
// jetstream.aside-<time>, and the coordinator starts afresh, with one ERROR
// line, the count of entries lost as the manifest last recorded it, and
// what comes back by itself.

// asideAfter is how many starts in a row must die opening the store
// before it is set aside.
const asideAfter = 2

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
	return durable.Write(path, data, 0o640)
}

// Guard prepares dir's store for a start: a store the last start died on is
// moved aside. Call Done once the store is open (or the start failed
// for a reason of its own).
func Guard(dir string, clustered bool, log *slog.Logger) (*Start, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	marker := filepath.Join(dir, markerFile)
	died := 0
	if data, err := os.ReadFile(marker); err == nil {
		died = diedStarts(string(data))
		why := "the last " + strconv.Itoa(died) + " starts did not finish opening it (the last: " + strings.TrimSpace(string(data)) + ")"
		if died < asideAfter {
			log.Warn("the last start died while opening the state store: opening it again", "starts_died", died,
				"set_aside_after", asideAfter, "marker", strings.TrimSpace(string(data)))
		} else {
			if err := setAside(dir, why, clustered, log); err != nil {
				return nil, err
			}
			died = 0
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	content := fmt.Sprintf("start at %s, pid %d, died before: %d\n", time.Now().UTC().Format(time.RFC3339), os.Getpid(), died)
	if err := os.WriteFile(marker, []byte(content), 0o640); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	return &Start{dir: dir, clustered: clustered, log: log}, nil
}

// diedStarts is how many starts in a row died, from a marker's text: the
// one that wrote it and those it counted ("died before: N"; older markers
// have no count).
func diedStarts(marker string) int {
	_, n, ok := strings.Cut(marker, "died before: ")
	if !ok {
		return 1
	}
	before, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || before < 0 {
		return 1
	}
	return before + 1
}

// Start is a start under way on a guarded store.
type Start struct {
	dir       string
	clustered bool
	log       *slog.Logger
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
	return setAside(s.dir, cause.Error(), s.clustered, s.log)
}

// setAside moves dir's JetStream store aside and says what was lost.
func setAside(dir, why string, clustered bool, log *slog.Logger) error {
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
	what := "pending mails, mail hold-off states and drains: make the drains again"
	if clustered {
		what = "this member's copy of the pending mails, hold-off states and drains: the other members give them back once it joins them (nothing to make again while a majority kept theirs)"
	}
	log.Error("state store set aside: starting afresh", "reason", why, "aside", aside, "entries_lost", lost, "what", what)
	return nil
}
