package announce_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	"github.com/eiplb/eiplb/pkg/bgp/bgptest"
	"github.com/eiplb/eiplb/pkg/bgp/route"
	announcectrl "github.com/eiplb/eiplb/pkg/controller/announce"
)

// downSpeaker is a speaker whose session to every configured router is in
// the state set (a router that refuses this replica: "Active").
type downSpeaker struct {
	mu    sync.Mutex
	peers []route.Peer
	state string
}

func (s *downSpeaker) SetPaths(string, []route.Path) error { return nil }
func (s *downSpeaker) SetPeers(_ context.Context, peers []route.Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peers = peers
	return nil
}
func (s *downSpeaker) PeerStates(context.Context) ([]route.PeerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []route.PeerState
	for _, p := range s.peers {
		st := route.PeerState{Address: p.Address, State: s.state}
		if s.state != "Established" {
			st.LastError = "dial tcp: connect: connection refused"
		}
		out = append(out, st)
	}
	return out, nil
}
func (s *downSpeaker) OnUpdate(func(added, withdrawn, total int, at time.Time)) {}
func (s *downSpeaker) set(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
}

// startReplicaWith runs the announcer of a second manager replica on node
// with speaker (the same controllers and status writers as a manager's).
func startReplicaWith(t *testing.T, node string, speaker announcectrl.Speaker) (stop func()) {
	t.Helper()
	scheme, err := apis.NewScheme()
	must(t, err)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	must(t, err)
	must(t, announcectrl.Setup(mgr, speaker, announcectrl.Options{NodeName: node, Namespace: "eiplb-system", StatusInterval: 100 * time.Millisecond}))
	c, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(c) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// TestStatusSummary: with two manager replicas, a session that is down on
// the second one shows in status.summary (the first column of kubectl get
// bgppeers), where the first session entry alone said Established; it
// follows the second replica's session up and down again, and when that
// replica stops, its entry and its share of the summary go.
func TestStatusSummary(t *testing.T) {
	r := bgptest.New(t, 65001)
	n1, n2 := unique("sum-a"), unique("sum-b")
	createNode(t, n1, "192.168.100.21", true)
	createNode(t, n2, "192.168.100.22", true)
	peer := createPeer(t, r.Port)
	startManager(t, n1) // a real speaker: Established with the router
	down := &downSpeaker{state: "Active"}
	stop2 := startReplicaWith(t, n2, down)

	wait := func(want string, sessions func([]v1alpha1.BGPSession) string) {
		t.Helper()
		eventually(t, 20*time.Second, func() string {
			got := &v1alpha1.BGPPeer{}
			must(t, k8s.Get(ctx, client.ObjectKeyFromObject(peer), got))
			if msg := sessions(got.Status.Sessions); msg != "" {
				return msg
			}
			if got.Status.Summary != want {
				return fmt.Sprintf("summary %q, want %q (sessions %+v)", got.Status.Summary, want, got.Status.Sessions)
			}
			return ""
		})
	}
	states := func(want map[string]string) func([]v1alpha1.BGPSession) string {
		return func(ss []v1alpha1.BGPSession) string {
			got := map[string]string{}
			for _, s := range ss {
				got[s.Manager] = s.State
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Sprintf("sessions %v, want %v", got, want)
			}
			return ""
		}
	}

	wait("1/2 Established", states(map[string]string{n1: "Established", n2: "Active"}))
	down.set("Established")
	wait("2/2 Established", states(map[string]string{n1: "Established", n2: "Established"}))
	down.set("Active")
	wait("1/2 Established", states(map[string]string{n1: "Established", n2: "Active"}))
	stop2()
	wait("1/1 Established", states(map[string]string{n1: "Established"}))

	// What kubectl get prints: the API server's table, whose first
	// column after the name is the summary.
	hc, err := rest.HTTPClientFor(cfg)
	must(t, err)
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/apis/eiplb.io/v1alpha1/bgppeers/"+peer.Name, nil)
	must(t, err)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("GET %s: %s: %v: %s", req.URL, resp.Status, err, body)
	}
	if len(table.ColumnDefinitions) < 2 || table.ColumnDefinitions[1].Name != "Sessions" || len(table.Rows) != 1 ||
		fmt.Sprint(table.Rows[0].Cells[1]) != "1/1 Established" {
		t.Errorf("kubectl get bgppeers: columns %+v, rows %+v; want Sessions first, 1/1 Established", table.ColumnDefinitions, table.Rows)
	}
}
