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

	"github.com/tocsin-alert/tocsin/loadtest"
)

const loadtestUsage = `usage: tocsin loadtest SCENARIO [flags]   (loopback targets only)

  tocsin loadtest ingest --url http://127.0.0.1:8080 --key KEY [--senders 16] [--duration 10s | --count N] [--repeat 0.1] [--zones z1,z2] [--json]
  tocsin loadtest pickup --url http://127.0.0.1:8080 --key KEY --mqtt tcp://127.0.0.1:1883 --zone Z [--count 20] [--idle 200ms] [--json]
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
	default:
		return fmt.Errorf("unknown scenario %q\n%s", args[0], loadtestUsage)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	} else {
		fmt.Println(res.Summary())
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
