package fhir

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Bundle is a FHIR Bundle whose entry resources are kept as encoded bytes,
// so stored resources are served without being decoded.
type Bundle struct {
	ID        string
	Meta      *Meta
	Type      string // searchset, batch-response, transaction-response, history
	Timestamp string
	Total     *int
	Link      []Link
	Entry     []Entry
}

// Link is Bundle.link.
type Link struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// Entry is Bundle.entry.
type Entry struct {
	FullURL  string
	Resource Raw
	Search   *EntrySearch
	Request  *EntryRequest
	Response *EntryResponse
}

// EntrySearch is Bundle.entry.search.
type EntrySearch struct {
	Mode string `json:"mode,omitempty"`
}

// EntryRequest is Bundle.entry.request.
type EntryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// EntryResponse is Bundle.entry.response. Outcome, if set, is an encoded
// OperationOutcome.
type EntryResponse struct {
	Status       string `json:"status"`
	Location     string `json:"location,omitempty"`
	Etag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	Outcome      Raw    `json:"outcome,omitempty"`
}

// MarshalJSON writes the bundle, copying entry resources verbatim.
func (b *Bundle) MarshalJSON() ([]byte, error) { return b.AppendJSON(nil), nil }

// AppendJSON appends the encoded bundle to dst.
func (b *Bundle) AppendJSON(dst []byte) []byte {
	size := 256
	for _, e := range b.Entry {
		size += len(e.Resource) + len(e.FullURL) + 64
	}
	if cap(dst)-len(dst) < size {
		n := make([]byte, len(dst), len(dst)+size)
		copy(n, dst)
		dst = n
	}
	dst = append(dst, `{"resourceType":"Bundle"`...)
	if b.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = AppendString(dst, b.ID)
	}
	if b.Meta != nil {
		dst = append(dst, `,"meta":`...)
		dst = appendValue(dst, b.Meta)
	}
	dst = append(dst, `,"type":`...)
	dst = AppendString(dst, b.Type)
	if b.Timestamp != "" {
		dst = append(dst, `,"timestamp":`...)
		dst = AppendString(dst, b.Timestamp)
	}
	if b.Total != nil {
		dst = append(dst, `,"total":`...)
		dst = strconv.AppendInt(dst, int64(*b.Total), 10)
	}
	if len(b.Link) > 0 {
		dst = append(dst, `,"link":`...)
		dst = appendValue(dst, b.Link)
	}
	if len(b.Entry) > 0 {
		dst = append(dst, `,"entry":[`...)
		for i, e := range b.Entry {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			sep := false
			field := func(name string) {
				if sep {
					dst = append(dst, ',')
				}
				sep = true
				dst = append(dst, '"')
				dst = append(dst, name...)
				dst = append(dst, `":`...)
			}
			if e.FullURL != "" {
				field("fullUrl")
				dst = AppendString(dst, e.FullURL)
			}
			if len(e.Resource) > 0 {
				field("resource")
				dst = append(dst, e.Resource...)
			}
			if e.Search != nil {
				field("search")
				dst = appendValue(dst, e.Search)
			}
			if e.Request != nil {
				field("request")
				dst = appendValue(dst, e.Request)
			}
			if e.Response != nil {
				field("response")
				dst = appendValue(dst, e.Response)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

func appendValue(dst []byte, v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		panic("fhir: encoding bundle part: " + err.Error())
	}
	return append(dst, b...)
}

// Marshal encodes v as compact JSON without HTML escaping (FHIR JSON is not
// embedded in HTML, and URLs read better with a plain &).
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaped as encoding/json does
// without HTML escaping.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		// Multi-byte UTF-8: escape U+2028/2029 and replace invalid bytes.
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
