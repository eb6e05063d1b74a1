package console

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// workerMetrics is what one worker's /metrics says.
type workerMetrics struct {
	Addr                 string
	Err                  string
	Committed, Aborted   float64
	ConsecutiveAborts    float64
	DeadLetters          float64
	Commands             float64
	Partitions           []workerPartition
	ReadyCount, Assigned int
}

type workerPartition struct {
	Partition        int
	Role             string
	Ready            bool
	RestoreRemaining string // "-" when not reported
	Lag              string
}

// scrape reads a worker's /metrics (Prometheus text format) for the
// kcqrs_* series the workers page shows.
func (c *Console) scrape(ctx context.Context, addr string) workerMetrics {
	wm := workerMetrics{Addr: addr}
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/metrics", nil)
	if err != nil {
		wm.Err = err.Error()
		return wm
	}
	resp, err := c.http.Do(req)
	if err != nil {
		wm.Err = err.Error()
		return wm
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		wm.Err = fmt.Sprintf("GET /metrics: %s", resp.Status)
		return wm
	}
	parts := map[int]*workerPartition{}
	part := func(labels map[string]string) *workerPartition {
		n, err := strconv.Atoi(labels["partition"])
		if err != nil {
			return nil
		}
		if parts[n] == nil {
			parts[n] = &workerPartition{Partition: n, RestoreRemaining: "-", Lag: "-"}
		}
		return parts[n]
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, labels, value, ok := parseSample(sc.Text())
		if !ok {
			continue
		}
		switch name {
		case "kcqrs_transactions_total":
			if labels["result"] == "committed" {
				wm.Committed = value
			} else if labels["result"] == "aborted" {
				wm.Aborted = value
			}
		case "kcqrs_consecutive_aborts":
			wm.ConsecutiveAborts = value
		case "kcqrs_dead_letters_total":
			wm.DeadLetters = value
		case "kcqrs_commands_total":
			wm.Commands += value
		case "kcqrs_partition_ready":
			if p := part(labels); p != nil {
				p.Role, p.Ready = labels["role"], value == 1
			}
		case "kcqrs_restore_remaining_offsets":
			if p := part(labels); p != nil {
				p.RestoreRemaining = strconv.FormatFloat(value, 'f', -1, 64)
			}
		case "kcqrs_consumer_lag":
			if p := part(labels); p != nil {
				p.Lag = strconv.FormatFloat(value, 'f', -1, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		wm.Err = "read /metrics: " + err.Error()
	}
	for _, p := range parts {
		if p.Role == "" {
			continue // a series left from a partition it no longer owns
		}
		wm.Partitions = append(wm.Partitions, *p)
		wm.Assigned++
		if p.Ready {
			wm.ReadyCount++
		}
	}
	sort.Slice(wm.Partitions, func(i, j int) bool { return wm.Partitions[i].Partition < wm.Partitions[j].Partition })
	return wm
}

// parseSample parses one sample line `name{k="v",...} value`; comments
// and malformed lines are not samples.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	rest := line
	labels = map[string]string{}
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return "", nil, 0, false
		}
		name, rest = line[:i], strings.TrimSpace(line[j+1:])
		for _, kv := range splitLabels(line[i+1 : j]) {
			k, v, found := strings.Cut(kv, "=")
			if !found {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				labels[k] = uq
			}
		}
	} else {
		var found bool
		name, rest, found = strings.Cut(line, " ")
		if !found {
			return "", nil, 0, false
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, v, true
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	quoted, esc, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case esc:
			esc = false
		case s[i] == '\\':
			esc = true
		case s[i] == '"':
			quoted = !quoted
		case s[i] == ',' && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
