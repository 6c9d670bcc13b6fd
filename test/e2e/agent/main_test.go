//go:build privileged

// Package agent_test proves what is particular to the node agent with
// everything real (the lab of package cluster: FRR, three node namespaces
// running eiplb-agent, two of them eiplb-manager, pods answering HTTP, a
// client beyond the router): no next hop before the rules are in, an
// unserved port refused, repair after a flush, drain. The scenarios every
// component takes part in are in test/e2e/scenarios.
package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eiplb/eiplb/test/e2e/cluster"
	"github.com/eiplb/eiplb/test/netlab"
)

var api *cluster.API

func TestMain(m *testing.M) { cluster.Main(m, "agent", func(a *cluster.API) { api = a }) }

const grace = 2 * time.Second

// topo is the lab with this package's flags: a faster heartbeat and a
// shorter grace period.
type topo struct{ *cluster.Lab }

func newTopo(t *testing.T) topo {
	return topo{cluster.NewLab(t, api, cluster.LabOptions{
		ManagerArgs: []string{"--agent-grace=" + grace.String()},
		AgentArgs:   []string{"--heartbeat=50ms"},
	})}
}

func nodeIP(i int) string { return cluster.NodeIP(i) }

func (tp topo) startManagers() {
	tp.StartManager(1)
	tp.StartManager(2)
}

func mustExec(t *testing.T, ns *netlab.NS, args ...string) {
	t.Helper()
	if out, err := ns.Exec(context.Background(), args...); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func via(nodes ...int) func(netlab.Route, bool) bool { return cluster.Via(false, nodes...) }
