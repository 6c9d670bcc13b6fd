package cluster

import (
	"os"
	"strings"
	"testing"
)

// TestFRRConfigIsTheDocs: the lab's router (Lab.Up) runs docs/routers/frr.conf
// itself, only with the lab's own lines added; the tests' variants keep
// everything but the neighbors.
func TestFRRConfigIsTheDocs(t *testing.T) {
	b, err := os.ReadFile(RouterConfigFile("frr.conf"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	lab := FRRConfig([]string{"192.168.100.11", "192.168.100.12"}, "password "+SamplePassword, "bfd profile eiplb")
	if got := strings.Replace(lab, labFRRLines, "", 1); got != doc {
		t.Errorf("the lab's router configuration is not docs/routers/frr.conf:\n%s", got)
	}
	if !strings.Contains(lab, "frr defaults datacenter\n"+labFRRLines) {
		t.Errorf("the lab's lines are not right after frr defaults:\n%s", lab)
	}

	one := FRRConfig([]string{"10.0.0.5"}, "bfd profile fast")
	for _, want := range []string{
		" neighbor 10.0.0.5 remote-as 65001\n neighbor 10.0.0.5 bfd profile fast\n neighbor 10.0.0.5 passive\n",
		"  neighbor 10.0.0.5 route-map EIPLB-OUT out\n",
		"  neighbor 10.0.0.5 activate\n",
		"route-map EIPLB-OUT deny 10\n",
		"  maximum-paths 16\n",
	} {
		if !strings.Contains(one, want) {
			t.Errorf("FRRConfig for one manager lacks %q:\n%s", want, one)
		}
	}
	for _, unwanted := range []string{"neighbor 192.168.100.11", "neighbor 192.168.100.12", "neighbor 10.0.0.5 password"} {
		if strings.Contains(one, unwanted) {
			t.Errorf("FRRConfig for one manager has %q:\n%s", unwanted, one)
		}
	}
}
