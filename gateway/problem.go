package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Problem is an RFC 9457 problem detail. Handlers return it as an error; the
// Field and Scope members say exactly what was wrong.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field is the request field at fault, e.g. "zones[1]" or "severity".
	Field string `json:"field,omitempty"`
	// Scope is the principal's scope the request fell outside of (403).
	Scope string `json:"scope,omitempty"`
	// RetryAfter, in seconds, is sent as a Retry-After header (429, 503).
	RetryAfter int `json:"-"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// The problem catalogue: stable type URIs clients can switch on.
func badRequest(field, detail string) *Problem {
	return &Problem{Type: "urn:tocsin:problem:invalid-field", Title: "Invalid request", Status: http.StatusBadRequest, Field: field, Detail: detail}
}

func unauthorized(detail string) *Problem {
	return &Problem{Type: "urn:tocsin:problem:unauthorized", Title: "Missing or bad credentials", Status: http.StatusUnauthorized, Detail: detail}
}

func forbidden(scope, detail string) *Problem {
	return &Problem{Type: "urn:tocsin:problem:out-of-scope", Title: "Outside the principal's scope", Status: http.StatusForbidden, Scope: scope, Detail: detail}
}

func notFound(detail string) *Problem {
	return &Problem{Type: "urn:tocsin:problem:not-found", Title: "Not found", Status: http.StatusNotFound, Detail: detail}
}

func conflict(detail string) *Problem {
	return &Problem{Type: "urn:tocsin:problem:conflict", Title: "Conflict", Status: http.StatusConflict, Detail: detail}
}

func tooLarge(limit int64) *Problem {
	return &Problem{Type: "urn:tocsin:problem:too-large", Title: "Request body too large", Status: http.StatusRequestEntityTooLarge,
		Detail: "the body must be at most " + strconv.FormatInt(limit, 10) + " bytes"}
}

func unsupportedMedia(detail string) *Problem {
	return &Problem{Type: "urn:tocsin:problem:unsupported-media-type", Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType, Detail: detail}
}

func unavailable(detail string) *Problem {
	return &Problem{Type: "urn:tocsin:problem:unavailable", Title: "Cannot store the alert durably", Status: http.StatusServiceUnavailable, Detail: detail, RetryAfter: 1}
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tocsin"`)
	}
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
