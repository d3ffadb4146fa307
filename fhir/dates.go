package fhir

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The google/fhir R4 messages of the date types.
const (
	r4Date              protoreflect.FullName = "google.fhir.r4.core.Date"
	r4DateTime          protoreflect.FullName = "google.fhir.r4.core.DateTime"
	r4Instant           protoreflect.FullName = "google.fhir.r4.core.Instant"
	r4ContainedResource protoreflect.FullName = "google.fhir.r4.core.ContainedResource"
)

// checkYears reports each date, dateTime and instant of the decoded
// resource whose year is 0000 or earlier. FHIR's date grammar starts at
// year 0001, but google/fhir accepts 0000, and a plan that started in year
// 0 is a mistake, not a date.
//
// The walk over the decoded message costs more than the rest of an
// upload's date handling, and most bodies cannot hold such a year: it is
// skipped when no JSON string in the body starts with 0000 as written (no
// "0000) and none is written with escapes (no \u), which is the only other
// way to spell the digits.
func checkYears(m proto.Message, body []byte, root string, c *Collector) {
	if !bytes.Contains(body, []byte(`"0000`)) && !bytes.Contains(body, []byte(`\u`)) {
		return
	}
	walkDates(m.ProtoReflect(), root, c)
}

func walkDates(m protoreflect.Message, path string, c *Collector) {
	d := m.Descriptor()
	switch d.FullName() {
	case r4Date, r4DateTime, r4Instant:
		us := m.Get(d.Fields().ByName("value_us")).Int()
		tz := m.Get(d.Fields().ByName("timezone")).String()
		if time.UnixMicro(us).In(zone(tz)).Year() < 1 {
			c.Add(Issue{Kind: KindInvalid, Expression: []string{path},
				Diagnostics: "Invalid date: the year must be 0001 or later"})
		}
		return
	}
	contained := d.FullName() == r4ContainedResource
	choice := d.Oneofs().Len() == 1 && d.Oneofs().Get(0).Name() == "choice"
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		p := joinPath(path, fd.JSONName())
		switch {
		case contained:
			p = path
		case choice:
			p = path + upperFirst(fd.JSONName())
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkDates(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), c)
			}
			return true
		}
		walkDates(v.Message(), p, c)
		return true
	})
}

// zone is the location of a google/fhir timezone: Z, UTC, +01:00 or an
// IANA name; UTC if it cannot be read.
func zone(tz string) *time.Location {
	if tz == "" || tz == "Z" || tz == "UTC" {
		return time.UTC
	}
	if strings.HasPrefix(tz, "+") || strings.HasPrefix(tz, "-") {
		if t, err := time.Parse("-07:00", tz); err == nil {
			_, off := t.Zone()
			return time.FixedZone(tz, off)
		}
		return time.UTC
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		return loc
	}
	return time.UTC
}
