package gateway

import (
	"cmp"
	"slices"
	"strings"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/config"
)

// directory finds a person by target id ("group.person"). It keeps no entry
// per person beyond the configuration's own: each group's people are indexed
// by a sorted list of positions, so a million people cost 4 MB here, not a
// map of a million strings.
type directory map[string]*groupDir

type groupDir struct {
	people []config.Person
	byID   []int32 // positions in people, sorted by id
	// uniquePhones says no number is listed twice in the group.
	uniquePhones bool
}

func newDirectory(groups []config.ContactGroup) directory {
	d := directory{}
	for _, g := range groups {
		gd := &groupDir{people: g.People, byID: make([]int32, len(g.People))}
		for i := range gd.byID {
			gd.byID[i] = int32(i)
		}
		slices.SortFunc(gd.byID, func(a, b int32) int { return cmp.Compare(gd.people[a].ID, gd.people[b].ID) })
		byPhone := slices.Clone(gd.byID)
		slices.SortFunc(byPhone, func(a, b int32) int { return cmp.Compare(gd.people[a].Phone, gd.people[b].Phone) })
		gd.uniquePhones = true
		for i := 1; i < len(byPhone); i++ {
			if gd.people[byPhone[i]].Phone == gd.people[byPhone[i-1]].Phone {
				gd.uniquePhones = false
				break
			}
		}
		d[g.ID] = gd
	}
	return d
}

// find returns the person a target id names.
func (d directory) find(targetID string) (adapters.Recipient, bool) {
	group, person, ok := strings.Cut(targetID, ".")
	gd := d[group]
	if !ok || gd == nil {
		return adapters.Recipient{}, false
	}
	i, found := slices.BinarySearchFunc(gd.byID, person, func(p int32, id string) int { return cmp.Compare(gd.people[p].ID, id) })
	if !found {
		return adapters.Recipient{}, false
	}
	p := gd.people[gd.byID[i]]
	return adapters.Recipient{Phone: p.Phone, Language: p.Language}, true
}
