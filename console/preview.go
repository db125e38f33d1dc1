package console

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"strings"

	"github.com/tocsin-alert/tocsin/adapters/sms"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/config"
)

// preview is what one channel would say in one language: the alert, or a
// retraction notice.
type preview struct {
	Kind, Lang, Reason, Text string
	// Segments and Encoding for SMS: what the provider bills and whether
	// one character forces UCS-2.
	Segments int
	Encoding string
}

// previews are a draft's texts per channel and language, as the package
// the approver approves carries them ("sms/de", "sms/de/false_alarm").
func previews(d *draftJSON) []preview {
	var out []preview
	for _, k := range d.TextKeys() {
		parts := strings.SplitN(k, "/", 3)
		p := preview{Kind: parts[0], Text: d.Package.Texts[k]}
		if len(parts) > 1 {
			p.Lang = parts[1]
		}
		if len(parts) > 2 {
			p.Reason = parts[2]
		}
		if p.Kind == "sms" {
			p.Segments, p.Encoding = sms.Segments(p.Text)
		}
		out = append(out, p)
	}
	return out
}

// zoneMap draws the configured zones' polygons as an SVG, the selected
// ones highlighted, each named: a map without tiles or any network.
func zoneMap(zones []config.Zone, sel *templateJSON) template.HTML {
	type shape struct {
		id, name string
		pts      []cap.Point
	}
	var shapes []shape
	minLat, minLon, maxLat, maxLon := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, z := range zones {
		if z.Polygon == "" {
			continue
		}
		pts, err := cap.ParsePolygon(z.Polygon)
		if err != nil || len(pts) < 3 {
			continue
		}
		name := z.Name
		if name == "" {
			name = z.ID
		}
		shapes = append(shapes, shape{z.ID, name, pts})
		for _, p := range pts {
			minLat, maxLat = math.Min(minLat, p.Lat), math.Max(maxLat, p.Lat)
			minLon, maxLon = math.Min(minLon, p.Lon), math.Max(maxLon, p.Lon)
		}
	}
	if len(shapes) == 0 {
		return ""
	}
	// Equirectangular, longitude shrunk by the cosine of the middle latitude.
	k := math.Cos((minLat + maxLat) / 2 * math.Pi / 180)
	w, h := (maxLon-minLon)*k, maxLat-minLat
	scale := 600 / math.Max(math.Max(w, h), 1e-9)
	xy := func(p cap.Point) (float64, float64) {
		return 10 + (p.Lon-minLon)*k*scale, 10 + (maxLat-p.Lat)*scale
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="zonemap" role="img" aria-label="zones" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg">`, w*scale+20, h*scale+20)
	for _, s := range shapes {
		class := "zone"
		if sel != nil && slices.Contains(sel.Zones, s.id) {
			class += " selected"
		}
		var pts []string
		var cx, cy float64
		for _, p := range s.pts {
			x, y := xy(p)
			cx, cy = cx+x, cy+y
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		n := float64(len(s.pts))
		fmt.Fprintf(&b, `<g class="%s"><title>%s</title><polygon points="%s"/><text x="%.1f" y="%.1f">%s</text></g>`,
			class, template.HTMLEscapeString(s.name), strings.Join(pts, " "), cx/n, cy/n, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every string in it is escaped above
}
