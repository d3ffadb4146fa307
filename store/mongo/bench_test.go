package mongo

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"cpis/store"
)

// The benchmarks run against the embedded FerretDB, and against
// CPIS_TEST_MONGODB_URI when it is set. FerretDB's SQLite handler scans a
// collection in Go for anything but an _id lookup, so its numbers grow with
// the data and say nothing about MongoDB's.
func BenchmarkStore(b *testing.B) {
	bs := []backend{{name: "ferretdb", uri: ferret.URI, ferret: true}}
	if uri := os.Getenv(envURI); uri != "" {
		bs = append(bs, backend{name: "mongodb", uri: uri})
	}
	for _, be := range bs {
		b.Run(be.name, func(b *testing.B) { benchStore(b, be) })
	}
}

const benchChildren = 200

func nhs(i int) string { return fmt.Sprintf("94%08d", i) }

func benchStore(b *testing.B, be backend) {
	ctx := context.Background()
	s, _ := open(b, be, Options{})
	for i := 0; i < benchChildren; i++ {
		r := plan(fmt.Sprintf("p%04d", i), 1, nhs(i), fmt.Sprintf("LA%d", i%10), fmt.Sprintf("https://la.example/id|%d", i))
		require.NoError(b, s.Commit(ctx, []store.Write{{Record: r}}))
	}
	var recs []store.AuditRecord
	for i := 0; i < benchChildren; i++ {
		recs = append(recs, audit(fmt.Sprintf("seed%04d", i), t0, nhs(i), "u", true, fmt.Sprintf("LA%d", i%10)))
	}
	require.NoError(b, s.Audit(ctx, recs))

	b.Run("Get", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Get(ctx, "EpisodeOfCare", fmt.Sprintf("p%04d", i%benchChildren)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetFlag", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Get(ctx, "Flag", fmt.Sprintf("p%04d", i%benchChildren)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SearchFlagsBySubject", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			recs, _, err := s.Search(ctx, store.Query{Type: "Flag", Subject: nhs(i % benchChildren), RetainedSince: t0, Limit: 50})
			if err != nil || len(recs) != 1 {
				b.Fatal(err, len(recs))
			}
		}
	})
	b.Run("AuditBySubject", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.AuditBySubject(ctx, nhs(i%benchChildren), time.Time{}, 1000); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Update", func(b *testing.B) {
		v := int64(1)
		for b.Loop() {
			v++
			if err := s.Commit(ctx, []store.Write{{Record: plan("p0000", v, nhs(0), "LA0"), Expect: v - 1}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	var n atomic.Int64
	b.Run("AuditParallel", func(b *testing.B) {
		b.SetParallelism(8) // callers per core, as concurrent reads would be
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if err := s.Audit(ctx, []store.AuditRecord{audit(fmt.Sprintf("b%d", i), t0, nhs(int(i)%benchChildren), "u", true, "LA1")}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("AuditFeedPage", func(b *testing.B) {
		cursor := ""
		for b.Loop() {
			recs, next, err := s.AuditFeed(ctx, "LA1", time.Time{}, cursor, 50)
			if err != nil {
				b.Fatal(err)
			}
			if len(recs) == 0 {
				next = ""
			}
			cursor = next
		}
	})
}
