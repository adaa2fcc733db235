// Command populate declares many queues on a real broker through AMQP, for
// benchmarks against a live management API. It is idempotent: queues that
// exist are declared again (no-op), and each gets messages only when empty.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	var (
		amqpURL  = flag.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "broker AMQP URL (its vhost is ignored; see -vhost)")
		mgmtURL  = flag.String("mgmt", "http://127.0.0.1:15672", "management API, to create the vhost")
		user     = flag.String("user", "guest", "management API user")
		password = flag.String("password", "guest", "management API password")
		vhost    = flag.String("vhost", "bench", "vhost to fill (created if missing)")
		queues   = flag.Int("queues", 10000, "number of queues")
		messages = flag.Int("messages", 1, "messages published to each new queue")
		prefix   = flag.String("prefix", "bench.queue.", "queue name prefix")
	)
	flag.Parse()
	if err := run(*amqpURL, *mgmtURL, *user, *password, *vhost, *prefix, *queues, *messages); err != nil {
		fmt.Fprintln(os.Stderr, "populate:", err)
		os.Exit(1)
	}
}

func run(amqpURL, mgmtURL, user, password, vhost, prefix string, queues, messages int) error {
	if err := put(mgmtURL+"/api/vhosts/"+url.PathEscape(vhost), user, password, `{}`); err != nil {
		return err
	}
	if err := put(mgmtURL+"/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user), user, password, `{"configure":".*","write":".*","read":".*"}`); err != nil {
		return err
	}
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Vhost: vhost})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	start := time.Now()
	published := 0
	for i := range queues {
		name := fmt.Sprintf("%s%06d", prefix, i)
		q, err := ch.QueueDeclare(name, true, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("declare %s: %w", name, err)
		}
		if q.Messages == 0 {
			for range messages {
				if err := ch.Publish("", name, false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
					return err
				}
				published++
			}
		}
	}
	fmt.Printf("populate: %d queues in vhost %q ready (%d messages published) in %s\n", queues, vhost, published, time.Since(start).Round(time.Millisecond))
	return nil
}

func put(u, user, password, body string) error {
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("PUT %s: %s", u, resp.Status)
	}
	return nil
}
