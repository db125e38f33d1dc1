package cap

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// ErrUnsigned is returned by VerifySignature for a document without an
// enveloped signature.
var ErrUnsigned = errors.New("the document carries no enveloped XML signature")

// VerifySignature checks the enveloped XML-DSig signature over a CAP
// document (exclusive c14n, RSA-SHA256 and the algorithms goxmldsig knows)
// against pinned certificates: the signing certificate must be one of them
// and valid at the time given. It returns the verified document — the signed
// <alert> without its signature — and only those bytes may be used. Parse the
// raw document first: Parse refuses DOCTYPEs and other dangers this does not.
func VerifySignature(doc []byte, pinned []*x509.Certificate, at time.Time) ([]byte, error) {
	if len(pinned) == 0 {
		return nil, errors.New("no pinned certificates to verify against")
	}
	d := etree.NewDocument()
	d.ReadSettings.CharsetReader = charsetReader
	if err := d.ReadFromBytes(doc); err != nil {
		return nil, fmt.Errorf("signature: read document: %w", err)
	}
	root := d.Root()
	if root == nil {
		return nil, errors.New("signature: no root element")
	}
	ctx := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: pinned})
	ctx.Clock = dsig.NewFakeClockAt(at)
	verified, err := ctx.Validate(root)
	if errors.Is(err, dsig.ErrMissingSignature) {
		return nil, ErrUnsigned
	}
	if err != nil {
		return nil, fmt.Errorf("signature does not verify: %w", err)
	}
	out := etree.NewDocument()
	out.SetRoot(verified)
	b, err := out.WriteToBytes()
	if err != nil {
		return nil, fmt.Errorf("signature: write verified document: %w", err)
	}
	return b, nil
}
