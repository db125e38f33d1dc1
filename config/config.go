// Package config owns Tocsin's YAML configuration: the schema, loading with
// environment overrides, and validation whose every problem names the line and
// the field it is about.
package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/cap"
)

// Config is the whole of one gateway's configuration.
type Config struct {
	// Listen is the HTTP API's address.
	Listen string `yaml:"listen"`
	// TLS is the API's and the console's server certificate (re-read when
	// the files change).
	TLS *ServerTLS `yaml:"tls"`
	// InsecurePlaintext allows listening, and reaching Redis and the
	// broker, beyond loopback without TLS (a network you trust).
	InsecurePlaintext bool        `yaml:"insecure_plaintext"`
	Redis             Redis       `yaml:"redis"`
	MQTT              MQTT        `yaml:"mqtt"`
	Queue             Queue       `yaml:"queue"`
	Siren             SirenConfig `yaml:"siren"`
	Delivery          Delivery    `yaml:"delivery"`
	Zones             []Zone      `yaml:"zones"`
	Sirens            []Siren     `yaml:"sirens"`
	Principals        []Principal `yaml:"principals"`
	// Contacts are the people told by SMS and voice, in groups per zone.
	Contacts []ContactGroup `yaml:"contacts"`
	Twilio   Twilio         `yaml:"twilio"`
	// PA are the public-address controllers and the PA zones they play in.
	PA PA `yaml:"pa"`
	// Dispatch are the dispatch centres alerts are forwarded to as CAP 1.2.
	Dispatch Dispatch `yaml:"dispatch"`
	// Triggers are the building systems that trigger alerts over MQTT.
	Triggers Triggers `yaml:"triggers"`
	// PublicURL is where this gateway is reachable from outside (Twilio's
	// status callbacks), e.g. https://tocsin.example.org.
	PublicURL string `yaml:"public_url"`
	// MetricsTokenEnv, if set, names the environment variable with the
	// bearer token GET /metrics requires (it names targets and senders).
	MetricsTokenEnv string `yaml:"metrics_token_env"`

	metricsToken string
	// TimeZone is used for times in messages ("Europe/Berlin"; default UTC).
	TimeZone string `yaml:"time_zone"`
	// TextsConf are prepared texts that replace the defaults (Texts).
	TextsConf []Text `yaml:"texts"`
	// Operators are the people who sign in (docs/operators.md).
	Operators []Operator `yaml:"operators"`
	// Sessions tune operators' sign-in, sessions and step-up.
	Sessions Sessions `yaml:"sessions"`
	// Release says which senders' alerts go out at once and which wait
	// for approval (four-eyes).
	Release Release `yaml:"release"`
	// Templates are prepared alerts operators compose from.
	Templates []Template `yaml:"templates"`
	// Audit says where the audit's archive and signed checkpoints go.
	Audit AuditConf `yaml:"audit"`
	// Console is the web console's listener.
	Console Console `yaml:"console"`
	// Policy says which severities and events may use which channels per
	// zone, and which signal a siren sounds for each event.
	ChannelPolicy ChannelPolicy `yaml:"channel_policy"`
	// Probes check on a schedule that every siren and provider account can
	// still be reached.
	Probes Probes `yaml:"probes"`

	texts *alert.Texts
	// digest is the SHA-256 of the file the configuration was parsed from.
	digest string
}

// Digest is the hex SHA-256 of the configuration file, as the audit records it.
func (c *Config) Digest() string { return c.digest }

// Redis says how to reach the queue's Redis.
type Redis struct {
	// Addrs is one address for a single server, several for Cluster, or the
	// Sentinels when MasterName is set.
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	// Cluster makes one address a Redis Cluster seed (several addresses
	// without master_name are a cluster anyway).
	Cluster bool `yaml:"cluster"`
	// Shards is how many hash slots the queue spreads over: 1 by default,
	// 12 on Redis Cluster (so three masters share the load). Every instance
	// must use the same number; change it only on an empty queue.
	Shards      int    `yaml:"shards"`
	DB          int    `yaml:"db"`
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	password    string
	// TLS, when set, makes every connection TLS (the CA that signs the
	// servers' certificates; a client certificate if Redis asks for one).
	TLS       *TLSFiles `yaml:"tls"`
	tlsConfig *tls.Config
	// KeyPrefix is put in front of every key, so one Redis can serve several deployments.
	KeyPrefix string `yaml:"key_prefix"`
	// WaitReplicas, with Sentinel or Cluster, is how many replicas must have an alert or
	// a retraction before it is answered (Redis WAIT), so a failover loses
	// none; WaitTimeout bounds the wait (1s; then 503, and the retry is a
	// duplicate). Run one replica more than this, so a failover leaves enough.
	WaitReplicas int           `yaml:"wait_replicas"`
	WaitTimeout  time.Duration `yaml:"wait_timeout"`
}

// IsCluster reports whether the addresses are a Redis Cluster.
func (r *Redis) IsCluster() bool {
	return r.MasterName == "" && (r.Cluster || len(r.Addrs) > 1)
}

// ShardCount is Shards, or its default for the topology.
func (r *Redis) ShardCount() int {
	switch {
	case r.Shards > 0:
		return r.Shards
	case r.IsCluster():
		return 12
	}
	return 1
}

// MQTT says how to reach the broker the sirens listen on.
type MQTT struct {
	Broker      string `yaml:"broker"`
	ClientID    string `yaml:"client_id"`
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	password    string
	// TLS are the CA and client certificate for an mqtts:// broker
	// (without it, mqtts:// trusts the system's CAs).
	TLS       *TLSFiles `yaml:"tls"`
	tlsConfig *tls.Config
	// TopicPrefix is the root of Tocsin's topics, "tocsin/v1" by default.
	TopicPrefix string `yaml:"topic_prefix"`
}

// Queue tunes the Redis queue.
type Queue struct {
	// DedupWindow is how long the same fingerprint (source, event, zones, type) is one alert.
	DedupWindow time.Duration `yaml:"dedup_window"`
	// IdempotencyTTL is how long a principal's Idempotency-Key is remembered.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// Lease is how long a claimed job stays with its worker without a heartbeat.
	Lease time.Duration `yaml:"lease"`
	// BatchSize is how many targets one job carries.
	BatchSize int `yaml:"batch_size"`
	// Workers is how many jobs a gateway works on at once per channel kind.
	Workers int `yaml:"workers"`
	// UrgentWorkers are further jobs per channel kind, only for retractions
	// and life-safety alerts (priority 8 and above), so these are claimed at
	// once even while every ordinary worker is busy (default: Workers).
	UrgentWorkers int `yaml:"urgent_workers"`
	// DefaultExpiry applies to alerts that name no expiry.
	DefaultExpiry time.Duration `yaml:"default_expiry"`
	// ShutdownGrace is how long running jobs may take to finish on SIGTERM
	// before they are handed back to the queue for another instance.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// SirenConfig tunes the siren adapter.
type SirenConfig struct {
	// AckTimeout is how long to wait for a controller's ack before resending.
	AckTimeout time.Duration `yaml:"ack_timeout"`
}

// Delivery tunes the retry and breaker decorators wrapped around every adapter.
type Delivery struct {
	// RetryInitial is the first backoff; it doubles up to RetryMax.
	RetryInitial time.Duration `yaml:"retry_initial"`
	RetryMax     time.Duration `yaml:"retry_max"`
	// Hold is how long a worker keeps retrying a delivery itself; a delivery
	// still not made after that (a dead target, an open breaker) is handed
	// back to the queue with a not-before time, so it holds no worker.
	Hold time.Duration `yaml:"hold"`
	// BreakerFailures in a row open a target's breaker for BreakerOpen.
	BreakerFailures uint32        `yaml:"breaker_failures"`
	BreakerOpen     time.Duration `yaml:"breaker_open"`
}

// Zone is an area alerts are addressed to. CAP documents reach it through
// its geocodes or its polygon.
type Zone struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Geocodes are CAP geocodes that mean this zone, "valueName=value"
	// (e.g. "WARNCELLID=805974000"); a CAP area with one of them hits it.
	Geocodes []string `yaml:"geocodes"`
	// Polygon is the zone's outline as CAP writes it: "lat,lon lat,lon …",
	// closed; a CAP polygon or circle that overlaps it hits it.
	Polygon string `yaml:"polygon"`
}

// Siren is one siren controller.
type Siren struct {
	ID   string `yaml:"id"`
	Zone string `yaml:"zone"`
	// Drills says the siren takes test and exercise alerts (as the test signal).
	Drills bool `yaml:"drills"`
}

// Principal is someone allowed to use the API: a dispatch centre, an operator, a building system.
type Principal struct {
	ID   string `yaml:"id"`
	Kind string `yaml:"kind"`
	// KeySHA256 is the hex SHA-256 of the API key. Exactly one of KeySHA256, KeyEnv
	// and KeyFile is set; the key itself never stands in this file.
	KeySHA256 string `yaml:"key_sha256"`
	KeyEnv    string `yaml:"key_env"`
	KeyFile   string `yaml:"key_file"`
	Scopes    Scopes `yaml:"scopes"`
	// CAPCerts are PEM files of the certificates this principal signs CAP
	// with. When set, every CAP document it posts must carry an enveloped XML
	// signature by one of them, and only the signed content is used.
	CAPCerts []string `yaml:"cap_certs"`
	// Rate and Burst limit the alerts the principal may post, per gateway
	// instance (default 20/s with a burst of 200: no real burst of alerts is
	// ever refused, a runaway client is). Over the limit: 429 with
	// Retry-After. Retractions are never limited.
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`

	// keyHash is the resolved SHA-256 of the key, filled by Load.
	keyHash []byte
	certs   []*x509.Certificate
	// Upstream makes this principal a central Tocsin that forwards alerts
	// here as CAP over its dispatch route (kind upstream).
	Upstream *UpstreamLink `yaml:"upstream"`

	// operator is the person behind a session principal (Operator.Principal).
	operator *Operator
}

// CAPCertificates are the principal's pinned CAP signing certificates; a
// principal with any must sign every CAP document.
func (p *Principal) CAPCertificates() []*x509.Certificate { return p.certs }

// loadCerts reads the principal's pinned certificates.
func (p *Principal) loadCerts(v *validator, f string) {
	for j, file := range p.CAPCerts {
		b, err := os.ReadFile(file)
		if err != nil {
			v.add(fmt.Sprintf("%s.cap_certs[%d]", f, j), err.Error())
			continue
		}
		n := 0
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				v.add(fmt.Sprintf("%s.cap_certs[%d]", f, j), "certificate: "+err.Error())
				continue
			}
			p.certs = append(p.certs, c)
			n++
		}
		if n == 0 {
			v.add(fmt.Sprintf("%s.cap_certs[%d]", f, j), "no PEM CERTIFICATE in "+file)
		}
	}
}

// KeyHash is the SHA-256 of the principal's API key, resolved at load time.
func (p *Principal) KeyHash() []byte { return p.keyHash }

// Scopes bound what a principal may do.
type Scopes struct {
	// Zones the principal may alert; "*" is every zone.
	Zones []string `yaml:"zones"`
	// Channels are the channel kinds the principal may use; empty is all.
	Channels []alert.Kind `yaml:"channels"`
	// MaxSeverity is the highest severity the principal may send; empty is Extreme.
	MaxSeverity string `yaml:"max_severity"`
	// Statuses the principal may send; empty is all.
	Statuses []alert.Status `yaml:"statuses"`
	// Retract allows retracting alerts within the principal's zones.
	Retract bool `yaml:"retract"`
	// Maintenance allows putting trigger sources into maintenance and ending it.
	Maintenance bool `yaml:"maintenance"`
}

// AllowsZone reports whether z is inside the scope.
func (s Scopes) AllowsZone(z string) bool {
	return slices.Contains(s.Zones, "*") || slices.Contains(s.Zones, z)
}

// AllowsChannel reports whether kind k is inside the scope.
func (s Scopes) AllowsChannel(k alert.Kind) bool {
	return len(s.Channels) == 0 || slices.Contains(s.Channels, k)
}

// AllowsStatus reports whether st is inside the scope.
func (s Scopes) AllowsStatus(st alert.Status) bool {
	return len(s.Statuses) == 0 || slices.Contains(s.Statuses, st)
}

// MaxSev is the highest severity allowed.
func (s Scopes) MaxSev() alert.Severity {
	if s.MaxSeverity == "" {
		return alert.SeverityExtreme
	}
	v, _ := alert.ParseSeverity(s.MaxSeverity)
	return v
}

// Defaults fills in what a file leaves out.
func (c *Config) Defaults() {
	c.defaultsOperators()
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if len(c.Redis.Addrs) == 0 {
		c.Redis.Addrs = []string{"127.0.0.1:6379"}
	}
	if c.Redis.KeyPrefix == "" {
		c.Redis.KeyPrefix = "tocsin"
	}
	if c.MQTT.Broker == "" {
		c.MQTT.Broker = "tcp://127.0.0.1:1883"
	}
	if c.MQTT.ClientID == "" {
		h, _ := os.Hostname()
		c.MQTT.ClientID = "tocsin-" + h
	}
	if c.MQTT.TopicPrefix == "" {
		c.MQTT.TopicPrefix = "tocsin/v1"
	}
	q := &c.Queue
	if q.DedupWindow == 0 {
		q.DedupWindow = 5 * time.Minute
	}
	if q.IdempotencyTTL == 0 {
		q.IdempotencyTTL = 24 * time.Hour
	}
	if q.Lease == 0 {
		q.Lease = 3 * time.Second
	}
	if q.BatchSize == 0 {
		q.BatchSize = 50
	}
	if q.Workers == 0 {
		q.Workers = 8
	}
	if q.UrgentWorkers == 0 {
		q.UrgentWorkers = q.Workers
	}
	if q.DefaultExpiry == 0 {
		q.DefaultExpiry = time.Hour
	}
	if q.ShutdownGrace == 0 {
		q.ShutdownGrace = 10 * time.Second
	}
	if c.Siren.AckTimeout == 0 {
		c.Siren.AckTimeout = 2 * time.Second
	}
	d := &c.Delivery
	if d.RetryInitial == 0 {
		d.RetryInitial = 100 * time.Millisecond
	}
	if d.RetryMax == 0 {
		d.RetryMax = 2 * time.Second
	}
	if d.Hold == 0 {
		d.Hold = time.Second
	}
	if d.BreakerFailures == 0 {
		d.BreakerFailures = 5
	}
	if d.BreakerOpen == 0 {
		d.BreakerOpen = 5 * time.Second
	}
}

// MetricsToken is the bearer token GET /metrics requires, or "" (open).
func (c *Config) MetricsToken() string { return c.metricsToken }

// Location is the time zone for times in messages (UTC when unset).
func (c *Config) Location() *time.Location {
	if loc, err := time.LoadLocation(c.TimeZone); err == nil && c.TimeZone != "" {
		return loc
	}
	return time.UTC
}

// Problem is one thing wrong with a configuration file.
type Problem struct {
	Line  int    // 1-based; 0 when the line is unknown
	Field string // the field's path, e.g. "sirens[2].zone"
	Msg   string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Field, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Field, p.Msg)
}

// Problems is every problem found in one file. It is an error.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Load reads, decodes, completes and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b)
}

// Parse decodes and validates a configuration, applying environment overrides
// (TOCSIN_LISTEN, TOCSIN_REDIS_ADDRS, TOCSIN_MQTT_BROKER). Unknown keys are
// errors. A returned error of type Problems lists every problem with its line.
func Parse(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, Problems{yamlProblem(err)}
	}
	var c Config
	var ps Problems
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		// A TypeError still decodes everything else, so validation goes on
		// and every problem is reported at once.
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Problems{yamlProblem(err)}
		}
		for _, m := range te.Errors {
			ps = append(ps, yamlProblem(errors.New(m)))
		}
	}
	applyEnv(&c)
	sum := sha256.Sum256(b)
	c.digest = hex.EncodeToString(sum[:])
	c.Defaults()
	ps = append(ps, c.validate(&root)...)
	if len(ps) > 0 {
		slices.SortStableFunc(ps, func(a, b Problem) int { return a.Line - b.Line })
		return nil, ps
	}
	return &c, nil
}

func applyEnv(c *Config) {
	if v := os.Getenv("TOCSIN_LISTEN"); v != "" {
		c.Listen = v
	}
	if v := os.Getenv("TOCSIN_REDIS_ADDRS"); v != "" {
		c.Redis.Addrs = strings.Split(v, ",")
	}
	if v := os.Getenv("TOCSIN_INSECURE_PLAINTEXT"); v == "true" {
		c.InsecurePlaintext = true
	}
	if v := os.Getenv("TOCSIN_MQTT_BROKER"); v != "" {
		c.MQTT.Broker = v
	}
}

// yamlProblem turns a yaml error "yaml: line 3: ..." into a Problem with its line.
func yamlProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		_, rest, _ := strings.Cut(msg, ": ")
		field := "(file)"
		if f, ok := strings.CutPrefix(rest, "field "); ok {
			field, _, _ = strings.Cut(f, " ")
			rest = "unknown field"
		}
		return Problem{Line: line, Field: field, Msg: rest}
	}
	return Problem{Field: "(file)", Msg: msg}
}

// validate checks everything the types cannot, resolving keys as it goes.
func (c *Config) validate(root *yaml.Node) Problems {
	v := validator{root: root}
	zones := map[string]bool{}
	for i, z := range c.Zones {
		switch {
		case !validID(z.ID):
			v.add(fmt.Sprintf("zones[%d].id", i), "must be 1-64 letters, digits, '-', '_' or '.'")
		case zones[z.ID]:
			v.add(fmt.Sprintf("zones[%d].id", i), fmt.Sprintf("zone %q is defined twice", z.ID))
		}
		zones[z.ID] = true
		for j, gc := range z.Geocodes {
			if n, val, ok := strings.Cut(gc, "="); !ok || strings.TrimSpace(n) == "" || strings.TrimSpace(val) == "" {
				v.add(fmt.Sprintf("zones[%d].geocodes[%d]", i, j), "want valueName=value, e.g. WARNCELLID=805974000")
			}
		}
		if z.Polygon != "" {
			if pts, err := cap.ParsePolygon(z.Polygon); err != nil {
				v.add(fmt.Sprintf("zones[%d].polygon", i), err.Error())
			} else if len(pts) < 4 || pts[0] != pts[len(pts)-1] {
				v.add(fmt.Sprintf("zones[%d].polygon", i), "needs at least 4 lat,lon points, the last equal to the first")
			}
		}
	}
	sirens := map[string]bool{}
	for i, s := range c.Sirens {
		f := fmt.Sprintf("sirens[%d]", i)
		switch {
		case !validID(s.ID):
			v.add(f+".id", "must be 1-64 letters, digits, '-', '_' or '.'")
		case sirens[s.ID]:
			v.add(f+".id", fmt.Sprintf("siren %q is defined twice", s.ID))
		}
		sirens[s.ID] = true
		if !zones[s.Zone] {
			v.add(f+".zone", fmt.Sprintf("zone %q is not defined under zones", s.Zone))
		}
	}
	ids := map[string]bool{}
	keys := map[string]string{}
	for i := range c.Principals {
		p := &c.Principals[i]
		f := fmt.Sprintf("principals[%d]", i)
		switch {
		case !validID(p.ID):
			v.add(f+".id", "must be 1-64 letters, digits, '-', '_' or '.'")
		case ids[p.ID]:
			v.add(f+".id", fmt.Sprintf("principal %q is defined twice", p.ID))
		}
		ids[p.ID] = true
		p.loadCerts(&v, f)
		if p.Rate == 0 {
			p.Rate = 20
		}
		if p.Burst == 0 {
			p.Burst = 200
		}
		if p.Rate < 0.01 || p.Rate > 100000 {
			v.add(f+".rate", "must be between 0.01 and 100000 alerts/s")
		}
		if p.Burst < 1 || p.Burst > 1000000 {
			v.add(f+".burst", "must be between 1 and 1000000")
		}
		switch p.Kind {
		case "dispatch", "operator", "building":
			if p.Upstream != nil {
				v.add(f+".upstream", "only for kind upstream")
			}
		case "upstream":
			p.validateUpstream(&v, f)
		default:
			v.add(f+".kind", "must be dispatch, operator, building or upstream")
		}
		if p.Kind == "upstream" {
			// No API key: a central gateway signs each CAP message instead.
		} else if err := p.resolveKey(); err != nil {
			v.add(f+keyField(p), err.Error())
		} else if other, dup := keys[string(p.keyHash)]; dup {
			v.add(f+keyField(p), fmt.Sprintf("same API key as principal %q; every principal needs its own", other))
		} else {
			keys[string(p.keyHash)] = p.ID
		}
		for j, z := range p.Scopes.Zones {
			if z != "*" && !zones[z] {
				v.add(fmt.Sprintf("%s.scopes.zones[%d]", f, j), fmt.Sprintf("zone %q is not defined under zones", z))
			}
		}
		for j, k := range p.Scopes.Channels {
			if !slices.Contains(alert.Kinds, k) {
				v.add(fmt.Sprintf("%s.scopes.channels[%d]", f, j), fmt.Sprintf("%q is not a channel kind (siren, pa, sms, voice, dispatch)", k))
			}
		}
		for j, s := range p.Scopes.Statuses {
			if s != alert.StatusActual && s != alert.StatusExercise && s != alert.StatusTest {
				v.add(fmt.Sprintf("%s.scopes.statuses[%d]", f, j), fmt.Sprintf("%q is not actual, exercise or test", s))
			}
		}
		if p.Scopes.MaxSeverity != "" {
			if _, err := alert.ParseSeverity(p.Scopes.MaxSeverity); err != nil {
				v.add(f+".scopes.max_severity", err.Error())
			}
		}
	}
	if c.MetricsTokenEnv != "" {
		if c.metricsToken = os.Getenv(c.MetricsTokenEnv); len(c.metricsToken) < 16 {
			v.add("metrics_token_env", fmt.Sprintf("environment variable %s must hold the token /metrics requires (16 characters or more)", c.MetricsTokenEnv))
		}
	}
	c.validateTexts(&v)
	c.validateOperators(&v, zones, ids)
	c.validateRecipients(&v, zones)
	c.validateEndpoints(&v, zones)
	c.validateTriggers(&v, zones)
	c.validatePolicy(&v, zones)
	c.validateSecrets(&v)
	c.validateTransport(&v)
	c.validateProbes(&v)
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil {
			v.add("time_zone", "unknown time zone (use an IANA name such as Europe/Berlin)")
		}
	}
	if c.Queue.Lease < 500*time.Millisecond || c.Queue.Lease > time.Minute {
		v.add("queue.lease", "must be between 500ms and 1m")
	}
	if c.Queue.BatchSize < 1 || c.Queue.BatchSize > 1000 {
		v.add("queue.batch_size", "must be between 1 and 1000")
	}
	if c.Queue.Workers < 1 || c.Queue.Workers > 1024 {
		v.add("queue.workers", "must be between 1 and 1024")
	}
	if c.Queue.UrgentWorkers < 1 || c.Queue.UrgentWorkers > 1024 {
		v.add("queue.urgent_workers", "must be between 1 and 1024")
	}
	if c.Queue.DedupWindow < 0 {
		v.add("queue.dedup_window", "must not be negative")
	}
	if c.Siren.AckTimeout < 50*time.Millisecond {
		v.add("siren.ack_timeout", "must be at least 50ms")
	}
	if c.Delivery.RetryInitial < time.Millisecond || c.Delivery.RetryMax < c.Delivery.RetryInitial {
		v.add("delivery.retry_max", "retry_initial must be at least 1ms and retry_max at least retry_initial")
	}
	if c.Delivery.Hold < 0 || c.Delivery.Hold > 10*time.Minute {
		v.add("delivery.hold", "must be between 0 and 10m")
	}
	if c.Delivery.BreakerOpen < 100*time.Millisecond {
		v.add("delivery.breaker_open", "must be at least 100ms")
	}
	if strings.ContainsAny(c.MQTT.TopicPrefix, "+#") || strings.HasSuffix(c.MQTT.TopicPrefix, "/") {
		v.add("mqtt.topic_prefix", "must not contain wildcards or end in '/'")
	}
	return v.ps
}

func keyField(p *Principal) string {
	switch {
	case p.KeyEnv != "":
		return ".key_env"
	case p.KeyFile != "":
		return ".key_file"
	}
	return ".key_sha256"
}

// resolveKey fills keyHash from exactly one of the key fields.
func (p *Principal) resolveKey() error {
	n := 0
	for _, s := range []string{p.KeySHA256, p.KeyEnv, p.KeyFile} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New("set exactly one of key_sha256, key_env, key_file")
	}
	switch {
	case p.KeySHA256 != "":
		h, err := hex.DecodeString(p.KeySHA256)
		if err != nil || len(h) != sha256.Size {
			return errors.New("must be 64 hex digits (sha256 of the key: printf %s KEY | sha256sum)")
		}
		p.keyHash = h
	case p.KeyEnv != "":
		k := os.Getenv(p.KeyEnv)
		if len(k) < 16 {
			return fmt.Errorf("environment variable %s must hold a key of at least 16 characters", p.KeyEnv)
		}
		p.keyHash = HashKey(k)
	default:
		b, err := os.ReadFile(p.KeyFile)
		if err != nil {
			return fmt.Errorf("cannot read key file: %v", errors.Unwrap(err))
		}
		k := strings.TrimSpace(string(b))
		if len(k) < 16 {
			return errors.New("key file must hold a key of at least 16 characters")
		}
		p.keyHash = HashKey(k)
	}
	return nil
}

// HashKey is the SHA-256 of an API key, as stored in key_sha256.
func HashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validator collects problems and finds their lines in the parsed document.
type validator struct {
	root *yaml.Node
	ps   Problems
}

func (v *validator) add(field, msg string) {
	v.ps = append(v.ps, Problem{Line: lineOf(v.root, field), Field: field, Msg: msg})
}

// lineOf finds the line of a dotted field path such as "sirens[2].zone". It falls
// back to the nearest existing parent, and to 0 when nothing matches.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		next := (*yaml.Node)(nil)
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == name {
					line = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
