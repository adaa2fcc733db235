package plugin

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// escapedLine is the slow reference for one escaped sample line.
var escapedLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)\{vhost="((?:[^"\\]|\\[\\"n])*)",queue="((?:[^"\\]|\\[\\"n])*)"\} (0|[1-9][0-9]*)$`)

func unescapeRef(s string) string {
	return strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\n`, "\n").Replace(s)
}

// escapedReference lists the samples of our families in an escaped answer,
// one regular expression per line: what Parse must have read when it read
// the answer as escaped.
func escapedReference(body []byte) (map[sample]int64, bool) {
	out := map[sample]int64{}
	fields := map[string]int{}
	for i, f := range queue.Fields() {
		fields[f.Plugin] = i
	}
	for l := range strings.SplitSeq(string(body), "\n") {
		m := escapedLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f, ours := fields[m[1]]
		if !ours {
			continue
		}
		v, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil {
			return nil, false
		}
		k := sample{f, unescapeRef(m[2]), unescapeRef(m[3])}
		if _, dup := out[k]; dup {
			return nil, false
		}
		out[k] = v
	}
	return out, true
}

// expfmtReference reads our families with prometheus/common's parser, where
// it accepts the answer.
func expfmtReference(body []byte) (map[sample]int64, bool) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, false
	}
	return fieldSamples(mfs, func(f queue.Field) string { return f.Plugin }, "queue", func(m *dto.Metric) float64 {
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		default:
			return m.GetUntyped().GetValue()
		}
	}), true
}

// rawReadings enumerates, by brute force, every way the plugin's raw
// renderer could have produced body: blocks of `# TYPE`, `# HELP` and
// samples; in our queue families each sample is
// NAME{vhost="V",queue="N"} VALUE with V and N any bytes (line feeds
// included), the same rows in the same order in each of them; other
// families' samples are single lines. It returns the distinct readings of
// our families (at most limit), and false when the search grew too large to
// finish. Like the plugin, a reading has a block for each of our families:
// without that, the first block's last name could swallow all the rest.
func rawReadings(body []byte, limit int) ([]map[sample]int64, bool) {
	if len(body) > 4096 {
		return nil, false // the search is exponential: small inputs only
	}
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		return nil, true
	}
	lines := strings.Split(string(body[:len(body)-2]), "\n")
	// Only our families carry rows in this model. The plugin also renders
	// the reductions family from the same rows, but leaving that constraint
	// out can only add readings, so the check stays at least as strict (and
	// matches the argument in doc.go, which needs only our families).
	rowFamilies := map[string]int{}
	for i, f := range queue.Fields() {
		rowFamilies[f.Plugin] = i
	}
	type block struct {
		family string
		rows   []string // X of each row, in row families
		values []int64
	}
	var (
		budget   = 20000
		readings []map[sample]int64
		seen     = map[string]bool{}
	)
	// finish checks the shared rows and enumerates the vhost/queue splits.
	finish := func(blocks []block) {
		var rows []string
		first := true
		names := map[string]bool{}
		// The plugin writes every queue family; Parse insists on ours.
		for _, f := range queue.Fields() {
			if !slices.ContainsFunc(blocks, func(b block) bool { return b.family == f.Plugin }) {
				return
			}
		}
		for _, b := range blocks {
			if names[b.family] {
				return // the plugin writes each family once
			}
			names[b.family] = true
			if _, ok := rowFamilies[b.family]; !ok {
				continue
			}
			if first {
				rows, first = b.rows, false
			} else if !slices.Equal(rows, b.rows) {
				return
			}
		}
		var splits [][][2]string
		for _, x := range rows {
			var s [][2]string
			for i := 0; i+len(labelsMid) <= len(x); i++ {
				if x[i:i+len(labelsMid)] == labelsMid {
					s = append(s, [2]string{x[:i], x[i+len(labelsMid):]})
				}
			}
			if len(s) == 0 {
				return
			}
			splits = append(splits, s)
		}
		var walk func(i int, chosen [][2]string)
		walk = func(i int, chosen [][2]string) {
			if len(readings) >= limit {
				return
			}
			if i == len(splits) {
				r := map[sample]int64{}
				for _, b := range blocks {
					f, ok := rowFamilies[b.family]
					if !ok {
						continue
					}
					for j, c := range chosen {
						r[sample{f, c[0], c[1]}] = b.values[j]
					}
				}
				if k := formatSamples(r); !seen[k] {
					seen[k] = true
					readings = append(readings, r)
				}
				return
			}
			for _, s := range splits[i] {
				walk(i+1, append(chosen, s))
			}
		}
		walk(0, nil)
	}
	var search func(i int, blocks []block)
	search = func(i int, blocks []block) {
		if budget--; budget < 0 || len(readings) >= limit {
			return
		}
		if i == len(lines) {
			finish(blocks)
			return
		}
		l := lines[i]
		if rest, ok := strings.CutPrefix(l, "# TYPE "); ok && i+1 < len(lines) {
			if name, typ, ok := strings.Cut(rest, " "); ok && name != "" && !strings.Contains(typ, " ") &&
				strings.HasPrefix(lines[i+1], "# HELP "+name+" ") {
				nb := append(append([]block(nil), blocks...), block{family: name})
				search(i+2, nb)
			}
		}
		if len(blocks) == 0 {
			return
		}
		cur := blocks[len(blocks)-1]
		if _, ok := rowFamilies[cur.family]; !ok {
			if strings.HasPrefix(l, cur.family) && !strings.HasPrefix(l, "#") {
				search(i+1, blocks)
			}
			return
		}
		prefix := cur.family + `{vhost="`
		if !strings.HasPrefix(l, prefix) {
			return
		}
		text := l[len(prefix):]
		for j := i; j < len(lines); j++ {
			if j > i {
				text += "\n" + lines[j]
			}
			// Rows may span any number of lines: the search is exhaustive,
			// so large inputs run out of budget and go unchecked.
			if budget -= 1 + len(text)/256; budget < 0 {
				return
			}
			end := strings.LastIndex(text, `"} `)
			if end < 0 {
				continue
			}
			v, err := strconv.ParseInt(text[end+3:], 10, 64)
			if err != nil || v < 0 || text[end+3:] != strconv.FormatInt(v, 10) {
				continue
			}
			nb := append([]block(nil), blocks...)
			last := &nb[len(nb)-1]
			last.rows = append(append([]string(nil), last.rows...), text[:end])
			last.values = append(append([]int64(nil), last.values...), v)
			search(j+1, nb)
		}
	}
	search(0, nil)
	return readings, budget >= 0
}

func describeReadings(rs []map[sample]int64) string {
	var b strings.Builder
	for i, r := range rs {
		fmt.Fprintf(&b, "reading %d:\n%s\n", i, formatSamples(r))
	}
	return b.String()
}
