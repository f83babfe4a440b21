package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no document panics the loader; a refusal is an *Error, and an
// accepted configuration is one validate accepts again.
// Seeds: testdata/fuzz/FuzzParse, the seed's session.json and the ones below.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "session.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"nats": {"listen": "0.0.0.0:4222", "users": [{"user": "a", "password": "x", "role": "agent", "servers": ["a/1"]}]}}`))
	f.Add([]byte(`{"http": {"trustedProxies": ["10.0.0.0/8"], "sessionRate": 0}, "mail": {"hysteresis": 5}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || err.Error() == "" {
				t.Fatalf("refusal is not a *Error: %#v", err)
			}
			return
		}
		if c.Port < 0 || c.Port > 65535 || c.NATS.Listen == "" || c.LoadThreshold <= 0 {
			t.Fatalf("accepted an invalid configuration: %+v", c)
		}
		c.Warnings = nil
		if err := c.validate(); err != nil {
			t.Fatalf("accepted, then refused on a second look: %v", err)
		}
	})
}
