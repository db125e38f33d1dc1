package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

const fakeUsage = `usage: tocsin fake KIND [flags]   (loopback only; prints what it receives as JSON lines)

  tocsin fake twilio   --listen 127.0.0.1:8088 --account SID:TOKEN [--rate FROM=N] [--fail STATUS] [--undelivered NUMBER]
  tocsin fake pa       --listen 127.0.0.1:8089 [--token T] [--mqtt URL --mqtt-ids a,b]
  tocsin fake dispatch --listen 127.0.0.1:8090 --centre ID=KEY [--signing-cert FILE] [--ack-url URL]
  tocsin fake sirens   --mqtt URL --ids a,b,c [--latency 50ms] [--drop 0.1] [--offline c]
`

// list is a repeatable or comma-separated flag.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// pairs splits "a=b" or "a:b" items.
func pairs(l list, sep string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range l {
		k, v, ok := strings.Cut(s, sep)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q: want key%svalue", s, sep)
		}
		m[k] = v
	}
	return m, nil
}

func fakeCmd(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return runFake(ctx, args, os.Stdout)
}

// runFake runs one fake of the outside world until ctx ends.
func runFake(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("which fake?\n%s", fakeUsage)
	}
	var mu sync.Mutex
	emit := func(kind string, v any) {
		b, _ := json.Marshal(map[string]any{"fake": kind, "at": time.Now().UTC(), "got": v})
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "%s\n", b)
	}
	fs := flag.NewFlagSet("fake "+args[0], flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to serve on")
	var closeFn func()
	var where string
	switch args[0] {
	case "twilio":
		var accounts, rates list
		fs.Var(&accounts, "account", "SID:TOKEN of an account it accepts (repeatable)")
		fs.Var(&rates, "rate", "FROM=N: a sender's allowed sends per second (repeatable)")
		failStatus := fs.Int("fail", 0, "answer every create with this HTTP status (429 adds Retry-After: 1)")
		var undelivered list
		fs.Var(&undelivered, "undelivered", "numbers that get undelivered / no-answer")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		acc, err := pairs(accounts, ":")
		if err != nil || len(acc) == 0 {
			return fmt.Errorf("--account SID:TOKEN is required (%v)", err)
		}
		rs, err := pairs(rates, "=")
		if err != nil {
			return err
		}
		rf := map[string]float64{}
		for k, v := range rs {
			if rf[k], err = strconv.ParseFloat(v, 64); err != nil {
				return fmt.Errorf("--rate %s=%s: want a number", k, v)
			}
		}
		tw, err := fake.StartTwilio(fake.TwilioOptions{Listen: *listen, Accounts: acc, Rates: rf, Undelivered: undelivered,
			OnMessage: func(m fake.FakeMessage) { emit("twilio", m) },
			OnCall:    func(c fake.FakeCall) { emit("twilio", c) }})
		if err != nil {
			return err
		}
		if *failStatus != 0 {
			tw.SetFailure(fake.TwilioFailure{Status: *failStatus, RetryAfter: 1})
		}
		closeFn, where = tw.Close, "Twilio REST API at "+tw.URL+" (set twilio.accounts[].base_url to it)"
	case "pa":
		token := fs.String("token", "", "bearer token HTTP commands must carry")
		broker := fs.String("mqtt", "", "MQTT broker URL for MQTT controllers")
		var ids list
		fs.Var(&ids, "mqtt-ids", "controller ids that take commands over MQTT")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		p, err := fake.StartPA(fake.PAOptions{Listen: *listen, Token: *token, Broker: *broker, MQTTIDs: ids,
			OnCommand: func(r fake.PAReceived) { emit("pa", r) }})
		if err != nil {
			return err
		}
		closeFn, where = p.Close, "PA controllers at "+p.URL("{controller}")
	case "dispatch":
		var centres list
		fs.Var(&centres, "centre", "ID=KEY: a centre and its HMAC key (repeatable)")
		ackURL := fs.String("ack-url", "", "where to post CAP Acks, e.g. http://127.0.0.1:8080/v1/callbacks/cap/{centre}")
		signingCert := fs.String("signing-cert", "", "PEM certificate the gateway XML-signs CAP with (its dispatch.signing.cert_file): CAP without a valid signature by it is refused; unchecked when not given")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		var pinned []*x509.Certificate
		if *signingCert != "" {
			var err error
			if pinned, err = fake.ReadCerts(*signingCert); err != nil {
				return fmt.Errorf("--signing-cert: %w", err)
			}
		}
		cs, err := pairs(centres, "=")
		if err != nil || len(cs) == 0 {
			return fmt.Errorf("--centre ID=KEY is required (%v)", err)
		}
		keys := map[string][]byte{}
		for k, v := range cs {
			keys[k] = []byte(v)
		}
		d, err := fake.StartDispatch(fake.DispatchOptions{Listen: *listen, Keys: keys, AckURL: *ackURL, Pinned: pinned,
			OnDocument: func(r fake.DispatchReceived) {
				emit("dispatch", map[string]any{"centre": r.Centre, "cap": r.Doc, "xml_signature_verified": r.Signed})
			}})
		if err != nil {
			return err
		}
		closeFn, where = d.Close, "dispatch centres at "+d.URL("{centre}")
		if pinned == nil {
			where += " (XML signatures unchecked: --signing-cert pins the gateway's certificate)"
		}
	case "sirens":
		broker := fs.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL")
		var ids, offline list
		fs.Var(&ids, "ids", "siren ids")
		fs.Var(&offline, "offline", "sirens that never ack")
		latency := fs.Duration("latency", 0, "delay before each ack")
		drop := fs.Float64("drop", 0, "chance (0..1) of ignoring a command")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if len(ids) == 0 {
			return fmt.Errorf("--ids is required")
		}
		f, err := fake.StartFleet(fake.FleetOptions{Broker: *broker, IDs: ids, Offline: offline, Latency: *latency, DropRate: *drop,
			OnCommand: func(r fake.Received) { emit("siren", r) }})
		if err != nil {
			return err
		}
		closeFn, where = f.Close, fmt.Sprintf("%d sirens on %s", len(ids), *broker)
	default:
		return fmt.Errorf("unknown fake %q\n%s", args[0], fakeUsage)
	}
	defer closeFn()
	fmt.Fprintf(os.Stderr, "fake %s: %s; Ctrl-C stops it\n", args[0], where)
	<-ctx.Done()
	return nil
}
