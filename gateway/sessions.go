package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/operator"
)

// sessionPrefix starts every operator session token; API keys never do
// (config refuses none, but a principal's key that happened to start so
// would simply never match a session).
const sessionPrefix = "tsn_"

type sessionKey struct{}

// sessionOf is the operator session a request was made with, nil for an API key.
func sessionOf(ctx context.Context) *operator.Session {
	s, _ := ctx.Value(sessionKey{}).(*operator.Session)
	return s
}

// authenticateSession finds the operator behind a session token.
func (g *Gateway) authenticateSession(r *http.Request, token string) (*config.Principal, *http.Request, error) {
	if g.ops == nil {
		return nil, r, unauthorized("this gateway has no operators configured")
	}
	s, err := g.ops.Session(r.Context(), token)
	if err != nil {
		if errors.Is(err, operator.ErrNoSession) {
			return nil, r, unauthorized("session ended (signed out, idle, or over its limit): sign in again")
		}
		return nil, r, unavailable("cannot check the session right now")
	}
	o := g.cfg.Operator(s.Operator)
	if o == nil {
		return nil, r, unauthorized("session ended: the operator is no longer configured")
	}
	return o.Principal(), r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)), nil
}

// bearer is the Authorization header's bearer token.
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

type signInRequest struct {
	Operator string `json:"operator"`
	Password string `json:"password"`
	Code     string `json:"code"`
}

type sessionView struct {
	Token     string    `json:"token,omitempty"`
	Operator  string    `json:"operator"`
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	Zones     []string  `json:"zones"`
	Created   time.Time `json:"created"`
	SteppedUp time.Time `json:"steppedUp"`
	// StepUpUntil is when approving and releasing need a new code again.
	StepUpUntil time.Time `json:"stepUpUntil"`
	IdleTimeout string    `json:"idleTimeout"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

func (g *Gateway) sessionView(s *operator.Session, token string) sessionView {
	o := g.cfg.Operator(s.Operator)
	v := sessionView{Token: token, Operator: s.Operator, Created: s.Created, SteppedUp: s.SteppedUp,
		StepUpUntil: s.SteppedUp.Add(g.cfg.Sessions.StepUp), IdleTimeout: g.cfg.Sessions.Idle.String(),
		ExpiresAt: s.Created.Add(g.cfg.Sessions.Absolute), Roles: []string{}}
	if o != nil {
		v.Name, v.Zones = o.Name, o.Zones
		for _, r := range o.Roles {
			v.Roles = append(v.Roles, string(r))
		}
	}
	return v
}

// postSession signs an operator in: name, password and a current code.
// Every failure gets the same answer.
func (g *Gateway) postSession(w http.ResponseWriter, r *http.Request) {
	if g.ops == nil {
		writeProblem(w, notFound("this gateway has no operators configured"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	var req signInRequest
	if err := readJSON(r, &req); err != nil {
		writeProblem(w, err.(*Problem))
		return
	}
	token, s, err := g.ops.SignIn(r.Context(), req.Operator, req.Password, req.Code)
	switch {
	case errors.Is(err, operator.ErrSignIn):
		writeProblem(w, unauthorized(operator.ErrSignIn.Error()))
		return
	case err != nil:
		g.log.Error().Err(err).Msg("Sign-in not checked")
		writeProblem(w, unavailable("cannot sign in right now"))
		return
	}
	g.log.Info().Str("operator", s.Operator).Msg("Operator signed in")
	writeJSON(w, http.StatusCreated, g.sessionView(s, token))
}

func (g *Gateway) getSession(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	s := sessionOf(r.Context())
	if s == nil {
		return forbidden("session", "an API key has no session")
	}
	writeJSON(w, http.StatusOK, g.sessionView(s, ""))
	return nil
}

func (g *Gateway) deleteSession(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if sessionOf(r.Context()) == nil {
		return forbidden("session", "an API key has no session")
	}
	if err := g.ops.SignOut(r.Context(), bearer(r)); err != nil && !errors.Is(err, operator.ErrNoSession) {
		return unavailable(err.Error())
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// codeRequest is the body of a step-up: a TOTP code, or a security key's
// assertion (POST /v1/session/step-up/options first).
type codeRequest struct {
	Code     string          `json:"code"`
	Response json.RawMessage `json:"response"`
}

// postStepUp proves a fresh second factor for the actions that need one.
func (g *Gateway) postStepUp(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if sessionOf(r.Context()) == nil {
		return forbidden("session", "step-up is for signed-in operators")
	}
	var req codeRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	step := func() error { return g.ops.StepUp(r.Context(), bearer(r), req.Code) }
	if len(req.Response) > 0 {
		wa, err := g.webAuthn()
		if err != nil {
			return err
		}
		step = func() error { return wa.StepUp(r.Context(), bearer(r), req.Response) }
	}
	switch err := step(); {
	case errors.Is(err, operator.ErrNoSession):
		return unauthorized("session ended: sign in again")
	case errors.Is(err, operator.ErrStepUp):
		// 403, not 401: the session goes on (unless the failures locked
		// the person out, which the next request shows).
		return forbidden("step_up", operator.ErrStepUp.Error())
	case err != nil:
		return unavailable(err.Error())
	}
	s, err := g.ops.Session(r.Context(), bearer(r))
	if err != nil {
		return unauthorized(err.Error())
	}
	writeJSON(w, http.StatusOK, g.sessionView(s, ""))
	return nil
}

type enrolRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
	Code     string `json:"code"`
}

// postEnrol is enrolment's first step (token and password → a TOTP secret)
// or, with a code, its second (the secret proved: enrolled).
func (g *Gateway) postEnrol(w http.ResponseWriter, r *http.Request) {
	if g.ops == nil {
		writeProblem(w, notFound("this gateway has no operators configured"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	var req enrolRequest
	if err := readJSON(r, &req); err != nil {
		writeProblem(w, err.(*Problem))
		return
	}
	if req.Code != "" {
		switch err := g.ops.FinishEnrol(r.Context(), req.Token, req.Code); {
		case errors.Is(err, operator.ErrInvite), errors.Is(err, operator.ErrNotBegun), errors.Is(err, operator.ErrCode):
			writeProblem(w, badRequest("code", err.Error()))
		case err != nil:
			writeProblem(w, unavailable("cannot enrol right now"))
		default:
			writeJSON(w, http.StatusOK, map[string]string{"status": "enrolled", "next": "POST /v1/session with operator, password and code"})
		}
		return
	}
	key, err := g.ops.BeginEnrol(r.Context(), req.Token, req.Password)
	switch {
	case errors.Is(err, operator.ErrInvite):
		writeProblem(w, badRequest("token", err.Error()))
	case errors.Is(err, operator.ErrPasswordTooShort), errors.Is(err, operator.ErrPasswordTooLong):
		writeProblem(w, badRequest("password", err.Error()))
	case err != nil:
		writeProblem(w, unavailable("cannot enrol right now"))
	default:
		writeJSON(w, http.StatusOK, map[string]string{"otpauth": key.URL(), "secret": key.Secret(),
			"next": "add the secret to an authenticator app, then POST /v1/enrol again with token and code"})
	}
}

// admin checks the caller is a signed-in admin with a fresh second factor.
func (g *Gateway) admin(r *http.Request, p *config.Principal, fresh bool) error {
	if !p.Can(config.RoleAdmin) {
		return forbidden("role", p.ID+" is not an admin")
	}
	if fresh && !sessionOf(r.Context()).Fresh(time.Now(), g.cfg.Sessions.StepUp) {
		return forbidden("step_up", "this action needs a fresh second factor: POST /v1/session/step-up with a current code, then repeat")
	}
	return nil
}

type operatorView struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Roles         []string  `json:"roles"`
	Zones         []string  `json:"zones"`
	Enrolled      bool      `json:"enrolled"`
	Disabled      bool      `json:"disabled"`
	Locked        bool      `json:"locked"`
	SessionActive bool      `json:"sessionActive"`
	LastSignIn    time.Time `json:"lastSignIn,omitzero"`
}

func (g *Gateway) listOperators(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if err := g.admin(r, p, false); err != nil {
		return err
	}
	var ids []string
	for _, o := range g.cfg.Operators {
		ids = append(ids, o.ID)
	}
	sts, err := g.ops.List(r.Context(), ids)
	if err != nil {
		return unavailable(err.Error())
	}
	out := []operatorView{}
	for i, st := range sts {
		o := g.cfg.Operators[i]
		v := operatorView{ID: o.ID, Name: o.Name, Zones: o.Zones, Enrolled: st.Enrolled, Disabled: st.Disabled,
			Locked: st.Locked, SessionActive: st.SessionActive, LastSignIn: st.LastSignIn}
		for _, r := range o.Roles {
			v.Roles = append(v.Roles, string(r))
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"operators": out})
	return nil
}

// operatorAction invites, disables or enables an operator.
func (g *Gateway) operatorAction(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
		if err := g.admin(r, p, true); err != nil {
			return err
		}
		id := r.PathValue("id")
		actor := "operator:" + p.ID
		var err error
		var token string
		switch action {
		case "invite":
			token, err = g.ops.Invite(r.Context(), id, actor)
		case "disable":
			err = g.ops.Disable(r.Context(), id, actor)
		case "enable":
			err = g.ops.Enable(r.Context(), id, actor)
		}
		switch {
		case errors.Is(err, operator.ErrUnknown):
			return notFound("no operator " + id + " in the configuration")
		case errors.Is(err, operator.ErrDisabled):
			return conflict("operator " + id + " is disabled: enable them first")
		case err != nil:
			return unavailable(err.Error())
		}
		out := map[string]string{"operator": id, "status": action + "d"}
		if token != "" {
			out["status"], out["token"], out["link"] = "invited", token, g.enrolLink(token)
			out["expires"] = time.Now().Add(g.cfg.Sessions.InviteTTL).UTC().Format(time.RFC3339)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

// enrolLink is where an invited person enrols.
func (g *Gateway) enrolLink(token string) string {
	base := g.cfg.PublicURL
	if base == "" {
		base = "http://" + g.cfg.Listen
	}
	return strings.TrimSuffix(base, "/") + "/v1/enrol#" + token
}

// webAuthn is the WebAuthn relying party of this gateway: its public URL's
// host and origin (a browser runs the ceremonies only in a secure context,
// so without public_url there is none).
func (g *Gateway) webAuthn() (*operator.WebAuthn, error) {
	g.waOnce.Do(func() {
		// The relying party is the console's host when it has a public URL
		// (browsers sign there), else the API's; both origins may sign.
		var rpID string
		var origins []string
		for _, s := range []string{g.cfg.Console.PublicURL, g.cfg.PublicURL} {
			u, err := url.Parse(s)
			if s == "" || err != nil || u.Hostname() == "" {
				continue
			}
			if rpID == "" {
				rpID = u.Hostname()
			}
			origins = append(origins, u.Scheme+"://"+u.Host)
		}
		if rpID == "" {
			g.waErr = notFound("security keys need public_url or console.public_url (the origin browsers sign for)")
			return
		}
		g.wa, g.waErr = g.ops.WebAuthn(rpID, origins...)
	})
	return g.wa, g.waErr
}

// writeCeremony answers a WebAuthn ceremony's options, or its error.
func (g *Gateway) writeCeremony(w http.ResponseWriter, opts any, err error) error {
	switch {
	case errors.Is(err, operator.ErrNoSession):
		return unauthorized("session ended: sign in again")
	case errors.Is(err, operator.ErrNotFresh):
		return forbidden("step_up", "registering a security key needs a fresh second factor: step up first")
	case errors.Is(err, operator.ErrNoKeys):
		return conflict("no security key registered: step up with a TOTP code")
	case errors.Is(err, operator.ErrTooManyKeys):
		return conflict(err.Error())
	case err != nil:
		return unavailable("cannot start the ceremony right now")
	}
	writeJSON(w, http.StatusOK, opts)
	return nil
}

type credentialRequest struct {
	Operator string          `json:"operator"`
	Password string          `json:"password"`
	Response json.RawMessage `json:"response"`
}

// postKeyOptions begins registering a security key for the signed-in person.
func (g *Gateway) postKeyOptions(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	wa, err := g.webAuthn()
	if err != nil {
		return err
	}
	if sessionOf(r.Context()) == nil {
		return forbidden("session", "security keys are for signed-in operators")
	}
	o, err := wa.BeginRegistration(r.Context(), bearer(r))
	return g.writeCeremony(w, o, err)
}

// postKey finishes registering a security key.
func (g *Gateway) postKey(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	wa, err := g.webAuthn()
	if err != nil {
		return err
	}
	if sessionOf(r.Context()) == nil {
		return forbidden("session", "security keys are for signed-in operators")
	}
	var req credentialRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	switch err := wa.FinishRegistration(r.Context(), bearer(r), req.Response); {
	case errors.Is(err, operator.ErrWebAuthn):
		return badRequest("response", err.Error())
	case errors.Is(err, operator.ErrNoSession):
		return unauthorized("session ended: sign in again")
	case err != nil:
		return g.writeCeremony(w, nil, err)
	}
	writeJSON(w, http.StatusCreated, map[string]string{"status": "registered"})
	return nil
}

// postSignInOptions begins a sign-in with a security key (unauthenticated:
// the answer looks alike for every name).
func (g *Gateway) postSignInOptions(w http.ResponseWriter, r *http.Request) {
	wa, err := g.webAuthn()
	if err != nil {
		writeProblem(w, err.(*Problem))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	var req credentialRequest
	if err := readJSON(r, &req); err != nil {
		writeProblem(w, err.(*Problem))
		return
	}
	o, err := wa.BeginSignIn(r.Context(), req.Operator)
	if err != nil {
		writeProblem(w, unavailable("cannot start the sign-in right now"))
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// postSignInKey signs in with name, password and a security key's assertion.
func (g *Gateway) postSignInKey(w http.ResponseWriter, r *http.Request) {
	wa, err := g.webAuthn()
	if err != nil {
		writeProblem(w, err.(*Problem))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	var req credentialRequest
	if err := readJSON(r, &req); err != nil {
		writeProblem(w, err.(*Problem))
		return
	}
	token, s, err := wa.SignIn(r.Context(), req.Operator, req.Password, req.Response)
	switch {
	case errors.Is(err, operator.ErrSignIn):
		writeProblem(w, unauthorized(operator.ErrSignIn.Error()))
		return
	case err != nil:
		writeProblem(w, unavailable("cannot sign in right now"))
		return
	}
	g.log.Info().Str("operator", s.Operator).Str("factor", "webauthn").Msg("Operator signed in")
	writeJSON(w, http.StatusCreated, g.sessionView(s, token))
}

// postStepUpOptions begins a step-up with a security key.
func (g *Gateway) postStepUpOptions(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	wa, err := g.webAuthn()
	if err != nil {
		return err
	}
	if sessionOf(r.Context()) == nil {
		return forbidden("session", "step-up is for signed-in operators")
	}
	o, err := wa.BeginStepUp(r.Context(), bearer(r))
	return g.writeCeremony(w, o, err)
}

// needOps answers 404 on a gateway that keeps no operators (built without
// Redis, in some tests) instead of running h.
func (g *Gateway) needOps(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if g.ops == nil {
			writeProblem(w, notFound("this gateway has no operators configured"))
			return
		}
		h(w, r)
	}
}
