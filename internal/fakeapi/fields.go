package fakeapi

import (
	"math"
	"slices"
	"strconv"

	qtab "github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// The generators below describe the same queues as Generate and
// GeneratePlugin for any chosen fields, reading only the field table: a
// field's management key, plugin group and family, and kind. A field the
// table gains is generated with no change here.

// nameHash makes a field's values depend on its name, the same in every run
// (FNV-1a).
func nameHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// Value is queue i's value of field f (a Float field's as float64 bits), and
// whether the broker reports one. The depths are Counts(i); any other field
// is derived from its name: Float fields are missing for a quarter of the
// queues (as head_message_timestamp is for queues without one), in seconds
// like a recent epoch time when f.Unit is "seconds" and a 0-1 share
// otherwise. Streams (o.HasCounts false) have no fields.
func Value(o Options, i int, f qtab.Field) (int64, bool) {
	if !o.HasCounts(i) {
		return 0, false
	}
	m, r, u := Counts(i)
	switch f.Management {
	case "messages":
		return m, true
	case "messages_ready":
		return r, true
	case "messages_unacknowledged":
		return u, true
	}
	h := mix(uint64(i) ^ nameHash(f.Name))
	if !f.Float {
		return int64(h % 1000), true
	}
	if h%4 == 0 {
		return 0, false
	}
	v := float64((h>>8)%1001) / 1000
	if f.Unit == "seconds" {
		v = float64(1_700_000_000 + (h>>8)%1_000_000)
	}
	return int64(math.Float64bits(v)), true
}

// appendValue writes v as the broker does: integers as integers, fractions
// as floats.
func appendValue(b []byte, f qtab.Field, v int64) []byte {
	if !f.Float {
		return strconv.AppendInt(b, v, 10)
	}
	x := math.Float64frombits(uint64(v))
	if x == math.Trunc(x) {
		return strconv.AppendInt(b, int64(x), 10)
	}
	return strconv.AppendFloat(b, x, 'g', -1, 64)
}

// GenerateOf is Generate's lean listing with the columns of fs: keys in
// byte order as the broker writes them, a missing Float value as null.
func GenerateOf(o Options, fs qtab.FieldSet) []byte {
	type key struct {
		name  string
		field int // -1 name, -2 vhost
	}
	keys := []key{{"name", -1}, {"vhost", -2}}
	for i, f := range fs {
		keys = append(keys, key{f.Management, i})
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.name < b.name {
			return -1
		}
		return 1
	})
	nv := max(o.Vhosts, 1)
	b := []byte{'['}
	var name []byte
	for i := range o.Queues {
		if i > 0 {
			b = append(b, ',')
		}
		name = appendQueueName(name[:0], i)
		sep := byte('{')
		for _, k := range keys {
			var val []byte
			switch k.field {
			case -1:
				val = appendJSONString(nil, name)
			case -2:
				val = appendJSONString(nil, VhostName(i%nv))
			default:
				f := fs[k.field]
				v, ok := Value(o, i, f)
				switch {
				case ok:
					val = appendValue(nil, f, v)
				case f.Float && o.HasCounts(i):
					val = []byte("null")
				default:
					continue
				}
			}
			b = append(b, sep, '"')
			b = append(b, k.name...)
			b = append(b, '"', ':')
			b = append(b, val...)
			sep = ','
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// GeneratePluginOf is GeneratePlugin's answer for fs: the families of the
// groups fs.PluginGroups names (the whole queue_coarse_metrics group, its
// reductions family included, when it is asked for), group by group; a missing Float value is NaN, as the plugin
// writes it.
func GeneratePluginOf(o Options, style PluginStyle, fs qtab.FieldSet) []byte {
	nv := max(o.Vhosts, 1)
	var b []byte
	var name []byte
	for _, g := range fs.PluginGroups() {
		var rows []qtab.Field
		for _, f := range fs {
			if f.Group == g {
				rows = append(rows, f)
			}
		}
		if g == qtab.GroupCoarse {
			// The plugin writes the whole group, chosen or not.
			for _, f := range qtab.Fields() {
				if !slices.ContainsFunc(rows, func(r qtab.Field) bool { return r.Plugin == f.Plugin }) {
					rows = append(rows, f)
				}
			}
		}
		for _, f := range rows {
			b = appendPrologue(b, f.Plugin, "gauge", f.Help)
			for i := range o.Queues {
				v, ok := Value(o, i, f)
				if !ok && (!f.Float || !o.HasCounts(i)) {
					continue
				}
				name = appendQueueName(name[:0], i)
				b = append(b, f.Plugin...)
				b = append(b, `{vhost="`...)
				b = appendLabelValue(b, style, []byte(VhostName(i%nv)))
				b = append(b, `",queue="`...)
				b = appendLabelValue(b, style, name)
				b = append(b, `"} `...)
				if ok {
					b = appendValue(b, f, v)
				} else {
					b = append(b, "NaN"...)
				}
				b = append(b, '\n')
			}
		}
		if g == qtab.GroupCoarse {
			f := PluginFamilies[3]
			b = appendPrologue(b, f.Name, f.Type, f.Help)
			for i := range o.Queues {
				if o.HasCounts(i) {
					name = appendQueueName(name[:0], i)
					b = appendPluginSample(b, style, f.Name, []byte(VhostName(i%nv)), name, 5000+int64(mix(uint64(i))%1_000_000))
				}
			}
		}
	}
	var queues []PluginQueue
	if style == PluginEscaped {
		for i := range o.Queues {
			if o.HasCounts(i) {
				queues = append(queues, PluginQueue{Vhost: VhostName(i % nv), Name: QueueName(i)})
			}
		}
	}
	return appendPluginTail(b, style, queues, DefaultPluginInfo(style))
}
