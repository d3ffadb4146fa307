package handlers

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"cpis/auth"
	"cpis/fhir"
)

// Paging links are opaque: [base]/[type]?_cursor=<sealed>. The sealed
// cursor carries the whole search (its parameters and the store's position),
// the caller it was issued to and when it expires, encrypted and
// authenticated with AES-256-GCM under a key only the server holds. So a
// link names no patient (an NHS number in a URL ends up in browser
// histories, proxies and logs), cannot be altered, and is refused to anyone
// but the caller it was issued to.

// CursorKeySize is the size of Deps.CursorKey.
const CursorKeySize = 32

// How long paging links last: a search's pages are followed at once; a
// local authority keeps its feed's last link to poll later.
const (
	searchCursorTTL = time.Hour
	feedCursorTTL   = 7 * 24 * time.Hour
)

// cursorAAD binds sealed cursors to their purpose.
var cursorAAD = []byte("cpis paging cursor v1")

// sealer seals and opens paging cursors.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if key == nil {
		key = make([]byte, CursorKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	}
	if len(key) != CursorKeySize {
		return nil, errors.New("handlers: the paging-cursor key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// pageCursor is what a sealed cursor holds.
type pageCursor struct {
	Caller  string `json:"w"` // callerID of the principal it was issued to
	Type    string `json:"t"` // the resource type searched
	Query   string `json:"q"` // the search's parameters, as a query string
	Store   string `json:"c"` // the store's position ("" for the first page)
	Expires int64  `json:"e"` // Unix seconds
}

// callerID names a principal for binding cursors: a user by user id, role
// and organisation, a system by client id and organisation.
func callerID(p *auth.Principal) string {
	if p.Kind == auth.System {
		return "system|" + p.Subject + "|" + p.OrgCode
	}
	return "user|" + p.UserID + "|" + p.RoleID + "|" + p.OrgCode
}

// appendJSON is json.Marshal(pc) without reflection (every search's self
// link is sealed): the same keys, in the same order.
func (pc *pageCursor) appendJSON(b []byte) []byte {
	b = append(b, `{"w":`...)
	b = fhir.AppendString(b, pc.Caller)
	b = append(b, `,"t":`...)
	b = fhir.AppendString(b, pc.Type)
	b = append(b, `,"q":`...)
	b = fhir.AppendString(b, pc.Query)
	b = append(b, `,"c":`...)
	b = fhir.AppendString(b, pc.Store)
	b = append(b, `,"e":`...)
	b = strconv.AppendInt(b, pc.Expires, 10)
	return append(b, '}')
}

func (s *sealer) seal(pc pageCursor) string {
	n := s.aead.NonceSize()
	var stack [512]byte
	buf := pc.appendJSON(stack[:n]) // nonce room, then the plain text
	if _, err := rand.Read(buf[:n]); err != nil {
		panic("handlers: no randomness for a paging cursor: " + err.Error())
	}
	plain := buf[n:]
	out := make([]byte, n, n+len(plain)+s.aead.Overhead())
	copy(out, buf[:n])
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(out, out, plain, cursorAAD))
}

// open unseals a cursor and checks it was issued to p for typ and has not
// expired.
func (s *sealer) open(token string, p *auth.Principal, typ string, now time.Time) (pageCursor, error) {
	var pc pageCursor
	bad := fhir.At(fhir.KindInvalidSearch, "_cursor", "The paging link is not valid (altered, expired, or issued to another caller); start the search again")
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < s.aead.NonceSize() {
		return pc, bad
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], cursorAAD)
	if err != nil || json.Unmarshal(plain, &pc) != nil {
		return pc, bad
	}
	if pc.Caller != callerID(p) || pc.Type != typ || now.Unix() > pc.Expires {
		return pc, bad
	}
	return pc, nil
}

// onlyCursor reports whether a search's query holds nothing but the paging
// cursor (and the output switches _format and _pretty): a paging link is
// followed as given.
func onlyCursor(raw string) bool {
	for _, pair := range strings.Split(raw, "&") {
		name, _, _ := strings.Cut(pair, "=")
		switch name {
		case "", "_cursor", "_format", "_pretty":
		default:
			return false
		}
	}
	return true
}

// pageLink is the opaque link to a page of sr: its parameters and the
// store's position, sealed for the caller.
func (s *Server) pageLink(typ string, sr *searchRequest, store string, ttl time.Duration) string {
	pc := pageCursor{Caller: callerID(sr.p), Type: typ, Query: s.selfQuery(sr, ""), Store: store, Expires: s.now().Add(ttl).Unix()}
	return s.BaseURL + "/" + typ + "?_cursor=" + s.cursors.seal(pc)
}

// selfLink is the link to the page sr answers: readable when it is a first
// page naming no patient, else sealed like a next link.
func (s *Server) selfLink(typ string, sr *searchRequest, ttl time.Duration) string {
	if sr.q.Cursor == "" && !namesPatient(sr) {
		return s.BaseURL + "/" + typ + "?" + s.selfQuery(sr, "")
	}
	return s.pageLink(typ, sr, sr.q.Cursor, ttl)
}

// namesPatient reports whether a search is by a patient's NHS number.
func namesPatient(sr *searchRequest) bool {
	for _, p := range sr.applied {
		if sp := sr.spec.param(p.Raw); sp != nil && sp.Kind == paramNHSNumber {
			return true
		}
	}
	return false
}
