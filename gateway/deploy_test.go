package gateway_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters/mqttcmd"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// deployedBroker runs mosquitto with deploy/mosquitto.conf and
// deploy/mosquitto.acl as shipped — only its listener moved to a free
// loopback port and its files into a temporary directory — and a password
// file made with mosquitto_passwd for every user in users. The ACL gets
// one test-only user, "observer", who may read every topic.
func deployedBroker(t *testing.T, users map[string]string) *testenv.Server {
	t.Helper()
	conf, err := os.ReadFile("../deploy/mosquitto.conf")
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile("../deploy/mosquitto.acl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	passwd, aclFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	for u, p := range users {
		testenv.MosquittoPasswd(t, passwd, u, p)
	}
	testenv.MosquittoPasswd(t, passwd, "observer", "observer-password")
	os.WriteFile(aclFile, append(acl, "\n# test only\nuser observer\ntopic read #\n"...), 0o600)
	return testenv.MosquittoConf(t, func(port int, data string) string {
		c := string(conf)
		for re, repl := range map[string]string{
			`(?m)^listener 1883$`:               fmt.Sprintf("listener %d 127.0.0.1", port),
			`(?m)^persistence_location .*$`:     "persistence_location " + data + "/",
			`(?m)^password_file /etc/.*$`:       "password_file " + passwd,
			`(?m)^acl_file /etc/mosquitto/acl$`: "acl_file " + aclFile,
		} {
			if !regexp.MustCompile(re).MatchString(c) {
				t.Fatalf("deploy/mosquitto.conf has no line matching %s", re)
			}
			c = regexp.MustCompile(re).ReplaceAllString(c, repl)
		}
		return c
	})
}

// The broker as deployed: anonymous clients are refused, the gateway (user
// tocsin) commands every siren and reads their acks, and each device can
// only read its own commands and write its own acks — a siren cannot
// forge another's ack or command, a building system cannot command a siren.
func TestDeployedBrokerLeastPrivilege(t *testing.T) {
	sirens := sirenIDs("school", 3)
	users := map[string]string{"tocsin": "gateway-broker-password", "school-button": "button-broker-password"}
	for _, id := range append(sirens, sirenIDs("townhall", 3)...) {
		users[id] = "pw-" + id
	}
	broker := deployedBroker(t, users)
	t.Setenv("TOCSIN_TEST_MQTT_PASSWORD", users["tocsin"])
	s := newStack(t, stackOptions{broker: broker, mqttUser: "tocsin",
		fleetOption: func(o *fake.FleetOptions) { o.Password = func(id string) string { return users[id] } }})
	r := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren"]}`)
	if r.Code != 202 {
		t.Fatalf("post = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 5*time.Second, "3 sirens acked through the deployed ACL", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })

	// What the observer sees is what the ACL let through.
	var mu sync.Mutex
	var seen []string
	obs := connect(t, broker, "observer", "observer-password")
	obs.Subscribe("tocsin/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		seen = append(seen, m.Topic()+" "+string(m.Payload()))
		mu.Unlock()
	}).Wait()
	siren := connect(t, broker, sirens[0], users[sirens[0]])
	button := connect(t, broker, "school-button", users["school-button"])
	for _, p := range []struct {
		c     mqtt.Client
		topic string
	}{
		{siren, "tocsin/v1/siren/" + sirens[1] + "/ack"}, // another siren's ack
		{siren, "tocsin/v1/siren/" + sirens[1] + "/cmd"}, // another siren's command
		{siren, "tocsin/v1/trigger/school-button"},       // a building system's trigger
		{button, "tocsin/v1/siren/" + sirens[0] + "/cmd"},
		{siren, "tocsin/v1/siren/" + sirens[0] + "/ack"}, // its own ack: allowed
	} {
		p.c.Publish(p.topic, 1, false, "forged").Wait()
	}
	eventually(t, 3*time.Second, "the siren's own ack seen", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(seen, "\n"), "tocsin/v1/siren/"+sirens[0]+"/ack forged")
	})
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	for _, m := range seen {
		if strings.HasSuffix(m, " forged") && !strings.HasPrefix(m, "tocsin/v1/siren/"+sirens[0]+"/ack ") {
			t.Errorf("the ACL let through %q", m)
		}
	}
	mu.Unlock()

	// Anonymous clients are refused.
	anon := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(testenv.MQTTURL(broker)).SetClientID("anonymous-test"))
	if tok := anon.Connect(); tok.WaitTimeout(3*time.Second) && tok.Error() == nil {
		anon.Disconnect(0)
		t.Error("an anonymous client connected to the deployed broker")
	}
}

// A gateway with the wrong broker password says "not authorised", not
// "not reachable", and backs off: about 1 s, 2 s, 4 s between attempts
// instead of several a second.
func TestBrokerNotAuthorised(t *testing.T) {
	broker := deployedBroker(t, map[string]string{"tocsin": "the-right-password"})
	var mu sync.Mutex
	var buf bytes.Buffer
	log := zerolog.New(zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})))
	c, err := mqttcmd.New(mqttcmd.Config{Broker: testenv.MQTTURL(broker), ClientID: "tocsin-wrong-pw", Username: "tocsin",
		Password: "a-wrong-password", ConnectWait: 100 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	c.Close()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	n := strings.Count(out, "not authorised")
	if n < 2 || n > 3 || strings.Contains(out, "not reachable") {
		t.Errorf("in 3.5 s: %d \"not authorised\" lines (want 2-3: backing off), log:\n%s", n, out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func connect(t *testing.T, broker *testenv.Server, user, password string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(testenv.MQTTURL(broker)).SetClientID(user + "-probe").
		SetUsername(user).SetPassword(password))
	if tok := c.Connect(); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		t.Fatalf("%s cannot connect: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}
