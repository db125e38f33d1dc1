package gateway

// Routes are the API's route patterns with how each is authorised (for the
// structural authorisation test).
func (g *Gateway) Routes() map[string]string {
	m := map[string]string{}
	for _, e := range g.endpoints() {
		m[e.pattern] = e.auth
	}
	return m
}

// AuthPrincipal is the authorisation of routes that need an API key or a session.
const AuthPrincipal = authPrincipal
