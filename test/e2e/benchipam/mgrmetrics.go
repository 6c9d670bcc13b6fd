package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// mgrMetrics is a subset of a manager's /metrics: sums by "name{labels}"
// with only the labels that matter here.
type mgrMetrics map[string]float64

var keptLabels = map[string]bool{"controller": true, "result": true, "verb": true, "method": true, "code": true, "name": true}

var keptMetrics = []string{
	"controller_runtime_reconcile_time_seconds_sum", "controller_runtime_reconcile_time_seconds_count",
	"controller_runtime_reconcile_total",
	"rest_client_request_duration_seconds_sum", "rest_client_request_duration_seconds_count",
	"rest_client_requests_total",
	"workqueue_queue_duration_seconds_sum", "workqueue_queue_duration_seconds_count",
}

// scrapeManager reads a manager's /metrics (-manager-metrics).
func scrapeManager(ctx context.Context, port int) (mgrMetrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := mgrMetrics{}
	for _, line := range strings.Split(string(body), "\n") {
		name, rest, _ := strings.Cut(line, "{")
		if strings.HasPrefix(line, "#") || !contains(keptMetrics, name) {
			continue
		}
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[end+1:]), 64)
		if err != nil {
			continue
		}
		var labels []string
		for _, m := range labelRE.FindAllStringSubmatch(rest[:end], -1) {
			if keptLabels[m[1]] {
				labels = append(labels, m[1]+"="+m[2])
			}
		}
		sort.Strings(labels)
		out[name+"{"+strings.Join(labels, ",")+"}"] += v
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// summary condenses the IPAM controller's numbers: reconciles by result,
// mean reconcile and queue time, and the mean API request latency by verb.
func (m mgrMetrics) summary() string {
	if len(m) == 0 {
		return "no metrics"
	}
	var parts []string
	results := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "controller_runtime_reconcile_total{") && strings.Contains(k, "controller=ipam-service") && v > 0 {
			for _, l := range strings.Split(strings.TrimSuffix(strings.SplitN(k, "{", 2)[1], "}"), ",") {
				if r, ok := strings.CutPrefix(l, "result="); ok {
					results[r] += v
				}
			}
		}
	}
	var rs []string
	for r, v := range results {
		rs = append(rs, fmt.Sprintf("%s %.0f", r, v))
	}
	sort.Strings(rs)
	parts = append(parts, "reconciles: "+strings.Join(rs, ", "))
	mean := func(prefix, sel string) (float64, float64) {
		var sum, count float64
		for k, v := range m {
			if !strings.Contains(k, sel) {
				continue
			}
			if strings.HasPrefix(k, prefix+"_sum{") {
				sum += v
			} else if strings.HasPrefix(k, prefix+"_count{") {
				count += v
			}
		}
		if count == 0 {
			return 0, 0
		}
		return 1000 * sum / count, count
	}
	if ms, n := mean("controller_runtime_reconcile_time_seconds", "controller=ipam-service"); n > 0 {
		parts = append(parts, fmt.Sprintf("mean reconcile %.1f ms", ms))
	}
	if ms, n := mean("workqueue_queue_duration_seconds", "name=ipam-service"); n > 0 {
		parts = append(parts, fmt.Sprintf("mean time in queue %.0f ms", ms))
	}
	var verbs []string
	for k := range m {
		if strings.HasPrefix(k, "rest_client_request_duration_seconds_count{") {
			verbs = append(verbs, k)
		}
	}
	sort.Strings(verbs)
	for _, k := range verbs {
		sel := strings.TrimSuffix(strings.SplitN(k, "{", 2)[1], "}")
		if ms, n := mean("rest_client_request_duration_seconds", "{"+sel+"}"); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f× %.1f ms", strings.TrimPrefix(sel, "verb="), n, ms))
		}
	}
	return strings.Join(parts, "; ")
}

func (m mgrMetrics) minus(o mgrMetrics) mgrMetrics {
	out := mgrMetrics{}
	for k, v := range m {
		out[k] = v - o[k]
	}
	return out
}
