package alloc

import "testing"

// TestRepositoryAwarePlacement: PROTOCOL §1.1 on the registry.
func TestRepositoryAwarePlacement(t *testing.T) {
	const (
		cyber = "https://github.com/cyberbotics/webots/blob/R2025a/projects/worlds/e-puck.wbt"
		other = "https://github.com/someone/robots/blob/main/worlds/arm.wbt"
		evil  = "https://github.com/evil/thing/blob/main/worlds/x.wbt"
	)
	dedicated := &Sharing{Allowed: []string{"https://github.com/cyberbotics/"}}
	shareA := &Sharing{Docker: true, ShareIdle: 50}
	shareB := &Sharing{Docker: true, ShareIdle: 70, Blocked: []string{"https://github.com/evil/"}}
	type srv struct {
		name string
		load float64
		sh   *Sharing
	}
	tests := []struct {
		name    string
		servers []srv
		url     string
		want    string  // "" for a refusal
		why     Refusal // of the refusal
	}{
		{"dedicated first, though more loaded", []srv{{"ded/1", 60, dedicated}, {"a/1", 10, shareA}}, cyber, "ded/1", 0},
		{"a server with no policy runs every world", []srv{{"plain/1", 30, nil}, {"ded/1", 60, dedicated}}, cyber, "plain/1", 0},
		{"shared idle time: the most room", []srv{{"a/1", 20, shareA}, {"b/1", 35, shareB}, {"ded/1", 5, dedicated}}, other, "b/1", 0},
		{"blocked on one, shared by the other", []srv{{"a/1", 20, shareA}, {"b/1", 10, shareB}}, evil, "a/1", 0},
		{"above its shareIdleTime a server takes no other world", []srv{{"a/1", 55, shareA}, {"ded/1", 5, dedicated}}, other, "", Busy},
		{"blocked everywhere", []srv{{"b/1", 10, shareB}, {"c/1", 10, &Sharing{Blocked: []string{"https://github.com/evil/"}}}}, evil, "", Blocked},
		{"nobody shares its idle time", []srv{{"ded/1", 5, dedicated}, {"nodock/1", 5, &Sharing{ShareIdle: 50}}}, other, "", NotShared},
		{"no URL: lowest load, policies aside", []srv{{"ded/1", 5, dedicated}, {"a/1", 20, shareA}}, "", "ded/1", 0},
		{"an older client's URL: as without", []srv{{"ded/1", 5, dedicated}, {"a/1", 20, shareA}}, "webots://x/y.wbt", "ded/1", 0},
		{"no policy anywhere: as before", []srv{{"p/1", 40, nil}, {"q/1", 20, nil}}, other, "q/1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var names []string
			for _, s := range tt.servers {
				names = append(names, s.name)
			}
			r, _ := newReg(t, names...)
			for _, s := range tt.servers {
				rep := report(s.name, s.load)
				rep.Sharing = s.sh
				if err := r.Apply(rep); err != nil {
					t.Fatal(err)
				}
			}
			peek, _ := r.Peek(tt.url)
			got, ok := r.Place(Visitor{URL: tt.url})
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("Place = %q %v, want %q", got, ok, tt.want)
			}
			if peek != tt.want {
				t.Errorf("Peek = %q, want %q (HEAD must name what GET would)", peek, tt.want)
			}
			if !ok {
				if why := r.Why(tt.url); why != tt.why {
					t.Errorf("Why = %v, want %v", why, tt.why)
				}
			}
		})
	}
}
