package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tocsin-alert/tocsin/loadtest"
)

const loadtestUsage = `usage: tocsin loadtest SCENARIO [flags]   (loopback targets only)

  tocsin loadtest ingest --url http://127.0.0.1:8080 --key KEY [--senders 16] [--duration 10s | --count N] [--repeat 0.1] [--zones z1,z2] [--json]
  tocsin loadtest pickup --url http://127.0.0.1:8080 --key KEY --mqtt tcp://127.0.0.1:1883 --zone Z [--count 20] [--idle 200ms] [--json]

These start their own gateway instances (tocsin serve) against the Redis and
broker named, with generated recipients, the fake Twilio and simulated sirens
in this process, so they can count every delivery and kill an instance:

  tocsin loadtest fanout           --redis 127.0.0.1:6379 --mqtt tcp://127.0.0.1:1883 [--recipients 100000] [--instances 1] [--send-for 60s]
  tocsin loadtest retract          --redis ... --mqtt ... [--recipients 100000] [--at 1]
  tocsin loadtest recover          --redis ... --mqtt ... [--recipients 100000] [--instances 2] [--at 0.3]
  tocsin loadtest siren-under-load --redis ... --mqtt ... [--recipients 1000000] [--count 50] [--idle 100ms]
  (all: [--workers 16] [--batch 100] [--lease 2s] [--gomemlimit 200MiB] [--logs] [--json])
`

// loadtestCmd runs one load scenario against a running Tocsin, through its
// public HTTP and MQTT interfaces only, and prints a one-line summary (or
// JSON).
func loadtestCmd(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("which scenario?\n%s", loadtestUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fs := flag.NewFlagSet("loadtest "+args[0], flag.ContinueOnError)
	url := fs.String("url", envOr("TOCSIN_URL", "http://127.0.0.1:8080"), "gateway URL")
	key := fs.String("key", os.Getenv("TOCSIN_KEY"), "API key (TOCSIN_KEY)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var res loadtest.Result
	var err error
	switch args[0] {
	case "ingest":
		senders := fs.Int("senders", 16, "concurrent senders")
		dur := fs.Duration("duration", 0, "run this long (default 10s unless --count)")
		count := fs.Int64("count", 0, "send this many")
		repeat := fs.Float64("repeat", 0, "share of requests that repeat an earlier Idempotency-Key")
		zones := fs.String("zones", "", "comma-separated zones (required)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *zones == "" {
			return fmt.Errorf("--zones is required")
		}
		res, err = loadtest.Ingest(ctx, loadtest.IngestOptions{URL: *url, Key: *key, Senders: *senders, Duration: *dur, Count: *count,
			Repeat: *repeat, Zones: strings.Split(*zones, ","), Progress: os.Stderr})
	case "pickup":
		broker := fs.String("mqtt", "tcp://127.0.0.1:1883", "the broker the sirens listen on")
		zone := fs.String("zone", "", "a zone with sirens (required)")
		count := fs.Int("count", 20, "alerts, one at a time")
		idle := fs.Duration("idle", 0, "idle gap before each (default 200ms)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *zone == "" {
			return fmt.Errorf("--zone is required")
		}
		res, err = loadtest.Pickup(ctx, loadtest.PickupOptions{URL: *url, Key: *key, Broker: *broker, Zone: *zone, Count: *count, Idle: *idle, Progress: os.Stderr})
	case "fanout", "retract", "recover", "siren-under-load":
		return stackScenario(ctx, fs, args, asJSON)
	default:
		return fmt.Errorf("unknown scenario %q\n%s", args[0], loadtestUsage)
	}
	if err != nil {
		return err
	}
	printResult(res, *asJSON)
	return nil
}

func printResult(res loadtest.Result, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	} else {
		fmt.Println(res.Summary())
	}
}

// stackScenario runs a scenario that starts its own gateway instances.
func stackScenario(ctx context.Context, fs *flag.FlagSet, args []string, asJSON *bool) error {
	name := args[0]
	def := map[string]int{"fanout": 100_000, "retract": 100_000, "recover": 100_000, "siren-under-load": 1_000_000}[name]
	var o loadtest.StackOptions
	fs.StringVar(&o.Redis, "redis", "127.0.0.1:6379", "Redis (loopback host:port, or several comma-separated: a Redis Cluster); the scenario uses its own key prefix and removes it")
	fs.StringVar(&o.Broker, "mqtt", "tcp://127.0.0.1:1883", "MQTT broker (loopback)")
	fs.IntVar(&o.Recipients, "recipients", def, "SMS recipients")
	fs.IntVar(&o.Instances, "instances", 0, "gateway instances with workers (fanout 1, recover 2)")
	fs.IntVar(&o.Workers, "workers", 16, "jobs in progress per channel kind and instance")
	fs.IntVar(&o.BatchSize, "batch", 100, "targets per job")
	fs.DurationVar(&o.Lease, "lease", 2*time.Second, "job lease")
	sendFor := fs.Duration("send-for", time.Minute, "fanout: how long to measure sending")
	at := fs.Float64("at", 0, "retract: share reached before retracting (1); recover: share reached before the kill (0.3)")
	count := fs.Int("count", 50, "siren-under-load: triggers, idle and under load")
	idle := fs.Duration("idle", 100*time.Millisecond, "siren-under-load: gap between triggers")
	fs.StringVar(&o.MemoryLimit, "gomemlimit", "", "the gateways' GOMEMLIMIT (deploy/ ships 200MiB)")
	logs := fs.Bool("logs", false, "show the gateways' warnings")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *logs {
		o.Log = os.Stderr
	}
	var res loadtest.Result
	var err error
	switch name {
	case "fanout":
		res, err = loadtest.Fanout(ctx, loadtest.FanoutOptions{Stack: o, SendFor: *sendFor, Progress: os.Stderr})
	case "retract":
		res, err = loadtest.Retract(ctx, loadtest.RetractOptions{Stack: o, At: *at, Progress: os.Stderr})
	case "recover":
		res, err = loadtest.Recover(ctx, loadtest.RecoverOptions{Stack: o, At: *at, Progress: os.Stderr})
	case "siren-under-load":
		var idleRes loadtest.Result
		idleRes, res, err = loadtest.SirenUnderLoad(ctx, loadtest.SirenUnderLoadOptions{Stack: o, Count: *count, Idle: *idle, Progress: os.Stderr})
		if err == nil {
			printResult(idleRes, *asJSON)
		}
	}
	if err != nil {
		return err
	}
	printResult(res, *asJSON)
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
