// Package netlab builds throw-away network labs out of Linux network
// namespaces for privileged integration tests: namespaces joined by veth
// pairs and bridges, real BGP routers (FRR, BIRD 2) running inside them, and
// the router's kernel FIB as the ground truth of what a BGP speaker achieved.
//
// Every file of the package except this one carries the build tag
// "privileged", so the package is empty in a normal build (the cleanup
// program in test/netlab/cleanup builds without it); tests use it with
//
//	go test -tags privileged ./...
//
// and must run as root (New skips the test otherwise).
//
// A typical topology is one router namespace with a bridge and N node
// namespaces attached to it:
//
//	lab := netlab.New(t)
//	rtr := lab.Namespace("rtr")
//	lab.Bridge(rtr, "br0", "192.168.100.1/24", "fd00:100::1/64")
//	node1 := lab.Namespace("node1")
//	lab.LinkToBridge(node1, []string{"192.168.100.11/24", "fd00:100::11/64"}, rtr, "br0")
//	frr := lab.StartFRR(rtr, frrConfig)
//	...
//	rtr.WaitRoute(t, "172.30.0.10/32", 10*time.Second, netlab.Via("192.168.100.11"))
//
// Names are unique per run: every namespace is called
// "eiplbt-<lab id>-<name>", where the lab id is random, so parallel runs do
// not clash. The lab's files (router configurations, logs, control sockets)
// live in /run/eiplbt/<lab id>/. A t.Cleanup registered by New removes
// everything (processes, namespaces, files), also when the test fails. When
// a test process dies without running its cleanups (SIGKILL, a crash, a
// timeout panic), run the program in test/netlab/cleanup to remove the
// leftovers:
//
//	sudo go run ./test/netlab/cleanup
//
// Only addresses inside namespaces the lab created are ever configured; the
// root namespace is not touched.
package netlab
