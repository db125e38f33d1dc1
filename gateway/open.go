package gateway

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/siren"
	"github.com/tocsin-alert/tocsin/adapters/sms"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/adapters/voice"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/priority"
)

// Open wires a Gateway from its configuration: the Redis client (single,
// Sentinel or Cluster), the queue, and every channel kind's adapter. An
// adapter in override replaces the configured one for its kind (tests,
// benchmarks). Close releases what Open made.
func Open(cfg *config.Config, log zerolog.Logger, override map[alert.Kind]adapters.Adapter) (*Gateway, error) {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: cfg.Redis.Addrs, MasterName: cfg.Redis.MasterName, DB: cfg.Redis.DB,
		Username: cfg.Redis.Username, Password: os.Getenv(cfg.Redis.PasswordEnv),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: 1,
	})
	closers := []func(){func() { rdb.Close() }}
	q := priority.New(rdb, priority.Options{
		Prefix: cfg.Redis.KeyPrefix, DedupWindow: cfg.Queue.DedupWindow, IdempotencyTTL: cfg.Queue.IdempotencyTTL,
		Lease: cfg.Queue.Lease, BatchSize: cfg.Queue.BatchSize,
	})
	ads := map[alert.Kind]adapters.Adapter{}
	var ready func(context.Context) error
	if a, ok := override[alert.KindSiren]; ok {
		ads[alert.KindSiren] = a
	} else {
		sn, err := siren.New(siren.Config{
			Broker: cfg.MQTT.Broker, ClientID: cfg.MQTT.ClientID, Username: cfg.MQTT.Username,
			Password: os.Getenv(cfg.MQTT.PasswordEnv), TopicPrefix: cfg.MQTT.TopicPrefix, AckTimeout: cfg.Siren.AckTimeout,
		}, log)
		if err != nil {
			closeAll(closers)
			return nil, err
		}
		ads[alert.KindSiren] = sn
		closers = append(closers, sn.Close)
		ready = func(context.Context) error {
			if !sn.Connected() {
				return errors.New("MQTT broker not connected")
			}
			return nil
		}
	}
	var gw *Gateway
	fallbacks := map[alert.Kind]adapters.Adapter{}
	tokens := map[string]string{}
	if cfg.Twilio.Primary != "" {
		// The recipients are the gateway's; gw is set below, before any delivery.
		lookup := func(id string) (adapters.Recipient, bool) { return gw.Recipient(id) }
		loc := cfg.Location()
		for i, id := range []string{cfg.Twilio.Primary, cfg.Twilio.Fallback} {
			acct := cfg.Twilio.Account(id)
			if acct == nil {
				continue
			}
			token := os.Getenv(acct.AuthTokenEnv)
			tokens[acct.AccountSID] = token
			tw := twilioapi.Account{SID: acct.AccountSID, AuthToken: token, BaseURL: acct.BaseURL}
			cb := strings.TrimRight(cfg.PublicURL, "/") + "/v1/callbacks/twilio"
			set := ads
			if i == 1 {
				set = fallbacks
			}
			if acct.SMS.From != "" || acct.SMS.MessagingServiceSID != "" {
				n, err := sms.New(sms.Config{Account: acct.ID, Twilio: tw, From: acct.SMS.From, MessagingServiceSID: acct.SMS.MessagingServiceSID,
					Rate: acct.SMS.Rate, CallbackURL: cb, Recipients: lookup, Location: loc})
				if err != nil {
					closeAll(closers)
					return nil, err
				}
				if _, over := override[alert.KindSMS]; !over {
					set[alert.KindSMS] = n
				}
			}
			if acct.Voice.From != "" {
				n, err := voice.New(voice.Config{Account: acct.ID, Twilio: tw, From: acct.Voice.From, Rate: acct.Voice.Rate,
					Voice: acct.Voice.Voice, Repeat: acct.Voice.Repeat, CallbackURL: cb, Recipients: lookup, Location: loc, Log: log})
				if err != nil {
					closeAll(closers)
					return nil, err
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
		Config: cfg, Queue: q, Log: log, Adapters: ads, Fallbacks: fallbacks, TwilioTokens: tokens,
		Retry:   adapters.RetryOptions{Initial: cfg.Delivery.RetryInitial, Max: cfg.Delivery.RetryMax},
		Breaker: adapters.BreakerOptions{Failures: cfg.Delivery.BreakerFailures, Open: cfg.Delivery.BreakerOpen},
	})
	gw.Ready = ready
	gw.closers = closers
	return gw, nil
}

func closeAll(fs []func()) {
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Close releases the connections Open made, the adapters' first. Call it after Run returns.
func (g *Gateway) Close() { closeAll(g.closers) }
