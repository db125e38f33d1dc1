package dispatch

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// MinRSABits is the smallest RSA signing key a Signer takes.
const MinRSABits = 2048

// ErrCertificateExpired is SignXML's error once the signing certificate has
// expired: centres would refuse the signature, so nothing is signed with it.
var ErrCertificateExpired = errors.New("the signing certificate has expired")

// Signer XML-signs the CAP documents Tocsin sends dispatch centres with the
// gateway's own key: an enveloped XML-DSig signature (exclusive c14n,
// RSA-SHA256, the whole <alert> referenced by URI "") appended to the
// <alert>, carrying the signing certificate in its KeyInfo — the form
// cap.VerifySignature checks against a pinned certificate, as Tocsin itself
// checks the CAP it receives.
type Signer struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

// NewSigner is a Signer for key and its certificate. The key must be RSA of
// at least MinRSABits and must match the certificate's public key.
func NewSigner(key *rsa.PrivateKey, cert *x509.Certificate) (*Signer, error) {
	switch {
	case key == nil:
		return nil, errors.New("no RSA signing key")
	case cert == nil:
		return nil, errors.New("no signing certificate")
	case key.N.BitLen() < MinRSABits:
		return nil, fmt.Errorf("RSA key of %d bits; at least %d", key.N.BitLen(), MinRSABits)
	case !key.PublicKey.Equal(cert.PublicKey):
		return nil, errors.New("the key does not match the certificate")
	}
	return &Signer{key: key, cert: cert}, nil
}

// Certificate is the certificate centres pin to verify what Tocsin sends.
func (s *Signer) Certificate() *x509.Certificate { return s.cert }

// SignXML returns doc (one XML document, its root the CAP <alert>) with an
// enveloped signature appended to the root. The result is what is sent: any
// byte changed after this breaks the signature.
func (s *Signer) SignXML(doc []byte) ([]byte, error) {
	if now := time.Now(); now.After(s.cert.NotAfter) {
		// Every centre would refuse it; say why here rather than there.
		return nil, fmt.Errorf("%w (not after %s)", ErrCertificateExpired, s.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	d := etree.NewDocument()
	if err := d.ReadFromBytes(doc); err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	root := d.Root()
	if root == nil {
		return nil, errors.New("no root element")
	}
	ctx, err := dsig.NewSigningContext(s.key, [][]byte{s.cert.Raw})
	if err != nil {
		return nil, err
	}
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		return nil, err
	}
	signed, err := ctx.SignEnveloped(root)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	d.SetRoot(signed)
	return d.WriteToBytes()
}
