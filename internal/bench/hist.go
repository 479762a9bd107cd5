package main

import (
	"math"
	"math/bits"
	"time"
)

// histSubBits sets the histogram's precision: every power-of-two range of
// values is split into 2^histSubBits equal buckets, so a recorded value is
// reported within 1/2^histSubBits (under 0.8 %) of its true value.
const histSubBits = 7

const (
	histSub    = 1 << histSubBits // buckets per power of two
	histLinear = 2 * histSub      // values below this get one bucket each
	// histBuckets covers every int64 nanosecond value.
	histBuckets = histLinear + (63-histSubBits)*histSub
)

// Histogram is a log-linear latency histogram in the manner of
// HdrHistogram: exact below 256 ns, then 128 buckets per power of two.
// Recording is a few instructions and allocation-free; quantiles are read
// from the counts, never from an average. A Histogram is not safe for
// concurrent use: give each load worker its own and Merge them.
type Histogram struct {
	counts   [histBuckets]uint64
	total    uint64
	min, max int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{min: math.MaxInt64} }

func histIndex(v int64) int {
	if v < histLinear {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 1 // v in [2^e, 2^(e+1)), e > histSubBits
	shift := e - histSubBits
	mant := int(uint64(v)>>shift) - histSub // in [0, histSub)
	return histLinear + (e-histSubBits-1)*histSub + mant
}

// histUpper returns the largest value that falls into bucket i.
func histUpper(i int) int64 {
	if i < histLinear {
		return int64(i)
	}
	j := i - histLinear
	e := j/histSub + histSubBits + 1
	mant := int64(j%histSub + histSub)
	shift := e - histSubBits
	return (mant+1)<<shift - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)]++
	h.total++
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every count of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.max)
}

// Quantile returns the value at quantile q (0.5 = median, 0.99 = p99): the
// upper bound of the bucket holding the ceil(q*count)-th smallest value,
// never above the largest recorded value. It returns 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histUpper(i), h.max))
		}
	}
	return time.Duration(h.max)
}
