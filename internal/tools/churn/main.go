// Command churn keeps a RabbitMQ node busy the way a busy shared machine
// does: it declares queues through AMQP in batches up to a ceiling, deletes
// them, and starts again, for scripts/test-under-load.sh. It is bounded in
// queues (at most -queues at a time), cycles and time, and on SIGINT or
// SIGTERM, as when it ends by itself, it deletes its vhost and with it
// every queue it declared. A cycle that fails (the node stopped by a fault
// test) starts again 5 s later.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

type config struct {
	amqpAddr, mgmtURL, user, password, vhost string
	queues, cycles                           int
	duration                                 time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.amqpAddr, "amqp", "127.0.0.1:5673", "AMQP host:port (default: the test second node, rabbit2)")
	flag.StringVar(&c.mgmtURL, "mgmt", "http://127.0.0.1:15673", "management API, to create and delete the vhost")
	flag.StringVar(&c.user, "user", "exporter2", "user (administrator: it creates the vhost)")
	flag.StringVar(&c.password, "password", "exporter2-secret", "password")
	flag.StringVar(&c.vhost, "vhost", "rqe-load", "vhost to churn in (created, and deleted at the end)")
	flag.IntVar(&c.queues, "queues", 20000, "queues declared per cycle before they are deleted")
	flag.IntVar(&c.cycles, "cycles", 100, "at most this many declare/delete cycles")
	flag.DurationVar(&c.duration, "duration", 30*time.Minute, "stop after this long at most")
	flag.Parse()
	if err := churn(c); err != nil {
		fmt.Fprintln(os.Stderr, "churn:", err)
		os.Exit(1)
	}
}

// churn runs the cycles until they are done, the time is up or a signal
// comes, then deletes the vhost whatever happened.
func churn(c config) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	var err error
	for {
		err = run(ctx, c)
		if err == nil || ctx.Err() != nil {
			break
		}
		// A fault test stops and restarts the node under the load; the
		// load goes on once it is back.
		fmt.Fprintln(os.Stderr, "churn:", err, "(starting again in 5 s)")
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
	// The node may be restarting too: try for up to a minute.
	for try := 0; ; try++ {
		derr := mgmt(c, http.MethodDelete, "/api/vhosts/"+url.PathEscape(c.vhost), "")
		if derr == nil {
			break
		}
		if try == 11 {
			fmt.Fprintln(os.Stderr, "churn: deleting the vhost:", derr)
			break
		}
		time.Sleep(5 * time.Second)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

func run(ctx context.Context, c config) error {
	if err := mgmt(c, http.MethodPut, "/api/vhosts/"+url.PathEscape(c.vhost), `{}`); err != nil {
		return err
	}
	perm := `{"configure":".*","write":".*","read":".*"}`
	if err := mgmt(c, http.MethodPut, "/api/permissions/"+url.PathEscape(c.vhost)+"/"+url.PathEscape(c.user), perm); err != nil {
		return err
	}
	u := url.URL{Scheme: "amqp", User: url.UserPassword(c.user, c.password), Host: c.amqpAddr, Path: "/"}
	conn, err := amqp.DialConfig(u.String(), amqp.Config{Vhost: c.vhost, Heartbeat: 30 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	start := time.Now()
	for cycle := 1; cycle <= c.cycles; cycle++ {
		t0 := time.Now()
		declared := 0
		for ; declared < c.queues && ctx.Err() == nil; declared++ {
			if _, err := ch.QueueDeclare(fmt.Sprintf("load.%06d", declared), false, false, false, false, nil); err != nil {
				return fmt.Errorf("cycle %d: declare: %w", cycle, err)
			}
		}
		t1 := time.Now()
		for i := range declared {
			// Not ctx-bound: a stopped run still deletes what it declared
			// (the vhost deletion would too, but slower on a busy node).
			if _, err := ch.QueueDelete(fmt.Sprintf("load.%06d", i), false, false, false); err != nil {
				return fmt.Errorf("cycle %d: delete: %w", cycle, err)
			}
		}
		fmt.Printf("churn: cycle %d: declared %d queues in %v, deleted them in %v (%v in all)\n",
			cycle, declared, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond), time.Since(start).Round(time.Second))
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// mgmt sends one management API request; 404 on DELETE counts as done.
func mgmt(c config, method, path, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.mgmtURL+path, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 && (method != http.MethodDelete || resp.StatusCode != http.StatusNotFound) {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}
