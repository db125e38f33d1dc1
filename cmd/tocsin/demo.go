package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/pquerna/otp/totp"
	"golang.org/x/mod/sumdb/note"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// The demo's API keys. They exist only in this process.
const (
	demoDispatchKey = "demo-dispatch-key-0001"
	demoOperatorKey = "demo-operator-key-0001"
)

const demoConfig = `# The demo's configuration: two zones, five sirens, three staff reached by
# SMS and voice through a fake Twilio, two PA zones (one controller on HTTP
# with a spare, one on MQTT), a dispatch centre that gets CAP, and an operator.
listen: %s
public_url: http://%[1]s
time_zone: Europe/Berlin
redis: {addrs: [%s]}
mqtt: {broker: "%s", client_id: tocsin-demo}
queue: {lease: 3s, dedup_window: 30s}
siren: {ack_timeout: 1s}
zones:
  # soest-school also answers to the geocode of a real DWD warning's cell, so
  # the README's CAP example hits it.
  - {id: soest-school, name: Education centre Soest, geocodes: ["WARNCELLID=816064037"],
     polygon: "51.570,8.090 51.570,8.120 51.585,8.120 51.585,8.090 51.570,8.090"}
  - {id: soest-townhall, name: Town hall Soest}
sirens:
  - {id: school-north, zone: soest-school, drills: true}
  - {id: school-south, zone: soest-school}
  - {id: school-gym,   zone: soest-school}
  - {id: townhall-roof, zone: soest-townhall, drills: true}
  - {id: townhall-yard, zone: soest-townhall}
principals:
  - id: leitstelle-soest
    kind: dispatch
    key_sha256: %s
    scopes: {zones: ["*"], channels: [siren, pa, sms, voice, dispatch], retract: true}
  - id: operator
    kind: operator
    key_sha256: %s
    scopes: {zones: ["*"], retract: true, maintenance: true}
triggers:
  sources:
    - {id: school-amok-button, key_env: TOCSIN_DEMO_BUTTON_KEY, zones: [soest-school]}
  templates:
    - {trigger: amok-button, event: Amok, severity: Extreme, urgency: Immediate,
       headline: Amokalarm (Taster), channels: [siren, pa]}
twilio:
  primary: fake
  accounts:
    - id: fake
      account_sid: ` + demoTwilioSID + `
      auth_token_env: TOCSIN_DEMO_TWILIO_TOKEN
      base_url: %s
      sms: {from: "+49 2921 100", rate: 10}
      voice: {from: "+49 2921 101", rate: 2, repeat: 2}
contacts:
  - id: school-staff
    zone: soest-school
    people:
      - {id: rektorin, phone: "+49 170 0000001", language: de}
      - {id: hausmeister, phone: "+49 170 0000002", language: de, channels: [sms]}
      - {id: exchange-teacher, phone: "+44 7700 900003", language: en}
pa:
  controllers:
    - {id: school-pa, url: "%s"}
    - {id: school-pa-spare, url: "%s"}
    - {id: gym-pa, mqtt: true}
  zones:
    - {id: school-halls, zone: soest-school, controller: school-pa, fallback: school-pa-spare}
    - {id: school-gym, zone: soest-school, controller: gym-pa, language: en, repeat: 1}
dispatch:
  sender: tocsin-demo@example.invalid
  # A key and certificate made for this run; the simulated centre pins the
  # certificate and refuses CAP without a valid XML signature by it.
  signing: {cert_file: "%s", key_file: "%s"}
  centres:
    - id: leitstelle-soest
      zones: [soest-school, soest-townhall]
      url: "%s"
      insecure_http: true   # the simulated centre listens on loopback only
      hmac_key_env: TOCSIN_DEMO_DISPATCH_HMAC
# Two people: Anna composes, Ben approves (four-eyes). An author's drafts
# wait for one approver; the dispatch centre's key and the amok button stay
# auto (machines that must not wait).
operators:
  - {id: anna, name: Anna Author, roles: [author, maintainer], zones: ["*"]}
  - {id: ben, name: Ben Approver, roles: [approver, author, maintainer], zones: ["*"]}
release:
  approvers: 1
  approval_ttl: 15m
  roles: {author: approval}
templates:
  - id: school-amok
    name: Amok at the education centre
    event: Amok
    severity: Extreme
    urgency: Immediate
    headline: Amokalarm Bildungszentrum
    instruction: Türen verschließen, vom Flur fernhalten, auf die Polizei warten.
    language: de
    info:
      - {language: en, event: Amok, headline: Amok alarm at the education centre,
         instruction: "Lock the doors, keep away from the corridors, wait for the police."}
    zones: [soest-school]
    channels: [siren, pa, sms, voice, dispatch]
    retraction:
      - {key: false_alarm, language: de, text: "FEHLALARM: Der Amokalarm am Bildungszentrum war ein Fehlalarm. Es besteht keine Gefahr."}
      - {key: false_alarm, language: en, text: "FALSE ALARM: The amok alarm at the education centre was a false alarm. There is no danger."}
      - {key: all_clear, language: de, text: "ENTWARNUNG Bildungszentrum: Die Polizei hat die Lage beendet."}
      - {key: all_clear, language: en, text: "ALL CLEAR at the education centre: the police have ended the operation."}
`

// The demo's fake Twilio account; its token lives only in this process.
const (
	demoTwilioSID   = "AC00000000000000000000000000000de0"
	demoTwilioToken = "demotoken0000000000000000000000"
	demoCentreHMAC  = "demo-dispatch-centre-hmac-key"
	demoButtonKey   = "demo-school-button-key-0001"
)

func demo(args []string) error {
	if len(args) > 0 && args[0] == "code" {
		return demoCodeCmd(args[1:], os.Stdout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return runDemo(ctx, args, os.Stdout)
}

// runDemo runs the demo until ctx ends, printing the walkthrough and each
// siren's commands to out.
func runDemo(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "HTTP address of the gateway")
	consoleListen := fs.String("console", "127.0.0.1:8081", `the web console's address ("off": none)`)
	redisAddr := fs.String("redis", "", "use this Redis instead of the in-process stand-in")
	mqttURL := fs.String("mqtt", "", "use this MQTT broker (tcp://host:port) instead of the in-process one")
	logLevel := fs.String("log-level", "warn", "gateway log level")
	if err := fs.Parse(args); err != nil {
		return err
	}

	keeps := "keeps nothing: Redis and the MQTT broker run inside this process and vanish with it"
	if *redisAddr == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("in-process redis: %w", err)
		}
		defer mr.Close()
		go func() { // keeps miniredis' clock running so TTLs expire; exits with ctx
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					mr.FastForward(100 * time.Millisecond)
				}
			}
		}()
		*redisAddr = mr.Addr()
	} else {
		keeps = "uses the Redis and MQTT broker you named; the demo config is still in memory only"
	}
	if *mqttURL == "" {
		addr, closeBroker, err := startBroker()
		if err != nil {
			return err
		}
		defer closeBroker()
		*mqttURL = "tcp://" + addr
	}
	who := map[string]string{"+491700000001": "school-staff.rektorin", "+491700000002": "school-staff.hausmeister", "+447700900003": "school-staff.exchange-teacher"}
	// The timeline is in the configuration's time zone, as the messages
	// are ("… of 16:44"), whatever the machine's zone; set once the
	// configuration is parsed, before anything is sent.
	var loc atomic.Pointer[time.Location]
	loc.Store(time.UTC)
	stamp := func(t time.Time) string { return t.In(loc.Load()).Format("15:04:05.000") }
	short := func(s string) string {
		if r := []rune(s); len(r) > 70 {
			return string(r[:70]) + "…"
		}
		return s
	}
	tw, err := fake.StartTwilio(fake.TwilioOptions{
		Accounts: map[string]string{demoTwilioSID: demoTwilioToken},
		OnMessage: func(m fake.FakeMessage) {
			fmt.Fprintf(out, "%s  sms   %-30s ← %s\n", stamp(m.At), who[m.To], short(m.Body))
		},
		OnCall: func(c fake.FakeCall) {
			text := c.Twiml
			if i := strings.Index(text, `">`); i >= 0 {
				text = strings.TrimSuffix(text[i+2:], "</Say></Response>")
			}
			fmt.Fprintf(out, "%s  call  %-30s ← %s\n", stamp(c.At), who[c.To], short(html.UnescapeString(text)))
		},
	})
	if err != nil {
		return err
	}
	defer tw.Close()
	os.Setenv("TOCSIN_DEMO_TWILIO_TOKEN", demoTwilioToken)
	paFake, err := fake.StartPA(fake.PAOptions{Broker: *mqttURL, MQTTIDs: []string{"gym-pa"},
		OnCommand: func(r fake.PAReceived) {
			fmt.Fprintf(out, "%s  pa    %-30s ← %s\n", stamp(r.At), r.Cmd.Zone+" via "+r.Controller, short(r.Cmd.Text))
		}})
	if err != nil {
		return err
	}
	defer paFake.Close()
	os.Setenv("TOCSIN_DEMO_DISPATCH_HMAC", demoCentreHMAC)
	os.Setenv("TOCSIN_DEMO_BUTTON_KEY", demoButtonKey)
	// The gateway XML-signs the CAP it sends centres: an ephemeral key and
	// certificate, gone with the demo, that the simulated centre pins.
	tmp, err := os.MkdirTemp("", "tocsin-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	signingCert, signingKey, err := fake.TestSigningCert(tmp)
	if err != nil {
		return fmt.Errorf("demo CAP signing key: %w", err)
	}
	pinned, err := fake.ReadCerts(signingCert)
	if err != nil {
		return err
	}
	centre, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"leitstelle-soest": []byte(demoCentreHMAC)},
		Pinned: pinned, AckURL: "http://" + *listen + "/v1/callbacks/cap/{centre}",
		OnDocument: func(r fake.DispatchReceived) {
			what := "CAP " + r.Doc.MsgType
			switch {
			case len(r.Doc.Infos) > 0:
				what += ": " + r.Doc.Infos[0].Headline
			case r.Doc.Note != "":
				what += ": " + r.Doc.Note
			}
			fmt.Fprintf(out, "%s  cap   %-30s ← %s\n", stamp(r.At), r.Centre, short(what))
		}})
	if err != nil {
		return err
	}
	defer centre.Close()
	text := fmt.Sprintf(demoConfig, *listen, *redisAddr, *mqttURL,
		hex.EncodeToString(config.HashKey(demoDispatchKey)), hex.EncodeToString(config.HashKey(demoOperatorKey)), tw.URL,
		paFake.URL("school-pa"), paFake.URL("school-pa-spare"), signingCert, signingKey, centre.URL("leitstelle-soest"))
	// The gateway keeps the audit: archive and checkpoints signed with a key
	// made for this run, in the run's directory.
	signer, verifier, err := note.GenerateKey(rand.Reader, "tocsin-demo")
	if err != nil {
		return err
	}
	os.Setenv("TOCSIN_DEMO_AUDIT_KEY", signer)
	text += fmt.Sprintf("audit: {dir: %q, signing_key_env: TOCSIN_DEMO_AUDIT_KEY, verifier_key: %q, archive_every: %v, checkpoint_interval: %v}\n",
		filepath.Join(tmp, "audit"), verifier, demoAuditPoll, demoAuditPoll)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	loc.Store(cfg.Location())
	cfg.Console.Listen = *consoleListen
	if _, port, err := net.SplitHostPort(*consoleListen); err == nil && port != "0" {
		// Browsers treat localhost as a secure context (security keys work).
		cfg.Console.PublicURL = "http://localhost:" + port
	}
	ops, err := startDemoOperators(ctx, cfg, verifier)
	if err != nil {
		return err
	}
	var ids []string
	for _, s := range cfg.Sirens {
		ids = append(ids, s.ID)
	}
	fleet, err := fake.StartFleet(fake.FleetOptions{
		Broker: *mqttURL, IDs: ids, Latency: 30 * time.Millisecond,
		OnCommand: func(r fake.Received) {
			extra := ""
			if r.Repeat {
				extra = " (repeat)"
			}
			fmt.Fprintf(out, "%s  siren %-30s ← %s (alert %s)%s\n", stamp(r.At), r.Siren, r.Cmd.Signal, r.Cmd.AlertID, extra)
		},
	})
	if err != nil {
		return err
	}
	defer fleet.Close()

	mqttHost, mqttPort, _ := net.SplitHostPort(strings.TrimPrefix(*mqttURL, "tcp://"))
	log := newLogger(*logLevel)
	return runGateway(ctx, cfg, log, func(addr, consoleAddr string) {
		url := "http://" + addr
		fmt.Fprintf(out, `
Tocsin demo — %s.
Gateway on %s; %d simulated sirens are listening, a fake Twilio takes
the SMS and calls to the school's staff, two simulated PA controllers play
announcements, and a simulated dispatch centre takes CAP 1.2, checks its XML
signature (by a key made for this run) and acknowledges it. Press Ctrl-C to
stop.

1. Send an amok alert to the school (three sirens sound, both PA zones
   announce it, three staff get an SMS, two get a call, the dispatch centre
   gets it as CAP):

   curl -s -X POST %s/v1/alerts \
     -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
     -d '{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm Bildungszentrum","zones":["soest-school"]}'

2. Look at it (use the id from the answer):

   curl -s -H 'Authorization: Bearer %s' %s/v1/alerts/ID

3. It was a false alarm: retract it (every siren that sounded gets all_clear,
   the PA zones announce the all-clear, everyone who got an SMS or call gets
   the false-alarm notice the same way, the centre gets a CAP Cancel and an
   AllClear Update):

   curl -s -X POST %s/v1/alerts/ID/retract \
     -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
     -d '{"reason":"false_alarm","note":"technician on the central system"}'

   or with the CLI: TOCSIN_URL=%s TOCSIN_KEY=%s go run ./cmd/tocsin retract ID

4. Press the school's amok button, as a building system does over MQTT
   (needs mosquitto-clients and openssl; the trigger is signed with the
   button's own key, so nobody else can sound it):

   KEY=%s TS=$(date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ) EV=btn-$(date +%%s)
   MAC=$(printf 'amok-button\nsoest-school\n%%s\n%%s\n\n' "$EV" "$TS" | openssl dgst -sha256 -hmac "$KEY" | cut -d' ' -f2)
   mosquitto_pub -h %s -p %s -q 1 -t tocsin/v1/trigger/school-amok-button \
     -m "{\"trigger\":\"amok-button\",\"zone\":\"soest-school\",\"event_id\":\"$EV\",\"timestamp\":\"$TS\",\"hmac\":\"$MAC\"}"

   Put the button into maintenance first and the same trigger is quarantined:
   TOCSIN_URL=%s TOCSIN_KEY=%s go run ./cmd/tocsin maintenance school-amok-button --reason 'IT work' --for 1h
`, keeps, url, len(ids), url, demoDispatchKey, demoDispatchKey, url, url, demoOperatorKey, url, demoOperatorKey,
			demoButtonKey, mqttHost, mqttPort, url, demoOperatorKey)
		ops.printConsole(out, consoleAddr, cfg.Console.PublicURL)
		ops.printWalkthrough(out, url)
	}, true)
}

// startBroker runs an in-process MQTT broker (mochi-mqtt) on a free loopback port.
func startBroker() (addr string, closeFn func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = l.Addr().String()
	l.Close()
	srv := mochi.New(&mochi.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return "", nil, err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "demo", Address: addr})); err != nil {
		return "", nil, err
	}
	if err := srv.Serve(); err != nil {
		return "", nil, fmt.Errorf("in-process MQTT broker: %w", err)
	}
	return addr, func() { srv.Close() }, nil
}

// demoPassword is what the walkthrough has each person choose at enrolment.
func demoPassword(id string) string { return id + "-demo-password" }

// demoOperators is the demo's people: their enrolment tokens, and the audit
// keeper archiving and checkpointing the log into a directory of this run.
type demoOperators struct {
	invites  map[string]string // operator id → invite token
	auditDir string
	verifier string // the checkpoints' verifier key
	redis    string
	prefix   string
	zone     string // the configuration's time zone
}

// demoAuditPoll is how often the demo's audit keeper archives the Redis log
// and signs a checkpoint.
const demoAuditPoll = 5 * time.Second

// startDemoOperators invites the demo's people (as `tocsin operator invite`
// does, on the demo's Redis); the gateway keeps the audit in cfg.Audit.Dir,
// checked with verifier.
func startDemoOperators(ctx context.Context, cfg *config.Config, verifier string) (*demoOperators, error) {
	rdb := operatorRedis(cfg)
	defer rdb.Close()
	st := operatorStore(cfg, rdb, time.Now)
	d := &demoOperators{invites: map[string]string{}, auditDir: cfg.Audit.Dir, verifier: verifier, zone: cfg.Location().String(),
		redis: cfg.Redis.Addrs[0], prefix: cfg.Redis.KeyPrefix}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, o := range cfg.Operators {
		tok, err := st.Invite(ictx, o.ID, "admin-cli")
		if err != nil {
			return nil, fmt.Errorf("demo: invite %s: %w", o.ID, err)
		}
		d.invites[o.ID] = tok
	}
	return d, nil
}

// printWalkthrough prints the operators' part of the walkthrough: enrol,
// sign in, compose from a template, submit, approve, watch, retract, audit.
// printConsole prints where the console is and how the demo's two people
// enrol and sign in there.
func (d *demoOperators) printConsole(out io.Writer, addr, public string) {
	if addr == "" {
		return
	}
	if public == "" {
		public = "http://" + addr
	}
	fmt.Fprintf(out, `
Console: %[1]s — the whole story in a browser. Each person enrols once from
their link (the page shows a TOTP secret; bin/tocsin demo code SECRET prints
its current code, or use an authenticator app), then signs in:

   Anna (author):   %[1]s/enrol#%[2]s   password %[4]s
   Ben (approver, also author and maintainer): %[1]s/enrol#%[3]s   password %[5]s

Anna composes from the template and submits; Ben (in another browser or a
private window) opens it from his dashboard, types the zone's name and
approves; the dashboard's Retract button retracts it in one click. (Each
link works once: enrol in the browser or with step 5 below.)
`, public, d.invites["anna"], d.invites["ben"], demoPassword("anna"), demoPassword("ben"))
}

func (d *demoOperators) printWalkthrough(out io.Writer, url string) {
	fmt.Fprintf(out, `
5. Four-eyes release by people. Anna (author) composes from a template, Ben
   (approver) approves the exact package he saw, Anna alone retracts. Both
   are invited (as "tocsin operator invite" does). In a second terminal, in
   this repository (jq shortens the answers; bin/tocsin demo code prints the
   TOTP code an authenticator app would show for a secret — a demo helper,
   each 30-second code works once per person, so enrolment uses the one
   before now, --step -1):

   make build
   U=%[1]s
   ANNA_INVITE=%[2]s
   BEN_INVITE=%[3]s

   a. Anna enrols: invite token and password give her a TOTP secret; a code
      from it finishes enrolment. Then she signs in:

   ANNA_SECRET=$(curl -s -X POST $U/v1/enrol -H 'Content-Type: application/json' \
     -d "{\"token\":\"$ANNA_INVITE\",\"password\":\"%[4]s\"}" | jq -r .secret)
   curl -s -X POST $U/v1/enrol -H 'Content-Type: application/json' \
     -d "{\"token\":\"$ANNA_INVITE\",\"code\":\"$(bin/tocsin demo code $ANNA_SECRET --step -1)\"}"
   ANNA=$(curl -s -X POST $U/v1/session -H 'Content-Type: application/json' \
     -d "{\"operator\":\"anna\",\"password\":\"%[4]s\",\"code\":\"$(bin/tocsin demo code $ANNA_SECRET)\"}" | jq -r .token)

   b. The templates, with the targets a release would reach:

   curl -s -H "Authorization: Bearer $ANNA" $U/v1/templates | jq -c '.templates[] | {id, version, counts}'

   c. A draft from the template (status is never guessed), then submit it:
      nothing sounds, it waits for an approver:

   ID=$(curl -s -X POST $U/v1/drafts -H "Authorization: Bearer $ANNA" -H 'Content-Type: application/json' \
     -d '{"template":"school-amok","status":"actual"}' | jq -r .id)
   curl -s -X POST -H "Authorization: Bearer $ANNA" $U/v1/drafts/$ID/submit | jq '{state, needed, digest, counts: .package.counts}'

   d. Ben enrols and signs in the same way (signing in counts as the step-up
      an approval needs, for 2 minutes; later: POST $U/v1/session/step-up
      with {"code": …}):

   BEN_SECRET=$(curl -s -X POST $U/v1/enrol -H 'Content-Type: application/json' \
     -d "{\"token\":\"$BEN_INVITE\",\"password\":\"%[5]s\"}" | jq -r .secret)
   curl -s -X POST $U/v1/enrol -H 'Content-Type: application/json' \
     -d "{\"token\":\"$BEN_INVITE\",\"code\":\"$(bin/tocsin demo code $BEN_SECRET --step -1)\"}"
   BEN=$(curl -s -X POST $U/v1/session -H 'Content-Type: application/json' \
     -d "{\"operator\":\"ben\",\"password\":\"%[5]s\",\"code\":\"$(bin/tocsin demo code $BEN_SECRET)\"}" | jq -r .token)

   e. Ben reviews the package and approves the digest he saw; that releases it:

   DIGEST=$(curl -s -H "Authorization: Bearer $BEN" $U/v1/drafts/$ID | jq -r .digest)
   curl -s -X POST $U/v1/drafts/$ID/approve -H "Authorization: Bearer $BEN" \
     -H 'Content-Type: application/json' -d "{\"digest\":\"$DIGEST\"}" | jq '{state, alert}'

   f. Watch it live, then Anna retracts it alone, in one step, and follows
      the retractions to retracted n/n (a session token works wherever an
      API key does):

   TOCSIN_URL=$U TOCSIN_KEY=$ANNA bin/tocsin watch $ID
   TOCSIN_URL=$U TOCSIN_KEY=$ANNA bin/tocsin retract $ID --reason false_alarm --follow

   g. The audit: who did what (the gateway archives the entries every %[6]v
      and signs a checkpoint with a key made for this run), then the whole
      chain verified, with every step of this alert's story:

   curl -s -H "Authorization: Bearer $ANNA" "$U/v1/audit?subject=$ID" | jq -c '.entries[] | [.seq, .entry.kind, .entry.actor]'
   bin/tocsin audit verify --dir %[7]s --redis %[8]s --prefix %[9]s \
     --key %[10]s --show $ID

What each siren, PA zone, phone and dispatch centre receives appears below,
at %[11]s time as in the messages.
`, url, d.invites["anna"], d.invites["ben"], demoPassword("anna"), demoPassword("ben"), demoAuditPoll,
		d.auditDir, d.redis, d.prefix, d.verifier, d.zone)
}

// demoCodeCmd is `tocsin demo code SECRET [--step N]`: the TOTP code of a
// secret now (or N 30-second steps away), as an authenticator app shows
// it. A demo helper: real operators use their app.
func demoCodeCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo code", flag.ContinueOnError)
	step := fs.Int("step", 0, "30-second steps from now (-1: the code before this one)")
	var secret string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		secret, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if secret == "" && fs.NArg() == 1 {
		secret = fs.Arg(0)
	} else if secret == "" || fs.NArg() > 0 {
		return errors.New("usage: tocsin demo code SECRET [--step N]")
	}
	code, err := demoCode(secret, *step, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(out, code)
	return nil
}

// demoCode is secret's TOTP code step 30-second steps from now.
func demoCode(secret string, step int, now time.Time) (string, error) {
	code, err := totp.GenerateCode(secret, now.Add(time.Duration(step)*30*time.Second))
	if err != nil {
		return "", fmt.Errorf("not a TOTP secret: %w", err)
	}
	return code, nil
}
