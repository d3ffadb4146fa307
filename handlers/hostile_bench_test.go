package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"cpis/fhir"
)

// hostileValidateBody is an EpisodeOfCare of about size bytes whose
// identifier array holds tens of thousands of entries, each with several
// problems: an unknown element, a code outside its value set, a number
// where a string belongs.
func hostileValidateBody(size int) string {
	var b strings.Builder
	b.WriteString(`{"resourceType":"EpisodeOfCare","status":"active","identifier":[`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"use":"x","value":1,"bad":2}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

// hostileBundle is a batch or transaction Bundle of n entries, each a plan
// with a bad NHS number and an unknown element.
func hostileBundle(typ string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		p := planJSON(planSpec{id: fmt.Sprintf("h%d", i), nhs: "1234567890", la: la1})
		p = strings.Replace(p, `"status"`, `"bad":1,"status"`, 1)
		parts[i] = entry{method: "PUT", url: fmt.Sprintf("EpisodeOfCare/h%d", i), resource: p}.json()
	}
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(parts, ",") + `]}`
}

// hostileBundleOf is a Bundle of n plans for LA001, each with bad
// identifiers (a number for a value, an unknown element).
func hostileBundleOf(typ string, n, bad int) string {
	ids := strings.TrimSuffix(strings.Repeat(`{"value":1,"bad":2},`, bad), ",")
	parts := make([]string, n)
	for i := range parts {
		p := planJSON(planSpec{id: fmt.Sprintf("h%d", i), nhs: nhsA, la: la1})
		p = strings.Replace(p, `"status"`, `"identifier":[`+ids+`],"status"`, 1)
		parts[i] = entry{method: "PUT", url: fmt.Sprintf("EpisodeOfCare/h%d", i), resource: p}.json()
	}
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(parts, ",") + `]}`
}

// BenchmarkHostileValidate posts a ~0.9 MB $validate body with tens of
// thousands of problems through the real engine; answer-bytes is the size
// of the answer. Run with -benchmem for the memory per request.
func BenchmarkHostileValidate(b *testing.B) {
	h, token := benchServer(b)
	body := hostileValidateBody(900 << 10)
	benchPost(b, h, token, "/FHIR/R4/EpisodeOfCare/$validate", body, http.StatusOK)
}

// BenchmarkHostileBatch posts a batch of 5,000 plans, each one bad.
func BenchmarkHostileBatch(b *testing.B) {
	h, token := benchServer(b)
	benchPost(b, h, token, "/FHIR/R4", hostileBundle("batch", 5000), http.StatusOK)
}

// BenchmarkHostileTransaction posts a transaction of 5,000 plans, each one bad.
func BenchmarkHostileTransaction(b *testing.B) {
	h, token := benchServer(b)
	benchPost(b, h, token, "/FHIR/R4", hostileBundle("transaction", 5000), 0)
}

// BenchmarkHostileBatch6MB posts a 6 MB batch of 5,000 plans, each with 30
// bad identifiers: the review's Bundle that did not answer in 60 s.
func BenchmarkHostileBatch6MB(b *testing.B) {
	h, token := benchServer(b)
	benchPost(b, h, token, "/FHIR/R4", hostileBundleOf("batch", 5000, 30), http.StatusOK)
}

// BenchmarkHostileTransaction6MB is the same Bundle as a transaction.
func BenchmarkHostileTransaction6MB(b *testing.B) {
	h, token := benchServer(b)
	benchPost(b, h, token, "/FHIR/R4", hostileBundleOf("transaction", 5000, 30), 0)
}

func benchPost(b *testing.B, h http.Handler, token, path, body string, want int) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	peak := base.HeapInuse
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // the heap's high-water mark while the requests run
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	defer func() {
		close(done)
		<-sampled
		b.ReportMetric(float64(peak-base.HeapInuse)/(1<<20), "peak-heap-MB")
	}()
	b.ResetTimer()
	size := 0
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", fhir.MIME)
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if want != 0 && w.Code != want {
			b.Fatalf("%d %.500s", w.Code, w.Body.String())
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "answer-bytes")
}

// BenchmarkHostileWhitespaceBundle posts a Bundle whose first token is
// followed by 8 MB of whitespace: the decoder must not rescan it on every
// read (a 32 MB body of spaces took 40 s of CPU before the reader collapsed
// whitespace runs).
func BenchmarkHostileWhitespaceBundle(b *testing.B) {
	h, token := benchServer(b)
	body := "{" + strings.Repeat(" \n\t", 8<<20/3) + hostileBundle("transaction", 1)[1:]
	benchPost(b, h, token, "/FHIR/R4", body, 0)
}
