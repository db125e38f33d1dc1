package gateway_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// ackURL is where the fake centres post CAP Acks: the gateway's public port.
func ackURL(port int) string {
	return "http://127.0.0.1:" + strconv.Itoa(port) + "/v1/callbacks/cap/{centre}"
}

// One alert reaches sirens, both PA zones (HTTP and MQTT controllers) and the
// dispatch centre, whose CAP Ack marks it delivered; one retraction plays the
// all-clear in both PA zones after the alert, and reaches the centre as a CAP
// Cancel then an AllClear Update, both acknowledged.
func TestPAAndDispatchEndToEnd(t *testing.T) {
	broker := testenv.Mosquitto(t)
	pa, err := fake.StartPA(fake.PAOptions{Broker: testenv.MQTTURL(broker), MQTTIDs: []string{"pa-mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pa.Close)
	port := testenv.FreePort(t)
	ils, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": []byte(dispatchHMAC)}, AckURL: ackURL(port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ils.Close)
	s := newStack(t, stackOptions{broker: broker, pa: pa, dispatch: ils, publicPort: port})

	r := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm","zones":["school"]}`)
	if r.Code != 202 || r.Body["targets"] != float64(3+2+1) {
		t.Fatalf("POST = %d %s; want 3 sirens + 2 PA zones + 1 centre", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 10*time.Second, "PA played in both zones and the centre acknowledged", func() bool {
		return s.counts(id, "pa")["delivered"] == float64(2) && s.counts(id, "dispatch")["delivered"] == float64(1)
	})
	played := pa.Received()
	byZone := map[string]fake.PAReceived{}
	for _, p := range played {
		byZone[p.Cmd.Zone] = p
	}
	if h := byZone["hall"]; h.Via != "http" || h.Cmd.Repeat != 3 || !strings.HasPrefix(h.Cmd.Text, "WARNUNG: Amokalarm") || h.Cmd.Priority < 8 {
		t.Errorf("hall played %+v; want the German warning 3 times over HTTP at life-safety priority", h)
	}
	if g := byZone["gym"]; g.Via != "mqtt" || !strings.HasPrefix(g.Cmd.Text, "WARNING: Amokalarm") {
		t.Errorf("gym played %+v; want the English warning over MQTT", g)
	}

	if rr := s.retract(id, "false_alarm"); rr.Code != 202 {
		t.Fatalf("retract = %d %s", rr.Code, rr.Raw)
	}
	want := map[string]string{"siren": "3/3", "pa": "2/2", "dispatch": "1/1"}
	eventually(t, 10*time.Second, "sirens 3/3, PA 2/2, dispatch 1/1 retracted", func() bool {
		for k, w := range want {
			if c := s.counts(id, k); c["retracted"] != w || c["in_flight"] != float64(0) {
				return false
			}
		}
		return true
	})
	for _, zone := range []string{"hall", "gym"} {
		var seq []string
		played := map[string]bool{} // a resend after a late MQTT ack is not a second announcement
		for _, p := range pa.Received() {
			if p.Cmd.Zone == zone && p.Cmd.AlertID == id && !played[p.Cmd.DeliveryID] {
				played[p.Cmd.DeliveryID] = true
				seq = append(seq, p.Cmd.MessageID)
			}
		}
		if len(seq) != 2 || seq[0] != "alert" || seq[1] != "false_alarm" {
			t.Errorf("%s played %v; want the alert, then the false-alarm all-clear", zone, seq)
		}
	}
	docs := ils.Received()
	if len(docs) != 3 || docs[0].Doc.MsgType != "Alert" || docs[1].Doc.MsgType != "Cancel" || docs[2].Doc.MsgType != "Update" {
		t.Fatalf("centre got %d documents; want Alert, Cancel, Update", len(docs))
	}
	ref := docs[0].Doc.Sender + "," + docs[0].Doc.Identifier + "," + docs[0].Doc.Sent
	if docs[1].Doc.References != ref || docs[2].Doc.Infos[0].ResponseTypes[0] != "AllClear" {
		t.Errorf("retraction = %+v; want a Cancel referencing %s and an AllClear update", docs[1:], ref)
	}
	eventually(t, 5*time.Second, "the centre's Ack of the retraction recorded", func() bool {
		var v struct {
			Deliveries []struct {
				Target     struct{ Kind string }
				State      string
				Retraction string
			}
		}
		json.Unmarshal([]byte(s.do("GET", "/v1/alerts/"+id+"/deliveries", dispatchKey, "", "").Raw), &v)
		for _, d := range v.Deliveries {
			if d.Target.Kind == "dispatch" {
				return d.State == "delivered" && d.Retraction == "delivered"
			}
		}
		return false
	})
}

// A PA controller that fails opens its breaker; its zone's fallback
// controller plays; sirens are not slowed; a CAP Ack with a bad signature is
// refused.
func TestPAFallbackAndForgedAck(t *testing.T) {
	pa, err := fake.StartPA(fake.PAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pa.Close)
	pa.Fail("pa-main", "error")
	port := testenv.FreePort(t)
	ils, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": []byte("not-the-key-the-gateway-has")}, AckURL: ackURL(port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ils.Close)
	s := newStack(t, stackOptions{pa: pa, dispatch: ils, publicPort: port})
	// Only the HTTP zone: no MQTT PA controller runs in this test.
	start := time.Now()
	r := s.post(`{"status":"actual","event":"Fire","severity":"Severe","urgency":"Immediate","zones":["school"],"channels":["siren","pa"]}`)
	if r.Code != 202 {
		t.Fatalf("POST = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 10*time.Second, "sirens acked", func() bool { return s.counts(id, "siren")["delivered"] == float64(3) })
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("sirens took %v with a PA controller down; want them unaffected", took)
	}
	eventually(t, 15*time.Second, "hall played by the spare controller", func() bool {
		for _, p := range pa.Received() {
			if p.Controller == "pa-spare" && p.Cmd.Zone == "hall" {
				return true
			}
		}
		return false
	})
	// The centre signs with the wrong key: the gateway refuses its Ack (it
	// also refuses our signature, so nothing is accepted there at all).
	r = s.post(`{"status":"actual","event":"Gas","severity":"Severe","urgency":"Immediate","zones":["townhall"],"channels":["dispatch"]}`)
	if r.Code != 202 {
		t.Fatalf("POST = %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "the centre refused our signature", func() bool { return ils.Rejected() > 0 })
	forged := s.do("POST", "/v1/callbacks/cap/ils", "", "application/cap+xml", "<alert/>", "X-Tocsin-Timestamp", strconv.FormatInt(time.Now().Unix(), 10), "X-Tocsin-Signature", "sha256=00")
	if forged.Code != 403 {
		t.Fatalf("forged CAP Ack = %d %s; want 403", forged.Code, forged.Raw)
	}
}

// With metrics_token_env set, /metrics (it names targets and senders) answers
// only a scraper that presents the token.
func TestMetricsToken(t *testing.T) {
	s := newStack(t, stackOptions{metricsToken: "scrape-token-0123456789"})
	if r := s.do("GET", "/metrics", "", "", ""); r.Code != 401 {
		t.Fatalf("GET /metrics without the token = %d, want 401", r.Code)
	}
	if r := s.do("GET", "/metrics", "not-the-scrape-token-000", "", ""); r.Code != 401 {
		t.Fatalf("GET /metrics with another token = %d, want 401", r.Code)
	}
	if r := s.do("GET", "/metrics", "scrape-token-0123456789", "", ""); r.Code != 200 || !strings.Contains(r.Raw, "tocsin_alerts_accepted_total") {
		t.Fatalf("GET /metrics with the token = %d %.200s, want 200 and the metrics", r.Code, r.Raw)
	}
}
