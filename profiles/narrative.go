package profiles

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/net/html"
)

// The narrative check refuses, never cleans: a narrative a client sent is
// either stored as sent or not at all. It reads the div twice, and both
// readings must pass the same allow-list (FHIR R4 narrative, txt-1):
//
//   - as XML (encoding/xml, strict, only the five XML entities), which also
//     proves it well-formed with a single <div> root in the XHTML namespace:
//     what an XHTML consumer sees;
//   - as HTML (golang.org/x/net/html's tokenizer, the HTML5 rules a browser
//     uses), which sees every tag as written, entity-decoded, with
//     attributes split the way a browser splits them (<svg/onload=...>, a
//     tab before onerror): what a browser sees when the div is put into a
//     page.
//
// A differential between the two parsers (a comment or CDATA section one of
// them ends early) cannot smuggle a tag past the check, since each reading
// is checked on its own. bluemonday, the usual allow-list sanitiser, only
// cleans and cannot say "refuse", so the allow-list is walked here.

const xhtmlNS = "http://www.w3.org/1999/xhtml"

// narrativeElements are the basic HTML formatting elements FHIR narrative
// permits.
var narrativeElements = setOf("a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code",
	"col", "colgroup", "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
	"li", "ol", "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
	"th", "thead", "tr", "tt", "ul", "var")

// narrativeAttributes are the attributes allowed on every element, and
// elementAttributes those allowed on some elements only.
var (
	narrativeAttributes = setOf("class", "style", "id", "lang", "xml:lang", "dir", "title", "accesskey", "tabindex")
	elementAttributes   = map[string]map[string]bool{
		"a":          setOf("href", "name"),
		"img":        setOf("src", "alt", "height", "width"),
		"blockquote": setOf("cite"),
		"q":          setOf("cite"),
		"ol":         setOf("start", "type"),
		"ul":         setOf("type"),
		"li":         setOf("value", "type"),
		"table":      setOf("summary", "width", "border", "frame", "rules", "cellspacing", "cellpadding", "align"),
		"col":        setOf("span", "width", "align", "valign", "char", "charoff"),
		"colgroup":   setOf("span", "width", "align", "valign", "char", "charoff"),
		"td":         setOf("abbr", "axis", "headers", "scope", "rowspan", "colspan", "align", "valign", "char", "charoff"),
		"th":         setOf("abbr", "axis", "headers", "scope", "rowspan", "colspan", "align", "valign", "char", "charoff"),
		"tr":         setOf("align", "valign", "char", "charoff"),
		"tbody":      setOf("align", "valign", "char", "charoff"),
		"thead":      setOf("align", "valign", "char", "charoff"),
		"tfoot":      setOf("align", "valign", "char", "charoff"),
	}
	// activeElements are named as active content rather than merely not
	// allowed, so the client reads why.
	activeElements = setOf("script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input",
		"button", "select", "textarea", "style", "link", "meta", "base", "svg", "math", "template", "noscript")
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// Refusal messages. The event-handler one is in the golden examples.
const (
	msgActive      = "The narrative holds active content, which is not accepted"
	msgEvent       = "The narrative holds event-handler attributes, which are not accepted"
	msgNotXHTML    = "The narrative must be well-formed XHTML (only the XML entities &lt; &gt; &amp; &quot; &apos; and numeric character references)"
	msgRoot        = `The narrative must be a single <div xmlns="http://www.w3.org/1999/xhtml"> element`
	msgTooLong     = "The narrative is too long"
	msgUnsafeURL   = "The narrative holds a link that is not http, https, mailto or a reference within the server, which is not accepted"
	msgImageSource = "The narrative holds an image whose src is not a reference (#id) within the resource, which is not accepted"
	msgStyle       = "The narrative holds a style that loads or runs something (url(), expression(), @import, escapes), which is not accepted"
)

// errNarrative is a refusal with its message.
type errNarrative string

func (e errNarrative) Error() string { return string(e) }

// activeContent says why a narrative div is refused, or "" when it is safe.
func activeContent(div string) string {
	if len(div) > maxNarrativeCharacters {
		return msgTooLong
	}
	if strings.TrimSpace(div) == "" {
		return msgRoot
	}
	for _, check := range []func(string) error{checkXHTML, checkHTML} {
		if err := check(div); err != nil {
			var e errNarrative
			if errors.As(err, &e) {
				return string(e)
			}
			return msgNotXHTML
		}
	}
	return ""
}

// checkXHTML reads div as strict XML: one <div> root in the XHTML
// namespace, every element and attribute allowed.
func checkXHTML(div string) error {
	d := xml.NewDecoder(strings.NewReader(div))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errNarrative(msgNotXHTML)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 || t.Name.Local != "div" || t.Name.Space != xhtmlNS {
					return errNarrative(msgRoot)
				}
			}
			depth++
			if t.Name.Space != xhtmlNS {
				return errNarrative(msgActive)
			}
			attrs := make([]html.Attribute, 0, len(t.Attr))
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					attrs = append(attrs, html.Attribute{Key: "xmlns", Val: a.Value})
				case a.Name.Space == "xmlns":
					return errNarrative(msgActive) // no other namespaces: no xlink, no svg
				case a.Name.Space == "http://www.w3.org/XML/1998/namespace" && a.Name.Local == "lang":
					attrs = append(attrs, html.Attribute{Key: "xml:lang", Val: a.Value})
				case a.Name.Space != "":
					return errNarrative(msgActive)
				default:
					attrs = append(attrs, html.Attribute{Key: a.Name.Local, Val: a.Value})
				}
			}
			if err := allowed(t.Name.Local, attrs); err != nil {
				return err
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				return errNarrative(msgRoot)
			}
		case xml.ProcInst, xml.Directive:
			// <?xml-stylesheet?>, <!DOCTYPE>, <!ENTITY>: none belongs in a narrative.
			return errNarrative(msgActive)
		}
	}
	if roots != 1 {
		return errNarrative(msgRoot)
	}
	if strings.Contains(div, "<![CDATA[") {
		// Browsers read CDATA in HTML as a bogus comment ended by the first
		// '>': what XML shows as text, HTML may show as markup.
		return errNarrative(msgActive)
	}
	return nil
}

// checkHTML reads div with the HTML5 tokenizer, as a browser would, and
// checks every tag it sees.
func checkHTML(div string) error {
	z := html.NewTokenizer(strings.NewReader(div))
	for {
		switch z.Next() {
		case html.ErrorToken:
			if z.Err() == io.EOF {
				return nil
			}
			return errNarrative(msgNotXHTML)
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			if strings.ContainsRune(t.Data, ':') {
				return errNarrative(msgActive)
			}
			if err := allowed(t.Data, t.Attr); err != nil {
				return err
			}
		case html.EndTagToken:
			if t := z.Token(); !narrativeElements[t.Data] {
				return errNarrative(msgActive)
			}
		case html.DoctypeToken:
			return errNarrative(msgActive)
		}
	}
}

// allowed checks one element and its attributes (names as written, values
// entity-decoded) against the narrative allow-list.
func allowed(name string, attrs []html.Attribute) error {
	name = strings.ToLower(name)
	if !narrativeElements[name] {
		if activeElements[name] {
			return errNarrative(msgActive)
		}
		return errNarrative(fmt.Sprintf("The narrative holds the element <%.20s>, which FHIR narrative does not allow", name))
	}
	for _, a := range attrs {
		key := strings.ToLower(a.Key)
		if a.Namespace != "" {
			return errNarrative(msgActive)
		}
		switch {
		case strings.HasPrefix(key, "on"):
			return errNarrative(msgEvent)
		case key == "xmlns":
			if a.Val != xhtmlNS {
				return errNarrative(msgRoot)
			}
			continue
		case !narrativeAttributes[key] && !elementAttributes[name][key]:
			return errNarrative(fmt.Sprintf("The narrative holds the attribute %.20s on <%s>, which FHIR narrative does not allow", key, name))
		}
		switch key {
		case "href", "cite":
			if !safeLink(a.Val) {
				return errNarrative(msgUnsafeURL)
			}
		case "src":
			if !strings.HasPrefix(a.Val, "#") || strings.ContainsFunc(a.Val, isSpaceOrControl) {
				return errNarrative(msgImageSource)
			}
		case "style":
			if !safeStyle(a.Val) {
				return errNarrative(msgStyle)
			}
		}
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= 0x20 || (r >= 0x7f && r <= 0x9f) }

// safeLink reports whether a link (already entity-decoded) is a fragment, a
// relative reference, or an http, https or mailto URL. Browsers drop tabs
// and newlines anywhere in a URL and trim spaces and controls, so those are
// removed before the scheme is read.
func safeLink(v string) bool {
	u := strings.Map(func(r rune) rune {
		if isSpaceOrControl(r) {
			return -1
		}
		return r
	}, v)
	end := strings.IndexAny(u, "/?#")
	if end < 0 {
		end = len(u)
	}
	colon := strings.IndexByte(u[:end], ':')
	if colon < 0 {
		return true // a reference with no scheme: it cannot run anything
	}
	return slices.Contains([]string{"http", "https", "mailto"}, strings.ToLower(u[:colon]))
}

// safeStyle reports whether an inline style only sets properties: no
// function but colours, no escapes or comments (which hide names from a
// substring check), no at-rules, no legacy script hooks.
func safeStyle(v string) bool {
	s := strings.ToLower(strings.Map(func(r rune) rune {
		if isSpaceOrControl(r) {
			return -1
		}
		return r
	}, v))
	for _, bad := range []string{`\`, "/*", "@", "<", "&", "expression", "behavior", "binding", "javascript", "vbscript"} {
		if strings.Contains(s, bad) {
			return false
		}
	}
	for i := strings.IndexByte(s, '('); i >= 0; {
		j := i
		for j > 0 && (s[j-1] == '-' || s[j-1] >= 'a' && s[j-1] <= 'z') {
			j--
		}
		if !slices.Contains([]string{"rgb", "rgba", "hsl", "hsla"}, s[j:i]) {
			return false
		}
		next := strings.IndexByte(s[i+1:], '(')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return true
}
