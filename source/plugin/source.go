package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
)

// memberTTL is how long a discovered member list is reused. Membership
// rarely changes; a member that fails drops the list at once.
const memberTTL = 30 * time.Second

// member is one cluster member as the plugin source sees it.
type member struct {
	node     string            // rabbit@host; the endpoint for configured endpoints
	endpoint brokerhttp.Target // where its plugin answers; zero if unusable
	unusable string            // why it cannot be read (down, no plugin, not allowed); "" if it can
}

// members discovers the cluster through the management API (or takes the
// module's configured endpoints), reusing a recent answer.
type members struct {
	mu    sync.Mutex
	cache map[string]cachedMembers
}

type cachedMembers struct {
	list []member
	// vhosts are the broker's vhost names: they tell vhost and queue apart in
	// unescaped labels where a queue name contains `",queue="`. nil if the
	// user may not list them.
	vhosts map[string]bool
	at     time.Time
}

func (ms *members) get(ctx context.Context, key string, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (cachedMembers, error) {
	ms.mu.Lock()
	c, ok := ms.cache[key]
	ms.mu.Unlock()
	if ok && time.Since(c.at) < memberTTL {
		return c, nil
	}
	list, err := discover(ctx, target, module, logger)
	if err != nil {
		return cachedMembers{}, err
	}
	c = cachedMembers{list: list}
	client := management.Client{HTTP: module.HTTP}
	if names, err := client.ListVhosts(ctx, target, module.Credentials); err != nil {
		logger.Debug("listing vhosts failed; queue names with \",queue=\" in unescaped plugin answers stay unreadable", "err", err)
	} else {
		c.vhosts = make(map[string]bool, len(names))
		for _, n := range names {
			c.vhosts[n] = true
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.cache == nil {
		ms.cache = map[string]cachedMembers{}
	}
	now := time.Now()
	for k, v := range ms.cache { // keys of old generations and gone targets age out
		if now.Sub(v.at) >= memberTTL {
			delete(ms.cache, k)
		}
	}
	c.at = now
	ms.cache[key] = c
	return c, nil
}

// forget drops a cached member list, so the next scrape discovers again.
func (ms *members) forget(key string) {
	ms.mu.Lock()
	delete(ms.cache, key)
	ms.mu.Unlock()
}

// discover lists the members and where their plugins listen. A discovered
// address must pass the module's allow-list: the broker's answer must never
// steer the exporter to an address the operator did not allow.
func discover(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) ([]member, error) {
	if len(module.PluginEndpoints) > 0 {
		list := make([]member, len(module.PluginEndpoints))
		for i, e := range module.PluginEndpoints {
			list[i] = member{node: e.HostPort(), endpoint: e}
		}
		return list, nil
	}
	client := management.Client{HTTP: module.HTTP}
	nodes, err := client.ListNodes(ctx, target, module.Credentials)
	if err != nil {
		return nil, fmt.Errorf("discovering cluster members: %w", err)
	}
	if len(nodes) == 0 {
		return nil, errors.New("discovering cluster members: the management API lists no nodes")
	}
	list := make([]member, 0, len(nodes))
	for _, n := range nodes {
		m := member{node: n.Name}
		switch {
		case !n.Running:
			m.unusable = "not running"
		case n.Plugin == nil:
			m.unusable = "serves no rabbitmq_prometheus plugin (rabbitmq-plugins enable rabbitmq_prometheus)"
		default:
			e, err := brokerhttp.ParseTarget(n.Plugin.Scheme + "://" + net.JoinHostPort(n.Host(), strconv.Itoa(n.Plugin.Port)))
			if err != nil {
				m.unusable = fmt.Sprintf("its node name gives no usable address: %v", err)
				break
			}
			if err := module.AllowsEndpoint(e); err != nil {
				m.unusable = fmt.Sprintf("its plugin endpoint is not allowed: %v", err)
				logger.Warn("not reading a cluster member: its plugin endpoint is not allowed", "node", n.Name, "endpoint", e.String(), "setting", module.Setting("targets"))
				break
			}
			m.endpoint = e
		}
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].node < list[j].node })
	return list, nil
}

// Source reads every cluster member's rabbitmq_prometheus plugin. Its member
// lists are cached per target and module; one Source serves the process.
type Source struct {
	// Strict fails the listing as soon as any running member cannot be
	// read, so that a fallback reads the whole cluster another way (source
	// auto). Otherwise the members read are kept and the others reported.
	Strict bool

	members members
}

// unreadableError marks a member's answer that cannot be read exactly
// (ambiguous or malformed): none of its counts are used.
type unreadableError struct{ error }

func (e unreadableError) Is(target error) bool { return target == source.ErrUnreadable }
func (e unreadableError) Unwrap() error        { return e.error }

// List reads every usable member's plugin in parallel and merges their
// queues. Members that failed are reported, and the others' queues kept; it
// fails only when no member could be read (or, Strict, when any running
// member could not).
func (p *Source) List(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (*source.Listing, error) {
	key := source.Key(target, module)
	cluster, err := p.members.get(ctx, key, target, module, logger)
	if err != nil {
		return nil, err
	}
	list := cluster.list
	statuses := make([]source.Member, len(list))
	sets := make([]*queueset.QueueSet, len(list))
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, m := range list {
		statuses[i] = source.Member{Node: m.node, Reason: m.unusable}
		if m.unusable != "" {
			continue
		}
		wg.Go(func() {
			sets[i], errs[i] = readMember(ctx, target, m.endpoint, module, cluster.vhosts)
		})
	}
	wg.Wait()

	var failed, read int
	for i, m := range list {
		if m.unusable != "" {
			if p.Strict && m.unusable != "not running" {
				return nil, fmt.Errorf("member %s %s", m.node, m.unusable)
			}
			failed++
			continue
		}
		if errs[i] != nil {
			if errors.Is(errs[i], ErrAmbiguous) || errors.Is(errs[i], ErrMalformed) {
				p.members.forget(key) // a vhost created since may be what it needed
				return nil, unreadableError{fmt.Errorf("member %s: %w", m.node, errs[i])}
			}
			statuses[i].Reason = errs[i].Error()
			failed++
			logger.Warn("reading a cluster member's plugin failed", "node", m.node, "endpoint", m.endpoint.String(), "err", errs[i])
			if p.Strict {
				p.members.forget(key)
				return nil, fmt.Errorf("member %s: %w", m.node, errs[i])
			}
			continue
		}
		statuses[i].Up = true
		read++
	}
	if failed > 0 {
		p.members.forget(key) // membership may have changed
	}
	if read == 0 {
		var reasons strings.Builder
		for _, s := range statuses {
			fmt.Fprintf(&reasons, "; %s: %s", s.Node, s.Reason)
		}
		return nil, fmt.Errorf("no cluster member's rabbitmq_prometheus plugin could be read%s", reasons.String())
	}
	// The first member's set takes the others' queues: no copy of its own
	// (the whole listing on a single node), which took an eighth of the
	// scrape's CPU and doubled the peak memory. It was built with the same
	// host and memory limit a fresh set would get.
	var qs *queueset.QueueSet
	for _, s := range sets {
		switch {
		case s == nil:
		case qs == nil:
			qs = s
		default:
			if err := qs.Merge(s); err != nil {
				return nil, err
			}
		}
	}
	if err := qs.Finish(); err != nil {
		return nil, err
	}
	return &source.Listing{Queues: qs, Source: config.SourcePrometheus, Members: statuses}, nil
}

// readMember reads one member's plugin answer into a set of its own. No
// credentials are sent: the plugin takes none, and the endpoint came from
// the broker's answer.
func readMember(ctx context.Context, target, endpoint brokerhttp.Target, module *config.Module, vhosts map[string]bool) (*queueset.QueueSet, error) {
	ctx = brokerhttp.WithApprovedTarget(ctx, endpoint)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.BaseURL()+RequestPath(module.QueueFields()), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := module.HTTP.Do(req)
	if err != nil {
		return nil, requestError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("plugin answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	qs := source.NewQueueSet(target, module)
	filter := &module.Filter
	var keep func(vhost, name []byte) bool
	if !filter.Empty() {
		keep = filter.Keep
	}
	body := io.LimitReader(resp.Body, module.MaxBodyBytes+1)
	if module.MaxBodyBytes <= 0 {
		body = resp.Body
	}
	res, err := ParseOf(body, qs, keep, Limits{Vhosts: vhosts}, module.QueueFields())
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, requestError(ctx, ctxErr)
		}
		if module.MaxBodyBytes > 0 && res.Bytes > module.MaxBodyBytes {
			return nil, fmt.Errorf("plugin answer exceeds %d bytes (raise --rabbitmq.max-response-bytes)", module.MaxBodyBytes)
		}
		return nil, err
	}
	return qs, nil
}

// requestError names why a request ended: a shared request ends with a cause
// that says whose deadline it was.
func requestError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return fmt.Errorf("request failed: %w", inner)
		}
	}
	return fmt.Errorf("request failed: %w", err)
}
