package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is what every scenario returns. Each scenario's report is also a
// plain struct that encodes to JSON with snake_case names.
type Report interface {
	// WriteText writes the report for people, one figure a line.
	WriteText(w io.Writer) error
	// Failures is the number of errors plus lost, duplicated and reordered
	// deliveries; 0 means every figure stands.
	Failures() int64
}

// seconds is a duration in seconds, for JSON.
func seconds(d time.Duration) float64 { return d.Seconds() }

// rate is n per second over d, or 0 when d is not positive.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// textReport writes the lines of a report. Figure lines carry a mark when
// anything failed, so a figure is never read without its failures.
type textReport struct {
	w    io.Writer
	err  error
	mark string
}

func newTextReport(w io.Writer, errs Errors, d *Delivery) *textReport {
	t := &textReport{w: w}
	var why []string
	if errs.Total() > 0 {
		why = append(why, errs.String()+" errors")
	}
	if d != nil && d.Failures() > 0 {
		why = append(why, fmt.Sprintf("%d lost, %d duplicated, %d reordered", d.Lost, d.Duplicated, d.Reordered))
	}
	if len(why) > 0 {
		t.mark = "  [FAILED: " + strings.Join(why, "; ") + "; the figure covers only what succeeded]"
	}
	return t
}

func (t *textReport) printf(format string, args ...any) {
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, format, args...)
	}
}

// head writes the report's first line.
func (t *textReport) head(format string, args ...any) { t.printf(format+"\n", args...) }

// figure writes a measured figure, with the failure mark.
func (t *textReport) figure(label, format string, args ...any) {
	t.printf("  %-16s %s%s\n", label, fmt.Sprintf(format, args...), t.mark)
}

// info writes a line that is not a figure.
func (t *textReport) info(label, format string, args ...any) {
	t.printf("  %-16s %s\n", label, fmt.Sprintf(format, args...))
}

// cpu writes a CPU line: the servers' time, per unit of work over n units,
// and, with several servers, each one's part on a line of its own.
func (t *textReport) cpu(label string, c CPU, n int64, unit string) {
	t.info(label, "%s", c.perUnit(n, unit))
	for _, s := range c.Servers {
		switch {
		case s.Seconds < 0:
			t.printf("    %s  unknown\n", s.Server)
		case c.Server > 0:
			t.printf("    %s  %.2f s (%.0f%%)\n", s.Server, s.Seconds, 100*s.Seconds/c.Server)
		default:
			t.printf("    %s  %.2f s\n", s.Server, s.Seconds)
		}
	}
}

// errors writes the error counts and samples.
func (t *textReport) errors(e Errors) {
	t.info("errors", "%s", e.String())
	for _, s := range e.Samples {
		t.printf("    %s\n", s)
	}
}

// crossNodeText is what a report's first line says of a cross-node run.
func crossNodeText(cross bool) string {
	if cross {
		return " on other servers than the publishes"
	}
	return ""
}

// perSecond formats a rate.
func perSecond(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f/s", v)
	case v >= 1:
		return fmt.Sprintf("%.1f/s", v)
	}
	return fmt.Sprintf("%.3f/s", v)
}

// bytesText formats a byte count.
func bytesText(v float64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	var s string
	switch {
	case v >= 1<<30:
		s = fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		s = fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		s = fmt.Sprintf("%.1f KiB", v/(1<<10))
	default:
		s = fmt.Sprintf("%.0f B", v)
	}
	if neg {
		return "-" + s
	}
	return s
}

// durText formats seconds as a duration: "500ms", "1m0s".
func durText(sec float64) string {
	return time.Duration(sec * float64(time.Second)).Round(time.Millisecond).String()
}
