package saga

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the saga's Prometheus metrics, read from Stats at each
// scrape: pending transfers and the age of the oldest (the alert to set:
// a transfer pending much longer than RedriveAfter), re-drives, decode
// errors and stalled partitions, transactions.
func (s *Saga) Collector() prometheus.Collector { return collector{s} }

var (
	descPending = prometheus.NewDesc("kcqrs_saga_pending_transfers",
		"Transfers debited on this worker's partitions and not completed or refunded yet.", nil, nil)
	descOldest = prometheus.NewDesc("kcqrs_saga_oldest_pending_transfer_seconds",
		"Age of the oldest pending transfer (since its debit), 0 when none.", nil, nil)
	descRedriven = prometheus.NewDesc("kcqrs_saga_redriven_total",
		"Credits sent again for transfers pending longer than the re-drive timeout.", nil, nil)
	descDecode = prometheus.NewDesc("kcqrs_saga_decode_errors_total",
		"Transfer events the saga could not decode; each stopped its partition until a retry.", nil, nil)
	descStalled = prometheus.NewDesc("kcqrs_saga_stalled_partitions",
		"Events partitions stopped at an event the saga cannot decode.", nil, nil)
	descLegs = prometheus.NewDesc("kcqrs_saga_legs_total",
		"Transfer legs sent in committed transactions, by leg.", []string{"leg"}, nil)
	descTxns = prometheus.NewDesc("kcqrs_saga_transactions_total",
		"Saga transactions, by result.", []string{"result"}, nil)
)

type collector struct{ s *Saga }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descOldest, descRedriven, descDecode, descStalled, descLegs, descTxns} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, st.OldestPending.Seconds())
	ch <- prometheus.MustNewConstMetric(descRedriven, prometheus.CounterValue, float64(st.Redriven))
	ch <- prometheus.MustNewConstMetric(descDecode, prometheus.CounterValue, float64(st.DecodeErrors))
	ch <- prometheus.MustNewConstMetric(descStalled, prometheus.GaugeValue, float64(st.Stalled))
	ch <- prometheus.MustNewConstMetric(descLegs, prometheus.CounterValue, float64(st.Debits), "credit")
	ch <- prometheus.MustNewConstMetric(descLegs, prometheus.CounterValue, float64(st.Completed), "complete")
	ch <- prometheus.MustNewConstMetric(descLegs, prometheus.CounterValue, float64(st.Refunded), "refund")
	ch <- prometheus.MustNewConstMetric(descTxns, prometheus.CounterValue, float64(st.Transactions-st.Aborted), "committed")
	ch <- prometheus.MustNewConstMetric(descTxns, prometheus.CounterValue, float64(st.Aborted), "aborted")
}
