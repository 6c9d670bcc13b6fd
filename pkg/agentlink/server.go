package agentlink

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Server is the agent's side: it streams the programmed set to every
// connected manager.
type Server struct {
	node      string
	boot      string
	heartbeat time.Duration
	log       logr.Logger

	mu         sync.Mutex
	programmed map[string]Programmed
	conns      map[*serverConn]struct{}
	draining   bool
	// In a drain: the managers waited for (by the name in their hello:
	// connected when the drain began or since) and those that acknowledged.
	// A manager whose connection drops stays waited for until it comes
	// back and acknowledges, or the drain times out.
	drainWait, drainAcked map[string]bool
	changed               chan struct{} // closed and replaced when conns or acks change
}

type serverConn struct {
	c       net.Conn
	manager string
	wake    chan struct{}       // size 1
	dirty   map[string]struct{} // keys to send; guarded by Server.mu
	full    bool                // send everything next
	acked   bool
}

// NewServer returns the server of node's agent. heartbeat 0 means
// DefaultHeartbeat.
func NewServer(node string, heartbeat time.Duration, log logr.Logger) *Server {
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeat
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Server{
		node: node, boot: hex.EncodeToString(b), heartbeat: heartbeat, log: log,
		programmed: map[string]Programmed{}, conns: map[*serverConn]struct{}{}, changed: make(chan struct{}),
	}
}

// SetProgrammed records what is programmed for a Service (nil: nothing,
// the Service is gone) and tells the managers, only when it changed: the
// agent calls it on every endpoint change, and each message costs every
// manager an announcer reconcile of the Service.
func (s *Server) SetProgrammed(key string, p *Programmed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.programmed[key]
	if p == nil {
		if !had {
			return
		}
		delete(s.programmed, key)
	} else {
		if had && old.equal(*p) {
			return
		}
		s.programmed[key] = *p
	}
	for c := range s.conns {
		c.dirty[key] = struct{}{}
		c.poke()
	}
}

// Programmed returns a copy of the programmed set.
func (s *Server) Programmed() map[string]Programmed {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Programmed, len(s.programmed))
	for k, v := range s.programmed {
		out[k] = v
	}
	return out
}

// Managers returns how many managers are connected.
func (s *Server) Managers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (c *serverConn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Serve accepts managers on ln until ctx ends. The agent starts serving only
// once its rules are in place: a refused connection before that reads as
// "agent process not there" to the managers, which keep the node as a next
// hop only within the grace period, and only with what an earlier agent
// process reported.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.closeAll()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.closeAll()
			return err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c := &serverConn{c: nc, wake: make(chan struct{}, 1), dirty: map[string]struct{}{}, full: true}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.notifyLocked()
		s.mu.Unlock()
		c.poke()
		wg.Add(2)
		go func() { defer wg.Done(); s.write(ctx, c) }()
		go func() { defer wg.Done(); s.read(c) }()
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.c.Close()
	}
}

func (s *Server) drop(c *serverConn) {
	_ = c.c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.notifyLocked()
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// read takes the manager's hello and drain acknowledgements.
func (s *Server) read(c *serverConn) {
	defer s.drop(c)
	sc := bufio.NewScanner(c.c)
	for sc.Scan() {
		var m managerMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			s.log.Info("Dropping a manager connection: bad message", "remote", c.c.RemoteAddr().String(), "error", err.Error())
			return
		}
		s.mu.Lock()
		if m.Manager != "" {
			c.manager = m.Manager
			if s.draining {
				s.drainWait[c.manager] = true
			}
		}
		if m.Drained && s.draining && !c.acked {
			c.acked = true
			if c.manager != "" {
				s.drainAcked[c.manager] = true
			}
			s.notifyLocked()
		}
		s.mu.Unlock()
	}
}

// write sends the programmed set, then changes and heartbeats.
func (s *Server) write(ctx context.Context, c *serverConn) {
	defer s.drop(c)
	enc := json.NewEncoder(c.c)
	t := time.NewTicker(s.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-t.C:
		}
		s.mu.Lock()
		m := agentMsg{Draining: s.draining}
		if c.full {
			m.Node, m.Boot, m.Full = s.node, s.boot, true
			m.Set = make(map[string]Programmed, len(s.programmed))
			for k, v := range s.programmed {
				m.Set[k] = v
			}
			c.full = false
			clear(c.dirty)
		} else if len(c.dirty) > 0 {
			m.Set = map[string]Programmed{}
			for k := range c.dirty {
				if v, ok := s.programmed[k]; ok {
					m.Set[k] = v
				} else {
					m.Del = append(m.Del, k)
				}
			}
			clear(c.dirty)
		}
		s.mu.Unlock()
		// A manager that can't take a message within a few heartbeats is
		// gone; it reconnects and gets everything again.
		_ = c.c.SetWriteDeadline(time.Now().Add(10 * s.heartbeat))
		if err := enc.Encode(&m); err != nil {
			return
		}
		t.Reset(s.heartbeat)
	}
}

// Drain tells the managers the node is being drained and waits until every
// manager connected when the drain began, or connecting during it, has
// acknowledged that its paths no longer use the node, or ctx ends. A
// manager whose connection drops meanwhile has not acknowledged: it is
// waited for until it reconnects (its tracker then sees the drain again)
// and acknowledges. Drain returns the managers that did not acknowledge
// ("" for a connection that never named its manager).
func (s *Server) Drain(ctx context.Context) []string {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		s.drainWait, s.drainAcked = map[string]bool{}, map[string]bool{}
	}
	for c := range s.conns {
		if c.manager != "" {
			s.drainWait[c.manager] = true
		}
		c.poke()
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		var missing []string
		for name := range s.drainWait {
			if !s.drainAcked[name] {
				missing = append(missing, name)
			}
		}
		for c := range s.conns {
			if c.manager == "" && !c.acked {
				missing = append(missing, c.manager)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			slices.Sort(missing)
			return missing
		case <-ch:
		}
	}
}
