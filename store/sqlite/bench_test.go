package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// benchStore holds n plans with Flags, one child each.
func benchStore(b *testing.B, n int) (*Store, []string) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	var subjects []string
	now := time.Now()
	body := make([]byte, 700)
	flag := make([]byte, 950)
	var writes []store.Write
	for i := 0; len(subjects) < n; i++ {
		nine := fmt.Sprintf("999%06d", i)
		d := fhir.NHSNumberCheckDigit(nine)
		if d < 0 {
			continue
		}
		nhs := fmt.Sprintf("%s%d", nine, d)
		subjects = append(subjects, nhs)
		writes = append(writes, store.Write{Record: store.Record{Type: "EpisodeOfCare", ID: fmt.Sprintf("p%d", len(subjects)), Version: 1, Updated: now,
			Owner: "LA001", Subject: nhs, Keys: []string{"LA001|https://la001.example/id|" + nhs}, Body: body,
			Derived: &store.Derived{Type: "Flag", Body: flag}}})
		if len(writes) == 1000 {
			if err := s.Commit(ctx, writes); err != nil {
				b.Fatal(err)
			}
			writes = writes[:0]
		}
	}
	if err := s.Commit(ctx, writes); err != nil {
		b.Fatal(err)
	}
	return s, subjects
}

func BenchmarkStore(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		s, subjects := benchStore(b, n)
		ctx := context.Background()
		b.Run(fmt.Sprintf("flags-by-nhs-number/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, _, err := s.Search(ctx, store.Query{Type: "Flag", Subject: subjects[i%len(subjects)], Limit: 50, Count: true}); err != nil {
						b.Fatal(err)
					}
					i += 7919
				}
			})
		})
		b.Run(fmt.Sprintf("flag-by-id/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := s.Get(ctx, "Flag", fmt.Sprintf("p%d", 1+i%len(subjects))); err != nil {
						b.Fatal(err)
					}
					i += 7919
				}
			})
		})
		b.Run(fmt.Sprintf("audit-write/%d", n), func(b *testing.B) {
			body := make([]byte, 1600)
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					err := s.Audit(ctx, []store.AuditRecord{{ID: fmt.Sprint(i), Recorded: time.Now(), Subject: subjects[i%len(subjects)],
						Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: body}})
					if err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

// auditSet is a store holding n access records about subjects children,
// each managed by one of 20 local authorities, spread over the year before
// now as the seed spreads them, with real AuditEvent bodies.
type auditSet struct {
	s        *Store
	dir      string
	subjects []string
	n        int
}

func benchAuditSet(b *testing.B, n, children int) *auditSet {
	b.Helper()
	// CPIS_BENCH_AUDIT_DIR keeps the store for the next run (building a
	// million records takes minutes): a directory holding one is reused
	// as it is, whatever n says.
	dir := os.Getenv("CPIS_BENCH_AUDIT_DIR")
	kept := false
	if dir == "" {
		dir = b.TempDir()
	} else if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		kept = true
	}
	s, err := Open(dir, Options{CheckTimeout: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var subjects []string
	for i := 0; len(subjects) < children; i++ {
		nine := fmt.Sprintf("999%06d", i)
		if d := fhir.NHSNumberCheckDigit(nine); d >= 0 {
			subjects = append(subjects, fmt.Sprintf("%s%d", nine, d))
		}
	}
	if kept {
		var have int
		if err := s.r.QueryRow(`SELECT count(*) FROM audit`).Scan(&have); err != nil {
			b.Fatal(err)
		}
		return &auditSet{s: s, dir: dir, subjects: subjects, n: have}
	}
	ctx := context.Background()
	now := time.Now().UTC()
	from := now.AddDate(-1, 0, 0)
	span := now.Sub(from)
	recs := make([]store.AuditRecord, 0, 2000)
	flush := func() {
		if err := s.Audit(ctx, recs); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
	}
	for i := 0; i < n; i++ {
		recs = append(recs, benchAccess(subjects, i, from.Add(time.Duration(float64(span)*float64(i)/float64(n)))))
		if len(recs) == cap(recs) {
			flush()
		}
	}
	flush()
	if _, err := s.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	return &auditSet{s: s, dir: dir, subjects: subjects, n: n}
}

// benchAccess is the i-th synthetic access, as the seed makes them: one of
// 5,000 clinicians searching a child's Flags.
func benchAccess(subjects []string, i int, at time.Time) store.AuditRecord {
	nhs := subjects[(i*7919)%len(subjects)]
	u := (i * 104729) % 5000
	la := fmt.Sprintf("LA%03d", (i*7919)%len(subjects)%20)
	a := profiles.Access{
		ID:       fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i*31),
		Recorded: at, Interaction: "search-type",
		Query:     "Flag?patient:identifier=" + fhir.NHSNumberSystem + "|" + nhs,
		NHSNumber: nhs, Results: 1,
		UserName: fmt.Sprintf("Clinician %04d", u), UserID: fmt.Sprintf("5551%08d", u), RoleID: fmt.Sprintf("5552%08d", u),
		RoleName: `"Clinical":"Clinical Provision":"Nurse Access Role"`,
		OrgCode:  fmt.Sprintf("T%04d", u%200), OrgName: fmt.Sprintf("Synthetic NHS Trust %03d", u%200),
	}
	return store.AuditRecord{ID: a.ID, Recorded: a.Recorded, Subject: nhs, Owners: []string{la}, Agent: "user:" + a.UserID,
		Notify: true, Body: profiles.AuditEvent(a)}
}

// benchAuditN is the number of access records BenchmarkAudit loads: 100,000
// (100 per child over 1,000 children) unless CPIS_BENCH_AUDIT says otherwise.
func benchAuditN() int {
	if n, err := strconv.Atoi(os.Getenv("CPIS_BENCH_AUDIT")); err == nil && n > 0 {
		return n
	}
	return 100000
}

// BenchmarkAudit measures the access-history and feed reads at a national
// density, and the bytes each access record costs the database file.
func BenchmarkAudit(b *testing.B) {
	n := benchAuditN()
	set := benchAuditSet(b, n, 1000)
	s := set.s
	ctx := context.Background()
	info, err := os.Stat(filepath.Join(set.dir, FileName))
	if err != nil {
		b.Fatal(err)
	}
	perRecord := float64(info.Size()) / float64(n)
	weekAgo := time.Now().AddDate(0, 0, -7)
	b.Run(fmt.Sprintf("by-subject/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			recs, err := s.AuditBySubject(ctx, set.subjects[(i*7)%len(set.subjects)], time.Time{}, 2000)
			if err != nil || len(recs) == 0 {
				b.Fatal(err, len(recs))
			}
		}
	})
	// What the access history needs once it reads the heads and then the
	// bodies of the 25 it shows (see handlers' accessHistory).
	b.Run(fmt.Sprintf("heads-then-25-bodies/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			heads, err := s.AuditHeadsBySubject(ctx, set.subjects[(i*7)%len(set.subjects)], time.Time{}, 2000)
			if err != nil || len(heads) == 0 {
				b.Fatal(err, len(heads))
			}
			var seqs []int64
			for _, h := range heads[max(0, len(heads)-25):] {
				seqs = append(seqs, h.Seq)
			}
			if recs, err := s.AuditBodies(ctx, seqs); err != nil || len(recs) != len(seqs) {
				b.Fatal(err, len(recs))
			}
		}
	})
	b.Run(fmt.Sprintf("feed-page/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			recs, _, err := s.AuditFeed(ctx, fmt.Sprintf("LA%03d", i%20), weekAgo, "", 50)
			if err != nil || len(recs) == 0 {
				b.Fatal(err, len(recs))
			}
		}
	})
	b.Run(fmt.Sprintf("feed-total/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := s.AuditFeedTotal(ctx, fmt.Sprintf("LA%03d", i%20), weekAgo); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What the handler asks for each page of the feed: the page and the
	// feed's total. Since ten weeks ago, an authority's feed at this
	// density holds about what a week holds at ten times the records (a
	// national year, 10,000,000).
	for _, since := range []struct {
		name string
		t    time.Time
	}{{"week", weekAgo}, {"10-weeks", time.Now().AddDate(0, 0, -70)}} {
		b.Run(fmt.Sprintf("feed-page-and-total/%s/%d", since.name, set.n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				la := fmt.Sprintf("LA%03d", i%20)
				recs, _, err := s.AuditFeed(ctx, la, since.t, "", 50)
				if err != nil || len(recs) == 0 {
					b.Fatal(err, len(recs))
				}
				if total, err := s.AuditFeedTotal(ctx, la, since.t); err != nil || total < len(recs) {
					b.Fatal(err, total)
				}
			}
		})
	}
	// A date asked for the first time: the feed is counted in full, as
	// every page did before the counts were remembered.
	b.Run(fmt.Sprintf("feed-page-and-total/10-weeks-new-date/%d", set.n), func(b *testing.B) {
		since := time.Now().AddDate(0, 0, -70)
		for i := 0; b.Loop(); i++ {
			la, at := fmt.Sprintf("LA%03d", i%20), since.Add(-time.Duration(i)*time.Millisecond)
			recs, _, err := s.AuditFeed(ctx, la, at, "", 50)
			if err != nil || len(recs) == 0 {
				b.Fatal(err, len(recs))
			}
			if total, err := s.AuditFeedTotal(ctx, la, at); err != nil || total < len(recs) {
				b.Fatal(err, total)
			}
		}
	})
	b.Run(fmt.Sprintf("db-bytes-per-record/%d", n), func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(perRecord, "B/record")
	})
}
