//go:build privileged

package netlab

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
)

// T is what netlab (and the labs built on it) needs from its owner: a
// *testing.T or *testing.B, or a Program, so that a long-running program
// (the lab of `make demo`) can build the same topology a test builds.
type T interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
}

// Program is a T for a program rather than a test. Fatal and Skip end the
// calling goroutine as in a test (runtime.Goexit) after marking the program
// failed; Run runs the program's body, then its cleanups in reverse order,
// also when the body failed, and returns the first failure.
type Program struct {
	log io.Writer

	mu       sync.Mutex
	cleanups []func()
	err      error
}

// NewProgram returns a Program that writes Logf lines to log.
func NewProgram(log io.Writer) *Program { return &Program{log: log} }

var _ T = (*Program)(nil)

func (p *Program) Helper() {}

func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

func (p *Program) fail(msg string) {
	p.mu.Lock()
	if p.err == nil {
		p.err = fmt.Errorf("%s", msg)
	}
	p.mu.Unlock()
	fmt.Fprintln(p.log, msg)
}

func (p *Program) Errorf(format string, args ...any) { p.fail(fmt.Sprintf(format, args...)) }

func (p *Program) Fatal(args ...any) { p.fail(fmt.Sprint(args...)); runtime.Goexit() }

func (p *Program) Fatalf(format string, args ...any) {
	p.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (p *Program) Logf(format string, args ...any) { fmt.Fprintf(p.log, format+"\n", args...) }

// Skip fails the program: what makes a test skip (not root, no ip command)
// makes a program unable to run.
func (p *Program) Skip(args ...any) { p.Fatal(args...) }

func (p *Program) Skipf(format string, args ...any) { p.Fatalf(format, args...) }

// Run runs body in a goroutine of its own (so Fatal can end it), then the
// cleanups, newest first. It returns the first failure, if any.
func (p *Program) Run(body func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		body()
	}()
	<-done
	p.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Close runs the cleanups registered so far, newest first, once each.
func (p *Program) Close() {
	for {
		p.mu.Lock()
		if len(p.cleanups) == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[len(p.cleanups)-1]
		p.cleanups = p.cleanups[:len(p.cleanups)-1]
		p.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "cleanup panicked: %v\n", r)
				}
			}()
			f()
		}()
	}
}
