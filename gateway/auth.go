package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/tocsin-alert/tocsin/config"
)

// authenticate finds the principal whose API key the request bears. The key's
// SHA-256 is compared with every principal's in constant time, so neither the
// match nor its position leaks through timing.
func (g *Gateway) authenticate(r *http.Request) (*config.Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(h, " ")
	if h == "" {
		return nil, unauthorized("send Authorization: Bearer <API key>")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
		return nil, unauthorized("the Authorization header must be 'Bearer <API key>'")
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	var found *config.Principal
	for i := range g.cfg.Principals {
		p := &g.cfg.Principals[i]
		if subtle.ConstantTimeCompare(sum[:], p.KeyHash()) == 1 {
			found = p
		}
	}
	if found == nil {
		return nil, unauthorized("unknown API key")
	}
	return found, nil
}
