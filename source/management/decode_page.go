package management

import "fmt"

// Members of a paginated object that the decoder reads (other keys are skipped). RabbitMQ
// writes them all, and "items" holds one page of the listing; see range_response in
// rabbit_mgmt_util.erl.
const (
	pageItems         = iota
	pageCount         // pages of page_size items the (filtered) listing fills
	pageItemCount     // items on this page
	pageFilteredCount // queues matching the name filter
	pageTotalCount    // queues in the whole listing
	numPageFields
)

var pageKeys = [numPageFields]string{"items", "page_count", "item_count", "filtered_count", "total_count"}

// page is what a paginated object said so far.
type page struct {
	seen   [numPageFields]bool
	values [numPageFields]int64
}

func pageField(key []byte) int {
	for i, k := range pageKeys {
		if string(key) == k {
			return i
		}
	}
	return fieldOther
}

// pageMember reads the value of paginated object member f starting with c (unconsumed).
func (d *decoder) pageMember(f int, c byte) error {
	p := &d.page
	if p.seen[f] {
		return fmt.Errorf(`paginated response has a duplicate %q key at offset %d`, pageKeys[f], d.offset())
	}
	p.seen[f] = true
	if f == pageItems {
		if c != '[' {
			return fmt.Errorf(`paginated response: "items" must be an array, found %s at offset %d`, describe(c), d.offset())
		}
		d.pos++
		return d.container(queueArray)
	}
	n, _, err := d.readUint(c, "paginated response field", pageKeys[f], false)
	if err != nil {
		return err
	}
	p.values[f] = n
	// The exporter never asks for a page, so a proxy or a broker must have cut the listing.
	// Fail as soon as that is known; queues already handed to fn are discarded by the caller.
	if f == pageCount && n > 1 {
		return fmt.Errorf(`paginated response is one of %d pages ("page_count"): the listing is incomplete`, n)
	}
	return nil
}

// pageDone checks, at the end of the paginated object that began at start, that it held the
// whole listing, exactly once.
func (d *decoder) pageDone(start int64) error {
	p := &d.page
	if !p.seen[pageItems] {
		return fmt.Errorf(`response object at offset %d has no "items" array`, start)
	}
	for f := pageItemCount; f < numPageFields; f++ {
		if p.seen[f] && p.values[f] != int64(d.stats.queues) {
			return fmt.Errorf(`paginated response holds %d queues but its %q is %d: the listing is incomplete`, d.stats.queues, pageKeys[f], p.values[f])
		}
	}
	return nil
}
