// Command fieldcost measures what the per-queue field groups cost a real
// broker and how far each request lags the queues: it declares -queues
// classic queues on a vhost of its own, measures the broker's CPU per call
// of each request the exporter makes for a field set (management listing
// with and without statistics, plugin family groups), then how long each
// takes to show a newly published, timestamped message. It deletes its vhost
// at the end. The README's "Per-queue fields" figures come from it:
//
//	go run ./internal/tools/fieldcost -queues 10000
//
// The broker's beam pid comes from -pid or rabbitmqctl eval 'os:getpid().'.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/plugin"
)

type options struct {
	mgmt, plugin, amqpAddr, user, password string
	queues, pid                            int
	window, lagCap                         time.Duration

	lastCPU, lastElapsed float64 // of the last cpuRate window
}

func main() {
	var o options
	flag.StringVar(&o.mgmt, "broker", "http://127.0.0.1:15672", "management API base URL")
	flag.StringVar(&o.plugin, "plugin", "http://127.0.0.1:15692", "rabbitmq_prometheus base URL")
	flag.StringVar(&o.amqpAddr, "amqp", "127.0.0.1:5672", "AMQP host:port")
	flag.StringVar(&o.user, "user", "guest", "user")
	flag.StringVar(&o.password, "password", "guest", "password")
	flag.IntVar(&o.queues, "queues", 10000, "classic queues to declare")
	flag.IntVar(&o.pid, "pid", 0, "the broker's beam pid (0: ask rabbitmqctl)")
	flag.DurationVar(&o.window, "window", 10*time.Second, "how long each request is repeated for its CPU")
	flag.DurationVar(&o.lagCap, "lag-cap", 3*time.Minute, "longest wait for a request to show a new message")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "fieldcost:", err)
		os.Exit(1)
	}
}

// request is one kind of call the exporter makes for a field set.
type request struct {
	name, url string
	mgmt      bool
}

func requests(o options) ([]request, error) {
	var out []request
	for _, set := range []struct{ name, fields string }{
		{"depths (default)", ""},
		{"+consumers", "messages,messages_ready,messages_unacknowledged,consumers"},
		{"+consumer_capacity,head_message_timestamp", "messages,messages_ready,messages_unacknowledged,consumers,consumer_capacity,head_message_timestamp"},
	} {
		fs, err := queue.ParseList(set.fields)
		if err != nil {
			return nil, err
		}
		out = append(out,
			request{name: "management " + set.name, url: o.mgmt + "/api/queues?" + management.QueuesQueryOf(fs), mgmt: true},
			request{name: "plugin " + set.name, url: o.plugin + plugin.RequestPath(fs)})
	}
	return out, nil
}

func run(o options) error {
	reqs, err := requests(o)
	if err != nil {
		return err
	}
	if o.pid == 0 {
		out, err := exec.Command("rabbitmqctl", "eval", "os:getpid().").Output()
		if err != nil {
			return fmt.Errorf("rabbitmqctl eval: %w", err)
		}
		if o.pid, err = strconv.Atoi(strings.Trim(strings.TrimSpace(string(out)), `"`)); err != nil {
			return fmt.Errorf("beam pid %q: %w", out, err)
		}
	}
	vhost := fmt.Sprintf("fieldcost-%d", time.Now().UnixNano())
	if err := o.api(http.MethodPut, "/api/vhosts/"+url.PathEscape(vhost), "{}"); err != nil {
		return err
	}
	defer func() {
		if err := o.api(http.MethodDelete, "/api/vhosts/"+url.PathEscape(vhost), ""); err != nil {
			fmt.Fprintln(os.Stderr, "fieldcost: deleting vhost:", err)
		}
	}()
	if err := o.api(http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(o.user), `{"configure":".*","write":".*","read":".*"}`); err != nil {
		return err
	}
	conn, err := amqp.DialConfig((&url.URL{Scheme: "amqp", User: url.UserPassword(o.user, o.password), Host: o.amqpAddr, Path: "/"}).String(), amqp.Config{Vhost: vhost})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	start := time.Now()
	for i := range o.queues {
		if _, err := ch.QueueDeclare(fmt.Sprintf("q-%06d", i), true, false, false, false, nil); err != nil {
			return err
		}
		if i%2 == 0 {
			if err := ch.PublishWithContext(context.Background(), "", fmt.Sprintf("q-%06d", i), false, false,
				amqp.Publishing{Timestamp: time.Now(), Body: []byte("x")}); err != nil {
				return err
			}
		}
	}
	fmt.Printf("declared %d queues (half with a message) in %s\n", o.queues, time.Since(start).Round(time.Second))
	// Let the queues emit their first statistics before measuring.
	time.Sleep(15 * time.Second)

	idle, err := o.cpuRate(o.window, nil)
	if err != nil {
		return err
	}
	fmt.Printf("broker idle: %.3f CPU s/s\n\n| request | median s | body bytes | broker CPU s per call |\n|---|---:|---:|---:|\n", idle)
	for _, r := range reqs {
		var times []float64
		var size int
		_, err := o.cpuRate(o.window, func() error {
			t0 := time.Now()
			n, err := o.get(r.url, r.mgmt)
			times = append(times, time.Since(t0).Seconds())
			size = n
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		slices.Sort(times)
		perCall := (o.lastCPU - idle*o.lastElapsed) / float64(len(times))
		fmt.Printf("| %s | %.3f | %d | %.3f |\n", r.name, times[len(times)/2], size, perCall)
	}
	// The lag probe's queue lives in a vhost of its own, so that polling it
	// costs little while the broker carries all the other queues.
	lagVhost := vhost + "-lag"
	if err := o.api(http.MethodPut, "/api/vhosts/"+url.PathEscape(lagVhost), "{}"); err != nil {
		return err
	}
	defer func() {
		if err := o.api(http.MethodDelete, "/api/vhosts/"+url.PathEscape(lagVhost), ""); err != nil {
			fmt.Fprintln(os.Stderr, "fieldcost: deleting vhost:", err)
		}
	}()
	if err := o.api(http.MethodPut, "/api/permissions/"+url.PathEscape(lagVhost)+"/"+url.PathEscape(o.user), `{"configure":".*","write":".*","read":".*"}`); err != nil {
		return err
	}
	lagConn, err := amqp.DialConfig((&url.URL{Scheme: "amqp", User: url.UserPassword(o.user, o.password), Host: o.amqpAddr, Path: "/"}).String(), amqp.Config{Vhost: lagVhost})
	if err != nil {
		return err
	}
	defer lagConn.Close()
	return o.lag(lagConn, lagVhost)
}

// lag publishes one timestamped message to a new queue and reports when
// each request first shows it (and its timestamp, where the request has one).
func (o options) lag(conn *amqp.Connection, vhost string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	const name = "lag-probe"
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		return err
	}
	time.Sleep(10 * time.Second) // the queue itself is listed everywhere before the message comes
	ts := time.Now().Unix()
	published := time.Now()
	if err := ch.PublishWithContext(context.Background(), "", name, false, false,
		amqp.Publishing{Timestamp: time.Unix(ts, 0), Body: []byte("x")}); err != nil {
		return err
	}
	q := url.PathEscape(vhost)
	checks := []struct {
		name string
		done func() (bool, error)
	}{
		{"management totals (disable_stats): messages 1", func() (bool, error) {
			return o.mgmtShows(o.mgmt+"/api/queues/"+q+"?columns=name,messages&disable_stats=true&enable_queue_totals=true", name, "messages", 1)
		}},
		{"management statistics: messages 1", func() (bool, error) {
			return o.mgmtShows(o.mgmt+"/api/queues/"+q+"?columns=name,messages,head_message_timestamp", name, "messages", 1)
		}},
		{"management statistics: head_message_timestamp", func() (bool, error) {
			return o.mgmtShows(o.mgmt+"/api/queues/"+q+"?columns=name,messages,head_message_timestamp", name, "head_message_timestamp", float64(ts))
		}},
		{"plugin queue_coarse_metrics: messages 1", func() (bool, error) {
			return o.pluginShows("queue_coarse_metrics", "rabbitmq_detailed_queue_messages", vhost, name, "1")
		}},
		{"plugin queue_metrics: head_message_timestamp", func() (bool, error) {
			return o.pluginShows("queue_metrics", "rabbitmq_detailed_queue_head_message_timestamp", vhost, name, strconv.FormatInt(ts, 10))
		}},
	}
	fmt.Printf("\n| request | shows a new message after |\n|---|---:|\n")
	// Each check polls on its own, so a slow one does not delay the others.
	results := make([]string, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			for time.Since(published) < o.lagCap {
				ok, err := c.done()
				if err != nil {
					results[i] = err.Error()
					return
				}
				if ok {
					results[i] = fmt.Sprintf("%.1f s", time.Since(published).Seconds())
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			results[i] = "not within " + o.lagCap.String()
		})
	}
	wg.Wait()
	for i, c := range checks {
		fmt.Printf("| %s | %s |\n", c.name, results[i])
	}
	return nil
}

func (o options) mgmtShows(u, queueName, key string, want float64) (bool, error) {
	var rows []map[string]any
	body, err := o.body(u, true)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(body, &rows); err != nil {
		return false, err
	}
	for _, r := range rows {
		if r["name"] == queueName {
			v, ok := r[key].(float64)
			return ok && v == want, nil
		}
	}
	return false, nil
}

func (o options) pluginShows(group, family, vhost, queueName, want string) (bool, error) {
	body, err := o.body(o.plugin+"/metrics/detailed?family="+group+"&vhost="+url.QueryEscape(vhost), false)
	if err != nil {
		return false, err
	}
	line := fmt.Sprintf("%s{vhost=%q,queue=%q} %s\n", family, vhost, queueName, want)
	return bytes.Contains(body, []byte(line)), nil
}

func (o options) api(method, path, body string) error {
	req, err := http.NewRequest(method, o.mgmt+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(o.user, o.password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

func (o options) body(u string, auth bool) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if auth {
		req.SetBasicAuth(o.user, o.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func (o options) get(u string, auth bool) (int, error) {
	b, err := o.body(u, auth)
	return len(b), err
}

// cpuRate runs call back to back (or sleeps, when nil) for d and returns the
// broker's CPU seconds per second over that time; lastCPU and lastElapsed
// keep the totals.
func (o *options) cpuRate(d time.Duration, call func() error) (float64, error) {
	before, err := procCPU(o.pid)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if call == nil {
		time.Sleep(d)
	}
	for call != nil && time.Since(start) < d {
		if err := call(); err != nil {
			return 0, err
		}
	}
	elapsed := time.Since(start).Seconds()
	after, err := procCPU(o.pid)
	if err != nil {
		return 0, err
	}
	o.lastCPU, o.lastElapsed = after-before, elapsed
	return (after - before) / elapsed, nil
}

// procCPU is the process's utime+stime in seconds (clock ticks of 10 ms).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0, errors.New("unexpected /proc stat")
	}
	f := strings.Fields(string(rest))
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat fields")
	}
	return (ut + st) / 100, nil
}
