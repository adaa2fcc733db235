// Command fakebroker serves a generated RabbitMQ management API queue listing
// (internal/fakeapi) for whole-process benchmarks of the exporter.
//
//	GET  /api/queues      the listing (basic auth; any query; X-Fake-Requests header)
//	GET  /api/vhosts      the vhosts the queues are spread over (basic auth)
//	GET  /stats           {"requests":N,"queues":Q,"body_bytes":B,"latency":"0s"}
//	POST /-/latency?d=300ms   delay later listings by d (0 turns it off)
//
// With -plugin-listen it also serves the rabbitmq_prometheus answer for the
// same queues (GET /metrics/detailed, any query, no auth) on a second
// address, written raw as 3.10 does or escaped as 4.x does (-plugin-style).
//
// It prints "listening on ADDR" once ready, so -listen 127.0.0.1:0 works.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

func main() {
	var (
		listen   = flag.String("listen", "127.0.0.1:15673", "address to listen on (loopback only is sensible)")
		queues   = flag.Int("queues", 10000, "queues in the listing")
		vhosts   = flag.Int("vhosts", 10, "vhosts the queues are spread over (the first is /)")
		shape    = flag.String("shape", "lean", "lean (the exporter's columns= answer) or full (default listing with statistics)")
		streams  = flag.Int("stream-every", fakeapi.DefaultStreamEvery, "every n-th queue is a stream without counts (0: none)")
		user     = flag.String("user", "guest", "basic-auth user")
		password = flag.String("password", "guest", "basic-auth password")
		latency  = flag.Duration("latency", 0, "delay before each listing answer")
		plugin   = flag.String("plugin-listen", "", "also serve /metrics/detailed (rabbitmq_prometheus) on this address")
		style    = flag.String("plugin-style", "raw", "raw (3.10 labels) or escaped (4.x)")
		fields   = flag.String("fields", "", "per-queue fields (as --queue.fields) the plugin answer holds; default the depths")
	)
	flag.Parse()
	fs, err := queue.ParseList(*fields)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakebroker: -fields:", err)
		os.Exit(2)
	}
	if err := run(*listen, *plugin, fakeapi.PluginStyle(*style), *user, *password, *latency, fakeapi.Options{
		Queues: *queues, Vhosts: *vhosts, StreamEvery: *streams, Shape: fakeapi.Shape(*shape),
	}, fs); err != nil {
		fmt.Fprintln(os.Stderr, "fakebroker:", err)
		os.Exit(1)
	}
}

func run(listen, pluginListen string, style fakeapi.PluginStyle, user, password string, latency time.Duration, o fakeapi.Options, fs queue.FieldSet) error {
	if o.Shape != fakeapi.Lean && o.Shape != fakeapi.Full {
		return fmt.Errorf("unknown -shape %q (lean or full)", o.Shape)
	}
	if style != fakeapi.PluginRaw && style != fakeapi.PluginEscaped {
		return fmt.Errorf("unknown -plugin-style %q (raw or escaped)", style)
	}
	if o.Queues < 0 {
		return errors.New("-queues must not be negative")
	}
	h := fakeapi.NewHandler(fakeapi.Generate(o), user, password)
	h.SetLatency(latency)

	mux := http.NewServeMux()
	mux.Handle("/", h)
	// The plugin source asks which vhosts the user may read.
	mux.HandleFunc("GET /api/vhosts", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			http.Error(w, "unauthorised", http.StatusUnauthorized)
			return
		}
		names := make([]map[string]string, max(o.Vhosts, 1))
		for v := range names {
			names[v] = map[string]string{"name": fakeapi.VhostName(v)}
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(names); err != nil {
			fmt.Fprintln(os.Stderr, "fakebroker: writing vhosts:", err)
		}
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		stats := map[string]any{"requests": h.Requests(), "queues": o.Queues, "body_bytes": len(h.Body()), "latency": h.Latency().String()}
		if err := json.NewEncoder(w).Encode(stats); err != nil {
			fmt.Fprintln(os.Stderr, "fakebroker: writing stats:", err)
		}
	})
	mux.HandleFunc("POST /-/latency", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 || d > time.Minute {
			http.Error(w, "want ?d=<duration between 0 and 1m>", http.StatusBadRequest)
			return
		}
		h.SetLatency(d)
		fmt.Fprintln(w, d)
	})

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s (%d queues, %d body bytes, shape %s)\n", ln.Addr(), o.Queues, len(h.Body()), o.Shape)

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	servers := []*http.Server{srv}
	if pluginListen != "" {
		body := fakeapi.GeneratePlugin(o, style)
		if !fs.IsDefault() {
			body = fakeapi.GeneratePluginOf(o, style, fs)
		}
		psrv, err := servePlugin(pluginListen, body, style)
		if err != nil {
			ln.Close()
			return err
		}
		servers = append(servers, psrv)
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range servers {
			if err := s.Shutdown(shutdown); err != nil {
				fmt.Fprintln(os.Stderr, "fakebroker: shutdown:", err)
			}
		}
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// servePlugin serves body as the plugin's /metrics/detailed answer.
func servePlugin(listen string, body []byte, style fakeapi.PluginStyle) (*http.Server, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	fmt.Printf("plugin listening on %s (%d body bytes, style %s)\n", ln.Addr(), len(body), style)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics/detailed", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "fakebroker: plugin server stopped:", err)
		}
	}()
	return srv, nil
}
