package cap

import "math"

// PolygonsIntersect reports whether two polygons (closed rings of lat,lon
// points) overlap: a vertex of one lies inside the other, or two edges cross.
func PolygonsIntersect(a, b []Point) bool {
	if len(a) < 3 || len(b) < 3 {
		return false
	}
	if Contains(a, b[0]) || Contains(b, a[0]) {
		return true
	}
	for i := 0; i+1 < len(a); i++ {
		for j := 0; j+1 < len(b); j++ {
			if segmentsCross(a[i], a[i+1], b[j], b[j+1]) {
				return true
			}
		}
	}
	return false
}

// Contains reports whether p lies inside the polygon (even-odd rule, lon as x
// and lat as y; fine for the extent of an alert area).
func Contains(poly []Point, p Point) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a.Lat > p.Lat) != (b.Lat > p.Lat) &&
			p.Lon < (b.Lon-a.Lon)*(p.Lat-a.Lat)/(b.Lat-a.Lat)+a.Lon {
			in = !in
		}
	}
	return in
}

func cross(o, a, b Point) float64 {
	return (a.Lon-o.Lon)*(b.Lat-o.Lat) - (a.Lat-o.Lat)*(b.Lon-o.Lon)
}

func segmentsCross(p1, p2, q1, q2 Point) bool {
	d1, d2 := cross(q1, q2, p1), cross(q1, q2, p2)
	d3, d4 := cross(p1, p2, q1), cross(p1, p2, q2)
	return (d1 > 0) != (d2 > 0) && (d3 > 0) != (d4 > 0)
}

// CircleIntersectsPolygon reports whether a circle (centre, radius in km)
// overlaps the polygon: its centre is inside, or an edge passes within the
// radius. Distances use an equirectangular projection around the centre,
// accurate to well under 1% at alert-area scales.
func CircleIntersectsPolygon(c Point, km float64, poly []Point) bool {
	if len(poly) < 3 {
		return false
	}
	if Contains(poly, c) {
		return true
	}
	const kmPerDeg = 111.32
	cos := math.Cos(c.Lat * math.Pi / 180)
	xy := func(p Point) (float64, float64) { return (p.Lon - c.Lon) * kmPerDeg * cos, (p.Lat - c.Lat) * kmPerDeg }
	for i := 0; i+1 < len(poly); i++ {
		ax, ay := xy(poly[i])
		bx, by := xy(poly[i+1])
		if distToSegment(ax, ay, bx, by) <= km {
			return true
		}
	}
	return false
}

// distToSegment is the distance from the origin to segment a-b.
func distToSegment(ax, ay, bx, by float64) float64 {
	dx, dy := bx-ax, by-ay
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = math.Max(0, math.Min(1, -(ax*dx+ay*dy)/l))
	}
	return math.Hypot(ax+t*dx, ay+t*dy)
}
