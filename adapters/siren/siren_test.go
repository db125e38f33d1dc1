package siren_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/adapterstest"
	"github.com/tocsin-alert/tocsin/adapters/mqttcmd"
	"github.com/tocsin-alert/tocsin/adapters/siren"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// The siren adapter against a real Mosquitto and simulated controllers.
func TestConformance(t *testing.T) {
	broker := testenv.Mosquitto(t)
	fleet, err := fake.StartFleet(fake.FleetOptions{Broker: testenv.MQTTURL(broker), IDs: []string{"s1", "mute"}, Offline: []string{"mute"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	pda := &alert.Target{Kind: alert.KindSMS, ID: "+4917000000"}
	adapterstest.Run(t, adapterstest.Harness{
		New: func(t *testing.T, log zerolog.Logger) adapters.Adapter {
			c, err := mqttcmd.New(mqttcmd.Config{Broker: testenv.MQTTURL(broker), ClientID: "conformance", AckTimeout: 300 * time.Millisecond, Password: "broker-secret"}, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			return siren.New(c, nil)
		},
		Target:  alert.Target{Kind: alert.KindSiren, ID: "s1"},
		Silent:  &alert.Target{Kind: alert.KindSiren, ID: "mute"},
		Invalid: pda,
		Received: func(id string, msg alert.Message) int {
			want := map[alert.Message]string{alert.MessageAlert: siren.SignalAlarm, alert.MessageRetraction: siren.SignalAllClear}[msg]
			n := 0
			for _, r := range fleet.Received() {
				if r.Cmd.DeliveryID == id && r.Cmd.Signal == want {
					n++
				}
			}
			return n
		},
		Secrets: []string{"broker-secret"},
	})
}

// An actual alert sounds its event's profile; a drill is always test, a
// retraction all_clear and a superseded alert stop, whatever the profile.
func TestSignalFor(t *testing.T) {
	fire := func(event string) string {
		if event == "Fire" {
			return "fire"
		}
		return "alarm"
	}
	for _, tt := range []struct {
		status  alert.Status
		msg     alert.Message
		event   string
		profile func(string) string
		want    string
	}{
		{alert.StatusActual, alert.MessageAlert, "Fire", nil, siren.SignalAlarm},
		{alert.StatusActual, alert.MessageAlert, "Fire", fire, "fire"},
		{alert.StatusActual, alert.MessageAlert, "Amok", fire, siren.SignalAlarm},
		{alert.StatusExercise, alert.MessageAlert, "Fire", fire, siren.SignalTest},
		{alert.StatusTest, alert.MessageAlert, "Fire", fire, siren.SignalTest},
		{alert.StatusActual, alert.MessageRetraction, "Fire", fire, siren.SignalAllClear},
		{alert.StatusExercise, alert.MessageRetraction, "Fire", fire, siren.SignalAllClear},
		{alert.StatusActual, "superseded", "Fire", fire, siren.SignalStop},
	} {
		d := alert.Delivery{Alert: &alert.Alert{Status: tt.status, Event: tt.event}, Message: tt.msg}
		if tt.msg == "superseded" {
			d.Message, d.Reason = alert.MessageRetraction, "superseded"
		}
		if got := siren.SignalFor(d, tt.profile); got != tt.want {
			t.Errorf("SignalFor(%s %s, %s, profile %v) = %s, want %s", tt.status, tt.event, tt.msg, tt.profile != nil, got, tt.want)
		}
	}
}
