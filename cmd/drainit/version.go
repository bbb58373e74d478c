package main

import "runtime/debug"

// version is set by a release build: -ldflags "-X main.version=v1.2.3".
var version string

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
