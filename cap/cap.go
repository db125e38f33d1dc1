// Package cap is the OASIS Common Alerting Protocol 1.2 message model, as
// Tocsin writes it to dispatch centres and reads what they send back,
// hand-written on encoding/xml. Times are written with an explicit offset
// ("-00:00" for UTC, never "Z"), as CAP 1.2 requires.
package cap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Namespace is CAP 1.2's XML namespace.
const Namespace = "urn:oasis:names:tc:emergency:cap:1.2"

// ContentType is the media type of a CAP document.
const ContentType = "application/cap+xml"

// Alert is a CAP <alert>.
type Alert struct {
	XMLName     xml.Name `xml:"urn:oasis:names:tc:emergency:cap:1.2 alert"`
	Identifier  string   `xml:"identifier"`
	Sender      string   `xml:"sender"`
	Sent        Time     `xml:"sent"`
	Status      string   `xml:"status"`
	MsgType     string   `xml:"msgType"`
	Source      string   `xml:"source,omitempty"`
	Scope       string   `xml:"scope"`
	Restriction string   `xml:"restriction,omitempty"`
	Addresses   string   `xml:"addresses,omitempty"`
	Codes       []string `xml:"code"`
	Note        string   `xml:"note,omitempty"`
	References  string   `xml:"references,omitempty"`
	Incidents   string   `xml:"incidents,omitempty"`
	Infos       []Info   `xml:"info"`
}

// Info is a CAP <info> block: the alert in one language.
type Info struct {
	Language      string     `xml:"language,omitempty"`
	Categories    []string   `xml:"category"`
	Event         string     `xml:"event"`
	ResponseTypes []string   `xml:"responseType"`
	Urgency       string     `xml:"urgency"`
	Severity      string     `xml:"severity"`
	Certainty     string     `xml:"certainty"`
	Audience      string     `xml:"audience,omitempty"`
	EventCodes    []Value    `xml:"eventCode"`
	Effective     *Time      `xml:"effective,omitempty"`
	Onset         *Time      `xml:"onset,omitempty"`
	Expires       *Time      `xml:"expires,omitempty"`
	SenderName    string     `xml:"senderName,omitempty"`
	Headline      string     `xml:"headline,omitempty"`
	Description   string     `xml:"description,omitempty"`
	Instruction   string     `xml:"instruction,omitempty"`
	Web           string     `xml:"web,omitempty"`
	Contact       string     `xml:"contact,omitempty"`
	Parameters    []Value    `xml:"parameter"`
	Resources     []Resource `xml:"resource"`
	Areas         []Area     `xml:"area"`
}

// Value is a CAP valueName/value pair (eventCode, parameter, geocode).
type Value struct {
	ValueName string `xml:"valueName"`
	Value     string `xml:"value"`
}

// Resource is a CAP <resource>.
type Resource struct {
	ResourceDesc string `xml:"resourceDesc"`
	MimeType     string `xml:"mimeType"`
	Size         int64  `xml:"size,omitempty"`
	URI          string `xml:"uri,omitempty"`
	DerefURI     string `xml:"derefUri,omitempty"`
	Digest       string `xml:"digest,omitempty"`
}

// Area is a CAP <area>.
type Area struct {
	AreaDesc string   `xml:"areaDesc"`
	Polygons []string `xml:"polygon"`
	Circles  []string `xml:"circle"`
	Geocodes []Value  `xml:"geocode"`
	Altitude string   `xml:"altitude,omitempty"`
	Ceiling  string   `xml:"ceiling,omitempty"`
}

// Time is a CAP date-time: second precision with an explicit offset.
type Time struct{ time.Time }

// TimeLayout is CAP 1.2's date-time form.
const TimeLayout = "2006-01-02T15:04:05-07:00"

// FormatTime writes t as CAP does: "-00:00" for UTC, never "Z".
func FormatTime(t time.Time) string {
	s := t.Truncate(time.Second).Format(TimeLayout)
	if _, off := t.Zone(); off == 0 {
		s = s[:len(s)-6] + "-00:00"
	}
	return s
}

// ParseTime reads a CAP date-time; it refuses "Z" and missing offsets.
func ParseTime(s string) (time.Time, error) {
	if strings.HasSuffix(s, "Z") || strings.HasSuffix(s, "z") {
		return time.Time{}, fmt.Errorf("%q: CAP 1.2 writes UTC as -00:00, not Z", s)
	}
	t, err := time.Parse(TimeLayout, s)
	if err != nil {
		t, err = time.Parse("2006-01-02T15:04:05.999999999-07:00", s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a date-time such as 2026-11-22T10:02:00+01:00", s)
	}
	return t, nil
}

// MarshalText writes the CAP form.
func (t Time) MarshalText() ([]byte, error) { return []byte(FormatTime(t.Time)), nil }

// UnmarshalText reads the CAP form.
func (t *Time) UnmarshalText(b []byte) error {
	v, err := ParseTime(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// Reference is one sender,identifier,sent triple of <references>.
type Reference struct {
	Sender, Identifier, Sent string
}

// Ref is the reference to a.
func (a *Alert) Ref() Reference {
	return Reference{Sender: a.Sender, Identifier: a.Identifier, Sent: FormatTime(a.Sent.Time)}
}

func (r Reference) String() string { return r.Sender + "," + r.Identifier + "," + r.Sent }

// JoinReferences writes <references>: triples separated by spaces.
func JoinReferences(rs ...Reference) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, " ")
}

// ParseReferences reads <references>.
func ParseReferences(s string) ([]Reference, error) {
	var out []Reference
	for _, f := range strings.Fields(s) {
		p := strings.Split(f, ",")
		if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
			return nil, fmt.Errorf("reference %q: want sender,identifier,sent", f)
		}
		out = append(out, Reference{Sender: p[0], Identifier: p[1], Sent: p[2]})
	}
	return out, nil
}

// Encode writes a as a CAP document with an XML declaration.
func Encode(a *Alert) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	e := xml.NewEncoder(&b)
	e.Indent("", "  ")
	if err := e.Encode(a); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// MaxSize caps a CAP document's size (1 MiB).
const MaxSize = 1 << 20

// Decode reads one CAP document. It refuses a DOCTYPE, another namespace,
// and documents above MaxSize.
func Decode(r io.Reader) (*Alert, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("document larger than %d bytes", MaxSize)
	}
	if bytes.Contains(b, []byte("<!DOCTYPE")) {
		return nil, errors.New("a DOCTYPE is not allowed")
	}
	var a Alert
	d := xml.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&a); err != nil {
		return nil, fmt.Errorf("not a CAP 1.2 alert: %w", err)
	}
	if a.Identifier == "" || a.Sender == "" || a.MsgType == "" {
		return nil, errors.New("identifier, sender and msgType are required")
	}
	return &a, nil
}
