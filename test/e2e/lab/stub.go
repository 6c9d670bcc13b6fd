//go:build !privileged

// Command lab is `make demo` / `make lab-up`; it builds only with the
// privileged tag (it creates network namespaces), see main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "lab: build with -tags privileged and run as root; use `make demo` or `make lab-up`")
	os.Exit(2)
}
