package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
)

const (
	// MaxMembers is the most cluster members one listing reads. RabbitMQ
	// clusters run 3 to 7 nodes and rarely more than a few dozen (every node
	// keeps an Erlang distribution link to every other); 64 leaves room for
	// the largest while one broker's answer cannot make a probe spend
	// thousands of requests or rabbitmq_node_up series. A listing above it
	// fails with that reason.
	MaxMembers = 64

	// memberTTL is how long a discovered member list is reused. Membership
	// rarely changes; a member that fails or lists no listener makes the
	// next scrape discover again, so a member that left or moved is noticed
	// within one period.
	memberTTL = 30 * time.Second

	// maxStale is the oldest member list used when discovery fails. The
	// management API of a healthy member hangs while a peer is frozen, until
	// Erlang declares the peer down (net_ticktime, 60 s by default); the
	// plugins keep answering meanwhile. Five minutes rides that out with
	// room, and bounds how long a revoked vhost permission can still show.
	maxStale = 5 * time.Minute
)

// member is one cluster member as the plugin source sees it.
type member struct {
	node     string            // rabbit@host; the endpoint for configured endpoints
	endpoint brokerhttp.Target // where its plugin answers; zero if unusable
	unusable string            // why it cannot be read (down, no plugin, not allowed); "" if it can
	// guessed says where endpoint came from when the member listed no
	// listener ("" when it listed one): a failed read then says so.
	guessed string
}

// Where the endpoint of a member that lists no listener comes from.
const (
	guessLearned = "the endpoint it reported before"
	guessPeers   = "its peers' plugin port"
)

// discovery is one answer of the management API: the members and the
// vhosts the module's user may read.
type discovery struct {
	list []member
	// vhosts are the names /api/vhosts lists for the module's user: the
	// vhosts whose queues the management source shows, so the only ones
	// whose plugin rows are kept. They also tell vhost and queue apart in
	// unescaped labels where a queue name contains `",queue="`.
	vhosts map[string]bool
	at     time.Time
	due    bool // discover again at the next scrape
	// learned are the plugin endpoints the members listed last, kept while
	// a member is listed at all (stopped, or running without contexts):
	// a restarting member is read there before it lists its listeners.
	learned map[string]brokerhttp.Target
}

// Cluster is what the plugin sources of one process share: discovered
// member lists, and one gate per plugin endpoint.
type Cluster struct {
	mu    sync.Mutex
	cache map[string]*discovery // by source.Key
	gates gates
}

// view is the member list one scrape uses.
type view struct {
	discovery
	fresh bool // discovered in this scrape: its vhost list may settle label splits
}

// get returns the members of target, discovering them when the cached list
// is older than memberTTL or due. When discovery fails, a list up to
// maxStale old is used instead, and discovery gets only a third of the
// time left, so that the members can still be read.
func (c *Cluster) get(ctx context.Context, key string, target brokerhttp.Target, module *config.Module, deadline time.Time, logger *slog.Logger) (view, error) {
	c.mu.Lock()
	var last *discovery
	if d := c.cache[key]; d != nil {
		last = d
	}
	c.mu.Unlock()
	if last != nil && !last.due && time.Since(last.at) < memberTTL {
		logger.Debug("cluster members from the discovery cache", "age", time.Since(last.at).Round(time.Millisecond).String(), "members", len(last.list))
		return view{discovery: *last}, nil
	}
	dctx := ctx
	if last != nil && time.Since(last.at) < maxStale {
		var cancel context.CancelFunc
		dctx, cancel = context.WithDeadlineCause(ctx, time.Now().Add(time.Until(deadline)/3),
			errors.New("timed out: discovery took more than its third of the scrape timeout"))
		defer cancel()
	}
	d, err := discover(dctx, target, module, last, logger)
	if err != nil {
		if ctx.Err() != nil || last == nil || time.Since(last.at) >= maxStale {
			if last != nil {
				err = fmt.Errorf("%w (the last member list, %s old, is older than %s)", err, time.Since(last.at).Round(time.Second), maxStale)
			}
			return view{}, err
		}
		age := time.Since(last.at).Round(time.Millisecond)
		logger.Warn("discovering cluster members failed; using the last member list", "age", age.String(), "max_age", maxStale.String(), "err", err)
		return view{discovery: *last}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = map[string]*discovery{}
	}
	for k, v := range c.cache { // old generations and gone targets age out
		if time.Since(v.at) >= maxStale {
			delete(c.cache, k)
		}
	}
	c.cache[key] = d
	logger.Debug("discovered cluster members", "members", len(d.list), "vhosts", len(d.vhosts))
	return view{discovery: *d, fresh: true}, nil
}

// markDue makes the next scrape discover again, keeping the list as the
// last good one.
func (c *Cluster) markDue(key string) {
	c.mu.Lock()
	if d := c.cache[key]; d != nil {
		cp := *d
		cp.due = true
		c.cache[key] = &cp
	}
	c.mu.Unlock()
}

// setVhosts replaces the cached vhost list with one fetched in this scrape.
func (c *Cluster) setVhosts(key string, vhosts map[string]bool) {
	c.mu.Lock()
	if d := c.cache[key]; d != nil {
		cp := *d
		cp.vhosts = vhosts
		c.cache[key] = &cp
	}
	c.mu.Unlock()
}

// listVhosts fetches the names of the vhosts the module's user may read.
func listVhosts(ctx context.Context, target brokerhttp.Target, module *config.Module) (map[string]bool, error) {
	client := management.Client{HTTP: module.HTTP}
	names, err := client.ListVhosts(ctx, target, module.Credentials)
	if err != nil {
		return nil, fmt.Errorf("listing the user's vhosts: %w", err)
	}
	vhosts := make(map[string]bool, len(names))
	for _, n := range names {
		vhosts[n] = true
	}
	return vhosts, nil
}

// discover lists the members and where their plugins listen, and the
// user's vhosts. A discovered address must pass the module's allow-list:
// the broker's answer must never steer the exporter to an address the
// operator did not allow. last (nil if none) lends the endpoints members
// reported before.
func discover(ctx context.Context, target brokerhttp.Target, module *config.Module, last *discovery, logger *slog.Logger) (*discovery, error) {
	var (
		wg             sync.WaitGroup
		vhosts         map[string]bool
		vhostErr       error
		list           []member
		learned        map[string]brokerhttp.Target
		err            error
		due            bool
		configuredList = len(module.PluginEndpoints) > 0
	)
	wg.Go(func() { vhosts, vhostErr = listVhosts(ctx, target, module) })
	if configuredList {
		list, err = configured(module.PluginEndpoints)
	} else {
		list, learned, due, err = discoverNodes(ctx, target, module, last, logger)
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if vhostErr != nil {
		return nil, vhostErr
	}
	return &discovery{list: list, vhosts: vhosts, at: time.Now(), due: due, learned: learned}, nil
}

// configured takes the module's plugin endpoints as members, one per
// distinct endpoint.
func configured(endpoints []brokerhttp.Target) ([]member, error) {
	seen := map[string]bool{}
	var list []member
	for _, e := range endpoints {
		if seen[e.String()] {
			continue
		}
		seen[e.String()] = true
		list = append(list, member{node: e.HostPort(), endpoint: e})
	}
	if len(list) > MaxMembers {
		return nil, fmt.Errorf("%d plugin endpoints are configured, more than the %d one listing reads", len(list), MaxMembers)
	}
	return list, nil
}

func discoverNodes(ctx context.Context, target brokerhttp.Target, module *config.Module, last *discovery, logger *slog.Logger) (list []member, learned map[string]brokerhttp.Target, due bool, err error) {
	client := management.Client{HTTP: module.HTTP}
	nodes, err := client.ListNodes(ctx, target, module.Credentials)
	if err != nil {
		return nil, nil, false, fmt.Errorf("discovering cluster members: %w", err)
	}
	if len(nodes) == 0 {
		return nil, nil, false, errors.New("discovering cluster members: the management API lists no nodes")
	}
	if len(nodes) > MaxMembers {
		return nil, nil, false, fmt.Errorf("discovering cluster members: the management API lists %d members, more than the %d one listing reads", len(nodes), MaxMembers)
	}
	var before map[string]brokerhttp.Target
	if last != nil {
		before = last.learned
	}
	learned = map[string]brokerhttp.Target{}
	peerPort := peersPort(nodes)
	seen := make(map[string]bool, len(nodes))
	list = make([]member, 0, len(nodes))
	for _, n := range nodes {
		if seen[n.Name] {
			return nil, nil, false, fmt.Errorf("discovering cluster members: the management API lists member %q twice", n.Name)
		}
		seen[n.Name] = true
		m := member{node: n.Name}
		host, err := NodeHost(n.Name)
		switch {
		case !n.Running:
			m.unusable = "not running"
		case err != nil:
			m.unusable = err.Error()
		case n.Plugin != nil:
			m.endpoint, err = Endpoint(n.Plugin.Scheme, host, n.Plugin.Port)
			if err != nil {
				m.unusable = fmt.Sprintf("its node name gives no usable address: %v", err)
			} else {
				learned[n.Name] = m.endpoint
			}
		default:
			// Running, but /api/nodes lists no contexts yet: a member
			// reports its listeners some seconds after its plugin answers.
			due = true
			if e, ok := before[n.Name]; ok {
				m.endpoint, m.guessed = e, guessLearned
			} else if peerPort != nil {
				m.endpoint, err = Endpoint(peerPort.Scheme, host, peerPort.Port)
				m.guessed = guessPeers
				if err != nil {
					m.unusable = fmt.Sprintf("its node name gives no usable address: %v", err)
				}
			} else {
				m.unusable = "running but lists no rabbitmq_prometheus listener in /api/nodes (not yet reporting its listeners, or the plugin is not enabled on it), and no endpoint is known for it"
			}
		}
		if m.unusable == "" && m.endpoint != (brokerhttp.Target{}) {
			if err := module.AllowsEndpoint(m.endpoint); err != nil {
				m.unusable = fmt.Sprintf("its plugin endpoint is not allowed: %v", err)
				logger.Warn("not reading a cluster member: its plugin endpoint is not allowed", "node", n.Name, "endpoint", m.endpoint.String(), "setting", module.Setting("targets"))
				m.endpoint = brokerhttp.Target{}
			}
		}
		if m.unusable != "" {
			m.endpoint, m.guessed = brokerhttp.Target{}, ""
		}
		list = append(list, m)
	}
	// A guess that names another member's listed endpoint (members sharing
	// a host, on their own ports) would read that member twice.
	listed := map[string]bool{}
	for _, m := range list {
		if m.unusable == "" && m.guessed == "" {
			listed[m.endpoint.String()] = true
		}
	}
	for i, m := range list {
		if m.guessed != "" && listed[m.endpoint.String()] {
			list[i].unusable = fmt.Sprintf("running but not yet reporting its listeners in /api/nodes, and %s (%s) is another member's endpoint", m.guessed, m.endpoint)
			list[i].endpoint, list[i].guessed = brokerhttp.Target{}, ""
		}
	}
	for node, e := range before { // still listed, not listing its listener now
		if _, ok := learned[node]; !ok && seen[node] {
			learned[node] = e
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].node < list[j].node })
	return list, learned, due, nil
}

// peersPort is the plugin listener every member that lists one uses, or nil
// when they differ or none lists one.
func peersPort(nodes []management.Node) *management.PluginListener {
	var p *management.PluginListener
	for _, n := range nodes {
		switch {
		case n.Plugin == nil:
		case p == nil:
			p = n.Plugin
		case *p != *n.Plugin:
			return nil
		}
	}
	return p
}

// NodeHost returns the host of an Erlang node name, which must be name@host
// with a host name or an IP literal: anything else (a path, a port, user
// information, a second @) could steer where a request goes.
func NodeHost(node string) (string, error) {
	name, host, ok := strings.Cut(node, "@")
	if !ok || name == "" || host == "" {
		return "", fmt.Errorf("its node name %q is not name@host", node)
	}
	for _, r := range name {
		if !isNameRune(r) {
			return "", fmt.Errorf("its node name %q is not name@host: the name has %q", node, r)
		}
	}
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); ip != nil {
		return ip.String(), nil
	}
	if !validHostname(host) {
		return "", fmt.Errorf("its node name %q is not name@host: %q is neither a host name nor an IP address", node, host)
	}
	return strings.ToLower(host), nil
}

func isNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'
}

// validHostname accepts DNS names: dot-separated labels of letters, digits,
// hyphens (and underscores, which container runtimes use), 1 to 63 bytes,
// at most 253 in all.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isNameRune(rune(c)) || c == '.' {
				return false
			}
		}
	}
	return true
}

// Endpoint builds a plugin endpoint from its parts, never by pasting
// strings together, and checks that it reads back as those parts.
func Endpoint(scheme, host string, port int) (brokerhttp.Target, error) {
	if scheme != "http" && scheme != "https" {
		return brokerhttp.Target{}, fmt.Errorf("scheme %q is neither http nor https", scheme)
	}
	if port < 1 || port > 65535 {
		return brokerhttp.Target{}, fmt.Errorf("port %d is not between 1 and 65535", port)
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	t, err := brokerhttp.ParseTarget(u.String())
	if err != nil {
		return brokerhttp.Target{}, err
	}
	if t.Port != port || t.PathPrefix != "" || t.Scheme != scheme {
		return brokerhttp.Target{}, fmt.Errorf("%s does not read back as %s host %s port %d", t, scheme, host, port)
	}
	return t, nil
}
