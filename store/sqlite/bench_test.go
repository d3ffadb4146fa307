package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cpis/fhir"
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
