package web

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.yaml.in/yaml/v3"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// writeDebug answers debug=true like blackbox_exporter: the probe's log lines,
// the metrics it would have returned, and the effective module. Secrets are
// config.Secret values and print as <secret>.
func writeDebug(w http.ResponseWriter, logger *slog.Logger, logs *bytes.Buffer, g prometheus.Gatherer, queues *queueset.QueueSet, module *config.Module) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "Logs for the probe:\n%s\n", logs.String())
	fmt.Fprintln(bw, "Metrics that would have been returned:")
	mfs, err := g.Gather()
	if err != nil {
		fmt.Fprintf(bw, "gather error: %v\n", err)
	}
	enc := expfmt.NewEncoder(bw, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			logger.Debug("writing debug response", "err", err)
			return
		}
	}
	if queues != nil {
		if _, err := queues.WriteTo(bw); err != nil {
			return
		}
	}
	name := module.Name
	if name == "" {
		name = "(none: credentials from --rabbitmq.user/--rabbitmq.password and their env vars)"
	}
	fmt.Fprintf(bw, "\nModule configuration (auth_module %s):\n", name)
	cfg := module.Config
	if module.Name == "" {
		cfg.Username = module.Credentials.Username
		cfg.Password = module.Credentials.Password
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		fmt.Fprintf(bw, "cannot print: %v\n", err)
		return
	}
	_, _ = bw.Write(out) // bufio keeps a failed write for the deferred Flush; the client has gone
}

// teeHandler sends each record to the exporter's log and to the probe's own
// debug buffer.
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if t.a.Enabled(ctx, r.Level) {
		_ = t.a.Handle(ctx, r.Clone())
	}
	if t.b.Enabled(ctx, r.Level) {
		return t.b.Handle(ctx, r)
	}
	return nil
}

func (t teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(attrs), t.b.WithAttrs(attrs)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}
