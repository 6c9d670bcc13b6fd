package route

import "testing"

func TestParseCommunities(t *testing.T) {
	for in, want := range map[string]uint32{"65000:100": 65000<<16 | 100, "0:0": 0, "no-export": 0xFFFFFF01, "blackhole": 0xFFFF029A} {
		got, err := ParseCommunity(in)
		if err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"65536:1", "1:65536", "x:1", "100", ""} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
	if l, err := ParseLargeCommunity("4200000000:1:2"); err != nil || l != (LargeCommunity{4200000000, 1, 2}) {
		t.Errorf("ParseLargeCommunity = %v, %v", l, err)
	}
	for _, bad := range []string{"1:2", "4294967296:1:1", "a:b:c"} {
		if _, err := ParseLargeCommunity(bad); err == nil {
			t.Errorf("ParseLargeCommunity(%q) accepted", bad)
		}
	}
}
