package alloc

import "testing"

func TestNormalURL(t *testing.T) {
	const base = "https://github.com/cyberbotics/webots/blob/R2025a/projects/w.wbt"
	for _, tc := range []struct{ in, want string }{
		{base, base},
		{"HTTPS://GitHub.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com/CyberBotics/Webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com:443/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com/cyberbotics%2Fwebots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com//cyberbotics//webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com/evil/../cyberbotics/./webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com/cyberbotics/", "https://github.com/cyberbotics/"},
		{"https://example.org:8443/A/B", "https://example.org:8443/A/B"},
		{"webots://x/y", "webots://x/y"},
		{"", ""},
		// Issue 31's spellings of the same repository.
		{"https://github.com./cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com.:443/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com:0443/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://%67ithub.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://ｇｉｔｈｕｂ.ｃｏｍ/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://github。com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://www.github.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"http://github.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https:/github.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https:github.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{`https:\\github.com\cyberbotics\webots/blob/R2025a/projects/w.wbt`, base},
		{" https://github.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"\thttps://github.com/cyberbotics/webots/blob/R2025a/projects/w.wbt", base},
		{"https://github.com:99999/cyberbotics/webots", "unreadable:https://github.com:99999/cyberbotics/webots"},
	} {
		if got := normalURL(tc.in); got != tc.want {
			t.Errorf("normalURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { normalURL(base) }); n != 0 {
		t.Errorf("a normal URL allocates %v times", n)
	}
}

// TestBlockedMatchesAsTheServerReads: a blocked repository written
// otherwise (case, %2F, //, :443, dot segments) is still blocked.
func TestBlockedMatchesAsTheServerReads(t *testing.T) {
	r := New(Options{Servers: []string{"a/1"}, Threshold: 95, Seed: 1})
	rep := report("a/1", 10)
	rep.Sharing = &Sharing{Docker: true, ShareIdle: 50, Blocked: []string{"https://github.com/Evil/"}}
	if err := r.Apply(rep); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"https://github.com/evil/robots/blob/main/w.wbt",
		"HTTPS://GITHUB.COM/EVIL/robots/blob/main/w.wbt",
		"https://github.com:443/evil/robots/blob/main/w.wbt",
		"https://github.com/evil%2Frobots/blob/main/w.wbt",
		"https://github.com//evil/robots/blob/main/w.wbt",
		"https://github.com/cyberbotics/../evil/robots/blob/main/w.wbt",
		// Issue 31: each of these was placed past the block.
		"https://github.com./evil/robots/blob/main/w.wbt",
		"https://github.com.:443/evil/robots/blob/main/w.wbt",
		"https://github.com:0443/evil/robots/blob/main/w.wbt",
		"https://%67ithub.com/evil/robots/blob/main/w.wbt",
		"https://ｇｉｔｈｕｂ.ｃｏｍ/evil/robots/blob/main/w.wbt",
		"https://github。com/evil/robots/blob/main/w.wbt",
		"https://www.github.com/evil/robots/blob/main/w.wbt",
		"http://github.com/evil/robots/blob/main/w.wbt",
		"https:/github.com/evil/robots/blob/main/w.wbt",
		`https:\\github.com\evil\robots/blob/main/w.wbt`,
		" https://github.com/evil/robots/blob/main/w.wbt",
		"\thttps://github.com/evil/robots/blob/main/w.wbt",
		// One that cannot be read at all is blocked where anything is.
		"https://github.com:99999/evil/robots/blob/main/w.wbt",
	} {
		if got, ok := r.Place(Visitor{URL: u}); ok {
			t.Errorf("%s placed on %s past the block", u, got)
		}
		if why := r.Why(u); why != Blocked {
			t.Errorf("%s: refused as %v, want blocked", u, why)
		}
	}
	if _, ok := r.Place(Visitor{URL: "https://github.com/good/robots/blob/main/w.wbt"}); !ok {
		t.Error("a repository not blocked was refused")
	}
}
