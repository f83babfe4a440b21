// Package version holds the version both binaries print.
package version

import "runtime/debug"

// Version is set at build time with -ldflags "-X github.com/simgate/simgate/internal/version.Version=v1.2.3".
var Version = ""

// String returns the version, falling back to the module's build information.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
