package containertest

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ImageName is the repository `make image` tags (:<VERSION> and :latest).
const ImageName = "rabbitmq-queue-exporter"

// ReadmeRun reads the one `docker run` command of README.md's "### Docker"
// section. Flags it does not know are an error, so that a flag added to the
// README cannot go untested.
func ReadmeRun(readme string) (Spec, error) {
	_, sec, ok := strings.Cut(readme, "\n### Docker\n")
	if !ok {
		return Spec{}, errors.New(`README.md has no "### Docker" section`)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	if i := strings.Index(sec, "\n### "); i >= 0 {
		sec = sec[:i]
	}
	var runs []string
	for _, block := range fencedBlocks(sec, "sh") {
		for line := range strings.SplitSeq(strings.ReplaceAll(block, "\\\n", " "), "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "docker run ") {
				runs = append(runs, line)
			}
		}
	}
	if len(runs) != 1 {
		return Spec{}, fmt.Errorf("README.md's Docker section has %d `docker run` commands in sh blocks, want 1", len(runs))
	}
	words, err := ShellWords(runs[0])
	if err != nil {
		return Spec{}, fmt.Errorf("README.md: %w: %s", err, runs[0])
	}
	return parseRun(words[2:])
}

// fencedBlocks returns the bodies of the ```lang blocks in text.
func fencedBlocks(text, lang string) []string {
	var blocks []string
	for {
		_, rest, ok := strings.Cut(text, "```"+lang+"\n")
		if !ok {
			return blocks
		}
		body, after, ok := strings.Cut(rest, "\n```")
		if !ok {
			return blocks
		}
		blocks = append(blocks, body)
		text = after
	}
}

// parseRun reads `docker run` flags, the image and the exporter's arguments.
func parseRun(words []string) (Spec, error) {
	s := Spec{Env: map[string]string{}, Mounts: map[string]string{}}
	i := 0
	for ; i < len(words) && strings.HasPrefix(words[i], "-"); i++ {
		name, val, hasVal := strings.Cut(words[i], "=")
		switch name {
		case "-d", "--detach", "--rm":
			// Start always detaches and removes the container itself.
			continue
		case "--read-only":
			s.ReadOnly = true
			continue
		case "--name", "-p", "--publish", "-e", "--env", "-v", "--volume":
		default:
			return Spec{}, fmt.Errorf("docker run flag %s is unknown to internal/containertest: teach it there", words[i])
		}
		if !hasVal {
			if i+1 >= len(words) {
				return Spec{}, fmt.Errorf("docker run flag %s without a value", name)
			}
			i++
			val = words[i]
		}
		switch name {
		case "-p", "--publish":
			s.Ports = append(s.Ports, val)
		case "-e", "--env":
			k, v, ok := strings.Cut(val, "=")
			if !ok {
				return Spec{}, fmt.Errorf("-e %s: want NAME=VALUE", val)
			}
			s.Env[k] = v
		case "-v", "--volume":
			parts := strings.Split(val, ":")
			if len(parts) != 3 || !slices.Contains(strings.Split(parts[2], ","), "ro") {
				return Spec{}, fmt.Errorf("-v %s: want SOURCE:TARGET:ro (mounts are read-only)", val)
			}
			s.Mounts[parts[1]] = parts[0]
		}
	}
	if i == len(words) {
		return Spec{}, errors.New("docker run without an image")
	}
	s.Image = words[i]
	s.Args = words[i+1:]
	return s, nil
}

// Compose is examples/compose/compose.yml as far as the test uses it.
type Compose struct {
	Exporter        Spec   // the exporter service; Mounts hold the secrets' files
	ExporterName    string // its service name
	ExporterService ComposeService
	Broker          ComposeService
	BrokerName      string
	Secrets         map[string]string // secret -> file
}

// ComposeService is a service of the compose file.
type ComposeService struct {
	Image       string            `yaml:"image"`
	Hostname    string            `yaml:"hostname"`
	ReadOnly    bool              `yaml:"read_only"`
	Environment map[string]string `yaml:"environment"`
	Secrets     []string          `yaml:"secrets"`
	Ports       []string          `yaml:"ports"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Restart     string `yaml:"restart"`
	Healthcheck any    `yaml:"healthcheck"`
}

// exporterKeys are the exporter service keys Spec represents (or that do not
// change what runs); any other key is an error, so none goes untested.
var exporterKeys = []string{"image", "read_only", "environment", "secrets", "ports", "command", "depends_on", "restart"}

// ParseCompose reads the compose file: its exporter service (image
// rabbitmq-queue-exporter) and the RabbitMQ service it reads from.
func ParseCompose(data []byte) (Compose, error) {
	var doc struct {
		Services map[string]yaml.Node `yaml:"services"`
		Secrets  map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Compose{}, err
	}
	c := Compose{Secrets: map[string]string{}}
	for name, s := range doc.Secrets {
		c.Secrets[name] = s.File
	}
	services := map[string]ComposeService{}
	for name, node := range doc.Services {
		var s ComposeService
		if err := node.Decode(&s); err != nil {
			return Compose{}, fmt.Errorf("service %s: %w", name, err)
		}
		services[name] = s
		if strings.HasPrefix(s.Image, ImageName+":") || s.Image == ImageName {
			if c.ExporterName != "" {
				return Compose{}, errors.New("two exporter services")
			}
			c.ExporterName = name
			var keys map[string]any
			if err := node.Decode(&keys); err != nil {
				return Compose{}, err
			}
			for k := range keys {
				if !slices.Contains(exporterKeys, k) {
					return Compose{}, fmt.Errorf("exporter service key %q is unknown to internal/containertest: teach it there", k)
				}
			}
		}
	}
	if c.ExporterName == "" {
		return Compose{}, fmt.Errorf("no service with image %s", ImageName)
	}
	e := services[c.ExporterName]
	c.ExporterService = e
	c.Exporter = Spec{ReadOnly: e.ReadOnly, Env: map[string]string{}, Mounts: map[string]string{},
		Args: e.Command, Image: e.Image, Ports: e.Ports}
	maps.Copy(c.Exporter.Env, e.Environment)
	// Compose mounts a secret read-only at /run/secrets/<name>.
	for _, name := range e.Secrets {
		file, ok := c.Secrets[name]
		if !ok {
			return Compose{}, fmt.Errorf("exporter secret %q is not defined under secrets", name)
		}
		c.Exporter.Mounts["/run/secrets/"+name] = file
	}
	host := e.Environment["RABBITMQ_HOST"]
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	b, ok := services[host]
	if !ok {
		return Compose{}, fmt.Errorf("exporter's RABBITMQ_HOST %q is not a service of the file", e.Environment["RABBITMQ_HOST"])
	}
	c.Broker, c.BrokerName = b, host
	return c, nil
}

// CheckDocumented holds a documented way of running the image to what the
// test proves: read-only root, the image make image tags, the default port
// published, the broker and user from the environment and the password from a
// read-only mounted file.
func (s Spec) CheckDocumented() error {
	var errs []error
	if !s.ReadOnly {
		errs = append(errs, errors.New("root filesystem not read-only"))
	}
	if s.Image != ImageName && s.Image != ImageName+":latest" {
		errs = append(errs, fmt.Errorf("image %q, want %s or %s:latest", s.Image, ImageName, ImageName))
	}
	if !s.PublishesDefaultPort() {
		errs = append(errs, fmt.Errorf("port %s not published (ports %q)", Port, s.Ports))
	}
	for _, k := range []string{"RABBITMQ_HOST", "RABBITMQ_USER", "RABBITMQ_PASSWORD_FILE"} {
		if s.Env[k] == "" {
			errs = append(errs, fmt.Errorf("%s not set", k))
		}
	}
	if _, ok := s.Env["RABBITMQ_PASSWORD"]; ok {
		errs = append(errs, errors.New("RABBITMQ_PASSWORD set: show the password file"))
	}
	if f := s.Env["RABBITMQ_PASSWORD_FILE"]; f != "" && s.Mounts[f] == "" {
		errs = append(errs, fmt.Errorf("RABBITMQ_PASSWORD_FILE %s is not a mounted file", f))
	}
	return errors.Join(errs...)
}

// Check holds the compose file's wiring between the two services, which the
// test cannot run here (no RabbitMQ image): a management image, the
// exporter's user as RabbitMQ's default user, one secret for both, and the
// exporter starting once RabbitMQ is healthy.
func (c Compose) Check() error {
	errs := []error{c.Exporter.CheckDocumented()}
	b := c.Broker
	if !strings.HasPrefix(b.Image, "rabbitmq:") || !strings.Contains(b.Image, "management") {
		errs = append(errs, fmt.Errorf("service %s: image %q is not a rabbitmq management image", c.BrokerName, b.Image))
	}
	if user := c.Exporter.Env["RABBITMQ_USER"]; b.Environment["RABBITMQ_DEFAULT_USER"] != user {
		errs = append(errs, fmt.Errorf("service %s: RABBITMQ_DEFAULT_USER %q, exporter uses %q", c.BrokerName, b.Environment["RABBITMQ_DEFAULT_USER"], user))
	}
	pwFile := c.Exporter.Env["RABBITMQ_PASSWORD_FILE"]
	secret, ok := strings.CutPrefix(pwFile, "/run/secrets/")
	if !ok || !slices.Contains(b.Secrets, secret) {
		errs = append(errs, fmt.Errorf("service %s does not get the exporter's password secret (%s)", c.BrokerName, pwFile))
	} else if !strings.Contains(strings.Join(b.Entrypoint, " "), pwFile) {
		errs = append(errs, fmt.Errorf("service %s: entrypoint does not read %s", c.BrokerName, pwFile))
	}
	if c.Secrets[secret] == "" {
		errs = append(errs, fmt.Errorf("secret %q has no file", secret))
	}
	if got := c.ExporterService.DependsOn[c.BrokerName].Condition; got != "service_healthy" {
		errs = append(errs, fmt.Errorf("exporter depends_on %s: condition %q, want service_healthy", c.BrokerName, got))
	}
	if b.Healthcheck == nil {
		errs = append(errs, fmt.Errorf("service %s has no healthcheck for depends_on", c.BrokerName))
	}
	return errors.Join(errs...)
}
