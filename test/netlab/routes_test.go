//go:build privileged

package netlab

import (
	"reflect"
	"testing"
)

func TestParseRoutes(t *testing.T) {
	in := `[
 {"dst":"default","gateway":"192.168.100.1","dev":"vrtr","flags":[]},
 {"dst":"192.168.100.0/24","dev":"br0","protocol":"kernel","scope":"link","prefsrc":"192.168.100.1","flags":[]},
 {"type":"blackhole","dst":"172.30.0.99","protocol":"bird","flags":[]},
 {"dst":"172.30.0.10","nhid":14,"protocol":"bgp","metric":20,"flags":[],"nexthops":[
   {"gateway":"192.168.100.12","dev":"br0","weight":25,"flags":[]},
   {"gateway":"192.168.100.11","dev":"br0","weight":75,"flags":[]}]},
 {"dst":"172.30.0.11","protocol":"bgp","metric":20,"via":{"family":"inet6","host":"fe80::1"},"dev":"br0","flags":[]}
]`
	got, err := parseRoutes([]byte(in), 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{Prefix: "0.0.0.0/0", NextHops: []NextHop{{"192.168.100.1", 1}}},
		{Prefix: "172.30.0.10/32", Protocol: "bgp", Metric: 20, NextHops: []NextHop{{"192.168.100.11", 75}, {"192.168.100.12", 25}}},
		{Prefix: "172.30.0.11/32", Protocol: "bgp", Metric: 20, NextHops: []NextHop{{"fe80::1", 1}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// Older kernels list the paths of an IPv6 multipath route one by one.
	in6 := `[{"dst":"fd00:30::10","gateway":"fd00:100::12","dev":"br0","protocol":"bgp","metric":20,"flags":[]},
 {"dst":"fd00:30::10","gateway":"fd00:100::11","dev":"br0","protocol":"bgp","metric":20,"flags":[]},
 {"dst":"default","gateway":"fd00:100::1","dev":"vrtr","metric":1024,"flags":[]}]`
	got, err = parseRoutes([]byte(in6), 6)
	if err != nil {
		t.Fatal(err)
	}
	want = []Route{
		{Prefix: "fd00:30::10/128", Protocol: "bgp", Metric: 20, NextHops: []NextHop{{"fd00:100::11", 1}, {"fd00:100::12", 1}}},
		{Prefix: "::/0", Metric: 1024, NextHops: []NextHop{{"fd00:100::1", 1}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got, err := parseRoutes([]byte("[]\n"), 4); err != nil || len(got) != 0 {
		t.Errorf("empty: %v %v", got, err)
	}

	r := Route{Prefix: "172.30.0.10/32", NextHops: []NextHop{{"192.168.100.11", 1}, {"192.168.100.12", 1}}}
	if !Via("192.168.100.12", "192.168.100.11")(r, true) || Via("192.168.100.11")(r, true) || Via("192.168.100.11", "192.168.100.12")(r, false) {
		t.Error("Via does not match as documented")
	}
	if !Absent(Route{}, false) || Absent(r, true) {
		t.Error("Absent does not match as documented")
	}
}
