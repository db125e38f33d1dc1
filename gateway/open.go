package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/dispatch"
	"github.com/tocsin-alert/tocsin/adapters/mqttcmd"
	"github.com/tocsin-alert/tocsin/adapters/pa"
	"github.com/tocsin-alert/tocsin/adapters/siren"
	"github.com/tocsin-alert/tocsin/adapters/sms"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/adapters/voice"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/priority"
	"github.com/tocsin-alert/tocsin/routing"
)

// NewRedis is a client of the configured Redis (single, Sentinel or
// Cluster; TLS with redis.tls), as the gateway and the CLI make it.
func NewRedis(cfg *config.Config) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: cfg.Redis.Addrs, MasterName: cfg.Redis.MasterName, DB: cfg.Redis.DB, IsClusterMode: cfg.Redis.IsCluster(),
		Username: cfg.Redis.Username, Password: cfg.Redis.Password(), TLSConfig: cfg.Redis.TLSConfig(),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: 1,
		// On Cluster, each queue's workers wait through one blocking read per
		// shard (priority.Queue.Wait): room for them besides the rest.
		PoolSize: poolSize(cfg),
	})
}

func poolSize(cfg *config.Config) int {
	n := 10 * runtime.GOMAXPROCS(0)
	if cfg.Redis.IsCluster() {
		n += cfg.Redis.ShardCount()
	}
	return n
}

// Open wires a Gateway from its configuration: the Redis client (single,
// Sentinel or Cluster), the queue, and every channel kind's adapter. An
// adapter in override replaces the configured one for its kind (tests,
// benchmarks). Close releases what Open made.
func Open(cfg *config.Config, log zerolog.Logger, override map[alert.Kind]adapters.Adapter) (*Gateway, error) {
	// Two connection pools to the same Redis: one for the phone channels'
	// bulk, one for everything urgent (API, triggers, sirens, PA, dispatch).
	var closers []func()
	var first redis.UniversalClient
	newQueue := func() *priority.Queue {
		rdb := NewRedis(cfg)
		closers = append(closers, func() { rdb.Close() })
		if first == nil {
			first = rdb
		}
		return priority.New(rdb, priority.Options{
			Prefix: cfg.Redis.KeyPrefix, DedupWindow: cfg.Queue.DedupWindow, IdempotencyTTL: cfg.Queue.IdempotencyTTL,
			Lease: cfg.Queue.Lease, BatchSize: cfg.Queue.BatchSize,
			WaitReplicas: cfg.Redis.WaitReplicas, WaitTimeout: cfg.Redis.WaitTimeout,
			Shards: cfg.Redis.ShardCount(),
		})
	}
	q, bulk := newQueue(), newQueue()
	mctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if n, err := q.MoveLegacyKeys(mctx); err != nil {
		log.Warn().Err(err).Msg("Could not look for maintenance windows kept under their names from before the queue's shards")
	} else if n > 0 {
		log.Warn().Int("keys", n).Msg("Moved maintenance windows and trigger decisions kept under their names from before the queue's shards")
	}
	cancel()
	ads := map[alert.Kind]adapters.Adapter{}
	fallbacks := map[alert.Kind]adapters.Adapter{}
	var ready func(context.Context) error
	var probes []Probe
	fail := func(err error) (*Gateway, error) {
		closeAll(closers)
		return nil, err
	}
	// One MQTT connection carries sirens and MQTT PA controllers.
	_, sirenOver := override[alert.KindSiren]
	var gw *Gateway
	startPool := func() {}
	if !sirenOver || cfg.PA.UsesMQTT() || len(cfg.Triggers.Sources) > 0 {
		mc := mqttcmd.Config{
			Broker: cfg.MQTT.Broker, ClientID: cfg.MQTT.ClientID, Username: cfg.MQTT.Username,
			Password: cfg.MQTT.Password(), TLS: cfg.MQTT.TLSConfig(), TopicPrefix: cfg.MQTT.TopicPrefix, AckTimeout: cfg.Siren.AckTimeout,
			Kinds: []string{"siren", "pa"},
		}
		var conn *mqttcmd.Client
		if len(cfg.Triggers.Sources) > 0 {
			// Building systems' triggers, answered on .../{source}/ack, decided
			// by a bounded pool once the gateway is built; until then they wait
			// in its queue.
			prefix := cfg.MQTT.TopicPrefix + "/trigger/"
			pool := newTriggerPool(&cfg.Triggers)
			mc.Subscriptions = map[string]func(string, []byte){prefix + "+": func(topic string, payload []byte) {
				pool.offer(strings.TrimPrefix(topic, prefix), payload)
			}}
			startPool = func() {
				pool.start(gw.signed, func(source string, payload []byte) {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					b, _ := json.Marshal(gw.HandleTrigger(ctx, source, payload))
					conn.Publish(prefix+source+"/ack", b)
				}, gw.auditDropped)
				closers = append(closers, pool.close)
			}
		}
		// The client id is claimed in Redis first, so a second instance
		// started by mistake never takes this one's broker session.
		cctx, cancel := context.WithTimeout(context.Background(), instanceTTL+5*time.Second)
		release, err := claimClientID(cctx, first, cfg.Redis.KeyPrefix, cfg.MQTT.ClientID, log)
		cancel()
		if err != nil {
			return fail(err)
		}
		closers = append(closers, release) // runs after conn.Close: closers run in reverse
		conn, err = mqttcmd.New(mc, log)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, conn.Close)
		ready = func(context.Context) error {
			if !conn.Connected() {
				return errors.New("MQTT broker not connected")
			}
			return nil
		}
		sn := siren.New(conn, cfg.ChannelPolicy.Signal)
		ads[alert.KindSiren] = sn
		if every := cfg.Probes.Sirens; every > 0 {
			for _, s := range cfg.Sirens {
				probes = append(probes, Probe{Kind: "siren", Target: s.ID, Zone: s.Zone, Every: every,
					Run: func(ctx context.Context) error { return sn.Probe(ctx, s.ID) }})
			}
		}
		if len(cfg.PA.Zones) > 0 {
			p := openPA(cfg, conn)
			ads[alert.KindPA] = p
			if every := cfg.Probes.PA; every > 0 {
				for _, c := range cfg.PA.Controllers {
					probes = append(probes, Probe{Kind: "pa", Target: c.ID, Every: every, Run: func(ctx context.Context) error { return p.Probe(ctx, c.ID) }})
				}
			}
			if cfg.PA.HasFallbacks() {
				fallbacks[alert.KindPA] = p.Fallback()
			}
		}
	}
	dispatchKeys := map[string][]byte{}
	if len(cfg.Dispatch.Centres) > 0 {
		d, keys, err := openDispatch(cfg)
		if err != nil {
			return fail(err)
		}
		ads[alert.KindDispatch], dispatchKeys = d, keys
		if every := cfg.Probes.Dispatch; every > 0 {
			for _, c := range cfg.Dispatch.Centres {
				probes = append(probes, Probe{Kind: "dispatch", Target: c.ID, Every: every, Run: func(ctx context.Context) error {
					id, err := d.Probe(ctx, c.ID)
					if err != nil {
						return err
					}
					return gw.waitProbeAck(ctx, id)
				}})
			}
		}
	}
	tokens := map[string]string{}
	router := routing.New(cfg)
	if cfg.Twilio.Primary != "" {
		// The recipients are the router's, which the gateway routes with too.
		lookup := router.Recipient
		loc := cfg.Location()
		for i, id := range []string{cfg.Twilio.Primary, cfg.Twilio.Fallback} {
			acct := cfg.Twilio.Account(id)
			if acct == nil {
				continue
			}
			token := acct.AuthToken() // config.Load refused an empty one
			tokens[acct.AccountSID] = token
			tw := twilioapi.Account{SID: acct.AccountSID, AuthToken: token, BaseURL: acct.BaseURL}
			if every := cfg.Probes.Twilio; every > 0 {
				c, err := twilioapi.New(tw)
				if err != nil {
					return fail(err)
				}
				probes = append(probes, Probe{Kind: "twilio", Target: acct.ID, Every: every,
					Run: func(context.Context) error { return c.Check(tw.SID) }})
			}
			cb := strings.TrimRight(cfg.PublicURL, "/") + "/v1/callbacks/twilio"
			set := ads
			if i == 1 {
				set = fallbacks
			}
			if acct.SMS.From != "" || acct.SMS.MessagingServiceSID != "" {
				n, err := sms.New(sms.Config{Account: acct.ID, Twilio: tw, From: acct.SMS.From, MessagingServiceSID: acct.SMS.MessagingServiceSID,
					Rate: acct.SMS.Rate, CallbackURL: cb, Recipients: lookup, Location: loc, Texts: cfg.Texts()})
				if err != nil {
					return fail(err)
				}
				if _, over := override[alert.KindSMS]; !over {
					set[alert.KindSMS] = n
				}
			}
			if acct.Voice.From != "" {
				n, err := voice.New(voice.Config{Account: acct.ID, Twilio: tw, From: acct.Voice.From, Rate: acct.Voice.Rate,
					Voice: acct.Voice.Voice, Repeat: acct.Voice.Repeat, CallbackURL: cb, Recipients: lookup, Location: loc, Texts: cfg.Texts(), Log: log})
				if err != nil {
					return fail(err)
				}
				if _, over := override[alert.KindVoice]; !over {
					set[alert.KindVoice] = n
				}
			}
		}
	}
	for k, a := range override {
		ads[k] = a
	}
	gw = New(Options{
		Config: cfg, Router: router, Queue: q, BulkQueue: bulk, Redis: first, Log: log, Adapters: ads, Fallbacks: fallbacks, TwilioTokens: tokens, DispatchKeys: dispatchKeys,
		Retry:   adapters.RetryOptions{Initial: cfg.Delivery.RetryInitial, Max: cfg.Delivery.RetryMax, Hold: cfg.Delivery.Hold},
		Breaker: adapters.BreakerOptions{Failures: cfg.Delivery.BreakerFailures, Open: cfg.Delivery.BreakerOpen},
		Probes:  append(probes, testSMSProbe(cfg, func() *Gateway { return gw })...),
	})
	gw.Ready = ready
	if err := gw.openAudit(log); err != nil {
		return fail(err)
	}
	startPool()
	gw.closers = closers
	return gw, nil
}

// openPA builds the PA adapter from the configuration.
func openPA(cfg *config.Config, conn *mqttcmd.Client) *pa.Notifier {
	pc := pa.Config{Controllers: map[string]pa.Controller{}, Zones: map[string]pa.Zone{}, MQTT: conn, Location: cfg.Location(), Texts: cfg.Texts()}
	for _, c := range cfg.PA.Controllers {
		pc.Controllers[c.ID] = pa.Controller{ID: c.ID, URL: c.URL, Token: c.Token()}
	}
	for _, z := range cfg.PA.Zones {
		pc.Zones[z.ID] = pa.Zone{ID: z.ID, Controller: z.Controller, Fallback: z.Fallback, Language: z.Language, Repeat: z.Repeat}
	}
	return pa.New(pc)
}

// openDispatch builds the dispatch adapter: the XML signer from the signing
// key and certificate the configuration loaded, each centre's HMAC key from
// its environment variable, and its TLS client from its files.
func openDispatch(cfg *config.Config) (*dispatch.Notifier, map[string][]byte, error) {
	signer, err := dispatch.NewSigner(cfg.Dispatch.Signing.Key(), cfg.Dispatch.Signing.Certificate())
	if err != nil {
		return nil, nil, fmt.Errorf("dispatch.signing: %w (every CAP document sent to a centre must be XML-signed)", err)
	}
	dc := dispatch.Config{Sender: cfg.Dispatch.Sender, Signer: signer, Centres: map[string]dispatch.Centre{}, ZoneNames: map[string]string{}, Location: cfg.Location(), Texts: cfg.Texts()}
	for _, z := range cfg.Zones {
		if z.Name != "" {
			dc.ZoneNames[z.ID] = z.Name
		}
	}
	keys := map[string][]byte{}
	for _, c := range cfg.Dispatch.Centres {
		// Key and TLS files were read by config.Load, which refuses them missing.
		centre := dispatch.Centre{ID: c.ID, URL: c.URL, Key: c.HMACKey(), InsecureHTTP: c.InsecureHTTP, TLS: c.TLSClient()}
		dc.Centres[c.ID], keys[c.ID] = centre, c.HMACKey()
	}
	n, err := dispatch.New(dc)
	if err != nil {
		return nil, nil, err
	}
	return n, keys, nil
}

func closeAll(fs []func()) {
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Close releases the connections Open made, the adapters' first. Call it after Run returns.
func (g *Gateway) Close() { closeAll(g.closers) }

// openAudit records the configuration this instance runs with (its digest)
// and, with audit.dir set, builds the keeper that archives the audit and
// signs its checkpoints.
func (g *Gateway) openAudit(log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys := audit.KeysFor(g.cfg.Redis.KeyPrefix)
	host, _ := os.Hostname()
	if _, err := audit.Append(ctx, g.rdb, keys, audit.Entry{Time: time.Now(), Kind: "config.loaded", Actor: "system",
		Subject: host, Detail: map[string]string{"digest": g.cfg.Digest()}}); err != nil {
		log.Warn().Err(err).Msg("Configuration digest not audited (Redis not reachable yet)")
	}
	if g.cfg.Audit.Dir == "" {
		return nil
	}
	k, err := audit.NewKeeper(audit.KeeperOptions{Rdb: g.rdb, Keys: keys, Dir: g.cfg.Audit.Dir, Signer: g.cfg.Audit.SigningKey(),
		Every: g.cfg.Audit.CheckpointEvery, Interval: g.cfg.Audit.CheckpointInterval, Poll: g.cfg.Audit.ArchiveEvery, Syslog: g.cfg.Audit.Syslog, Log: log})
	if err != nil {
		return fmt.Errorf("audit.dir: %w", err)
	}
	g.keeper = k
	return nil
}

// testSMSProbe is the scheduled real test SMS (probes.test_sms), if any.
func testSMSProbe(cfg *config.Config, gw func() *Gateway) []Probe {
	p := cfg.Probes
	if p.TestSMS == 0 || cfg.Twilio.Primary == "" {
		return nil
	}
	return []Probe{{Kind: "sms", Target: p.TestSMSTo, Every: p.TestSMS, Timeout: p.TestSMSTimeout,
		Run: func(ctx context.Context) error { return gw().testSMS(ctx, p.TestSMSTo) }}}
}
