// Command tocsin is Tocsin's one binary: the gateway (serve), a self-contained
// demo, fakes of the outside world for manual runs, the operator CLI (send,
// retract, status) and config checks.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

const usage = `tocsin: mass-notification gateway for emergency alerting

Usage:
  tocsin serve --config FILE          run a gateway against Redis and an MQTT broker
  tocsin demo [--listen ADDR] [--redis ADDR] [--mqtt URL]
                                      run everything in one process, keeping nothing
  tocsin loadtest SCENARIO [flags]    load a running gateway over HTTP and MQTT (ingest, pickup)
  tocsin fake KIND [flags]            run a fake Twilio, PA controller, dispatch centre or siren fleet
  tocsin config check FILE            print every problem in a config file (exit 1 if any)
  tocsin --version                    the version and commit of this binary
  tocsin send --status S [flags]      send an alert; S is actual, exercise or test, no default (tocsin send -h)
  tocsin retract ID --reason R [--follow]
                                      retract an alert (false_alarm, all_clear, superseded); --follow watches its retractions
  tocsin watch ID [--interval 500ms] [--json]
                                      live per-channel progress bars until the alert is finished
  tocsin status [ID]                  list alerts, or show one with per-channel counts
  tocsin maintenance SOURCE --reason R --for 4h | --end
                                      quarantine a trigger source's triggers, or stop
  tocsin sources                      trigger sources and their maintenance
  tocsin triggers [--status S]        recent trigger decisions (quarantined, rejected, …)
  tocsin operator invite|list|disable|enable [ID] --config FILE
                                      manage operators on the server (prints enrolment links)
  tocsin audit keygen NAME            make the audit checkpoint signing key pair
  tocsin audit verify --dir DIR --key KEY [--redis ADDR --prefix P]
                                      check the audit chain against its signed checkpoints

The client commands read TOCSIN_URL (default http://127.0.0.1:8080) and TOCSIN_KEY.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the command line: the exit status is 0 on success and for any
// --help, 2 for a usage error, 1 when the command failed.
func run(argv []string, stdout, stderr io.Writer) int {
	if len(argv) < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := argv[0], argv[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "demo":
		err = demo(args)
	case "config":
		switch {
		case len(args) >= 1 && isHelp(args[len(args)-1]):
			fmt.Fprint(stdout, "usage: tocsin config check FILE\n\nPrints every problem in the configuration file, each with its line and field, and exit status 1 if there is any.\n")
			return 0
		case len(args) != 2 || args[0] != "check":
			fmt.Fprint(stderr, "usage: tocsin config check FILE\n")
			return 2
		}
		return configCheck(args[1], stdout)
	case "fake":
		err = fakeCmd(args)
	case "loadtest":
		err = loadtestCmd(args)
	case "send":
		err = send(args)
	case "retract":
		err = retract(args)
	case "status":
		err = status(args)
	case "maintenance":
		err = maintenance(args)
	case "sources":
		err = sources(args)
	case "triggers":
		err = triggers(args)
	case "watch":
		err = watch(args)
	case "operator":
		err = operatorCmd(args)
	case "audit":
		err = auditCmd(args)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	case "version", "--version":
		fmt.Fprintln(stdout, version())
	default:
		fmt.Fprintf(stderr, "tocsin: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0 // the flag package printed the command's usage
	case err != nil:
		fmt.Fprintf(stderr, "tocsin %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

// version is the module version and the commit the binary was built from.
func version() string {
	v, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return "tocsin " + v + rev
}
