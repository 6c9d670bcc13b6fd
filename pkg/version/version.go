// Package version is the eiplb version a binary was built from.
package version

import "runtime/debug"

// Version is set at build time by the Makefile (`make build`, `make
// images`) from `git describe --always --dirty`:
//
//	go build -ldflags "-X github.com/eiplb/eiplb/pkg/version.Version=v0.1.0"
var Version = ""

// String is Version when the build set it; otherwise, for a plain `go
// build` or `go install`, the module version or the VCS revision Go
// recorded (with "-dirty" when the tree had changes), or "unknown".
func String() string {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(Version, bi)
}

func fromBuild(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi == nil {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return rev + dirty
}
