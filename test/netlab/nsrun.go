//go:build privileged

package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// Run runs fn on the calling goroutine with its OS thread switched into the
// namespace, and switches the thread back afterwards. The goroutine stays
// locked to its thread while fn runs (runtime.LockOSThread).
//
// Only the thread is switched: what fn does itself (creating a socket with
// net.Listen, net.Dial, net.ListenPacket, opening a netlink socket, reading
// /proc/sys/net/...) happens in the namespace, and sockets keep the
// namespace they were created in after Run returns. Goroutines that fn
// starts run on other threads, in the test's own namespace. In particular a
// library that dials from its own goroutines (GoBGP dials its peers from its
// FSM goroutines) does not dial from the namespace because it was started in
// Run; see Go for a way to run a long-lived goroutine in the namespace.
//
// If the thread cannot be switched back (it never happened so far), the test
// fails and the goroutine ends still locked, so the Go runtime throws the
// thread away instead of reusing it.
func (ns *NS) Run(t T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	restore, err := ns.enter()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("netlab: %v", err)
	}
	defer func() {
		if err := restore(); err != nil {
			// Keep the thread locked: the goroutine ends (Fatalf) and the
			// runtime terminates the thread with it.
			t.Fatalf("netlab: %v", err)
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// Go starts fn in a new goroutine whose OS thread lives in the namespace for
// the goroutine's whole life; the thread is thrown away when fn returns (it
// is never unlocked). It returns once the goroutine is in the namespace; the
// channel is closed when fn has returned.
//
// Use it for a loop that creates sockets over time, e.g. GoBGP's
// (*server.BgpServer).Serve: GoBGP creates its BGP listeners in the Serve
// goroutine when StartBgp is called, so with
//
//	ns.Go(t, s.Serve)
//	s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{ListenPort: 179, ListenAddresses: []string{"192.168.100.11"}, ...}})
//
// the speaker listens inside the namespace and a router that dials it (the
// default for an FRR or BIRD neighbor) gets a session whose socket lives in
// the namespace. GoBGP's own outgoing connections are dialed from other
// goroutines and stay in the test's namespace.
func (ns *NS) Go(t T, fn func()) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	entered := make(chan error, 1)
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if _, err := ns.enter(); err != nil {
			entered <- err
			return
		}
		entered <- nil
		fn()
	}()
	if err := <-entered; err != nil {
		t.Fatalf("netlab: %v", err)
	}
	return done
}

// Listen is net.Listen with the socket created in the namespace.
func (ns *NS) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := ns.do(func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// ListenPacket is net.ListenPacket with the socket created in the namespace.
func (ns *NS) ListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := ns.do(func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// Dial is net.Dialer.DialContext with the socket created in the namespace.
// address must hold an IP literal (no name resolution happens in the lab).
func (ns *NS) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// do runs fn on a fresh goroutine locked to a thread switched into the
// namespace and waits for it. The thread is switched back and reused only if
// that works, else it is thrown away.
func (ns *NS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restore, err := ns.enter()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if rerr := restore(); rerr != nil {
			errc <- errors.Join(err, rerr)
			return // still locked: the thread is discarded
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// enter switches the calling thread, which must be locked, into the
// namespace and returns a function that switches it back.
func (ns *NS) enter() (restore func() error, err error) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	target, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(orig)
		return nil, fmt.Errorf("open namespace %s: %w", ns.Name, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		return nil, fmt.Errorf("enter namespace %s: %w", ns.Name, err)
	}
	return func() error {
		defer unix.Close(orig)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("leave namespace %s: %w", ns.Name, err)
		}
		return nil
	}, nil
}
