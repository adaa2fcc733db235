package management

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
)

// NodesQuery asks only for what member discovery needs; the full node objects
// carry hundreds of statistics.
const NodesQuery = "columns=name,running,contexts"

// maxNodesBytes bounds the node listing: a few hundred bytes per member.
const maxNodesBytes = 1 << 20

// Node is one cluster member as /api/nodes lists it.
type Node struct {
	Name    string // rabbit@host
	Running bool
	// Plugin is where the member serves the rabbitmq_prometheus plugin, from
	// its listener contexts; nil when it serves none (plugin disabled, or the
	// member is down and lists no contexts).
	Plugin *PluginListener
}

// PluginListener is a member's rabbitmq_prometheus listener.
type PluginListener struct {
	Scheme string // http or https
	Port   int
}

// Host is the part of the node name after '@': where the member runs.
func (n Node) Host() string {
	_, host, ok := strings.Cut(n.Name, "@")
	if !ok {
		return ""
	}
	return host
}

// ListNodes lists the cluster members of t.
func (c *Client) ListNodes(ctx context.Context, t brokerhttp.Target, cred config.Credentials) ([]Node, error) {
	resp, err := c.get(ctx, t, cred, "/api/nodes?"+NodesQuery)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body := &limitedReader{r: resp.Body, remaining: maxNodesBytes}
	b, err := io.ReadAll(body)
	if body.exceeded {
		return nil, fmt.Errorf("node listing is larger than %d bytes", maxNodesBytes)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, deadlineError(ctx, ctxErr)
		}
		return nil, fmt.Errorf("reading node listing: %w", err)
	}
	return ParseNodes(b)
}

// ParseNodes decodes an /api/nodes answer.
func ParseNodes(b []byte) ([]Node, error) {
	var raw []struct {
		Name     string `json:"name"`
		Running  bool   `json:"running"`
		Contexts []struct {
			Port     json.RawMessage `json:"port"`
			Protocol string          `json:"protocol"`
		} `json:"contexts"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("node listing is not a JSON array of nodes: %w", err)
	}
	nodes := make([]Node, 0, len(raw))
	for _, r := range raw {
		if r.Name == "" {
			return nil, fmt.Errorf("node listing has a node without a name")
		}
		n := Node{Name: r.Name, Running: r.Running}
		for _, c := range r.Contexts {
			// 3.x formats the protocol as an Erlang atom: 'http/prometheus'.
			switch strings.Trim(c.Protocol, "'") {
			case "http/prometheus":
				n.Plugin = &PluginListener{Scheme: "http"}
			case "https/prometheus":
				n.Plugin = &PluginListener{Scheme: "https"}
			default:
				continue
			}
			port, err := strconv.Atoi(strings.Trim(string(c.Port), `"`))
			if err != nil || port < 1 || port > 65535 {
				return nil, fmt.Errorf("node %s lists its prometheus listener with port %s", r.Name, c.Port)
			}
			n.Plugin.Port = port
			// A member with both listeners: prefer TLS.
			if n.Plugin.Scheme == "https" {
				break
			}
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// VhostsQuery lists vhost names only; statistics would cost the broker work.
const VhostsQuery = "columns=name&disable_stats=true"

// ListVhosts lists the names of the vhosts the user can see.
func (c *Client) ListVhosts(ctx context.Context, t brokerhttp.Target, cred config.Credentials) ([]string, error) {
	resp, err := c.get(ctx, t, cred, "/api/vhosts?"+VhostsQuery)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body := &limitedReader{r: resp.Body, remaining: maxNodesBytes}
	var raw []struct {
		Name *string `json:"name"`
	}
	if err := json.NewDecoder(body).Decode(&raw); err != nil {
		if body.exceeded {
			return nil, fmt.Errorf("vhost listing is larger than %d bytes", maxNodesBytes)
		}
		return nil, fmt.Errorf("vhost listing is not a JSON array of vhosts: %w", err)
	}
	names := make([]string, 0, len(raw))
	for _, v := range raw {
		if v.Name == nil {
			return nil, fmt.Errorf("vhost listing has a vhost without a name")
		}
		names = append(names, *v.Name)
	}
	return names, nil
}
