package bgp

import (
	"testing"
	"time"
)

func TestCountDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := time.Second
	for _, c := range []struct {
		name             string
		now, at, changed time.Time
		want             bool
	}{
		{"never counted", at(0), time.Time{}, at(0), true},
		{"counted after the change settled", at(10 * s), at(5 * s), at(1 * s), false},
		{"counted after the change settled, due again after CountsEvery", at(36 * s), at(5 * s), at(1 * s), true},
		{"a change, not settled yet", at(11 * s), at(8 * s), at(10 * s), false},
		{"a change, not settled yet, last count 5 s old", at(11 * s), at(6 * s), at(10 * s), false},
		{"a change, settled", at(12 * s), at(5 * s), at(10 * s), true},
		{"counted as the change happened (session just up): count again once settled", at(12 * s), at(10 * s), at(10 * s), true},
		{"counted as the change happened, not settled yet", at(11 * s), at(10 * s), at(10 * s), false},
		{"churn: changed at every call, last count 29 s ago", at(39 * s), at(10 * s), at(39 * s), false},
		{"churn: changed at every call, last count CountsEvery ago", at(40 * s), at(10 * s), at(40 * s), true},
	} {
		if got := countDue(c.now, c.at, c.changed); got != c.want {
			t.Errorf("%s: countDue = %v, want %v", c.name, got, c.want)
		}
	}
}
