package cap

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SignatureNamespace is XML-DSig's namespace; an enveloped <Signature> may
// follow the alert's elements.
const SignatureNamespace = "http://www.w3.org/2000/09/xmldsig#"

// Problem is one fault in a CAP document: the element (a path such as
// "alert/info[1]/area[0]/polygon[0]") and why.
type Problem struct {
	Element string
	Msg     string
}

func (p Problem) String() string { return p.Element + ": " + p.Msg }

// Problems is every fault Parse found, in document order.
type Problems []Problem

func (ps Problems) Error() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return "invalid CAP 1.2: " + strings.Join(parts, "; ")
}

// maxProblems bounds the list: a hostile document must not grow it without end.
const maxProblems = 50

// Limits on a document's shape besides MaxSize: past either, Parse stops
// reading at once and reports the element at fault. Without them a 700 KB
// document of nested unknown elements once took the walk past 6 GB.
const (
	// MaxDepth bounds how deeply elements nest, <alert> being depth 1. CAP's
	// own elements nest at most 5 deep (alert/info/area/geocode/value); the
	// enveloped signatures in testdata/ reach 6
	// (alert/Signature/SignedInfo/Reference/Transforms/Transform), the
	// deepest of every real document there.
	MaxDepth = 32
	// MaxElements bounds a document's elements, <alert> included. The most
	// in a real document in testdata/ is 3,018 (DWD, 8 languages, 154 KB);
	// the densest real one has an element per 35 bytes, about 30,000 at
	// MaxSize. 50,000 is 16 times the first and well above the second: only
	// a document denser than any real one (under 21 bytes an element) can
	// reach it within MaxSize.
	MaxElements = 50_000
)

// maxPath bounds the element path in a Problem (about; a cut path ends
// "…/(depth n)").
const maxPath = 256

// The element schema Parse checks against: each parent's children, whether a
// child may appear more than once, and which are required.
type child struct {
	many, required bool
}

var schema = map[string]map[string]child{
	"alert": {
		"identifier": {required: true}, "sender": {required: true}, "sent": {required: true},
		"status": {required: true}, "msgType": {required: true}, "source": {}, "scope": {required: true},
		"restriction": {}, "addresses": {}, "code": {many: true}, "note": {}, "references": {}, "incidents": {},
		"info": {many: true},
	},
	"info": {
		"language": {}, "category": {many: true, required: true}, "event": {required: true}, "responseType": {many: true},
		"urgency": {required: true}, "severity": {required: true}, "certainty": {required: true}, "audience": {},
		"eventCode": {many: true}, "effective": {}, "onset": {}, "expires": {}, "senderName": {}, "headline": {},
		"description": {}, "instruction": {}, "web": {}, "contact": {}, "parameter": {many: true},
		"resource": {many: true}, "area": {many: true},
	},
	"resource":  {"resourceDesc": {required: true}, "mimeType": {required: true}, "size": {}, "uri": {}, "derefUri": {}, "digest": {}},
	"area":      {"areaDesc": {required: true}, "polygon": {many: true}, "circle": {many: true}, "geocode": {many: true}, "altitude": {}, "ceiling": {}},
	"eventCode": {"valueName": {required: true}, "value": {required: true}},
	// A parameter's value may be empty (NSW RFS sends some); its name may not.
	"parameter": {"valueName": {required: true}, "value": {}},
	"geocode":   {"valueName": {required: true}, "value": {required: true}},
}

var enums = map[string][]string{
	"status":       {"Actual", "Exercise", "System", "Test", "Draft"},
	"msgType":      {"Alert", "Update", "Cancel", "Ack", "Error"},
	"scope":        {"Public", "Restricted", "Private"},
	"category":     {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"},
	"responseType": {"Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"},
	"urgency":      {"Immediate", "Expected", "Future", "Past", "Unknown"},
	"severity":     {"Extreme", "Severe", "Moderate", "Minor", "Unknown"},
	"certainty":    {"Observed", "Likely", "Possible", "Unlikely", "Unknown"},
}

// frame is one open element during the walk. It holds its own step of the
// path only: a whole path is built from the stack when a problem needs one,
// so a walk's cost does not grow with the square of its depth.
type frame struct {
	name   string
	seg    string         // its step in a path: the name, with [i] for an element CAP lets repeat
	counts map[string]int // children by name; only for a checked element with a schema
	text   strings.Builder
	skip   bool // inside a Signature or an unknown element: not checked
}

type walker struct {
	ns       string // the root's namespace, which CAP elements must share
	ps       Problems
	stack    []*frame
	elements int // elements opened so far, the root included
	msgType  string
	refs     bool
}

func (w *walker) add(path, format string, args ...any) {
	if len(w.ps) < maxProblems {
		w.ps = append(w.ps, Problem{Element: path, Msg: fmt.Sprintf(format, args...)})
	}
}

// problem records a fault in the element seg, a child of the open elements.
func (w *walker) problem(seg, format string, args ...any) {
	if len(w.ps) < maxProblems {
		w.add(path(w.stack, seg), format, args...)
	}
}

// path is the path of an element seg inside the elements outer, such as
// "alert/info[1]/area[0]/polygon[0]", cut after about maxPath bytes to end
// "…/(depth n)".
func path(outer []*frame, seg string) string {
	var b strings.Builder
	depth := len(outer) + 1
	for i := range depth {
		s := seg
		if i < len(outer) {
			s = outer[i].seg
		}
		if i > 0 {
			b.WriteByte('/')
		}
		if room := maxPath - b.Len(); len(s) > room {
			room = max(room, 0)
			for room > 0 && !utf8.RuneStart(s[room]) {
				room--
			}
			b.WriteString(s[:room])
			fmt.Fprintf(&b, "…/(depth %d)", depth)
			break
		}
		b.WriteString(s)
	}
	return b.String()
}

// limitError stops the walk at the first element past MaxDepth or
// MaxElements.
type limitError struct{ p Problem }

func (e *limitError) Error() string { return e.p.String() }

// Parse reads and validates one CAP 1.2 document strictly: at most MaxSize
// bytes; UTF-8 (with or without a BOM) or ISO-8859-1 as the document
// declares; no DOCTYPE (so no entities, external or not); exactly one root,
// <alert> in the CAP 1.2 namespace; every element CAP 1.2 defines and no
// other, single elements at most once, required ones present and not empty,
// enumerations, date-times with an explicit offset, identifiers without
// spaces, commas, '<' or '&', closed polygons of at least four points,
// circles, and references as sender,identifier,sent triples. An enveloped
// XML-DSig <Signature> is allowed and left to signature checking. Every fault
// is reported, each naming its element.
func Parse(b []byte) (*Alert, error) {
	if len(b) > MaxSize {
		return nil, Problems{{Element: "(document)", Msg: fmt.Sprintf("larger than %d bytes", MaxSize)}}
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	w := &walker{}
	if err := w.walk(b); err != nil {
		if le := (*limitError)(nil); errors.As(err, &le) {
			return nil, append(w.ps, le.p)
		}
		return nil, append(w.ps, Problem{Element: w.where(), Msg: err.Error()})
	}
	if len(w.ps) > 0 {
		return nil, w.ps
	}
	var a Alert
	d := newDecoder(b)
	if err := d.Decode(&a); err != nil {
		return nil, Problems{{Element: "alert", Msg: err.Error()}}
	}
	return &a, nil
}

func newDecoder(b []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	d.CharsetReader = charsetReader
	return d
}

// charsetReader decodes the encodings CAP documents are found in besides UTF-8.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1":
		return latin1{bufio.NewReader(in)}, nil
	}
	return nil, fmt.Errorf("encoding %q is not supported (UTF-8 or ISO-8859-1)", label)
}

// latin1 turns ISO-8859-1 bytes into UTF-8.
type latin1 struct{ r *bufio.Reader }

func (l latin1) Read(p []byte) (int, error) {
	n := 0
	for n+utf8.UTFMax <= len(p) {
		c, err := l.r.ReadByte()
		if err != nil {
			return n, err
		}
		n += utf8.EncodeRune(p[n:], rune(c))
	}
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}

func (w *walker) where() string {
	if len(w.stack) == 0 {
		return "(document)"
	}
	return path(w.stack[:len(w.stack)-1], w.stack[len(w.stack)-1].seg)
}

func (w *walker) walk(b []byte) error {
	d := newDecoder(b)
	roots := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return errors.New("a DOCTYPE or other declaration is not allowed in a CAP document")
		case xml.StartElement:
			if len(w.stack) == 0 {
				roots++
				if roots > 1 {
					return fmt.Errorf("a second root element <%s> after </alert>", t.Name.Local)
				}
				if t.Name.Local != "alert" {
					return fmt.Errorf("root element is <%s>, want <alert>", t.Name.Local)
				}
				if t.Name.Space != Namespace {
					w.add("alert", "namespace %q, want %s", t.Name.Space, Namespace)
				}
				w.ns = t.Name.Space
				w.elements = 1
				w.stack = append(w.stack, &frame{name: "alert", seg: "alert", counts: map[string]int{}})
				continue
			}
			if err := w.open(t); err != nil {
				return err
			}
		case xml.CharData:
			if f := w.stack; len(f) > 0 && !f[len(f)-1].skip {
				f[len(f)-1].text.Write(t)
			}
		case xml.EndElement:
			f := w.stack[len(w.stack)-1]
			w.stack = w.stack[:len(w.stack)-1]
			if !f.skip {
				w.close(f)
			}
		}
	}
	if roots == 0 {
		return errors.New("no <alert> element")
	}
	return nil
}

// open pushes a child of the innermost open element, or stops the walk if
// that child is past MaxDepth or MaxElements.
func (w *walker) open(t xml.StartElement) error {
	parent := w.stack[len(w.stack)-1]
	name := t.Name.Local
	f := &frame{name: name, seg: name, skip: parent.skip}
	var problem string
	if kids, ok := schema[parent.name]; ok && !parent.skip {
		idx := parent.counts[name]
		parent.counts[name]++
		c, known := kids[name]
		switch {
		case parent.name == "alert" && name == "Signature" && t.Name.Space == SignatureNamespace:
			f.skip = true
		case !known || t.Name.Space != w.ns:
			problem = "unknown element in <" + parent.name + ">"
			f.skip = true
		case c.many:
			f.seg = name + "[" + strconv.Itoa(idx) + "]"
		case idx > 0:
			problem = "appears more than once; CAP 1.2 allows one"
		}
	}
	w.elements++
	switch {
	case len(w.stack) >= MaxDepth:
		return &limitError{Problem{Element: path(w.stack, f.seg), Msg: fmt.Sprintf("nested deeper than %d elements", MaxDepth)}}
	case w.elements > MaxElements:
		return &limitError{Problem{Element: path(w.stack, f.seg), Msg: fmt.Sprintf("more than %d elements", MaxElements)}}
	}
	if problem != "" {
		w.problem(f.seg, "%s", problem)
	}
	if _, ok := schema[name]; ok && !f.skip {
		f.counts = map[string]int{}
	}
	w.stack = append(w.stack, f)
	return nil
}

func (w *walker) close(f *frame) {
	text := strings.TrimSpace(f.text.String())
	if kids, ok := schema[f.name]; ok {
		for name, c := range kids {
			if c.required && f.counts[name] == 0 {
				w.problem(f.seg, "<%s> is required", name)
			}
		}
		if f.name == "alert" {
			if w.msgType != "" && w.msgType != "Alert" && !w.refs {
				w.add("alert/references", "required for msgType %s: name the message(s) it refers to", w.msgType)
			}
		}
		return
	}
	parent := ""
	if len(w.stack) > 0 {
		parent = w.stack[len(w.stack)-1].name
	}
	if vals, ok := enums[f.name]; ok {
		if !slices.Contains(vals, text) {
			w.problem(f.seg, "%q is not one of %s", text, strings.Join(vals, ", "))
		}
		if f.name == "msgType" {
			w.msgType = text
		}
		return
	}
	required := false
	if kids, ok := schema[parent]; ok {
		required = kids[f.name].required
	}
	if required && text == "" {
		w.problem(f.seg, "must not be empty")
		return
	}
	switch f.name {
	case "identifier", "sender":
		if strings.ContainsAny(text, " \t\n,<&") {
			w.problem(f.seg, "must not contain spaces, commas, '<' or '&'")
		}
	case "sent", "effective", "onset", "expires":
		if _, err := ParseTime(text); err != nil {
			w.problem(f.seg, "%v", err)
		}
	case "references":
		if text == "" {
			return
		}
		w.refs = true
		refs, err := ParseReferences(text)
		if err != nil {
			w.problem(f.seg, "%v", err)
		}
		for _, r := range refs {
			if _, err := ParseTime(r.Sent); err != nil {
				w.problem(f.seg, "reference %s: sent %v", r.Identifier, err)
			}
		}
	case "polygon":
		if err := checkPolygon(text); err != nil {
			w.problem(f.seg, "%v", err)
		}
	case "circle":
		if _, _, err := ParseCircle(text); err != nil {
			w.problem(f.seg, "%v", err)
		}
	case "size":
		if n, err := strconv.ParseInt(text, 10, 64); text != "" && (err != nil || n < 0) {
			w.problem(f.seg, "must be a whole number of bytes")
		}
	}
}

// Point is a WGS 84 position; CAP writes it "lat,lon".
type Point struct{ Lat, Lon float64 }

func parsePoint(s string) (Point, error) {
	la, lo, ok := strings.Cut(s, ",")
	lat, err1 := strconv.ParseFloat(la, 64)
	lon, err2 := strconv.ParseFloat(lo, 64)
	if !ok || err1 != nil || err2 != nil {
		return Point{}, fmt.Errorf("point %q: want lat,lon", s)
	}
	if lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return Point{}, fmt.Errorf("point %q: lat must be within ±90 and lon within ±180 (CAP writes lat,lon)", s)
	}
	return Point{lat, lon}, nil
}

// ParsePolygon reads a CAP polygon: space-separated lat,lon pairs.
func ParsePolygon(s string) ([]Point, error) {
	var pts []Point
	for _, f := range strings.Fields(s) {
		p, err := parsePoint(f)
		if err != nil {
			return nil, err
		}
		pts = append(pts, p)
	}
	return pts, nil
}

func checkPolygon(s string) error {
	pts, err := ParsePolygon(s)
	if err != nil {
		return err
	}
	if len(pts) < 4 {
		return fmt.Errorf("%d points; a polygon needs at least 4, the last equal to the first", len(pts))
	}
	if pts[0] != pts[len(pts)-1] {
		return errors.New("not closed: the last point must equal the first")
	}
	return nil
}

// ParseCircle reads a CAP circle: "lat,lon radius" with the radius in km.
func ParseCircle(s string) (Point, float64, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return Point{}, 0, fmt.Errorf("circle %q: want \"lat,lon radius-km\"", s)
	}
	p, err := parsePoint(f[0])
	if err != nil {
		return Point{}, 0, err
	}
	r, err := strconv.ParseFloat(f[1], 64)
	if err != nil || r < 0 {
		return Point{}, 0, fmt.Errorf("circle %q: radius must be a number of km ≥ 0", s)
	}
	return p, r, nil
}
