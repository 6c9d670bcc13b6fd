package announce

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/pkg/bgp/route"
)

// failingSpeaker is a Speaker whose PeerStates fails (the rest is unused).
type failingSpeaker struct {
	Speaker
	err error
}

func (f failingSpeaker) PeerStates(context.Context) ([]route.PeerState, error) { return nil, f.err }

// errorLog collects the error lines of a logger.
type errorLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *errorLog) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		if strings.Contains(args, `"error"`) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.lines = append(l.lines, args)
		}
	}, funcr.Options{})
}

// TestStatusWriterFailuresCountedAndLoggedOnce: a failing step of the
// session status writer is counted on every tick and logged once, until it
// succeeds or fails differently. Before, write returned silently when the
// speaker or the BGPPeer list failed.
func TestStatusWriterFailuresCountedAndLoggedOnce(t *testing.T) {
	var logs errorLog
	ctx := logr.NewContext(context.Background(), logs.logger())
	w := &statusWriter{speaker: failingSpeaker{err: errors.New("speaker stopped")}}
	speaker0 := failures(t, stepSpeaker)
	for range 3 {
		w.write(ctx)
	}
	if got := failures(t, stepSpeaker) - speaker0; got != 3 {
		t.Errorf("speaker failures counted %v times, want 3", got)
	}
	if len(logs.lines) != 1 || !strings.Contains(logs.lines[0], "speaker stopped") {
		t.Errorf("logged %q, want the speaker's error once", logs.lines)
	}

	// Another step fails: counted, and logged once as well.
	scheme, err := apis.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("API server unreachable")
		},
	}).Build()
	w.speaker, w.client = failingSpeaker{}, c
	list0 := failures(t, stepList)
	for range 2 {
		w.write(ctx)
	}
	if got := failures(t, stepList) - list0; got != 2 {
		t.Errorf("list failures counted %v times, want 2", got)
	}
	if len(logs.lines) != 2 || !strings.Contains(logs.lines[1], "API server unreachable") {
		t.Errorf("logged %q, want the list error once after the speaker's", logs.lines)
	}
}

// failures is the count of a step's failures so far.
func failures(t *testing.T, step string) float64 {
	t.Helper()
	var m dto.Metric
	if err := statusWriteErrors.WithLabelValues(step).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
