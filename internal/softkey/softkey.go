// Package softkey is a software WebAuthn authenticator for tests: it answers
// the options a relying party sends to the browser with the JSON that
// navigator.credentials.create and navigator.credentials.get would give back,
// so that tests sign in with a security key without a browser.
//
// It holds one credential: an ECDSA P-256 key (COSE ES256), made by Create
// with "none" attestation. Its authenticator data carries the flags UP and
// UV (and AT when registering), the SHA-256 of the relying party id and a
// signature counter that Get increments before each assertion. Its fields
// are open so that tests can misbehave on purpose: a wrong Origin, a Counter
// set back, a Clone that shares the key.
//
// It checks what a browser and an authenticator would check and no more: the
// relying party id of an assertion request must be the one the credential
// was made for, and a non-empty allowCredentials list must name it.
package softkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator flags (WebAuthn §6.1).
const (
	FlagUP = 0x01 // user present
	FlagUV = 0x04 // user verified
	FlagAT = 0x40 // attested credential data included
)

// Authenticator is one software security key with at most one credential.
type Authenticator struct {
	mu sync.Mutex
	// Origin is what the client data says the ceremony ran on, as a browser
	// would fill it in ("https://tocsin.example").
	Origin string
	// RPID is the relying party id the credential is scoped to; Create sets
	// it from the options.
	RPID string
	// ID is the credential id; Create sets it.
	ID []byte
	// UserHandle is the user.id of the options Create answered.
	UserHandle []byte
	// Counter is the signature counter of the last assertion (0 after Create).
	Counter uint32
	// Flags are the flags of assertions (default UP|UV); registration adds AT.
	Flags byte
	// Transports are reported at registration (default ["usb"]).
	Transports []string

	key *ecdsa.PrivateKey
}

// New makes an authenticator with no credential yet, for a client on origin.
func New(origin string) *Authenticator {
	return &Authenticator{Origin: origin, Flags: FlagUP | FlagUV, Transports: []string{"usb"}}
}

// Clone is another authenticator with the same credential and key and the
// same counter, as if the key had been copied: each counts on its own.
func (a *Authenticator) Clone() *Authenticator {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &Authenticator{Origin: a.Origin, RPID: a.RPID, ID: bytes.Clone(a.ID), UserHandle: bytes.Clone(a.UserHandle),
		Counter: a.Counter, Flags: a.Flags, Transports: append([]string(nil), a.Transports...), key: a.key}
}

var b64 = base64.RawURLEncoding

// creationOptions is what Create reads of PublicKeyCredentialCreationOptions.
type creationOptions struct {
	Challenge string `json:"challenge"`
	RP        struct {
		ID string `json:"id"`
	} `json:"rp"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	PubKeyCredParams []struct {
		Type string `json:"type"`
		Alg  int    `json:"alg"`
	} `json:"pubKeyCredParams"`
	ExcludeCredentials []descriptor `json:"excludeCredentials"`
}

// requestOptions is what Get reads of PublicKeyCredentialRequestOptions.
type requestOptions struct {
	Challenge        string       `json:"challenge"`
	RPID             string       `json:"rpId"`
	AllowCredentials []descriptor `json:"allowCredentials"`
}

type descriptor struct {
	ID string `json:"id"`
}

// unwrap decodes options, given either as {"publicKey": {...}} (what the
// relying party sends for navigator.credentials) or as the inner object.
func unwrap(options []byte, v any) error {
	var outer struct {
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &outer); err != nil {
		return fmt.Errorf("softkey: options: %w", err)
	}
	if len(outer.PublicKey) > 0 {
		options = outer.PublicKey
	}
	if err := json.Unmarshal(options, v); err != nil {
		return fmt.Errorf("softkey: options: %w", err)
	}
	return nil
}

// decode reads a base64url value, padded or not (some servers pad).
func decode(s string) ([]byte, error) {
	if b, err := b64.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

// clientData is the JSON the browser makes and the authenticator signs the hash of.
func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, challenge, a.Origin, false})
	return b
}

// Create makes a new credential (replacing any earlier one) for the
// creation options and returns the registration response as JSON.
func (a *Authenticator) Create(options []byte) ([]byte, error) {
	var o creationOptions
	if err := unwrap(options, &o); err != nil {
		return nil, err
	}
	if o.Challenge == "" || o.RP.ID == "" {
		return nil, errors.New("softkey: options without challenge or rp.id")
	}
	es256 := len(o.PubKeyCredParams) == 0
	for _, p := range o.PubKeyCredParams {
		es256 = es256 || (p.Type == "public-key" && p.Alg == -7)
	}
	if !es256 {
		return nil, errors.New("softkey: the relying party does not accept ES256")
	}
	user, err := decode(o.User.ID)
	if err != nil {
		return nil, fmt.Errorf("softkey: user.id: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range o.ExcludeCredentials {
		if id, err := decode(d.ID); err == nil && a.key != nil && a.RPID == o.RP.ID && bytes.Equal(id, a.ID) {
			return nil, errors.New("softkey: credential excluded: already registered")
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 32)
	rand.Read(id)
	a.key, a.ID, a.RPID, a.UserHandle, a.Counter = key, id, o.RP.ID, user, 0

	pub, err := key.PublicKey.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil {
		return nil, err
	}
	cose, err := enc.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: pub[1:33], -3: pub[33:65]})
	if err != nil {
		return nil, err
	}
	var att bytes.Buffer
	att.Write(make([]byte, 16)) // AAGUID: zero, as "none" attestation allows
	binary.Write(&att, binary.BigEndian, uint16(len(id)))
	att.Write(id)
	att.Write(cose)
	authData := a.authData(a.Flags|FlagAT, 0, att.Bytes())
	object, err := enc.Marshal(struct {
		Fmt      string         `cbor:"fmt"`
		AttStmt  map[string]any `cbor:"attStmt"`
		AuthData []byte         `cbor:"authData"`
	}{"none", map[string]any{}, authData})
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(id), "rawId": b64.EncodeToString(id), "type": "public-key",
		"authenticatorAttachment": "cross-platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(a.clientData("webauthn.create", o.Challenge)),
			"attestationObject": b64.EncodeToString(object),
			"transports":        a.Transports,
		},
	})
}

var enc, _ = cbor.CoreDetEncOptions().EncMode()

// authData is rpIdHash ‖ flags ‖ signCount ‖ rest.
func (a *Authenticator) authData(flags byte, count uint32, rest []byte) []byte {
	h := sha256.Sum256([]byte(a.RPID))
	b := append(h[:], flags)
	b = binary.BigEndian.AppendUint32(b, count)
	return append(b, rest...)
}

// Get answers the request options with an assertion by the credential, the
// counter incremented first, and returns it as JSON.
func (a *Authenticator) Get(options []byte) ([]byte, error) {
	var o requestOptions
	if err := unwrap(options, &o); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.key == nil {
		return nil, errors.New("softkey: no credential: Create first")
	}
	if o.Challenge == "" {
		return nil, errors.New("softkey: options without challenge")
	}
	if o.RPID != "" && o.RPID != a.RPID {
		return nil, fmt.Errorf("softkey: no credential for relying party %q", o.RPID)
	}
	if len(o.AllowCredentials) > 0 {
		allowed := false
		for _, d := range o.AllowCredentials {
			id, err := decode(d.ID)
			allowed = allowed || (err == nil && bytes.Equal(id, a.ID))
		}
		if !allowed {
			return nil, errors.New("softkey: no allowed credential here")
		}
	}
	a.Counter++
	authData := a.authData(a.Flags, a.Counter, nil)
	cd := a.clientData("webauthn.get", o.Challenge)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(bytes.Clone(authData), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.ID), "rawId": b64.EncodeToString(a.ID), "type": "public-key",
		"authenticatorAttachment": "cross-platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(authData),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(a.UserHandle),
		},
	})
}
