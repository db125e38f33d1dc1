package gateway_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

const (
	dispatchKey = "test-dispatch-key-000000001"
	operatorKey = "test-operator-key-000000001"
	buildingKey = "test-building-key-000000001"
)

// stackConfig is the tests' configuration; %s are redis, broker, three key hashes.
const stackConfig = `
listen: 127.0.0.1:0
redis: {addrs: [%s]}
mqtt: {broker: "%s", client_id: %s}
queue: {lease: %s, batch_size: %d, workers: %d, dedup_window: 2s}
siren: {ack_timeout: 300ms}
delivery: {retry_initial: 50ms, retry_max: 500ms, breaker_open: 1s}
zones:
  - {id: school}
  - {id: townhall}
sirens:
%s
principals:
  - id: leitstelle
    kind: dispatch
    key_sha256: %s
    scopes: {zones: ["*"], channels: [siren, pa, sms, voice, dispatch], retract: true}
  - id: operator
    kind: operator
    key_sha256: %s
    scopes: {zones: ["*"], retract: true, maintenance: true}
  - id: school-panel
    kind: building
    key_sha256: %s
    scopes: {zones: [school], channels: [siren], max_severity: Severe, statuses: [actual, test]}
`

type stackOptions struct {
	sirens  int // per zone; the first siren of each zone takes drills
	batch   int
	workers int
	urgent  int    // queue.urgent_workers (default: workers)
	hold    string // delivery.hold (default 1s)
	// limit, if set, is the leitstelle principal's "rate: R, burst: B".
	limit string
	// window, if set, replaces queue.dedup_window (2s).
	window string
	// metricsToken, if set, is the token GET /metrics requires.
	metricsToken string
	lease        string
	fleetDelay   time.Duration
	offline      []string
	redis        *testenv.Server
	broker       *testenv.Server
	fleet        bool
	clientID     string
	noGateway    bool
	fleetOption  func(*fake.FleetOptions)
	// sentinel, if set, is the Redis the gateway uses, through its Sentinel,
	// waiting for one replica (redis.wait_replicas: 1).
	sentinel *testenv.Sentinel
	// cluster, if set, is the Redis Cluster the gateway uses (with a key
	// prefix of its own, so tests can share one), waiting for one replica
	// when the cluster has replicas. Without redis, sentinel or cluster, a
	// test inside TestOnRedisCluster gets that test's cluster.
	cluster *testenv.Cluster
	// principal, if set, is YAML for further principals (a list item).
	principal string
	// mqttUser, if set, is the gateway's broker user name; its password is
	// the environment variable TOCSIN_TEST_MQTT_PASSWORD.
	mqttUser string

	// phones > 0 adds a contact group "staff" of that many people in zone
	// school, reached by SMS and voice through twilio (and fallback, if set).
	phones   int
	twilio   *fake.Twilio
	fallback *fake.Twilio
	rate     float64 // per sender, sends/s (default 1000)

	// pa adds PA zones in school: "hall" on HTTP controller "pa-main" (with
	// "pa-spare" as fallback) and "gym" on MQTT controller "pa-mqtt".
	pa *fake.PA
	// dispatch adds the dispatch centre "ils" covering both zones; its CAP
	// Acks go to the gateway's public URL.
	dispatch *fake.Dispatch
	// publicPort, if set, is the port of the gateway's public_url.
	publicPort int
	// school, if set, replaces the school zone's YAML flow mapping (to give
	// it geocodes and a polygon for CAP ingest).
	school string
	// triggers adds trigger sources school-button and school-panel-2 (zone
	// school) and townhall-panel, with template amok-button (sirens).
	triggers bool
	// extra is YAML appended to the configuration (operators, templates,
	// release policy).
	extra string
	// capCert, if set, adds principal "signed-ils" (key signedKey, all zones)
	// that must sign CAP with the certificate in this PEM file.
	capCert string
}

const signedKey = "test-signed-dispatch-key-001"

// triggerKeys are the trigger sources' HMAC keys.
var triggerKeys = map[string]string{
	"school-button": "school-button-hmac-key-0001", "school-panel-2": "school-panel2-hmac-key-0001", "townhall-panel": "townhall-panel-hmac-key-01",
}

const dispatchHMAC = "ils-shared-hmac-key-0000001"

// endpointsConfig is the YAML for PA and dispatch centres.
func endpointsConfig(t testing.TB, o stackOptions) string {
	var b strings.Builder
	if o.pa != nil {
		fmt.Fprintf(&b, `pa:
  controllers:
    - {id: pa-main, url: %q}
    - {id: pa-spare, url: %q}
    - {id: pa-mqtt, mqtt: true}
  zones:
    - {id: hall, zone: school, controller: pa-main, fallback: pa-spare, repeat: 3}
    - {id: gym, zone: school, controller: pa-mqtt, language: en}
`, o.pa.URL("pa-main"), o.pa.URL("pa-spare"))
	}
	if o.dispatch != nil {
		t.Setenv("TOCSIN_TEST_ILS_HMAC", dispatchHMAC)
		cert, key, err := fake.TestSigningCert(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := o.dispatch.PinFile(cert); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, `dispatch:
  sender: tocsin@test.invalid
  signing: {cert_file: %q, key_file: %q}
  centres:
    - {id: ils, zones: [school, townhall], url: %q, hmac_key_env: TOCSIN_TEST_ILS_HMAC, insecure_http: true}
`, cert, key, o.dispatch.URL("ils"))
	}
	return b.String()
}

const (
	mainSID, mainToken     = "AC000000000000000000000000000000a1", "maintoken0123456789abcdef0123"
	backupSID, backupToken = "AC000000000000000000000000000000b2", "backuptoken0123456789abcdef01"
)

// phone is person i's number.
func phone(i int) string { return fmt.Sprintf("+4915100%06d", i) }

// phonesConfig is the YAML for contacts and Twilio accounts.
func phonesConfig(t testing.TB, o stackOptions, publicURL string) string {
	t.Setenv("TOCSIN_TEST_TWILIO_MAIN", mainToken)
	t.Setenv("TOCSIN_TEST_TWILIO_BACKUP", backupToken)
	var b strings.Builder
	fmt.Fprintf(&b, "public_url: %s\ntime_zone: Europe/Berlin\ntwilio:\n  primary: main\n", publicURL)
	if o.fallback != nil {
		b.WriteString("  fallback: backup\n")
	}
	b.WriteString("  accounts:\n")
	fmt.Fprintf(&b, "    - {id: main, account_sid: %s, auth_token_env: TOCSIN_TEST_TWILIO_MAIN, base_url: %q, sms: {from: '+4930100000', rate: %g}, voice: {from: '+4930100001', rate: %g, repeat: 2}}\n",
		mainSID, o.twilio.URL, o.rate, min(o.rate, 50))
	if o.fallback != nil {
		fmt.Fprintf(&b, "    - {id: backup, account_sid: %s, auth_token_env: TOCSIN_TEST_TWILIO_BACKUP, base_url: %q, sms: {from: '+4930200000', rate: %g}, voice: {from: '+4930200001', rate: %g}}\n",
			backupSID, o.fallback.URL, o.rate, min(o.rate, 50))
	}
	b.WriteString("contacts:\n  - id: staff\n    zone: school\n    people:\n")
	for i := range o.phones {
		lang := "de"
		if i%4 == 3 {
			lang = "en"
		}
		fmt.Fprintf(&b, "      - {id: p%05d, phone: '%s', language: %s}\n", i, phone(i), lang)
	}
	return b.String()
}

type stack struct {
	t      testing.TB
	cfg    *config.Config
	cfgYML string
	redis  *testenv.Server
	broker *testenv.Server
	fleet  *fake.Fleet
	gw     *gateway.Gateway
	srv    *httptest.Server
	url    string // where do sends requests: the in-process gateway by default
	// publicPort, when set, is the port the in-process gateway listens on
	// (its public_url, where the fake Twilio posts callbacks).
	publicPort int
	cancel     context.CancelFunc
	done       chan struct{}
	rdb        redis.UniversalClient
	// stopWorkers ends the gateway's Run (workers drain) but not its HTTP API.
	stopWorkers context.CancelFunc
}

func sirenIDs(zone string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%02d", zone, i)
	}
	return ids
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	if o.sirens == 0 {
		o.sirens = 3
	}
	if o.batch == 0 {
		o.batch = 50
	}
	if o.workers == 0 {
		o.workers = 8
	}
	if o.lease == "" {
		o.lease = "1s"
	}
	if o.sentinel != nil {
		o.redis = o.sentinel.Sentinel
	}
	if o.redis == nil && o.sentinel == nil && o.cluster == nil {
		o.cluster = sharedCluster
	}
	if o.cluster != nil {
		o.redis = o.cluster.Masters[0]
	}
	if o.redis == nil {
		o.redis = testenv.Redis(t)
	}
	if o.broker == nil {
		o.broker = testenv.Mosquitto(t)
	}
	if o.clientID == "" {
		o.clientID = "tocsin-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	var sb strings.Builder
	var all []string
	for _, z := range []string{"school", "townhall"} {
		for i, id := range sirenIDs(z, o.sirens) {
			fmt.Fprintf(&sb, "  - {id: %s, zone: %s, drills: %v}\n", id, z, i == 0)
			all = append(all, id)
		}
	}
	h := func(k string) string { return hex.EncodeToString(config.HashKey(k)) }
	clientID := o.clientID
	if o.mqttUser != "" {
		clientID += ", username: " + o.mqttUser + ", password_env: TOCSIN_TEST_MQTT_PASSWORD"
	}
	yml := fmt.Sprintf(stackConfig, o.redis.Addr(), testenv.MQTTURL(o.broker), clientID, o.lease, o.batch, o.workers,
		sb.String(), h(dispatchKey), h(operatorKey), h(buildingKey))
	if o.limit != "" {
		yml = strings.Replace(yml, "channels: [siren, pa, sms, voice, dispatch], retract: true}", "channels: [siren, pa, sms, voice, dispatch], retract: true}\n    "+strings.ReplaceAll(o.limit, ", ", "\n    "), 1)
	}
	if o.sentinel != nil {
		yml = strings.Replace(yml, "redis: {addrs: ["+o.redis.Addr()+"]}", "redis: {addrs: ["+o.redis.Addr()+"], master_name: "+o.sentinel.Name+", wait_replicas: 1}", 1)
	}
	if o.cluster != nil {
		wait := ""
		if len(o.cluster.Replicas) > 0 {
			wait = ", wait_replicas: 1"
		}
		prefix := fmt.Sprintf("t%d", clusterPrefix.Add(1))
		yml = strings.Replace(yml, "redis: {addrs: ["+o.redis.Addr()+"]}",
			"redis: {addrs: ["+strings.Join(o.cluster.Addrs(), ", ")+"], key_prefix: "+prefix+wait+"}", 1)
	}
	if o.principal != "" {
		yml = strings.Replace(yml, "principals:\n", "principals:\n"+o.principal, 1)
	}
	if o.urgent > 0 {
		yml = strings.Replace(yml, "dedup_window: 2s}", fmt.Sprintf("dedup_window: 2s, urgent_workers: %d}", o.urgent), 1)
	}
	if o.hold != "" {
		yml = strings.Replace(yml, "breaker_open: 1s}", "breaker_open: 1s, hold: "+o.hold+"}", 1)
	}
	publicPort := o.publicPort
	if o.phones > 0 {
		if o.rate == 0 {
			o.rate = 1000
		}
		if publicPort == 0 {
			publicPort = testenv.FreePort(t)
		}
		yml += phonesConfig(t, o, fmt.Sprintf("http://127.0.0.1:%d", publicPort))
	}
	if o.pa != nil || o.dispatch != nil {
		if o.phones == 0 {
			if publicPort == 0 {
				publicPort = testenv.FreePort(t)
			}
			yml += fmt.Sprintf("public_url: http://127.0.0.1:%d\n", publicPort)
		}
		yml += endpointsConfig(t, o)
	}
	if o.school != "" {
		yml = strings.Replace(yml, "  - {id: school}\n", "  - "+o.school+"\n", 1)
	}
	if o.triggers {
		for id, key := range triggerKeys {
			t.Setenv("TOCSIN_TEST_TRIG_"+strings.ToUpper(strings.ReplaceAll(id, "-", "_")), key)
		}
		yml += `
triggers:
  window: 5s
  reset_window: 4s
  sources:
    - {id: school-button, key_env: TOCSIN_TEST_TRIG_SCHOOL_BUTTON, zones: [school]}
    - {id: school-panel-2, key_env: TOCSIN_TEST_TRIG_SCHOOL_PANEL_2, zones: [school]}
    - {id: townhall-panel, key_env: TOCSIN_TEST_TRIG_TOWNHALL_PANEL, zones: [townhall]}
  templates:
    - {trigger: amok-button, event: Amok, severity: Extreme, urgency: Immediate, headline: Amokalarm, channels: [siren]}
`
	}
	if o.capCert != "" {
		yml = strings.Replace(yml, "principals:\n", fmt.Sprintf("principals:\n  - {id: signed-ils, kind: dispatch, key_sha256: %s, scopes: {zones: [\"*\"]}, cap_certs: [%q]}\n",
			hex.EncodeToString(config.HashKey(signedKey)), o.capCert), 1)
	}
	if o.metricsToken != "" {
		t.Setenv("TOCSIN_TEST_METRICS_TOKEN", o.metricsToken)
		yml += "metrics_token_env: TOCSIN_TEST_METRICS_TOKEN\n"
	}
	if o.window != "" {
		yml = strings.Replace(yml, "dedup_window: 2s", "dedup_window: "+o.window, 1)
	}
	yml += o.extra
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	s := &stack{t: t, cfg: cfg, cfgYML: yml, redis: o.redis, broker: o.broker, publicPort: publicPort}
	s.rdb = gateway.NewRedis(cfg)
	t.Cleanup(func() { s.rdb.Close() })
	if o.fleet || !o.noGateway {
		fo := fake.FleetOptions{Broker: testenv.MQTTURL(o.broker), IDs: all, Latency: o.fleetDelay, Offline: o.offline}
		if o.fleetOption != nil {
			o.fleetOption(&fo)
		}
		s.fleet, err = fake.StartFleet(fo)
		if err != nil {
			t.Fatalf("fleet: %v", err)
		}
		t.Cleanup(s.fleet.Close)
	}
	if !o.noGateway {
		s.startGateway()
	}
	return s
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// startGateway runs a gateway in-process, as cmd/tocsin serve wires it.
func (s *stack) startGateway() { s.startGatewayWith(nil) }

// startGatewayWith runs a gateway whose siren adapter is a, or the real MQTT
// siren adapter when a is nil.
func (s *stack) startGatewayWith(a adapters.Adapter) {
	t := s.t
	cfg := s.cfg
	log := testLogger(t)
	var override map[alert.Kind]adapters.Adapter
	if a != nil {
		override = map[alert.Kind]adapters.Adapter{alert.KindSiren: a}
	}
	gw, err := gateway.Open(cfg, log, override)
	if err != nil {
		t.Fatal(err)
	}
	s.gw = gw
	s.srv = httptest.NewUnstartedServer(s.gw.Handler())
	if s.publicPort != 0 {
		s.srv.Listener.Close()
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.publicPort))
		if err != nil {
			t.Fatal(err)
		}
		s.srv.Listener = l
	}
	s.srv.Start()
	s.url = s.srv.URL
	ctx, cancel := context.WithCancel(context.Background())
	done, srv := make(chan struct{}), s.srv
	s.stopWorkers, s.done = cancel, done
	go func() { gw.Run(ctx, 5*time.Second); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			gw.Drain()
			srv.Close()
			cancel()
			<-done
			gw.Close()
		})
	}
	s.cancel = stop
	t.Cleanup(stop)
}

type response struct {
	Code   int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (s *stack) do(method, path, key, ctype, body string, hdr ...string) response {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{Code: resp.StatusCode, Header: resp.Header, Raw: string(b)}
	json.Unmarshal(b, &r.Body)
	return r
}

func (s *stack) post(body string, hdr ...string) response {
	return s.do("POST", "/v1/alerts", dispatchKey, "application/json", body, hdr...)
}

func (s *stack) get(id string) response { return s.do("GET", "/v1/alerts/"+id, dispatchKey, "", "") }

func (s *stack) retract(id, reason string) response {
	return s.do("POST", "/v1/alerts/"+id+"/retract", operatorKey, "application/json", `{"reason":"`+reason+`"}`)
}

// sirenCounts returns the siren channel's counts from GET /v1/alerts/{id}.
func (s *stack) sirenCounts(id string) map[string]any {
	r := s.get(id)
	ch, _ := r.Body["channels"].(map[string]any)
	c, _ := ch["siren"].(map[string]any)
	return c
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("after %v: %s", d, what)
}

func amok(zones ...string) string {
	if len(zones) == 0 {
		zones = []string{"school"}
	}
	b, _ := json.Marshal(map[string]any{"status": "actual", "event": "Amok " + fmt.Sprint(time.Now().UnixNano()),
		"severity": "Extreme", "urgency": "Immediate", "headline": "Amokalarm", "zones": zones})
	return string(b)
}

// cancelWorkers stops the gateway's workers (the HTTP API keeps serving), so
// an ingest benchmark measures ingest alone.
func (s *stack) cancelWorkers() { s.stopWorkers() }
