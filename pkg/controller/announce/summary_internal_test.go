package announce

import (
	"testing"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

func TestPeerSummary(t *testing.T) {
	s := func(m, state, bfd string) v1alpha1.BGPSession {
		return v1alpha1.BGPSession{Manager: m, State: state, BFDState: bfd}
	}
	for _, tc := range []struct {
		name     string
		sessions []v1alpha1.BGPSession
		exclude  string
		want     string
	}{
		{"none", nil, "", "no sessions"},
		{"all up", []v1alpha1.BGPSession{s("n1", "Established", ""), s("n2", "Established", "")}, "", "2/2 Established"},
		// The second replica's session is down: the first item alone
		// (what a printer column over the list shows) says Established.
		{"second down", []v1alpha1.BGPSession{s("n1", "Established", ""), s("n2", "Active", "")}, "", "1/2 Established"},
		{"not configured counts as down", []v1alpha1.BGPSession{s("n1", "NotConfigured", ""), s("n2", "Established", "")}, "", "1/2 Established"},
		{"bfd", []v1alpha1.BGPSession{s("n1", "Established", "Up"), s("n2", "Established", "Down"), s("n3", "Idle", "")}, "", "2/3 Established, BFD 1/2 Up"},
		{"a stopping replica leaves itself out", []v1alpha1.BGPSession{s("n1", "Established", "Up"), s("n2", "Established", "Up")}, "n2", "1/1 Established, BFD 1/1 Up"},
		{"the last one stopping", []v1alpha1.BGPSession{s("n1", "Established", "")}, "n1", "no sessions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := peerSummary(tc.sessions, tc.exclude); got != tc.want {
				t.Errorf("peerSummary = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNodeSummary(t *testing.T) {
	a := func(m, phase string, unprogrammed int32) v1alpha1.EIPNodeAgent {
		return v1alpha1.EIPNodeAgent{Manager: m, Phase: phase, Unprogrammed: unprogrammed}
	}
	for _, tc := range []struct {
		name    string
		agents  []v1alpha1.EIPNodeAgent
		exclude string
		want    string
	}{
		{"none", nil, "", "no managers"},
		{"settled", []v1alpha1.EIPNodeAgent{a("n1", "Up", 0), a("n2", "Up", 0)}, "", "2/2 Up, all programmed"},
		{"one replica lost the agent", []v1alpha1.EIPNodeAgent{a("n1", "Up", 0), a("n2", "Unreachable", 0)}, "", "1/2 Up, all programmed"},
		{"behind on one replica", []v1alpha1.EIPNodeAgent{a("n1", "Up", 0), a("n2", "Up", 3)}, "", "2/2 Up, 3 unprogrammed"},
		{"gone everywhere", []v1alpha1.EIPNodeAgent{a("n1", "Gone", 0), a("n2", "Gone", 0)}, "", "0/2 Up"},
		{"a stopping replica leaves itself out", []v1alpha1.EIPNodeAgent{a("n1", "Up", 0), a("n2", "Up", 4)}, "n2", "1/1 Up, all programmed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nodeSummary(tc.agents, tc.exclude); got != tc.want {
				t.Errorf("nodeSummary = %q, want %q", got, tc.want)
			}
		})
	}
}
