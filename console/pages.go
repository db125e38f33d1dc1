package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// view is what every page template gets.
type view struct {
	Lang  string
	T     map[string]string
	Nonce string
	CSRF  string
	// Once is a fresh one-time token for each form on the page.
	Once     func() string
	Me       *me
	Exercise bool
	Error    string
	Notice   string
	Pending  int
	Data     any
}

// me is the signed-in person (GET /v1/session).
type me struct {
	Operator    string    `json:"operator"`
	Name        string    `json:"name"`
	Roles       []string  `json:"roles"`
	Zones       []string  `json:"zones"`
	StepUpUntil time.Time `json:"stepUpUntil"`
}

// Has reports whether the person holds role.
func (m *me) Has(role string) bool { return m != nil && slices.Contains(m.Roles, role) }

var funcs = template.FuncMap{
	"join": strings.Join,
	"has":  func(list []string, s string) bool { return slices.Contains(list, s) },
	// states are the alert states' labels as JSON, for the live page's script.
	"states": func(t map[string]string) string {
		m := map[string]string{}
		for _, k := range []string{"queued", "delivering", "completed", "expired", "retracted"} {
			m[k] = t[k]
		}
		b, _ := json.Marshal(m)
		return string(b)
	},
	// "time" is added per console (New): it reads in the configuration's zone.
	"pct": func(n, of int) int {
		if of <= 0 {
			return 0
		}
		return min(100, n*100/of)
	},
	"label": func(t map[string]string, key string) string {
		if s, ok := t[key]; ok {
			return s
		}
		return key
	},
}

// pageFunc builds a page: its template and data, or an error to show.
type pageFunc func(w http.ResponseWriter, r *http.Request, v *view) (string, error)

// page serves a GET page; with auth, only to a signed-in person (else the
// sign-in page).
func (s *Server) page(h pageFunc, auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		lang := language(r)
		if l := r.URL.Query().Get("lang"); labels[l] != nil {
			lang = l
			http.SetCookie(w, &http.Cookie{Name: "lang", Value: l, Path: "/", SameSite: http.SameSiteStrictMode, Secure: s.secure, MaxAge: 365 * 86400})
		}
		v := &view{Lang: lang, T: labels[lang], Nonce: r.Context().Value(nonceKey{}).(string), Once: newOnce, Exercise: s.cfg.Console.Exercise}
		if f := r.URL.Query().Get("flash"); f != "" {
			v.Notice = labels[lang][f]
		}
		tok := token(r)
		if auth {
			var m me
			if tok == "" || s.call(r.Context(), tok, "GET", "/v1/session", nil, &m) != nil {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			v.Me, v.CSRF = &m, s.csrf(tok)
			var pend struct {
				Drafts []json.RawMessage `json:"drafts"`
			}
			if s.call(r.Context(), tok, "GET", "/v1/drafts?state=pending", nil, &pend) == nil {
				v.Pending = len(pend.Drafts)
			}
		}
		name, err := h(w, r, v)
		if err != nil {
			var p *problem
			if !errors.As(err, &p) {
				s.log.Error().Err(err).Str("path", r.URL.Path).Msg("Console page failed")
			}
			v.Error = err.Error()
			if name == "" {
				name = "error"
			}
		}
		if name == "" {
			return // the handler answered
		}
		s.render(w, name, v)
	}
}

func (s *Server) render(w http.ResponseWriter, name string, v *view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := s.pages[name].ExecuteTemplate(w, "layout.html", v); err != nil {
		s.log.Error().Err(err).Str("page", name).Msg("Console template failed")
	}
}

// formFunc does a form's action and says where to go next.
type formFunc func(r *http.Request, session string) (next string, err error)

// form serves a POST form from a signed-in person: same origin, the
// session's CSRF token, and a one-time token (a second submission of the
// same form does nothing and says so). A refusal comes back to the page the
// form was on, with the API's reason.
func (s *Server) form(h formFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		tok := token(r)
		if tok == "" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if !sameOrigin(r) || r.PostFormValue("csrf") != s.csrf(tok) {
			http.Error(w, "forbidden: the form is stale or from another site; reload the page", http.StatusForbidden)
			return
		}
		back := r.PostFormValue("back")
		if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") {
			back = "/"
		}
		if !s.useOnce(r.PostFormValue("once")) {
			http.Redirect(w, r, withQuery(back, "flash", "already"), http.StatusSeeOther)
			return
		}
		next, err := h(r, tok)
		if err != nil {
			lang := language(r)
			v := &view{Lang: lang, T: labels[lang], Nonce: r.Context().Value(nonceKey{}).(string), Once: newOnce, CSRF: s.csrf(tok), Error: err.Error()}
			var m me
			if s.call(r.Context(), tok, "GET", "/v1/session", nil, &m) == nil {
				v.Me = &m
			}
			v.Data = map[string]string{"Back": back}
			w.WriteHeader(statusOf(err))
			s.render(w, "error", v)
			return
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

func statusOf(err error) int {
	var p *problem
	if errors.As(err, &p) && p.Status >= 400 {
		return p.Status
	}
	return http.StatusBadRequest
}

func withQuery(path, k, v string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + k + "=" + url.QueryEscape(v)
}

// sameOrigin refuses a POST whose Origin (or, lacking it, Referer) names
// another host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true // the browser says so itself
	}
	if o == "" || o == "null" {
		return o == "" // a browser always sends one on a cross-site form
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// --- sign-in ---

func (s *Server) getLogin(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	return "login", nil
}

func (s *Server) postLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	lang := language(r)
	v := &view{Lang: lang, T: labels[lang], Nonce: r.Context().Value(nonceKey{}).(string), Once: newOnce}
	if !sameOrigin(r) {
		http.Error(w, "forbidden: cross-site sign-in", http.StatusForbidden)
		return
	}
	var sess struct {
		Token string `json:"token"`
	}
	err := s.call(r.Context(), "", "POST", "/v1/session", map[string]string{
		"operator": r.PostFormValue("operator"), "password": r.PostFormValue("password"), "code": strings.TrimSpace(r.PostFormValue("code"))}, &sess)
	if err != nil {
		v.Error = v.T["signin_failed"]
		w.WriteHeader(http.StatusUnauthorized)
		s.render(w, "login", v)
		return
	}
	s.setSession(w, sess.Token)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// getKeys is where a signed-in person registers a security key.
func (s *Server) getKeys(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	return "keys", nil
}

// postKeyOptions and postKeys carry a key registration for the page's
// script, as the signed-in person (CSRF token in a header: the script reads
// it from the page).
func (s *Server) postKeyOptions(w http.ResponseWriter, r *http.Request) {
	s.relay(w, r, "/v1/keys/options", true, false)
}

func (s *Server) postKeys(w http.ResponseWriter, r *http.Request) {
	s.relay(w, r, "/v1/keys", true, false)
}

// getEnrol is enrolment's first page: the invite token (the link's
// fragment, filled in by the script, or pasted) and a password.
func (s *Server) getEnrol(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	v.Data = map[string]string{"Step": "password"}
	return "enrol", nil
}

// postEnrol runs both steps: token and password give the TOTP secret to
// add to an app; token and code finish.
func (s *Server) postEnrol(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	lang := language(r)
	v := &view{Lang: lang, T: labels[lang], Nonce: r.Context().Value(nonceKey{}).(string), Once: newOnce}
	if !sameOrigin(r) {
		http.Error(w, "forbidden: cross-site enrolment", http.StatusForbidden)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if code := strings.TrimSpace(r.PostFormValue("code")); code != "" {
		if err := s.call(r.Context(), "", "POST", "/v1/enrol", map[string]string{"token": tok, "code": code}, nil); err != nil {
			v.Error = err.Error()
			v.Data = map[string]string{"Step": "code", "Token": tok, "Secret": r.PostFormValue("secret")}
			w.WriteHeader(statusOf(err))
			s.render(w, "enrol", v)
			return
		}
		http.Redirect(w, r, "/login?flash=enrolled", http.StatusSeeOther)
		return
	}
	var out struct {
		OTPAuth string `json:"otpauth"`
		Secret  string `json:"secret"`
	}
	if err := s.call(r.Context(), "", "POST", "/v1/enrol", map[string]string{"token": tok, "password": r.PostFormValue("password")}, &out); err != nil {
		v.Error = err.Error()
		v.Data = map[string]string{"Step": "password", "Token": tok}
		w.WriteHeader(statusOf(err))
		s.render(w, "enrol", v)
		return
	}
	v.Data = map[string]string{"Step": "code", "Token": tok, "Secret": out.Secret, "OTPAuth": out.OTPAuth}
	s.render(w, "enrol", v)
}

func (s *Server) setSession(w http.ResponseWriter, tok string) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode})
}

// postLoginKeyOptions and postLoginKey carry a security-key sign-in for the
// page's script: options from the API, the browser's answer back to it.
func (s *Server) postLoginKeyOptions(w http.ResponseWriter, r *http.Request) {
	s.relay(w, r, "/v1/session/key/options", false, false)
}

func (s *Server) postLoginKey(w http.ResponseWriter, r *http.Request) {
	s.relay(w, r, "/v1/session/key", false, true)
}

// relay passes a script's JSON body to the API and the answer back. As the
// signed-in person (asPerson), the request must carry the session's CSRF
// token in X-CSRF-Token; with signIn, a successful answer's token becomes
// the session cookie instead of being shown to the script.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, path string, asPerson, signIn bool) {
	tok := ""
	if asPerson {
		tok = token(r)
		if tok == "" || r.Header.Get("X-CSRF-Token") != s.csrf(tok) {
			http.Error(w, `{"error":"forbidden: reload the page"}`, http.StatusForbidden)
			return
		}
	}
	if !sameOrigin(r) {
		http.Error(w, `{"error":"forbidden"}`, http.StatusForbidden)
		return
	}
	var in json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&in); err != nil && !asPerson {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	var body any
	if len(in) > 0 && string(in) != "{}" {
		body = in
	}
	var out map[string]any
	err := s.call(r.Context(), tok, "POST", path, body, &out)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(statusOf(err))
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	if signIn {
		t, _ := out["token"].(string)
		s.setSession(w, t)
		out = map[string]any{"ok": true}
	}
	json.NewEncoder(w).Encode(out)
}

func (s *Server) postLogout(r *http.Request, session string) (string, error) {
	s.call(r.Context(), session, "DELETE", "/v1/session", nil, nil)
	return "/login", nil
}

// --- dashboard ---

// alertJSON is an alert as GET /v1/alerts/{id} answers.
type alertJSON struct {
	ID         string                 `json:"id"`
	Status     string                 `json:"status"`
	Event      string                 `json:"event"`
	Headline   string                 `json:"headline"`
	Severity   string                 `json:"severity"`
	Zones      []string               `json:"zones"`
	Principal  string                 `json:"principal"`
	Sent       time.Time              `json:"sent"`
	Expires    time.Time              `json:"expires"`
	State      string                 `json:"state"`
	Channels   map[string]*countsJSON `json:"channels"`
	Retraction *struct {
		Reason   string    `json:"reason"`
		Note     string    `json:"note"`
		At       time.Time `json:"at"`
		Sweeping bool      `json:"sweeping"`
	} `json:"retraction"`
}

// countsJSON are one channel's counts.
type countsJSON struct {
	Targets       int    `json:"targets"`
	Queued        int    `json:"queued"`
	InFlight      int    `json:"in_flight"`
	Sent          int    `json:"sent"`
	Delivered     int    `json:"delivered"`
	Failed        int    `json:"failed"`
	Cancelled     int    `json:"cancelled"`
	Expired       int    `json:"expired"`
	Retrying      int    `json:"retrying"`
	Owed          int    `json:"retractions_owed"`
	Retracted     int    `json:"retractions_delivered"`
	RetractFailed int    `json:"retractions_failed"`
	Summary       string `json:"retracted"`
}

// Drill reports whether the alert is an exercise or test.
func (a *alertJSON) Drill() bool { return a.Status == "exercise" || a.Status == "test" }

// Live reports whether the alert can still be retracted.
func (a *alertJSON) Live() bool { return a.State != "retracted" && a.State != "expired" }

// Kinds are the alert's channels in a fixed order.
func (a *alertJSON) Kinds() []string {
	var ks []string
	for k := range a.Channels {
		ks = append(ks, k)
	}
	order := map[string]int{"siren": 0, "pa": 1, "sms": 2, "voice": 3, "dispatch": 4}
	sort.Slice(ks, func(i, j int) bool { return order[ks[i]] < order[ks[j]] })
	return ks
}

type sourceJSON struct {
	ID          string   `json:"id"`
	Zones       []string `json:"zones"`
	Maintenance *struct {
		Reason string    `json:"reason"`
		Until  time.Time `json:"until"`
		By     string    `json:"by"`
	} `json:"maintenance"`
}

func (s *Server) getDashboard(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	tok := token(r)
	var alerts struct {
		Alerts []*alertJSON `json:"alerts"`
	}
	if err := s.call(r.Context(), tok, "GET", "/v1/alerts?limit=20", nil, &alerts); err != nil {
		return "dashboard", err
	}
	var pend struct {
		Drafts []*draftJSON `json:"drafts"`
	}
	s.call(r.Context(), tok, "GET", "/v1/drafts?state=pending", nil, &pend)
	var srcs struct {
		Sources []*sourceJSON `json:"sources"`
	}
	s.call(r.Context(), tok, "GET", "/v1/sources", nil, &srcs)
	var maint []*sourceJSON
	for _, src := range srcs.Sources {
		if src.Maintenance != nil {
			maint = append(maint, src)
		}
	}
	var health struct {
		Channels []struct {
			Kind  string `json:"kind"`
			Ready int64  `json:"ready"`
		} `json:"channels"`
		Breakers map[string]string `json:"breakers"`
		Probes   []struct {
			Kind   string    `json:"kind"`
			Target string    `json:"target"`
			OK     bool      `json:"ok"`
			Since  time.Time `json:"since"`
			Detail string    `json:"detail"`
		} `json:"probes"`
	}
	s.call(r.Context(), tok, "GET", "/v1/health/channels", nil, &health)
	v.Data = map[string]any{"Alerts": alerts.Alerts, "Pending": pend.Drafts, "Maintenance": maint, "Health": health}
	return "dashboard", nil
}

// --- compose ---

type templateJSON struct {
	ID          string         `json:"id"`
	Version     int            `json:"version"`
	Name        string         `json:"name"`
	Event       string         `json:"event"`
	Severity    string         `json:"severity"`
	Headline    string         `json:"headline"`
	Description string         `json:"description"`
	Instruction string         `json:"instruction"`
	Language    string         `json:"language"`
	Info        []infoJSON     `json:"info"`
	Zones       []string       `json:"zones"`
	Channels    []string       `json:"channels"`
	Counts      map[string]int `json:"counts"`
}

// infoJSON is an alert's texts in one further language.
type infoJSON struct {
	Language    string `json:"language"`
	Event       string `json:"event,omitempty"`
	Headline    string `json:"headline,omitempty"`
	Description string `json:"description,omitempty"`
	Instruction string `json:"instruction,omitempty"`
}

func (s *Server) getCompose(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	var ts struct {
		Templates []*templateJSON `json:"templates"`
	}
	if err := s.call(r.Context(), token(r), "GET", "/v1/templates", nil, &ts); err != nil {
		return "compose", err
	}
	chosen := r.URL.Query().Get("template")
	var sel *templateJSON
	for _, t := range ts.Templates {
		if t.ID == chosen || (chosen == "" && sel == nil) {
			sel = t
		}
	}
	var zoneIDs []string
	for _, z := range s.cfg.Zones {
		zoneIDs = append(zoneIDs, z.ID)
	}
	v.Data = map[string]any{"Templates": ts.Templates, "Selected": sel, "Zones": s.cfg.Zones, "Map": zoneMap(s.cfg.Zones, sel), "ExerciseOnly": s.cfg.Console.Exercise,
		"Kinds": []string{"siren", "pa", "sms", "voice", "dispatch"}}
	return "compose", nil
}

func (s *Server) postCompose(r *http.Request, session string) (string, error) {
	if st := r.PostFormValue("status"); s.cfg.Console.Exercise && st != "exercise" && st != "test" {
		return "", &problem{Status: 403, Field: "status", Detail: "this console is an exercise context: only exercise and test alerts"}
	}
	req := map[string]any{"template": r.PostFormValue("template"), "status": r.PostFormValue("status")}
	if zs := r.PostForm["zones"]; len(zs) > 0 {
		req["zones"] = zs
	}
	if ks := r.PostForm["channels"]; len(ks) > 0 {
		req["channels"] = ks
	}
	for _, f := range []string{"headline", "description", "instruction"} {
		if v := strings.TrimSpace(r.PostFormValue(f)); v != "" {
			req[f] = v
		}
	}
	// The texts in further languages, as the form shows them (the
	// template's, edited or not).
	if langs := r.PostForm["info_language"]; len(langs) > 0 {
		var infos []infoJSON
		for i, l := range langs {
			at := func(f string) string {
				if vs := r.PostForm[f]; i < len(vs) {
					return strings.TrimSpace(vs[i])
				}
				return ""
			}
			infos = append(infos, infoJSON{Language: l, Event: at("info_event"), Headline: at("info_headline"),
				Description: at("info_description"), Instruction: at("info_instruction")})
		}
		req["info"] = infos
	}
	if m := r.PostFormValue("expires_in"); m != "" {
		var n int
		if _, err := fmt.Sscan(m, &n); err != nil || n < 1 || n > 7*24*60 {
			return "", &problem{Status: 400, Field: "expires_in", Detail: "expires_in: minutes from 1 to 10080"}
		}
		req["expires"] = time.Now().Add(time.Duration(n) * time.Minute).UTC()
	}
	var d draftJSON
	if err := s.call(r.Context(), session, "POST", "/v1/drafts", req, &d); err != nil {
		return "", err
	}
	if r.PostFormValue("submit") != "" {
		if err := s.call(r.Context(), session, "POST", "/v1/drafts/"+url.PathEscape(d.ID)+"/submit", nil, &d); err != nil {
			return "", err
		}
	}
	if d.Alert != "" {
		return "/alerts/" + url.PathEscape(d.ID), nil
	}
	return "/drafts/" + url.PathEscape(d.ID), nil
}

// --- drafts ---

type draftJSON struct {
	ID      string    `json:"id"`
	State   string    `json:"state"`
	Author  string    `json:"author"`
	Editor  string    `json:"editor"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Policy  string    `json:"policy"`
	Package struct {
		Template        string                       `json:"template"`
		TemplateVersion int                          `json:"templateVersion"`
		Status          string                       `json:"status"`
		Event           string                       `json:"event"`
		Severity        string                       `json:"severity"`
		Urgency         string                       `json:"urgency"`
		Headline        string                       `json:"headline"`
		Description     string                       `json:"description"`
		Instruction     string                       `json:"instruction"`
		Zones           []string                     `json:"zones"`
		Channels        []string                     `json:"channels"`
		Expires         time.Time                    `json:"expires"`
		Retraction      map[string]map[string]string `json:"retraction"`
		Counts          map[string]int               `json:"counts"`
		Texts           map[string]string            `json:"texts"`
	} `json:"package"`
	Digest    string `json:"digest"`
	Needed    int    `json:"needed"`
	Approvals []struct {
		By     string    `json:"by"`
		Digest string    `json:"digest"`
		At     time.Time `json:"at"`
	} `json:"approvals"`
	ValidApprovals int      `json:"validApprovals"`
	Changed        []string `json:"changed"`
	Reason         string   `json:"reason"`
	ReasonBy       string   `json:"reasonBy"`
	Alert          string   `json:"alert"`
}

// Drill reports whether the draft is an exercise or test.
func (d *draftJSON) Drill() bool { return d.Package.Status == "exercise" || d.Package.Status == "test" }

// TextKeys are the preview's keys in order.
func (d *draftJSON) TextKeys() []string {
	var ks []string
	for k := range d.Package.Texts {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (s *Server) getDraft(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	var d draftJSON
	if err := s.call(r.Context(), token(r), "GET", "/v1/drafts/"+url.PathEscape(r.PathValue("id")), nil, &d); err != nil {
		return "draft", err
	}
	v.Exercise = v.Exercise || d.Drill()
	var zones []string
	for _, z := range d.Package.Zones {
		zones = append(zones, s.zoneName(z))
	}
	var capDocs struct {
		Centres []struct {
			Centre string `json:"centre"`
			XML    string `json:"xml"`
		} `json:"centres"`
	}
	s.call(r.Context(), token(r), "GET", "/v1/drafts/"+url.PathEscape(d.ID)+"/cap", nil, &capDocs)
	v.Data = map[string]any{"D": &d, "ZoneNames": zones, "Previews": previews(&d), "CAP": capDocs.Centres}
	return "draft", nil
}

// zoneName is a zone's name, or its id.
func (s *Server) zoneName(id string) string {
	for _, z := range s.cfg.Zones {
		if z.ID == id && z.Name != "" {
			return z.Name
		}
	}
	return id
}

func (s *Server) postDraftAction(r *http.Request, session string) (string, error) {
	id, action := r.PathValue("id"), r.PathValue("action")
	path := "/v1/drafts/" + url.PathEscape(id)
	var d draftJSON
	if err := s.call(r.Context(), session, "GET", path, nil, &d); err != nil {
		return "", err
	}
	body := map[string]string{}
	switch action {
	case "submit":
	case "approve", "release":
		if code := strings.TrimSpace(r.PostFormValue("code")); code != "" {
			if err := s.call(r.Context(), session, "POST", "/v1/session/step-up", map[string]string{"code": code}, nil); err != nil {
				return "", err
			}
		}
		// A live alert is confirmed by typing its (first) zone's name; an
		// exercise is not.
		if !d.Drill() && len(d.Package.Zones) > 0 {
			want := s.zoneName(d.Package.Zones[0])
			if !strings.EqualFold(strings.TrimSpace(r.PostFormValue("confirm")), want) {
				return "", &problem{Status: 400, Field: "confirm", Detail: fmt.Sprintf("type the zone name %q to confirm a live alert", want)}
			}
		}
		body["digest"] = r.PostFormValue("digest")
	case "return", "reject":
		body["reason"] = r.PostFormValue("reason")
	default:
		return "", &problem{Status: 404, Detail: "no such action"}
	}
	var out draftJSON
	if err := s.call(r.Context(), session, "POST", path+"/"+action, body, &out); err != nil {
		return "", err
	}
	if out.Alert != "" {
		return "/alerts/" + url.PathEscape(id), nil
	}
	return "/drafts/" + url.PathEscape(id), nil
}

// --- the live alert ---

type deliveryJSON struct {
	Target     string `json:"target"`
	State      string `json:"state"`
	Retraction string `json:"retraction"`
	Attempts   int    `json:"attempts"`
	Error      string `json:"error"`
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	tok := token(r)
	id := url.PathEscape(r.PathValue("id"))
	var a alertJSON
	if err := s.call(r.Context(), tok, "GET", "/v1/alerts/"+id, nil, &a); err != nil {
		return "alert", err
	}
	v.Exercise = v.Exercise || a.Drill()
	var raw json.RawMessage
	s.call(r.Context(), tok, "GET", "/v1/alerts/"+id+"/deliveries", nil, &raw)
	var health struct {
		Breakers map[string]string `json:"breakers"`
	}
	s.call(r.Context(), tok, "GET", "/v1/health/channels", nil, &health)
	v.Data = map[string]any{"A": &a, "Waiting": waiting(raw, &a, health.Breakers)}
	return "alert", nil
}

// waiting are the targets not yet done: the original not yet delivered, or
// after a retraction, the retraction not yet handed over; with why.
func waiting(raw json.RawMessage, a *alertJSON, breakers map[string]string) []map[string]string {
	var ds struct {
		Deliveries []struct {
			Target struct {
				Kind string `json:"kind"`
				ID   string `json:"id"`
			} `json:"target"`
			State      string `json:"state"`
			Retraction string `json:"retraction"`
		} `json:"deliveries"`
	}
	json.Unmarshal(raw, &ds)
	var out []map[string]string
	for _, d := range ds.Deliveries {
		st, rt := d.State, d.Retraction
		why := ""
		switch {
		case a.State == "retracted" && rt != "" && rt != "delivered" && rt != "sent" && rt != "failed" && rt != "expired":
			why = "retraction " + rt
		case a.State == "retracted" && rt == "" && (st == "in_flight" || st == "retry"):
			why = "original " + st + " (its retraction follows)"
		case a.State != "retracted" && (st == "queued" || st == "in_flight" || st == "retry"):
			why = st
		}
		if why == "" {
			continue
		}
		key := d.Target.Kind + "/" + d.Target.ID
		if st := breakers[key]; st != "" {
			why += " — breaker " + st
		}
		out = append(out, map[string]string{"Target": key, "Why": why})
		if len(out) == 200 {
			break
		}
	}
	return out
}

func (s *Server) postRetract(r *http.Request, session string) (string, error) {
	id := r.PathValue("id")
	reason := r.PostFormValue("reason")
	if reason == "" {
		reason = "false_alarm"
	}
	err := s.call(r.Context(), session, "POST", "/v1/alerts/"+url.PathEscape(id)+"/retract",
		map[string]string{"reason": reason, "note": r.PostFormValue("note")}, nil)
	return "/alerts/" + url.PathEscape(id), err
}

// events streams the alert's counts as Server-Sent Events, twice a second,
// until the client goes or the retraction is complete.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	tok := token(r)
	fl, ok := w.(http.Flusher)
	if tok == "" || !ok {
		http.Error(w, "sign in", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	id := url.PathEscape(r.PathValue("id"))
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Minute)
	defer cancel()
	last := ""
	for {
		var a alertJSON
		if err := s.call(ctx, tok, "GET", "/v1/alerts/"+id, nil, &a); err != nil {
			fmt.Fprintf(w, "event: gone\ndata: {}\n\n")
			fl.Flush()
			return
		}
		b, _ := json.Marshal(map[string]any{"state": a.State, "channels": a.Channels, "sweeping": a.Retraction != nil && a.Retraction.Sweeping})
		if string(b) != last {
			fmt.Fprintf(w, "data: %s\n\n", b)
			fl.Flush()
			last = string(b)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// --- sources and maintenance ---

// triggerJSON is a trigger decision (GET /v1/triggers).
type triggerJSON struct {
	At      time.Time `json:"at"`
	Source  string    `json:"source"`
	EventID string    `json:"event_id"`
	Trigger string    `json:"trigger"`
	Zone    string    `json:"zone"`
	Reason  string    `json:"reason"`
	Handled string    `json:"handled"`
}

func (s *Server) getSources(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	var srcs struct {
		Sources []*sourceJSON `json:"sources"`
	}
	err := s.call(r.Context(), token(r), "GET", "/v1/sources", nil, &srcs)
	var q struct {
		Triggers []*triggerJSON `json:"triggers"`
	}
	s.call(r.Context(), token(r), "GET", "/v1/triggers?status=quarantined", nil, &q)
	v.Data = map[string]any{"Sources": srcs.Sources, "Quarantined": q.Triggers}
	return "sources", err
}

// postTrigger releases a quarantined trigger as an alert or dismisses it.
func (s *Server) postTrigger(r *http.Request, session string) (string, error) {
	path := "/v1/triggers/" + url.PathEscape(r.PathValue("source")) + "/" + url.PathEscape(r.PathValue("event"))
	switch r.PathValue("action") {
	case "release":
		var d draftJSON
		if err := s.call(r.Context(), session, "POST", path+"/release", nil, &d); err != nil {
			return "", err
		}
		return "/drafts/" + url.PathEscape(d.ID), nil
	case "dismiss":
		return "/sources", s.call(r.Context(), session, "POST", path+"/dismiss", map[string]string{"reason": r.PostFormValue("reason")}, nil)
	}
	return "", &problem{Status: 404, Detail: "no such action"}
}

func (s *Server) postMaintenance(r *http.Request, session string) (string, error) {
	path := "/v1/sources/" + url.PathEscape(r.PathValue("id")) + "/maintenance"
	switch r.PostFormValue("do") {
	case "start":
		return "/sources", s.call(r.Context(), session, "PUT", path, map[string]string{"reason": r.PostFormValue("reason"), "for": r.PostFormValue("for")}, nil)
	case "end":
		if code := strings.TrimSpace(r.PostFormValue("code")); code != "" {
			if err := s.call(r.Context(), session, "POST", "/v1/session/step-up", map[string]string{"code": code}, nil); err != nil {
				return "", err
			}
		}
		return "/sources", s.call(r.Context(), session, "DELETE", path, nil, nil)
	}
	return "", &problem{Status: 400, Detail: "do: start or end"}
}

// --- audit ---

func (s *Server) getAudit(w http.ResponseWriter, r *http.Request, v *view) (string, error) {
	subject := r.URL.Query().Get("subject")
	var out struct {
		Entries []struct {
			Seq   int64 `json:"seq"`
			Entry struct {
				Time    time.Time         `json:"time"`
				Kind    string            `json:"kind"`
				Actor   string            `json:"actor"`
				Subject string            `json:"subject"`
				Detail  map[string]string `json:"detail"`
			} `json:"entry"`
		} `json:"entries"`
		Checkpoint *struct {
			Seq    int64     `json:"seq"`
			Time   time.Time `json:"time"`
			Signer string    `json:"signer"`
		} `json:"checkpoint"`
	}
	err := s.call(r.Context(), token(r), "GET", "/v1/audit?limit=200&subject="+url.QueryEscape(subject), nil, &out)
	slices.Reverse(out.Entries)
	var check struct {
		OK             bool      `json:"ok"`
		VerifiedTo     int64     `json:"verifiedTo"`
		CheckpointTime time.Time `json:"checkpointTime"`
		Signer         string    `json:"signer"`
		Unanchored     int64     `json:"unanchored"`
		Error          string    `json:"error"`
	}
	verified := s.call(r.Context(), token(r), "GET", "/v1/audit/verify", nil, &check) == nil
	v.Data = map[string]any{"Subject": subject, "Entries": out.Entries, "Checkpoint": out.Checkpoint, "Verified": verified, "Check": check}
	return "audit", err
}
