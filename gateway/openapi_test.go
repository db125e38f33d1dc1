package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/tocsin-alert/tocsin/operator"
)

const specPath = "../docs/openapi.yaml"

// loadSpec loads and validates docs/openapi.yaml.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", specPath, err)
	}
	return doc
}

func TestOpenAPISpecIsValid(t *testing.T) { loadSpec(t) }

// routePattern matches a route in endpoints(): p("GET /v1/x", …),
// op("POST /v1/y", …) and {"POST /v1/z", auth, …}.
var routePattern = regexp.MustCompile(`(?:\bp\(|\bop\(|\{)"(GET|POST|PUT|DELETE|PATCH) (/[^"]*)"`)

// codeRoutes are the gateway's routes, read from endpoints() in gateway.go
// (there is no exported hook, and this test may not add one).
func codeRoutes(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("gateway.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	start := strings.Index(s, "func (g *Gateway) endpoints() []endpoint {")
	if start < 0 {
		t.Fatal("gateway.go: endpoints() not found")
	}
	end := strings.Index(s[start:], "\n}\n")
	var out []string
	for _, m := range routePattern.FindAllStringSubmatch(s[start:start+end], -1) {
		out = append(out, m[1]+" "+m[2])
	}
	if len(out) < 30 {
		t.Fatalf("only %d routes found in endpoints(): the regexp no longer matches the source", len(out))
	}
	return out
}

// Every route the gateway serves is in the spec with its method, and the
// spec has no route the gateway does not serve.
func TestOpenAPIRoutesMatchCode(t *testing.T) {
	doc := loadSpec(t)
	code := codeRoutes(t)
	var spec []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			spec = append(spec, method+" "+path)
		}
	}
	for _, r := range code {
		if !slices.Contains(spec, r) {
			t.Errorf("route %q is served but not in %s", r, specPath)
		}
	}
	for _, r := range spec {
		if !slices.Contains(code, r) {
			t.Errorf("%s documents %q, which endpoints() does not serve", specPath, r)
		}
	}
	// Unauthenticated routes (authz_test.go's list) say so; every other one needs the bearer.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			bearer := len(sec) > 0 && slices.ContainsFunc(sec, func(r openapi3.SecurityRequirement) bool { _, ok := r["bearer"]; return ok })
			if r := method + " " + path; bearer == (unauthenticated[r] != 0) {
				t.Errorf("%s: security %v, want bearer: %v", r, sec, unauthenticated[r] == 0)
			}
		}
	}
}

// specClient sends requests to a stack and checks each request and its
// response against the spec.
type specClient struct {
	t      *testing.T
	s      *stack
	router routers.Router
	opts   *openapi3filter.Options
}

func newSpecClient(t *testing.T, s *stack) *specClient {
	doc := loadSpec(t)
	doc.Servers = openapi3.Servers{{URL: s.url}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true, // a status the spec does not list is an error
		MultiError:            true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if in.SecuritySchemeName != "bearer" && in.SecuritySchemeName != "metricsToken" {
				return fmt.Errorf("unknown scheme %q", in.SecuritySchemeName)
			}
			if tok, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer "); !ok || tok == "" {
				return fmt.Errorf("no bearer token")
			}
			return nil
		},
	}
	return &specClient{t: t, s: s, router: router, opts: opts}
}

// call sends method path with token (if any) and a JSON body (if any),
// validates the request and the response against the spec, and checks the
// status.
func (c *specClient) call(method, path, token, body string, want int) response {
	c.t.Helper()
	return c.send(method, path, token, body, want, false)
}

// callInvalid is call for a request the spec must refuse too: the gateway
// answers it (want), and its answer must match the spec.
func (c *specClient) callInvalid(method, path, token, body string, want int) response {
	c.t.Helper()
	return c.send(method, path, token, body, want, true)
}

func (c *specClient) send(method, path, token, body string, want int, invalid bool) response {
	c.t.Helper()
	mk := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, c.s.url+path, rd)
		if err != nil {
			c.t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return req
	}
	vreq := mk()
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		c.t.Fatalf("%s %s: no route in the spec: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: c.opts}
	ctx := context.Background()
	switch err := openapi3filter.ValidateRequest(ctx, in); {
	case err != nil && !invalid:
		c.t.Errorf("%s %s: request does not match the spec: %v", method, path, err)
	case err == nil && invalid:
		c.t.Errorf("%s %s %s: the spec accepts a request the gateway refuses", method, path, body)
	}
	resp, err := http.DefaultClient.Do(mk())
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: c.opts}
	out.SetBodyBytes(b)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.t.Errorf("%s %s: %d response does not match the spec: %v\nbody: %s", method, path, resp.StatusCode, err, b)
	}
	r := response{Code: resp.StatusCode, Header: resp.Header, Raw: string(b)}
	json.Unmarshal(b, &r.Body)
	if r.Code != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, r.Code, want, r.Raw)
	}
	return r
}

// enrolVia invites id, enrols them and signs them in, every step through
// the spec-checked client; it returns the person (TOTP codes as enrol's).
func (c *specClient) enrolVia(id string) *person {
	c.t.Helper()
	s := c.s
	ops := operator.New(s.rdb, s.cfg.Redis.KeyPrefix, operator.Options{Known: func(x string) (string, bool) { return x, s.cfg.Operator(x) != nil }})
	inv, err := ops.Invite(context.Background(), id, "admin-cli")
	if err != nil {
		c.t.Fatal(err)
	}
	pw := id + "-correct-horse-battery"
	r := c.call("POST", "/v1/enrol", "", fmt.Sprintf(`{"token":%q,"password":%q}`, inv, pw), 200)
	p := &person{s: s, id: id, secret: r.Body["secret"].(string)}
	c.call("POST", "/v1/enrol", "", fmt.Sprintf(`{"token":%q,"code":%q}`, inv, p.code(-30*time.Second)), 200)
	c.call("POST", "/v1/session", "", fmt.Sprintf(`{"operator":%q,"password":"wrong-password-here","code":%q}`, id, p.code(0)), 401)
	r = c.call("POST", "/v1/session", "", fmt.Sprintf(`{"operator":%q,"password":%q,"code":%q}`, id, pw, p.code(0)), 201)
	p.token = r.Body["token"].(string)
	return p
}

// TestOpenAPIStory drives a gateway through alerts and the operators'
// four-eyes story and checks every request and response against the spec.
func TestOpenAPIStory(t *testing.T) {
	s := newStack(t, stackOptions{extra: operatorsConfig})
	c := newSpecClient(t, s)

	c.call("GET", "/healthz", "", "", 200)
	c.call("GET", "/readyz", "", "", 200)

	// An alert accepted, a bad one refused, a stranger refused.
	r := c.call("POST", "/v1/alerts", dispatchKey, amok(), 202)
	if r.Header.Get("Location") != "/v1/alerts/"+fmt.Sprint(r.Body["id"]) {
		t.Errorf("202 without its Location: %v", r.Header)
	}
	alertID := r.Body["id"].(string)
	if r := c.call("POST", "/v1/alerts", dispatchKey, amok("nowhere"), 400); r.Body["field"] != "zones[0]" {
		t.Errorf("bad zone: %s", r.Raw)
	}
	c.callInvalid("POST", "/v1/alerts", dispatchKey, `{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["school"],"extra":1}`, 400)
	c.call("GET", "/v1/alerts", "not-a-key", "", 401)
	c.call("GET", "/v1/alerts?limit=5", dispatchKey, "", 200)
	c.call("GET", "/v1/alerts/"+alertID, dispatchKey, "", 200)
	c.call("GET", "/v1/alerts/"+alertID+"/deliveries", dispatchKey, "", 200)
	c.call("GET", "/v1/alerts/no-such-alert", dispatchKey, "", 404)

	// An alert the sender's policy holds.
	held := c.call("POST", "/v1/alerts", buildingKey, `{"status":"actual","event":"Fire","severity":"Severe","urgency":"Immediate","zones":["school"]}`, 202)
	if held.Body["state"] != "pending" || held.Header.Get("Location") != "/v1/drafts/"+fmt.Sprint(held.Body["id"]) {
		t.Errorf("held alert: %v %s", held.Header, held.Raw)
	}

	// An author enrols, signs in, composes from a template and submits.
	anna := c.enrolVia("anna")
	c.call("GET", "/v1/session", anna.token, "", 200)
	c.call("GET", "/v1/session", dispatchKey, "", 403)
	if r := c.call("GET", "/v1/templates", anna.token, "", 200); !strings.Contains(r.Raw, `"counts":{"siren":3}`) {
		t.Errorf("templates: %s", r.Raw)
	}
	c.callInvalid("POST", "/v1/drafts", anna.token, `{"template":"amok"}`, 400)
	r = c.call("POST", "/v1/drafts", anna.token, `{"template":"amok","status":"actual"}`, 201)
	id := r.Body["id"].(string)
	if r.Header.Get("Location") != "/v1/drafts/"+id {
		t.Errorf("201 without its Location: %v", r.Header)
	}
	c.call("GET", "/v1/drafts?state=draft", anna.token, "", 200)
	c.callInvalid("GET", "/v1/drafts?state=nonsense", anna.token, "", 400)
	if r := c.call("POST", "/v1/drafts/"+id+"/submit", anna.token, "", 200); r.Body["state"] != "pending" {
		t.Fatalf("submit: %s", r.Raw)
	}
	c.call("POST", "/v1/drafts/"+id+"/submit", anna.token, "", 409)

	// An approver reviews and approves with the digest they saw.
	ben := c.enrolVia("ben")
	r = c.call("GET", "/v1/drafts/"+id, ben.token, "", 200)
	digest := r.Body["digest"].(string)
	c.callInvalid("POST", "/v1/drafts/"+id+"/approve", ben.token, `{}`, 400)
	// The author may not approve their own alert.
	if r := c.call("POST", "/v1/drafts/"+id+"/approve", anna.token, fmt.Sprintf(`{"digest":%q}`, digest), 403); r.Body["scope"] != "role" {
		t.Errorf("author approves: %s", r.Raw)
	}
	// Signing in is a second factor; a step-up renews it.
	c.call("POST", "/v1/session/step-up", ben.token, fmt.Sprintf(`{"code":%q}`, ben.code(30*time.Second)), 200)
	c.call("POST", "/v1/drafts/"+id+"/approve", ben.token, fmt.Sprintf(`{"digest":%q}`, strings.Repeat("0", 64)), 409)
	if r := c.call("POST", "/v1/drafts/"+id+"/approve", ben.token, fmt.Sprintf(`{"digest":%q}`, digest), 200); r.Body["state"] != "live" {
		t.Fatalf("approve: %s", r.Raw)
	}
	c.call("POST", "/v1/drafts/"+fmt.Sprint(held.Body["id"])+"/return", ben.token, `{"reason":"wrong building"}`, 200)

	// The released alert, the audit, signing out.
	c.call("GET", "/v1/alerts/"+id, dispatchKey, "", 200)
	if r := c.call("GET", "/v1/audit?limit=50", anna.token, "", 200); !strings.Contains(r.Raw, `"draft.approved"`) {
		t.Errorf("audit: %s", r.Raw)
	}
	c.call("GET", "/v1/audit", buildingKey, "", 403)
	c.call("GET", "/v1/operators", anna.token, "", 403)
	c.call("DELETE", "/v1/session", anna.token, "", 204)
	c.call("GET", "/v1/session", anna.token, "", 401)
}

// Spec and code agree on the bodies: a draft action's body schema requires
// what the handler requires.
func TestOpenAPIDraftActionBodies(t *testing.T) {
	doc := loadSpec(t)
	for action, field := range map[string]string{"approve": "digest", "release": "digest", "return": "reason", "reject": "reason"} {
		op := doc.Paths.Find("/v1/drafts/{id}/" + action).Post
		rb := op.RequestBody.Value
		if !rb.Required {
			t.Errorf("%s: body not required", action)
		}
		b, _ := json.Marshal(rb.Content.Get("application/json").Schema.Value)
		if !bytes.Contains(b, []byte(`"required":["`+field+`"]`)) {
			t.Errorf("%s: body schema does not require %s: %s", action, field, b)
		}
	}
}
