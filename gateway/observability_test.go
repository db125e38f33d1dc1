package gateway_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// The alerting rules and the Grafana dashboard in deploy/ are checked as
// Prometheus would load them (its own rule parser and PromQL parser), and
// every metric they use is one a real gateway exposes on /metrics — here
// after an alert, a duplicate, a rejection, a retraction and a dead siren
// whose breaker opened, so every series family has been written.
func TestPrometheusRulesAndDashboard(t *testing.T) {
	dead := sirenIDs("townhall", 1)
	s := newStack(t, stackOptions{offline: dead, hold: "300ms", extra: `
operators:
  - {id: ben, name: Ben Duty, roles: [viewer], zones: ["*"], phone: "+4915199999999", on_duty: true}
probes: {sirens: 1s, timeout: 500ms}
`})
	body := `{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren"]}`
	r := s.post(body, "Idempotency-Key", "obs-1")
	s.post(body, "Idempotency-Key", "obs-1")
	s.post(`{"status":"actual","zones":["school"]}`)
	s.post(`{"status":"actual","event":"Fire","severity":"Extreme","urgency":"Immediate","zones":["townhall"],"channels":["siren"]}`)
	id := r.Body["id"].(string)
	eventually(t, 5*time.Second, "sirens sounded", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
	s.retract(id, "false_alarm")
	var exposed string
	eventually(t, 10*time.Second, "every family on /metrics, the dead siren's breaker open", func() bool {
		exposed = s.do("GET", "/metrics", "", "", "").Raw
		return strings.Contains(exposed, `tocsin_breaker_state{target="siren/`+dead[0]+`"} 2`) &&
			strings.Contains(exposed, `tocsin_probe_ok{kind="siren",target="`+dead[0]+`"} 0`) &&
			strings.Contains(exposed, `tocsin_delivery_latency_seconds_bucket{kind="siren",message="retraction"`)
	})
	names := map[string]bool{"up": true} // Prometheus' own, per scrape target
	for _, m := range regexp.MustCompile(`(?m)^([a-z_:]+)[{ ]`).FindAllStringSubmatch(exposed, -1) {
		names[m[1]] = true
	}
	p := parser.NewParser(parser.Options{})
	uses := func(where, expr string) {
		e, err := p.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && !names[vs.Name] {
				t.Errorf("%s uses %s, which no gateway exposes", where, vs.Name)
			}
			return nil
		})
	}
	groups, errs := rulefmt.ParseFile("../deploy/prometheus/tocsin-rules.yaml", false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			uses("rule "+r.Alert, r.Expr)
			n++
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../deploy/grafana/tocsin-dashboard.json")
	if err == nil {
		err = json.Unmarshal(b, &dash)
	}
	if err != nil {
		t.Fatalf("deploy/grafana/tocsin-dashboard.json: %v", err)
	}
	for _, pn := range dash.Panels {
		for _, tg := range pn.Targets {
			uses("panel "+pn.Title, tg.Expr)
			n++
		}
	}
	if n < 10 {
		t.Errorf("%d rules and panel queries checked; want the files' all", n)
	}
}
