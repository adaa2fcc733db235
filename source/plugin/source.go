package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
)

// maxParallelReads is how many members one listing reads at once: the
// exporter's limit, whatever the broker lists. A healthy member answers in
// milliseconds to seconds; a hung one holds one worker until its deadline.
const maxParallelReads = 4

// memberShare is the part of a listing's time its member reads may take;
// the rest is for merging and writing the answer, so that a member that
// never answers costs its own queues and not the scrape.
const memberShare = 0.8

// Source reads every cluster member's rabbitmq_prometheus plugin. Its member
// lists are cached per target and module in its Cluster.
type Source struct {
	// Strict fails the listing when any running member cannot be read, so
	// that a fallback reads the whole cluster another way (source auto):
	// with a source.PartialError that holds the members read, for when
	// the fallback fails too. Otherwise the members read are kept and the
	// others reported.
	Strict bool
	// Cluster is shared by the plugin sources of one process (nil: this
	// Source's own), so that they share discovery and never have two
	// requests in flight to one member.
	Cluster *Cluster

	own Cluster
}

func (p *Source) cluster() *Cluster {
	if p.Cluster != nil {
		return p.Cluster
	}
	return &p.own
}

// unreadableError marks a member's answer that cannot be read exactly
// (ambiguous or malformed): none of its counts are used.
type unreadableError struct{ error }

func (e unreadableError) Is(target error) bool { return target == source.ErrUnreadable }
func (e unreadableError) Unwrap() error        { return e.error }

// read is one plugin endpoint to read and the members that name it (one,
// unless a broker lists several members at one address).
type read struct {
	endpoint brokerhttp.Target
	node     string // the first member's
	members  []int  // indexes into the member list
	guessed  string
	set      *queueset.QueueSet
	bytes    int64 // of its answer, charged to the listing's budget
	err      error
}

// List reads every usable member's plugin, a few at a time, each endpoint
// once, and merges their queues. Members that failed are reported, and the
// others' queues kept; it fails only when no member could be read (or,
// Strict, when any running member could not: then with a
// source.PartialError when some could).
func (p *Source) List(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (*source.Listing, error) {
	c := p.cluster()
	key := source.Key(target, module)
	deadline, ok := source.Deadline(ctx)
	if !ok {
		return nil, errors.New("a plugin listing needs a deadline")
	}
	v, err := c.get(ctx, key, target, module, deadline, logger)
	if err != nil {
		return nil, err
	}
	list := v.list
	statuses := make([]source.Member, len(list))
	// missing are the running members a Strict listing lacks.
	var missing []string
	var reads []*read
	byEndpoint := map[string]*read{}
	for i, m := range list {
		statuses[i] = source.Member{Node: m.node, Reason: m.unusable}
		if m.unusable != "" {
			if p.Strict && m.unusable != "not running" {
				missing = append(missing, fmt.Sprintf("member %s: %s", m.node, m.unusable))
			}
			continue
		}
		r := byEndpoint[m.endpoint.String()]
		if r == nil {
			r = &read{endpoint: m.endpoint, node: m.node, guessed: m.guessed}
			byEndpoint[m.endpoint.String()] = r
			reads = append(reads, r)
		}
		r.members = append(r.members, i)
	}
	if len(reads) < len(list)-countUnusable(list) {
		logger.Warn("several cluster members name one plugin endpoint; it is read once", "members", len(list)-countUnusable(list), "endpoints", len(reads))
	}

	// Member reads end before the listing must: a member that does not
	// answer is reported as timed out while the others' queues are kept.
	memberDeadline := time.Now().Add(time.Duration(float64(time.Until(deadline)) * memberShare))
	budget := newBudget(module.MaxBodyBytes)
	vhosts := v.vhosts
	p.readAll(ctx, c, reads, module, target, vhosts, v.fresh, budget, memberDeadline)

	// A label that reads two ways may be settled by the vhost list, but
	// only by one fetched in this scrape: a vhost created since the cached
	// list could be the other reading. Fetch it once and read again.
	if !v.fresh {
		var again []*read
		for _, r := range reads {
			if errors.Is(r.err, ErrAmbiguous) {
				again = append(again, r)
			}
		}
		if len(again) > 0 {
			vctx, cancel := context.WithDeadline(ctx, memberDeadline)
			fresh, err := listVhosts(vctx, target, module)
			cancel()
			if err == nil {
				c.setVhosts(key, fresh)
				vhosts = fresh
				for _, r := range again {
					budget.left.Add(r.bytes) // read again, counted once
					r.set, r.err, r.bytes = nil, nil, 0
				}
				p.readAll(ctx, c, again, module, target, vhosts, true, budget, memberDeadline)
			} else {
				logger.Debug("refetching the vhost list to settle a label failed", "err", err)
			}
		}
	}

	var failed int
	for _, r := range reads {
		if r.err == nil {
			for _, i := range r.members {
				statuses[i].Up = true
			}
			continue
		}
		node := list[r.members[0]].node
		if errors.Is(r.err, errBudget) {
			return nil, r.err
		}
		if errors.Is(r.err, ErrAmbiguous) || errors.Is(r.err, ErrMalformed) {
			c.markDue(key) // a vhost created since may be what it needed
			return nil, unreadableError{fmt.Errorf("member %s: %w", node, r.err)}
		}
		reason := r.err.Error()
		if r.guessed != "" {
			reason = fmt.Sprintf("running but not yet reporting its listeners in /api/nodes; tried %s at %s: %s", r.guessed, r.endpoint, reason)
		}
		for _, i := range r.members {
			statuses[i].Reason = reason
		}
		failed++
		logger.Warn("reading a cluster member's plugin failed", "node", node, "endpoint", r.endpoint.String(), "err", reason)
		if p.Strict {
			missing = append(missing, fmt.Sprintf("member %s: %s", node, reason))
		}
	}
	for _, r := range reads {
		if r.err == nil && r.guessed != "" {
			logger.Info("read a member that does not report its listeners yet", "node", list[r.members[0]].node, "endpoint", r.endpoint.String(), "from", r.guessed)
		}
	}
	if failed > 0 || countUnusable(list) > 0 {
		c.markDue(key) // membership or listeners may have changed
	}
	if failed == len(reads) {
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
	for _, r := range reads {
		switch {
		case r.set == nil:
		case qs == nil:
			qs = r.set
		default:
			if err := qs.Merge(r.set); err != nil {
				return nil, err
			}
			r.set = nil
		}
	}
	if err := qs.Finish(); err != nil {
		return nil, err
	}
	l := &source.Listing{Queues: qs, Source: config.SourcePrometheus, Members: statuses}
	if len(missing) > 0 {
		// Strict: the fallback reads the whole cluster if it can; the
		// members read serve if it cannot.
		return nil, &source.PartialError{Listing: l, Err: errors.New(strings.Join(missing, "; "))}
	}
	return l, nil
}

func countUnusable(list []member) int {
	n := 0
	for _, m := range list {
		if m.unusable != "" {
			n++
		}
	}
	return n
}

// errMemberTimeout ends a member's read at its share of the scrape.
var errMemberTimeout = fmt.Errorf("timed out: its plugin did not answer within its share of the scrape timeout: %w", context.DeadlineExceeded)

// readAll reads reads through at most maxParallelReads workers, each read
// under the member deadline and the endpoint's gate.
func (p *Source) readAll(ctx context.Context, c *Cluster, reads []*read, module *config.Module, target brokerhttp.Target, vhosts map[string]bool, fresh bool, budget *budget, deadline time.Time) {
	mctx, cancel := context.WithDeadlineCause(ctx, deadline, errMemberTimeout)
	defer cancel()
	keep := keeper(&module.Filter, vhosts)
	var settle map[string]bool
	if fresh {
		settle = vhosts
	}
	jobs := make(chan *read)
	var wg sync.WaitGroup
	for range min(maxParallelReads, len(reads)) {
		wg.Go(func() {
			for r := range jobs {
				release, err := c.gates.acquire(mctx, r.endpoint.String())
				if err != nil {
					r.err = err
					continue
				}
				var res Result
				r.set, res, r.err = readMember(mctx, target, r.endpoint, module, keep, settle, budget)
				r.bytes = res.Bytes
				release()
				// A guessed endpoint counts only if the member there says
				// it is the one guessed for.
				if r.err == nil && r.guessed != "" && res.Node != "" && res.Node != r.node {
					r.set, r.err = nil, fmt.Errorf("the member answering there is %s", res.Node)
				}
			}
		})
	}
	for _, r := range reads {
		jobs <- r
	}
	close(jobs)
	wg.Wait()
}

// keeper keeps the rows the module's filters accept in the vhosts the
// user may read: the plugin endpoint is node-wide and takes no
// credentials, and the management source shows no more than that.
func keeper(filter *config.Filter, vhosts map[string]bool) func(vhost, name []byte) bool {
	if filter.Empty() {
		return func(vhost, _ []byte) bool { return vhosts[string(vhost)] }
	}
	return func(vhost, name []byte) bool { return vhosts[string(vhost)] && filter.Keep(vhost, name) }
}

// readMember reads one member's plugin answer into a set of its own. No
// credentials are sent: the plugin takes none, and the endpoint came from
// the broker's answer.
func readMember(ctx context.Context, target, endpoint brokerhttp.Target, module *config.Module, keep func(vhost, name []byte) bool, vhosts map[string]bool, budget *budget) (*queueset.QueueSet, Result, error) {
	ctx = brokerhttp.WithApprovedTarget(ctx, endpoint)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.BaseURL()+RequestPath(module.QueueFields()), nil)
	if err != nil {
		return nil, Result{}, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := module.HTTP.Do(req)
	if err != nil {
		return nil, Result{}, requestError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, Result{}, fmt.Errorf("plugin answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	qs := source.NewQueueSet(target, module)
	res, err := ParseOf(budget.reader(resp.Body), qs, keep, Limits{Vhosts: vhosts}, module.QueueFields())
	if err != nil {
		if budget.exceeded() {
			return nil, res, budget.err()
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, res, requestError(ctx, ctxErr)
		}
		return nil, res, err
	}
	return qs, res, nil
}

// budget is the bytes all members' answers of one listing may take
// together: max_response_bytes is per listing, however many members the
// cluster has.
type budget struct {
	limit, left atomic.Int64
}

// errBudget fails the whole listing: its members' answers together are
// larger than the listing may be.
var errBudget = errors.New("the members' plugin answers together exceed the listing's byte limit")

func newBudget(limit int64) *budget {
	if limit <= 0 {
		limit = config.DefaultMaxBodyBytes
	}
	b := &budget{}
	b.limit.Store(limit)
	b.left.Store(limit)
	return b
}

func (b *budget) exceeded() bool { return b.left.Load() < 0 }

func (b *budget) err() error {
	return fmt.Errorf("%w (%d bytes; max_response_bytes counts every member of a listing, raise --rabbitmq.max-response-bytes)", errBudget, b.limit.Load())
}

func (b *budget) reader(r io.Reader) io.Reader { return &budgetReader{r: r, b: b} }

type budgetReader struct {
	r io.Reader
	b *budget
}

func (br *budgetReader) Read(p []byte) (int, error) {
	if br.b.exceeded() {
		return 0, br.b.err()
	}
	// Never ask for more than is left (plus one byte, to tell "at the
	// limit" from "over it"): a member cannot overdraw by a read window.
	if left := br.b.left.Load() + 1; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := br.r.Read(p)
	if br.b.left.Add(-int64(n)) < 0 {
		return n, br.b.err()
	}
	return n, err
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
