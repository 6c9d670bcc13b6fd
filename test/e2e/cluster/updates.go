//go:build privileged

package cluster

import (
	"bufio"
	"os"
	"regexp"
	"time"
)

// rcvdRE matches FRR's "debug bgp updates in" line for one received prefix
// ("... rcvd 10.200.0.0/32 with addpath ID 3 IPv4 unicast"; withdrawals
// read "rcvd UPDATE about ... -- withdrawn" and don't match). The log needs
// `log timestamp precision 3`.
var rcvdRE = regexp.MustCompile(`^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}) BGP: .* rcvd (\d+\.\d+\.\d+\.\d+)/32 with addpath`)

// UpdatesReceived parses bgpd's log for when the router received each
// IPv4 /32 path (an UPDATE carrying one next hop of it, on the wire): every
// time, oldest first, by address.
func UpdatesReceived(logPath string) (map[string][]time.Time, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]time.Time{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := rcvdRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ts, err := time.ParseInLocation("2006/01/02 15:04:05.000", m[1], time.Local)
		if err != nil {
			continue
		}
		out[m[2]] = append(out[m[2]], ts)
	}
	return out, sc.Err()
}
