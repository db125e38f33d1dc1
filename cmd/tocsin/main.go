// Command tocsin is Tocsin's one binary: the gateway (serve), a self-contained
// demo, fakes of the outside world for manual runs, the operator CLI (send,
// retract, status) and config checks.
package main

import (
	"fmt"
	"os"
)

const usage = `tocsin: mass-notification gateway for emergency alerting

Usage:
  tocsin serve --config FILE          run a gateway against Redis and an MQTT broker
  tocsin demo [--listen ADDR] [--redis ADDR] [--mqtt URL]
                                      run everything in one process, keeping nothing
  tocsin loadtest SCENARIO [flags]    load a running gateway over HTTP and MQTT (ingest, pickup)
  tocsin fake KIND [flags]            run a fake Twilio, PA controller, dispatch centre or siren fleet
  tocsin config check FILE            print every problem in a config file (exit 1 if any)
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

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(args)
	case "demo":
		err = demo(args)
	case "config":
		if len(args) != 2 || args[0] != "check" {
			fmt.Fprint(os.Stderr, "usage: tocsin config check FILE\n")
			os.Exit(2)
		}
		os.Exit(configCheck(args[1], os.Stdout))
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
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "tocsin: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tocsin %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
