package config

import (
	"cmp"
	"slices"
	"strings"

	"github.com/tocsin-alert/tocsin/alert"
)

// Members are a contact group's people once validated, from its YAML list
// and its people_file together, stored compactly: every id and number in one
// string, and a small fixed-size record per person with no pointers. A
// million people take about 40 MB, and nothing the garbage collector has to
// scan, so a large register costs a gateway neither memory nor pauses.
type Members struct {
	arena        string
	recs         []member
	langs        []string
	byID         []int32 // positions, sorted by id
	uniquePhones bool
}

type member struct {
	id, phone       uint32 // offsets into arena
	idLen, phoneLen uint8
	lang            uint8 // index into langs
	channels        uint8 // index into channelSets
}

// channelSets are the channel lists a person can have; At hands out these
// shared slices (callers must not modify them).
var channelSets = [][]alert.Kind{nil, {alert.KindSMS}, {alert.KindVoice}, {alert.KindSMS, alert.KindVoice}}

// Len is the number of people.
func (m *Members) Len() int { return len(m.recs) }

// At returns person i. Its strings share the store's memory.
func (m *Members) At(i int) Person {
	r := m.recs[i]
	return Person{ID: m.arena[r.id : r.id+uint32(r.idLen)], Phone: m.arena[r.phone : r.phone+uint32(r.phoneLen)],
		Language: m.langs[r.lang], Channels: channelSets[r.channels]}
}

// Find returns the person with id.
func (m *Members) Find(id string) (Person, bool) {
	i, ok := slices.BinarySearchFunc(m.byID, id, func(p int32, id string) int { return strings.Compare(m.idAt(p), id) })
	if !ok {
		return Person{}, false
	}
	return m.At(int(m.byID[i])), true
}

// UniquePhones says no number is listed twice.
func (m *Members) UniquePhones() bool { return m.uniquePhones }

func (m *Members) idAt(i int32) string {
	r := m.recs[i]
	return m.arena[r.id : r.id+uint32(r.idLen)]
}

func (m *Members) phoneAt(i int32) string {
	r := m.recs[i]
	return m.arena[r.phone : r.phone+uint32(r.phoneLen)]
}

// membersBuilder collects validated people; done seals the store and
// returns the positions of ids seen before (each a duplicate to report).
type membersBuilder struct {
	b     strings.Builder
	recs  []member
	langs map[string]uint8
	order []string
}

func (mb *membersBuilder) grow(n int) { mb.recs = slices.Grow(mb.recs, n) }

// add stores a person whose fields were validated (id ≤ 64 bytes, phone
// normalised, language known, channels sms and/or voice).
func (mb *membersBuilder) add(p Person) {
	if mb.langs == nil {
		mb.langs = map[string]uint8{}
	}
	l, ok := mb.langs[p.Language]
	if !ok {
		l = uint8(len(mb.order))
		mb.langs[p.Language] = l
		mb.order = append(mb.order, p.Language)
	}
	var ch uint8
	for _, k := range p.Channels {
		switch k {
		case alert.KindSMS:
			ch |= 1
		case alert.KindVoice:
			ch |= 2
		}
	}
	if ch == 3 {
		ch = 0 // both is the default
	}
	r := member{id: uint32(mb.b.Len()), idLen: uint8(len(p.ID)), lang: l, channels: ch}
	mb.b.WriteString(p.ID)
	r.phone, r.phoneLen = uint32(mb.b.Len()), uint8(len(p.Phone))
	mb.b.WriteString(p.Phone)
	mb.recs = append(mb.recs, r)
}

// done seals the store; dups are the positions whose id an earlier person has.
func (mb *membersBuilder) done() (m Members, dups []int) {
	m = Members{arena: mb.b.String(), recs: slices.Clip(mb.recs), langs: mb.order}
	m.byID = make([]int32, len(m.recs))
	for i := range m.byID {
		m.byID[i] = int32(i)
	}
	slices.SortStableFunc(m.byID, func(a, b int32) int { return strings.Compare(m.idAt(a), m.idAt(b)) })
	for k := 1; k < len(m.byID); k++ {
		if m.idAt(m.byID[k]) == m.idAt(m.byID[k-1]) {
			dups = append(dups, int(m.byID[k]))
		}
	}
	byPhone := slices.Clone(m.byID)
	slices.SortFunc(byPhone, func(a, b int32) int { return cmp.Compare(m.phoneAt(a), m.phoneAt(b)) })
	m.uniquePhones = true
	for k := 1; k < len(byPhone); k++ {
		if m.phoneAt(byPhone[k]) == m.phoneAt(byPhone[k-1]) {
			m.uniquePhones = false
			break
		}
	}
	return m, dups
}
