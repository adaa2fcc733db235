package plugin

import (
	"bytes"
	"strconv"
	"strings"
)

// info reads the one sample of rabbitmq_build_info or rabbitmq_identity_info
// (l starts after the family name). prometheus.erl escapes these labels in
// every version, so they are read escaped.
func (p *parser) info(l []byte) error {
	build := p.kind == blockBuild
	if build {
		p.buildSamples++
	} else {
		p.identitySamples++
	}
	if p.buildSamples > 1 || p.identitySamples > 1 {
		return p.ambiguous("a second sample of %s", p.cur)
	}
	if len(l) == 0 || l[0] != '{' {
		return nil // no labels: nothing to learn
	}
	l = l[1:]
	for {
		eq := bytes.IndexByte(l, '=')
		if eq <= 0 || eq+1 >= len(l) || l[eq+1] != '"' {
			return p.ambiguous("unreadable labels in %s", p.cur)
		}
		key := string(l[:eq])
		val, rest, ok := unescapeValue(nil, l[eq+2:])
		if !ok || len(rest) < 2 {
			return p.ambiguous("unreadable labels in %s", p.cur)
		}
		if build {
			switch key {
			case "rabbitmq_version":
				p.res.RabbitMQVersion = string(val)
			case "prometheus_plugin_version":
				p.res.PluginVersion = string(val)
			case "prometheus_client_version":
				p.res.ClientVersion = string(val)
			case "erlang_version":
				p.res.ErlangVersion = string(val)
			}
		} else {
			switch key {
			case "rabbitmq_node":
				p.res.Node = string(val)
			case "rabbitmq_cluster":
				p.res.Cluster = string(val)
			}
		}
		switch rest[1] {
		case ',':
			l = rest[2:]
		case '}':
			if len(rest) < 3 || rest[2] != ' ' {
				return p.ambiguous("unreadable labels in %s", p.cur)
			}
			if build {
				// Known from here on: later labels need not wait.
				p.res.Mode = modeOf(p.res.PluginVersion, p.res.RabbitMQVersion)
			}
			return nil
		default:
			return p.ambiguous("unreadable labels in %s", p.cur)
		}
	}
}

// modeOf tells from the plugin's version how it writes queue labels.
// rabbitmq_prometheus writes them itself, pre-rendered, which prometheus.erl
// passes through unescaped; escaping came with rabbitmq-server commit
// fec09c0 ("Escape prometheus core metric label values"), released in
// 3.11.28, 3.12.11 and 3.13.0-rc.4. Before 3.9.9 the labels went through
// prometheus.erl's own escaping. See doc.go for the evidence.
func modeOf(pluginVersion, rabbitmqVersion string) Mode {
	v := pluginVersion
	if v == "" {
		v = rabbitmqVersion
	}
	major, minor, patch, pre, ok := parseVersion(v)
	if !ok {
		return ModeUnknown
	}
	at := func(a, b, c int) int { // compare v with a.b.c
		for _, d := range [...][2]int{{major, a}, {minor, b}, {patch, c}} {
			if d[0] != d[1] {
				if d[0] < d[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	}
	if pre && at(3, 9, 9) >= 0 && at(3, 13, 0) <= 0 {
		return ModeUnknown // pre-releases around the changes: don't guess
	}
	switch {
	case at(3, 9, 9) < 0:
		return ModeEscaped
	case at(3, 11, 28) < 0:
		return ModeRaw
	case at(3, 12, 0) < 0:
		return ModeEscaped
	case at(3, 12, 11) < 0:
		return ModeRaw
	}
	return ModeEscaped
}

// parseVersion reads MAJOR.MINOR.PATCH with an optional -pre-release or
// build suffix (after a plus sign).
func parseVersion(v string) (major, minor, patch int, pre, ok bool) {
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexByte(v, '-'); i >= 0 {
		v, pre = v[:i], true
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false, false
	}
	var n [3]int
	for i, s := range parts {
		x, err := strconv.Atoi(s)
		if err != nil || x < 0 || s[0] == '+' {
			return 0, 0, 0, false, false
		}
		n[i] = x
	}
	return n[0], n[1], n[2], pre, true
}
