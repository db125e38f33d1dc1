package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters/sms"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/console"
	"github.com/tocsin-alert/tocsin/gateway"
)

func configCheck(path string, out io.Writer) int {
	cfg, err := config.Load(path)
	if err == nil {
		fmt.Fprintf(out, "%s: ok\n", path)
		printSMSTexts(out, cfg.Texts())
		fmt.Fprint(out, cfg.PolicyMatrix())
		return 0
	}
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintf(out, "%s:%d: %s: %s\n", path, p.Line, p.Field, p.Msg)
		}
	} else {
		fmt.Fprintf(out, "%v\n", err)
	}
	return 1
}

// printSMSTexts lists the SMS segments of each prepared text in every
// language, for an alert with a 30-character headline: providers pace and
// bill by segment, and a „quote“ turns a text into UCS-2 (70 characters a
// segment instead of 160).
func printSMSTexts(out io.Writer, tx *alert.Texts) {
	a := &alert.Alert{Status: alert.StatusActual, Event: "Amok", Headline: strings.Repeat("x", 30), Sent: time.Now()}
	drill := *a
	drill.Status = alert.StatusExercise
	fmt.Fprintln(out, "SMS segments of the prepared texts (for a 30-character headline):")
	for _, lang := range tx.Languages() {
		for _, key := range alert.TextKeys {
			var text string
			switch key {
			case "exercise":
				text = tx.Text(&drill, alert.KindSMS, alert.MessageAlert, "", lang)
			case "alert":
				text = tx.Text(a, alert.KindSMS, alert.MessageAlert, "", lang)
			default:
				text = tx.Text(a, alert.KindSMS, alert.MessageRetraction, key, lang)
			}
			n, enc := sms.Segments(text)
			fmt.Fprintf(out, "  %-3s %-12s %d %s\n", lang, key, n, enc)
		}
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "tocsin.yaml", "configuration file")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	noWorkers := fs.Bool("no-workers", false, "API only: accept, store and retract alerts, deliver nothing (other instances with workers deliver)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("%s:\n%w", *path, err)
	}
	// Loading a large people_file leaves garbage; collect it now, not while
	// the first alerts are handled, and give the memory back.
	debug.FreeOSMemory()
	log := newLogger(*logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return runGateway(ctx, cfg, log, nil, !*noWorkers)
}

func newLogger(level string) zerolog.Logger {
	lv, err := zerolog.ParseLevel(level)
	if err != nil {
		lv = zerolog.InfoLevel
	}
	return zerolog.New(os.Stderr).Level(lv).With().Timestamp().Logger()
}

// runGateway runs one gateway until ctx ends (SIGTERM): readiness goes 503,
// the HTTP server stops taking requests, workers stop claiming, running jobs
// finish or are handed back, and it returns nil. Without workers it serves
// the API only.
func runGateway(ctx context.Context, cfg *config.Config, log zerolog.Logger, started func(api, console string), workers bool) error {
	g, err := gateway.Open(cfg, log, nil)
	if err != nil {
		return err
	}
	defer g.Close()
	ln, err := listen(cfg, cfg.Listen, log)
	if err != nil {
		return err
	}
	api := g.Handler()
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, ErrorLog: httpErrorLog(log)}
	go srv.Serve(ln) // exits when srv.Shutdown is called
	log.Info().Str("listen", ln.Addr().String()).Bool("tls", cfg.TLS != nil).Strs("redis", cfg.Redis.Addrs).Bool("redis_tls", cfg.Redis.TLS != nil).Str("mqtt", cfg.MQTT.Broker).Msg("Tocsin gateway serving")
	// The console has its own listener, so it can face the control-room
	// network only; it is a client of the API, and its outage leaves the
	// API (and so every retraction) untouched.
	consoleAddr := ""
	if addr := cfg.Console.Listen; addr != "" && addr != "off" {
		c, err := console.New(console.Options{API: api, Config: cfg, Log: log, Secure: strings.HasPrefix(cfg.Console.PublicURL, "https://")})
		if err != nil {
			return err
		}
		// A console that cannot listen is an outage of the console only: the
		// gateway goes on, and the API and the CLI still retract.
		if cln, err := listen(cfg, addr, log); err != nil {
			log.Error().Err(err).Str("listen", addr).Msg("Console not serving; the API serves on")
		} else {
			csrv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, ErrorLog: httpErrorLog(log)}
			go csrv.Serve(cln) // exits when csrv.Close is called
			defer csrv.Close()
			log.Info().Str("listen", cln.Addr().String()).Msg("Tocsin console serving")
			consoleAddr = cln.Addr().String()
		}
	}
	if started != nil {
		started(ln.Addr().String(), consoleAddr)
	}
	runDone := make(chan error, 1)
	if workers {
		go func() { runDone <- g.Run(ctx, cfg.Queue.ShutdownGrace) }() // exits after ctx ends and jobs drain
	} else {
		log.Info().Msg("No workers: this instance accepts alerts and delivers nothing")
		runDone <- nil
	}
	<-ctx.Done()
	log.Info().Msg("Shutting down: draining")
	g.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	err = <-runDone
	log.Info().Msg("Stopped")
	return err
}
