package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/operator"
)

const operatorUsage = `usage: tocsin operator COMMAND --config FILE

Run on the server host, against Redis directly:
  invite ID     print an enrolment link for operator ID (voids their previous invite)
  list          every configured operator: enrolled, disabled, locked, signed in
  disable ID    refuse ID's sign-ins, end their session and void their invite
  enable ID     let a disabled ID sign in again; also lifts a lockout
`

// operatorCmd is `tocsin operator …`.
func operatorCmd(args []string) error { return operatorRun(args, os.Stdout) }

func operatorRun(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(operatorUsage)
	}
	sub, rest := args[0], args[1:]
	wantID := sub == "invite" || sub == "disable" || sub == "enable"
	if !wantID && sub != "list" {
		return fmt.Errorf("unknown command %q\n%s", sub, operatorUsage)
	}
	fs := flag.NewFlagSet("operator "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", "tocsin.yaml", "configuration file")
	// The id may come before or after the flags.
	var id string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(os.Stdout, operatorUsage)
		return err
	} else if err != nil {
		return fmt.Errorf("%v\n%s", err, operatorUsage)
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil { // flags after the id
			return fmt.Errorf("%v\n%s", err, operatorUsage)
		}
	}
	if fs.NArg() > 0 || wantID != (id != "") {
		return errors.New(operatorUsage)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("%s:\n%w", *path, err)
	}
	if wantID && cfg.Operator(id) == nil {
		return fmt.Errorf("%q is not an operator in %s", id, *path)
	}
	rdb := operatorRedis(cfg)
	defer rdb.Close()
	st := operatorStore(cfg, rdb, time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const actor = "admin-cli"
	switch sub {
	case "invite":
		tok, err := st.Invite(ctx, id, actor)
		if err != nil {
			return err
		}
		expires := time.Now().Add(cfg.Sessions.InviteTTL).UTC()
		fmt.Fprintf(out, "Enrolment link for %s (%s), valid once until %s:\n%s/v1/enrol#%s\n",
			id, cfg.Operator(id).Name, expires.Format("2006-01-02 15:04 MST"), publicBase(cfg), tok)
	case "disable":
		if err := st.Disable(ctx, id, actor); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s disabled: signed out, sign-in refused, invite void\n", id)
	case "enable":
		if err := st.Enable(ctx, id, actor); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s enabled\n", id)
	case "list":
		return listOperators(ctx, cfg, st, out)
	}
	return nil
}

func listOperators(ctx context.Context, cfg *config.Config, st *operator.Store, out io.Writer) error {
	ids := make([]string, len(cfg.Operators))
	for i, o := range cfg.Operators {
		ids[i] = o.ID
	}
	sts, err := st.List(ctx, ids)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLES\tSTATE\tSESSION\tLAST SIGN-IN")
	for i, s := range sts {
		o := cfg.Operators[i]
		roles := make([]string, len(o.Roles))
		for j, r := range o.Roles {
			roles[j] = string(r)
		}
		state := "not enrolled"
		switch {
		case s.Disabled:
			state = "disabled"
		case s.Locked:
			state = "locked"
		case s.Enrolled:
			state = "active"
		}
		session, last := "-", "never"
		if s.SessionActive {
			session = "signed in"
		}
		if !s.LastSignIn.IsZero() {
			last = s.LastSignIn.UTC().Format("2006-01-02 15:04 MST")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Name, strings.Join(roles, ","), state, session, last)
	}
	return tw.Flush()
}

// operatorRedis is a Redis client as the gateway makes it (gateway.Open).
func operatorRedis(cfg *config.Config) redis.UniversalClient { return gateway.NewRedis(cfg) }

// operatorStore is the operator store of the configuration's people and
// session settings.
func operatorStore(cfg *config.Config, rdb redis.UniversalClient, now func() time.Time) *operator.Store {
	s := cfg.Sessions
	return operator.New(rdb, cfg.Redis.KeyPrefix, operator.Options{
		IdleTimeout: s.Idle, AbsoluteTimeout: s.Absolute, StepUpWindow: s.StepUp,
		LockoutFailures: s.LockoutAfter, LockoutFor: s.LockoutFor, InviteTTL: s.InviteTTL,
		Known: func(id string) (string, bool) {
			if o := cfg.Operator(id); o != nil {
				return o.Name, true
			}
			return "", false
		},
		Now: now,
	})
}

// publicBase is where people reach the gateway: public_url, or else
// http://listen (a wildcard host as localhost).
func publicBase(cfg *config.Config) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return "http://" + cfg.Listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
