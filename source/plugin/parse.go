package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// Sink receives the counts read. *queueset.QueueSet is one; tests record
// with their own.
type Sink interface {
	// Set records count field of queue name in vhost; dup reports that the
	// queue already had that count.
	Set(vhost, name []byte, field int, v int64) (dup bool, err error)
}

// Limits bound the memory and work one answer may take. Zero values take the
// defaults.
type Limits struct {
	// MaxLineBytes is the longest line accepted (default 64 KiB). A queue
	// name is at most 255 bytes; vhost names are the operator's.
	MaxLineBytes int
	// MaxHeldBytes bounds the labels kept while their reading waits for
	// rabbitmq_build_info (default 1 MiB). Only labels with a backslash wait.
	MaxHeldBytes int
	// MaxFamilies is the most metric families one answer may have (default
	// 256; the plugin writes about ten).
	MaxFamilies int
	// Vhosts, if not nil, are the broker's vhost names (from the management
	// API). An unescaped label with several possible vhost/queue splits (a
	// queue named with `",queue="`) then reads one way when exactly one of
	// the splits names a known vhost; without them it is ambiguous.
	Vhosts map[string]bool
}

const (
	defaultMaxLineBytes = 64 << 10
	defaultMaxHeldBytes = 1 << 20
	defaultMaxFamilies  = 256
	// readWindow is read at a time; larger lines grow the window up to
	// MaxLineBytes.
	readWindow = 256 << 10
)

var (
	// ErrAmbiguous means the answer could be read in more than one way (or
	// in none, where an honest plugin writes exactly one): the caller must not
	// use any count from it.
	ErrAmbiguous = errors.New("plugin answer is ambiguous")
	// ErrMalformed means the answer is not what the plugin writes for
	// /metrics/detailed?family=queue_coarse_metrics (truncated, another
	// endpoint, a line over the limit).
	ErrMalformed = errors.New("plugin answer is malformed")
)

// Mode is how an answer writes label values.
type Mode uint8

const (
	// ModeUnknown: no (usable) rabbitmq_build_info; only labels that read
	// the same either way were accepted.
	ModeUnknown Mode = iota
	// ModeRaw: queue and vhost names written as they are (3.9.9 to 3.11.27,
	// 3.12.0 to 3.12.10).
	ModeRaw
	// ModeEscaped: backslash, double quote and line feed escaped as the text
	// format requires (every other version).
	ModeEscaped
)

func (m Mode) String() string {
	switch m {
	case ModeRaw:
		return "raw"
	case ModeEscaped:
		return "escaped"
	}
	return "unknown"
}

// Result describes one member's answer, for the caller's checks and logs.
type Result struct {
	// From rabbitmq_build_info ("" when absent).
	RabbitMQVersion, PluginVersion, ClientVersion, ErlangVersion string
	// From rabbitmq_identity_info ("" when absent).
	Node, Cluster string
	// Mode is how label values were read.
	Mode Mode
	// Queues is the most samples any of our families had, before keep.
	Queues int
	// Samples is the number of counts handed to the sink (after keep).
	Samples int
	// Rejected is the number of samples keep turned away.
	Rejected int
	// Held is the number of samples whose reading waited for the version.
	Held int
	// Collisions counts samples the sink reported as repeated for names
	// with invalid UTF-8, which the sink may turn into one series (QueueSet
	// keeps the first value; it reports repeats only once the first family
	// is in, and Finish counts the others in Duplicates).
	Collisions int
	// Bytes and Lines read.
	Bytes int64
	Lines int64
}

// Parse reads one cluster member's answer to
// GET /metrics/detailed?family=queue_coarse_metrics and hands each sample of
// the families named in queue.Fields (Plugin) whose queue keep accepts
// (nil keeps all) to dst. Memory stays bounded: a fixed read window, lim's
// line and held-label limits, and whatever dst takes.
//
// On error dst may already hold some counts; the caller must discard it
// (and fall back to the management listing for this scrape when the error
// is ErrAmbiguous or ErrMalformed). Use a fresh sink per member: a queue
// the sink already has counts as listed twice.
//
// See doc.go for the rules that make a successful Parse exact.
func Parse(r io.Reader, dst Sink, keep func(vhost, name []byte) bool, lim Limits) (Result, error) {
	return ParseOf(r, dst, keep, lim, queue.Fields())
}

// ParseOf is Parse for the fields fs: it requires exactly their families
// (from the groups fs.Groups() asks for) and hands dst field numbers as in fs.
// A Float field's value is its float64 bits, and a NaN sample (the plugin's
// "none", e.g. a queue without a head message timestamp) is no sample.
func ParseOf(r io.Reader, dst Sink, keep func(vhost, name []byte) bool, lim Limits, fs queue.FieldSet) (Result, error) {
	p := newParser(dst, keep, lim, fs)
	defer p.release()
	defer p.blockRows.release()
	if err := p.run(r); err != nil {
		return p.res, err
	}
	if err := p.finish(); err != nil {
		return p.res, err
	}
	return p.res, nil
}

// family is one metric family of ours: where its samples go.
type family struct {
	name    []byte
	field   int
	group   string
	sparse  bool   // may leave queues out (queue.Field.Sparse)
	witness bool   // not chosen: read only to compare its queue list with the others
	float   bool   // values are floats, NaN meaning none
	seen    bool   // its block was opened
	lines   int    // samples, before keep
	rows    uint64 // sum of the hashes of its samples' label texts
}

// blockKind is what the lines of the current block are checked against.
type blockKind uint8

const (
	blockNone     blockKind = iota // before the first # TYPE
	blockOurs                      // one of queue.Fields' families
	blockSingle                    // counter, gauge, untyped: lines are NAME{ or NAME
	blockSuffix                    // summary, histogram: also NAME_sum, NAME_count, NAME_bucket
	blockBuild                     // rabbitmq_build_info
	blockIdentity                  // rabbitmq_identity_info
)

const (
	buildInfoName    = "rabbitmq_build_info"
	identityInfoName = "rabbitmq_identity_info"
)

type parser struct {
	dst  Sink
	keep func(vhost, name []byte) bool
	lim  Limits
	res  Result

	buf []byte // the read window

	fams    []family
	seen    map[string]struct{} // every family opened, for "one block per family"
	kind    blockKind
	cur     []byte // current block's family name (aliases fams or name)
	curFam  *family
	name    []byte // storage for a non-our family name
	pending bool   // a # TYPE line was read; its # HELP must follow

	ended  bool  // the final empty line was read
	lineNo int64 // of the line being read, for errors

	buildSamples, identitySamples int

	// Labels whose reading depends on the mode, kept until build_info.
	held      []heldSample
	heldBytes int
	heldData  []byte

	// A label that only reads raw, accepted before the mode was known.
	rawOnly string

	scratchV, scratchN []byte // unescaped labels

	pos  int // of the sample being read within its family
	memo keepMemo
	seed maphash.Seed // for family.rows and blockRows

	blockRows rowSet // each block's label texts (rule 4)
}

// witnessFamily is the coarse family read beside a lone
// queue_consumer_count family.
const witnessFamily = "rabbitmq_detailed_queue_messages"

type heldSample struct {
	field, pos int
	value      int64
	start, end int // of the label text in heldData
	line       int64
}

var windowPool = sync.Pool{New: func() any { b := make([]byte, readWindow); return &b }}

func newParser(dst Sink, keep func(vhost, name []byte) bool, lim Limits, fields queue.FieldSet) *parser {
	if lim.MaxLineBytes <= 0 {
		lim.MaxLineBytes = defaultMaxLineBytes
	}
	if lim.MaxHeldBytes <= 0 {
		lim.MaxHeldBytes = defaultMaxHeldBytes
	}
	if lim.MaxFamilies <= 0 {
		lim.MaxFamilies = defaultMaxFamilies
	}
	p := &parser{dst: dst, keep: keep, lim: lim, seen: make(map[string]struct{}, 16), memo: keepMemo{field: -1}, seed: maphash.MakeSeed()}
	p.fams = make([]family, len(fields))
	for i, f := range fields {
		p.fams[i] = family{name: []byte(f.Plugin), field: i, group: f.Group, sparse: f.Sparse, float: f.Float}
	}
	if groups := fields.PluginGroups(); len(groups) > len(fields.Groups()) {
		// The coarse group was asked for beside a lone family (see
		// queue.FieldSet.PluginGroups): its messages family is a witness.
		p.fams = append(p.fams, family{name: []byte(witnessFamily), field: len(fields), group: queue.GroupCoarse, witness: true})
	}
	p.buf = *windowPool.Get().(*[]byte)
	return p
}

// release recycles the window: a scrape every few seconds per member would
// otherwise allocate and zero 256 KiB each time.
func (p *parser) release() {
	if len(p.buf) == readWindow {
		b := p.buf
		windowPool.Put(&b)
	}
	p.buf = nil
}

// run splits the body into lines within the fixed window.
func (p *parser) run(r io.Reader) error {
	start, end := 0, 0
	scanned := 0 // buf[start:scanned] holds no line feed: slow readers do not rescan
	for {
		n, err := r.Read(p.buf[end:])
		end += n
		p.res.Bytes += int64(n)
		for {
			i := bytes.IndexByte(p.buf[scanned:end], '\n')
			if i < 0 {
				scanned = end
				break
			}
			p.res.Lines++
			p.lineNo = p.res.Lines
			if err := p.line(p.buf[start : scanned+i]); err != nil {
				return err
			}
			start = scanned + i + 1
			scanned = start
		}
		if err == io.EOF {
			if start < end {
				return p.malformed("the body does not end with a line feed (truncated?)")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if end-start > p.lim.MaxLineBytes {
			return p.malformed("a line is longer than %d bytes", p.lim.MaxLineBytes)
		}
		if end == len(p.buf) {
			if start == 0 {
				// A line longer than the window but within the limit.
				nb := make([]byte, min(2*len(p.buf), p.lim.MaxLineBytes+1))
				copy(nb, p.buf[:end])
				p.release()
				p.buf = nb
			} else {
				end = copy(p.buf, p.buf[start:end])
				scanned -= start
				start = 0
			}
		}
	}
}

func (p *parser) malformed(format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrMalformed, p.lineNo, fmt.Sprintf(format, args...))
}

func (p *parser) ambiguous(format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrAmbiguous, p.lineNo, fmt.Sprintf(format, args...))
}

// line checks one line against the block structure prometheus.erl writes:
//
//	# TYPE NAME TYPE
//	# HELP NAME TEXT
//	NAME{LABELS} VALUE     (any number)
//	...                    (the next block)
//	                       (one empty line, then the end)
//
// Nothing else is accepted: no comments, no empty lines, no sample outside
// its family's block, no family twice. doc.go explains why this catches
// every line forged by a raw queue name.
func (p *parser) line(l []byte) error {
	if p.ended {
		return p.malformed("text after the final empty line")
	}
	if p.pending {
		return p.help(l)
	}
	if len(l) > 0 && l[0] == '#' {
		return p.typeLine(l)
	}
	switch p.kind {
	case blockOurs:
		if len(l) > len(p.cur) && l[len(p.cur)] == '{' && string(l[:len(p.cur)]) == string(p.cur) {
			return p.sample(l[len(p.cur)+1:])
		}
	case blockSingle:
		if sampleOf(l, p.cur) {
			return nil
		}
	case blockSuffix:
		if sampleOf(l, p.cur) {
			return nil
		}
		if len(l) > len(p.cur) && l[len(p.cur)] == '_' && bytes.HasPrefix(l, p.cur) {
			rest := l[len(p.cur):]
			for _, s := range [...]string{"_sum", "_count", "_bucket"} {
				if sampleOf(rest, []byte(s)) {
					return nil
				}
			}
		}
	case blockBuild, blockIdentity:
		if sampleOf(l, p.cur) {
			return p.info(l[len(p.cur):])
		}
	}
	if len(l) == 0 {
		if p.kind == blockNone {
			return p.malformed("empty answer: no metric families")
		}
		p.ended = true
		return nil
	}
	if p.kind == blockNone {
		return p.malformed("a sample before the first # TYPE line: %s", clip(l))
	}
	return p.ambiguous("a line that is not a sample of the block's family %s: %s", p.cur, clip(l))
}

// sampleOf tells whether l starts with name followed by '{' or ' '.
func sampleOf(l, name []byte) bool {
	return len(l) > len(name) && (l[len(name)] == '{' || l[len(name)] == ' ') && string(l[:len(name)]) == string(name)
}

// typeLine opens a block.
func (p *parser) typeLine(l []byte) error {
	rest, ok := bytes.CutPrefix(l, []byte("# TYPE "))
	if !ok {
		return p.ambiguous("a comment line other than # TYPE before its # HELP: %s", clip(l))
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return p.malformed("a # TYPE line without a type: %s", clip(l))
	}
	name, typ := rest[:sp], string(rest[sp+1:])
	if !validMetricName(name) {
		return p.ambiguous("a # TYPE line with an invalid metric name: %s", clip(l))
	}
	if _, dup := p.seen[string(name)]; dup {
		return p.ambiguous("a second block of family %s", name)
	}
	if len(p.seen) >= p.lim.MaxFamilies {
		return p.malformed("more than %d metric families", p.lim.MaxFamilies)
	}
	p.seen[string(name)] = struct{}{}
	p.curFam = nil
	switch {
	case p.ourFamily(name) != nil:
		if typ != "gauge" && typ != "counter" && typ != "untyped" {
			return p.malformed("family %s has type %q", name, typ)
		}
		p.curFam = p.ourFamily(name)
		p.curFam.seen = true
		p.kind, p.cur = blockOurs, p.curFam.name
	case typ == "counter" || typ == "gauge" || typ == "untyped":
		p.kind = blockSingle
		switch string(name) {
		case buildInfoName:
			p.kind = blockBuild
		case identityInfoName:
			p.kind = blockIdentity
		}
	case typ == "summary" || typ == "histogram":
		p.kind = blockSuffix
	default:
		return p.malformed("unknown metric type %q: %s", typ, clip(l))
	}
	if p.kind != blockOurs {
		p.name = append(p.name[:0], name...)
		p.cur = p.name
	}
	p.pending = true
	return nil
}

func (p *parser) ourFamily(name []byte) *family {
	for i := range p.fams {
		if string(p.fams[i].name) == string(name) {
			return &p.fams[i]
		}
	}
	return nil
}

// help checks the # HELP line that must follow # TYPE. Its text is free
// (escaped by prometheus.erl in every version), so only the name is checked.
func (p *parser) help(l []byte) error {
	p.pending = false
	rest, ok := bytes.CutPrefix(l, []byte("# HELP "))
	if !ok || !bytes.HasPrefix(rest, p.cur) || len(rest) == len(p.cur) || rest[len(p.cur)] != ' ' {
		return p.ambiguous("# TYPE %s is not followed by its # HELP line: %s", p.cur, clip(l))
	}
	return nil
}

// validMetricName is the classic metric name alphabet, which every family
// the plugin writes uses.
func validMetricName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// labelsOpen and labelsMid surround the vhost in every version: the plugin
// writes vhost before queue (see doc.go).
const (
	labelsOpen = `vhost="`
	labelsMid  = `",queue="`
)

// sample reads `vhost="…",queue="…"} VALUE` (l starts after the '{').
func (p *parser) sample(l []byte) error {
	f := p.curFam
	p.pos = f.lines
	f.lines++
	sp := bytes.LastIndexByte(l, ' ')
	if sp < 2 || l[sp-1] != '}' || l[sp-2] != '"' || !bytes.HasPrefix(l, []byte(labelsOpen)) || sp-2 < len(labelsOpen) {
		return p.ambiguous("a sample of %s that is not {vhost=\"…\",queue=\"…\"} VALUE: %s", f.name, clip(l))
	}
	var v int64
	var ok, none bool
	if f.float {
		v, none, ok = parseFloat(l[sp+1:])
	} else {
		v, ok = parseCount(l[sp+1:])
	}
	if !ok {
		return p.ambiguous("a sample of %s whose value is not a count: %s", f.name, clip(l))
	}
	labels := l[len(labelsOpen) : sp-2]
	h := maphash.Bytes(p.seed, labels)
	f.rows += h
	p.blockRows.add(f.field, h)
	if none || f.witness {
		return nil // its labels still count for the checks above
	}
	// Fast path: one double quote (the separator's first) before the name,
	// none after it, no backslash: both modes read it the same.
	if q := bytes.IndexByte(labels, '"'); q >= 0 && bytes.HasPrefix(labels[q:], []byte(labelsMid)) {
		vhost, name := labels[:q], labels[q+len(labelsMid):]
		if bytes.IndexByte(name, '"') < 0 && bytes.IndexByte(labels, '\\') < 0 {
			return p.emit(vhost, name, f.field, v)
		}
	}
	return p.slowSample(labels, f, v)
}

// slowSample reads labels whose reading may depend on the mode.
func (p *parser) slowSample(labels []byte, f *family, v int64) error {
	mode := p.res.Mode
	if mode == ModeUnknown {
		mode = p.modeSoFar()
	}
	switch mode {
	case ModeRaw:
		vh, name, n := p.splitRaw(labels)
		if n > 1 && !p.anySplitKept(labels) {
			return p.drop()
		}
		if n != 1 {
			return p.ambiguousSplit(labels, n)
		}
		return p.emit(vh, name, f.field, v)
	case ModeEscaped:
		vh, name, ok := p.unescape(labels)
		if !ok {
			return p.ambiguous("a label of %s that is not escaped although the version escapes: %s", f.name, clip(labels))
		}
		return p.emit(vh, name, f.field, v)
	}
	evh, ename, ok := p.unescape(labels)
	vh, name, n := p.splitRaw(labels)
	switch {
	case !ok && n == 1:
		// Only the raw reading exists; build_info must not say otherwise.
		if p.rawOnly == "" {
			p.rawOnly = fmt.Sprintf("line %d: %s", p.lineNo, clip(labels))
		}
		return p.emit(vh, name, f.field, v)
	case !ok && n == 0:
		return p.ambiguous("a sample of %s without a queue label: %s", f.name, clip(labels))
	case !ok && !p.anySplitKept(labels):
		return p.drop()
	case !ok:
		return p.ambiguousSplit(labels, n)
	case p.keep != nil && !p.keep(evh, ename) && !p.anySplitKept(labels):
		return p.drop() // kept under no reading: not worth holding
	}
	return p.hold(labels, f.field, v)
}

// modeSoFar is ModeRaw once a label that only reads raw was accepted.
func (p *parser) modeSoFar() Mode {
	if p.rawOnly != "" {
		return ModeRaw
	}
	return ModeUnknown
}

func (p *parser) ambiguousSplit(labels []byte, n int) error {
	if n == 0 {
		return p.ambiguous("a sample without a queue label: %s", clip(labels))
	}
	return p.ambiguous("unescaped labels contain %q %d times, so vhost and queue cannot be told apart: %s", labelsMid, n, clip(labels))
}

// hold keeps a sample until the mode is known.
func (p *parser) hold(labels []byte, field int, v int64) error {
	if p.heldBytes+len(labels) > p.lim.MaxHeldBytes {
		return p.ambiguous("labels with backslashes exceed %d bytes before rabbitmq_build_info tells whether they are escaped", p.lim.MaxHeldBytes)
	}
	start := len(p.heldData)
	p.heldData = append(p.heldData, labels...)
	p.heldBytes += len(labels)
	p.held = append(p.held, heldSample{field: field, pos: p.pos, value: v, start: start, end: len(p.heldData), line: p.lineNo})
	p.res.Held++
	return nil
}

// emit hands one sample to the sink.
func (p *parser) emit(vhost, name []byte, field int, v int64) error {
	if p.keep != nil && !p.kept(field, p.pos, vhost, name) {
		p.res.Rejected++
		return nil
	}
	dup, err := p.dst.Set(vhost, name, field, v)
	if err != nil {
		return err
	}
	if dup {
		if utf8.Valid(vhost) && utf8.Valid(name) {
			return p.ambiguous("queue %q in vhost %q is listed twice in %s", name, vhost, p.fams[field].name)
		}
		p.res.Collisions++
		return nil
	}
	p.res.Samples++
	return nil
}

// finish settles the mode, the held samples and the whole-answer checks.
func (p *parser) finish() error {
	if !p.ended {
		return p.malformed("the body ends without the final empty line (truncated?)")
	}
	if p.pending {
		return p.malformed("the body ends after a # TYPE line")
	}
	for _, f := range p.fams {
		if !f.seen {
			return p.malformed("family %s is missing (not an answer to /metrics/detailed?family=%s?)", f.name, f.group)
		}
		p.res.Queues = max(p.res.Queues, f.lines)
	}
	if err := p.checkRepeats(); err != nil {
		return err
	}
	mode := modeOf(p.res.PluginVersion, p.res.RabbitMQVersion)
	p.res.Mode = mode
	if mode == ModeEscaped && p.rawOnly != "" {
		return fmt.Errorf("%w: version %s escapes labels, but %s is not escaped", ErrAmbiguous, p.version(), p.rawOnly)
	}
	if mode == ModeUnknown && p.rawOnly != "" {
		mode = ModeRaw
	}
	if mode != ModeEscaped {
		// Every version that writes raw labels renders each family from the
		// same list of queues (doc.go), so the families must list the same
		// label texts: same number, same sum of seeded 64-bit hashes.
		// Sparse families leave some queues out; the others list every
		// queue the member leads (the groups' tables are written together,
		// so a queue created or deleted between them is rare, and makes
		// that scrape use the management listing).
		for i, f := range p.fams {
			if f.sparse {
				continue
			}
			for _, g := range p.fams[:i] {
				if g.sparse {
					continue
				}
				if f.lines != g.lines {
					return fmt.Errorf("%w: families %s and %s list %d and %d queues", ErrAmbiguous, g.name, f.name, g.lines, f.lines)
				}
				if f.rows != g.rows {
					return fmt.Errorf("%w: families %s and %s list different queues", ErrAmbiguous, g.name, f.name)
				}
				break
			}
		}
	}
	if len(p.held) > 0 && mode == ModeUnknown {
		h := p.held[0]
		return fmt.Errorf("%w: no usable rabbitmq_build_info to tell whether %d label(s) with backslashes are escaped, e.g. line %d: %s",
			ErrAmbiguous, len(p.held), h.line, clip(p.heldData[h.start:h.end]))
	}
	p.res.Mode = mode
	for _, h := range p.held {
		labels := p.heldData[h.start:h.end]
		p.lineNo, p.pos = h.line, h.pos
		if err := p.slowSample(labels, &p.fams[h.field], h.value); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) version() string {
	if p.res.PluginVersion != "" {
		return p.res.PluginVersion
	}
	return p.res.RabbitMQVersion
}

// parseCount reads a non-negative decimal integer that fits int64, as the
// plugin writes counts (integer_to_binary).
func parseCount(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v int64 // 19 digits may wrap; the length check below catches that
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	if len(b) == 19 && string(b) > "9223372036854775807" {
		return 0, false
	}
	return v, true
}

// parseFloat reads a Float field's value as prometheus.erl writes it (an
// integer, a float, or NaN for none), returning its float64 bits; none is
// true for NaN.
func parseFloat(b []byte) (bits int64, none, ok bool) {
	if v, ok := parseCount(b); ok && v < 1<<53 {
		return int64(math.Float64bits(float64(v))), false, true
	}
	if string(b) == "NaN" {
		return 0, true, true
	}
	// Digits, sign, point and exponent only: ParseFloat alone would also take
	// "Inf", "0x1p3" and underscores, which the plugin never writes.
	if len(b) == 0 || len(b) > 40 {
		return 0, false, false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			return 0, false, false
		}
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, false, false
	}
	return int64(math.Float64bits(v)), false, true
}

// clip shortens b for an error message and quotes it, so a name with line
// feeds or control bytes stays on one line.
func clip(b []byte) string {
	const maxShown = 200
	if len(b) > maxShown {
		return strconv.Quote(string(b[:maxShown])) + "…"
	}
	return strconv.Quote(string(b))
}
