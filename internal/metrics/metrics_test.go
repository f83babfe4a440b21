package metrics

import (
	"slices"
	"testing"

	"github.com/simgate/simgate/internal/schema"
)

// TestLeavingTheLineIsARefusal: issue 34. A visitor who leaves the line
// unseated is counted by why; one who gave up, or waited queue.maxWait,
// is turned away too; one whose seat lapsed is not (it had a server).
func TestLeavingTheLineIsARefusal(t *testing.T) {
	for _, tc := range []struct{ why, want string }{
		{"closed", "gave-up"},
		{"max-wait", "waited-too-long"},
		{"lapsed", ""},
	} {
		m := New()
		m.LeftLine(tc.why)
		got := m.TurnedAwayCounts()
		if tc.want == "" && len(got) != 0 || tc.want != "" && (got[tc.want] != 1 || len(got) != 1) {
			t.Errorf("left the line %s: turned away %v, want %q", tc.why, got, tc.want)
		}
	}
}

// TestDropReasonsAreTheWires: every drop reason of the wire contract is a
// series from the start, and no other.
func TestDropReasonsAreTheWires(t *testing.T) {
	want := []string{schema.DropSchema, schema.DropSubject, schema.DropUnknown, schema.DropSize, schema.DropStale,
		schema.DropInternal, schema.DropPermission}
	if !slices.Equal(dropReasons, want) {
		t.Errorf("dropReasons %v, want schema's %v", dropReasons, want)
	}
}
