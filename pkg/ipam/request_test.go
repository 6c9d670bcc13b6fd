package ipam

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseIPs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "192.0.2.1", want: []string{"192.0.2.1"}},
		{in: "2001:db8::1", want: []string{"2001:db8::1"}},
		{in: "192.0.2.1,2001:db8::1", want: []string{"192.0.2.1", "2001:db8::1"}},
		{in: "2001:db8::1,192.0.2.1", want: []string{"2001:db8::1", "192.0.2.1"}},
		{in: "  192.0.2.1 ,\t2001:db8::1  ", want: []string{"192.0.2.1", "2001:db8::1"}},
		{in: "192.0.2.1,", want: []string{"192.0.2.1"}},
		{in: ",,192.0.2.1,,", want: []string{"192.0.2.1"}},
		{in: "2001:DB8:0::0:1", want: []string{"2001:db8::1"}},
		{in: "10.0.0.0", want: []string{"10.0.0.0"}}, // buggy is a pool concern, not a parse error
		{in: "", wantErr: "no address"},
		{in: "  ", wantErr: "no address"},
		{in: ",", wantErr: "no address"},
		{in: "192.0.2.1,192.0.2.2", wantErr: "more than one IPv4"},
		{in: "192.0.2.1,192.0.2.1", wantErr: "more than one IPv4"},
		{in: "2001:db8::1,192.0.2.1,2001:db8::2", wantErr: "more than one IPv6"},
		{in: "127.0.0.1", wantErr: "can't be a load-balancer address"},
		{in: "127.1.2.3", wantErr: "can't be a load-balancer address"},
		{in: "::1", wantErr: "can't be a load-balancer address"},
		{in: "0.0.0.0", wantErr: "can't be a load-balancer address"},
		{in: "::", wantErr: "can't be a load-balancer address"},
		{in: "224.0.0.1", wantErr: "can't be a load-balancer address"},
		{in: "239.255.255.250", wantErr: "can't be a load-balancer address"},
		{in: "ff02::1", wantErr: "can't be a load-balancer address"},
		{in: "192.0.2.1,::1", wantErr: "can't be a load-balancer address"},
		{in: "garbage", wantErr: "not an IP address"},
		{in: "192.0.2.1;2001:db8::1", wantErr: "not an IP address"},
		{in: "192.0.2.1 2001:db8::1", wantErr: "not an IP address"},
		{in: "192.0.2.0/24", wantErr: "not an IP address"},
		{in: "fe80::1%eth0", wantErr: "not an IP address"},
		{in: "::ffff:192.0.2.1", wantErr: "not an IP address"},
		{in: "192.0.2.1,nope", wantErr: "not an IP address"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseIPs(tc.in)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseIPs(%q) = %v, want error containing %q", tc.in, got, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseIPs(%q) error %q, want it to contain %q", tc.in, err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("ParseIPs(%q) returned %v with an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseIPs(%q): %v", tc.in, err)
			}
			var want []netip.Addr
			for _, s := range tc.want {
				want = append(want, mustAddr(t, s))
			}
			if !slices.Equal(got, want) {
				t.Errorf("ParseIPs(%q) = %v, want %v", tc.in, got, want)
			}
		})
	}
}

func TestParseSharingKey(t *testing.T) {
	for _, tc := range []struct {
		ns, key string
		want    string // "" means an error is expected
	}{
		{"default", "web", "default/web"},
		{"team-a", "shared-1", "team-a/shared-1"},
		{"team-a", "Shared.Key_1", "team-a/Shared.Key_1"},
		{"team-a", "a", "team-a/a"},
		{"team-a", "example.com/web", "team-a/example.com/web"},
		{"team-a", strings.Repeat("k", 63), "team-a/" + strings.Repeat("k", 63)},
		{"team-a", "", ""},
		{"team-a", " web", ""},
		{"team-a", "web ", ""},
		{"team-a", "-web", ""},
		{"team-a", "web-", ""},
		{"team-a", "we b", ""},
		{"team-a", "web/", ""},
		{"team-a", "/web", ""},
		{"team-a", "a/b/c", ""},
		{"team-a", "web!", ""},
		{"team-a", strings.Repeat("k", 64), ""},
		{"team-a", "Bad_Prefix/web", ""},
	} {
		got, err := ParseSharingKey(tc.ns, tc.key)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseSharingKey(%q, %q) = %q, want an error", tc.ns, tc.key, got)
			} else if !strings.Contains(err.Error(), "invalid") {
				t.Errorf("ParseSharingKey(%q, %q) error %q, want it to say invalid", tc.ns, tc.key, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSharingKey(%q, %q): %v", tc.ns, tc.key, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseSharingKey(%q, %q) = %q, want %q", tc.ns, tc.key, got, tc.want)
		}
		if keyName(got) != tc.key {
			t.Errorf("keyName(%q) = %q, want %q", got, keyName(got), tc.key)
		}
	}
	// Scoping: the same key in two namespaces gives two keys.
	a, _ := ParseSharingKey("ns1", "web")
	b, _ := ParseSharingKey("ns2", "web")
	if a == b {
		t.Errorf("key web is %q in both ns1 and ns2", a)
	}
}

func TestParsePoolName(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"default", true},
		{"pool-a", true},
		{"pool.example.com", true},
		{"a", true},
		{"0pool", true},
		{strings.Repeat("a", 253), true},
		{"", false},
		{"Pool", false},
		{"pool_a", false},
		{"-pool", false},
		{"pool-", false},
		{"pool a", false},
		{"pool/a", false},
		{"pool..a", false},
		{strings.Repeat("a", 254), false},
	} {
		got, err := ParsePoolName(tc.in)
		if tc.ok {
			if err != nil || got != tc.in {
				t.Errorf("ParsePoolName(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.in)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParsePoolName(%q) = %q, want an error", tc.in, got)
		} else if !strings.Contains(err.Error(), "invalid") {
			t.Errorf("ParsePoolName(%q) error %q, want it to say invalid", tc.in, err)
		}
	}
}

func TestRequestSharingAndCurrent(t *testing.T) {
	r := Request{}
	if r.Sharing() {
		t.Errorf("Sharing() = true for an empty key")
	}
	r.SharingKey = "ns/k"
	if !r.Sharing() {
		t.Errorf("Sharing() = false for key ns/k")
	}
	r.Current = []netip.Addr{mustAddr(t, "2001:db8::1"), mustAddr(t, "192.0.2.1")}
	if got := r.current(IPv4); got != mustAddr(t, "192.0.2.1") {
		t.Errorf("current(IPv4) = %v", got)
	}
	if got := r.current(IPv6); got != mustAddr(t, "2001:db8::1") {
		t.Errorf("current(IPv6) = %v", got)
	}
	r.Current = r.Current[:1]
	if got := r.current(IPv4); got.IsValid() {
		t.Errorf("current(IPv4) = %v, want invalid", got)
	}
}
