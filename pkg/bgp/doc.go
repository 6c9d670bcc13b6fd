// Package bgp embeds a GoBGP v4 speaker behind eiplb's own types (package
// route). Callers hand it the full desired set of peers and, per owner (a
// Service), the full desired set of paths; the package diffs against what
// GoBGP holds and sends only the difference. No gRPC listener is ever
// started. It is the only package that imports GoBGP (besides its test
// helpers in bgptest).
package bgp
