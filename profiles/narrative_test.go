package profiles

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withNarrative puts text into goodPlan with div as its XHTML.
func withNarrative(t *testing.T, div string) string {
	t.Helper()
	b, err := json.Marshal(div)
	require.NoError(t, err)
	return strings.Replace(goodPlan, `"status"`, `"text":{"status":"generated","div":`+string(b)+`},"status"`, 1)
}

const xdiv = `<div xmlns="http://www.w3.org/1999/xhtml">`

// TestHazard_NarrativeRunsScriptInAClinicianBrowser: each of these was once
// stored and served (the substring filter missed it); each would run script
// or load a page in the browser of whoever reads the plan. The narrative is
// refused, with the issue at text.div, never silently cleaned.
func TestHazard_NarrativeRunsScriptInAClinicianBrowser(t *testing.T) {
	c, codec := catalog(t)
	for _, tc := range []struct{ name, div string }{
		{"img-slash-onerror", xdiv + `<img/onerror="alert(1)" src="#x"/></div>`},
		{"img-slash-onerror-xml", xdiv + `<img src="#x"/><p>x</p><img/onerror=alert(1) src=x></div>`},
		{"svg-slash-onload", xdiv + `<svg/onload="alert(1)"/></div>`},
		{"tab-before-onerror", xdiv + "<img src=\"#x\"\tonerror=\"alert(1)\"/></div>"},
		{"newline-before-onerror", xdiv + "<img src=\"#x\"\nonerror=\"alert(1)\"/></div>"},
		{"entity-encoded-javascript", xdiv + `<a href="jav&#x61;script:alert(1)">x</a></div>`},
		{"tab-inside-javascript", xdiv + "<a href=\"java\tscript:alert(1)\">x</a></div>"},
		{"newline-inside-javascript", xdiv + "<a href=\"java&#10;script:alert(1)\">x</a></div>"},
		{"data-link", xdiv + `<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a></div>`},
		{"base-href", xdiv + `<base href="https://evil.example/"/><p>x</p></div>`},
		{"not-xhtml-no-namespace", `<div><p>Plan</p></div>`},
		{"not-xhtml-unclosed", xdiv + `<p>Plan<br></p></div>`},
		{"not-xhtml-html-entity", xdiv + `<a href="javascript&colon;alert(1)">x</a></div>`},
		{"div-less-paragraph", `<p xmlns="http://www.w3.org/1999/xhtml">Plan</p>`},
		{"div-less-text", `Plan for the child`},
		{"empty", ` `},
		{"two-roots", xdiv + `x</div><img src="x" onerror="alert(1)"/>`},
		{"text-after-root", xdiv + `x</div>trailing`},
		{"script", xdiv + `<script>alert(1)</script></div>`},
		{"uppercase-script", xdiv + `<SCRIPT>alert(1)</SCRIPT></div>`},
		{"namespaced-script", xdiv + `<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script></div>`},
		{"xlink-href", xdiv + `<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="javascript:alert(1)">x</a></div>`},
		{"iframe", xdiv + `<iframe src="https://evil.example"></iframe></div>`},
		{"form", xdiv + `<form action="https://evil.example"><p>x</p></form></div>`},
		{"style-element", xdiv + `<style>p{background:url(https://evil.example)}</style></div>`},
		{"link-element", xdiv + `<link rel="stylesheet" href="https://evil.example/x.css"/></div>`},
		{"object", xdiv + `<object data="https://evil.example/x.swf"></object></div>`},
		{"style-url", xdiv + `<p style="background-image: url(https://evil.example/track.png)">x</p></div>`},
		{"style-escaped-url", xdiv + `<p style="background:u\72l(https://evil.example)">x</p></div>`},
		{"style-expression", xdiv + `<p style="width: expression(alert(1))">x</p></div>`},
		{"img-remote-src", xdiv + `<img src="https://evil.example/track.png"/></div>`},
		{"img-data-src", xdiv + `<img src="data:image/svg+xml;base64,PHN2Zz4="/></div>`},
		{"unknown-attribute", xdiv + `<p formaction="javascript:alert(1)">x</p></div>`},
		{"blockquote-cite-javascript", xdiv + `<blockquote cite="javascript:alert(1)">x</blockquote></div>`},
		{"comment-ended-early-for-html", xdiv + `<p><!--x--!><img src=x onerror=alert(1)>--></p></div>`},
		{"cdata-read-as-markup-by-html", xdiv + `<p><![CDATA[><img src=x onerror=alert(1)>]]></p></div>`},
		{"doctype-entity", `<!DOCTYPE div [<!ENTITY x "javascript:">]>` + xdiv + `<a href="&x;alert(1)">x</a></div>`},
		{"body-onload", xdiv + `<body onload="alert(1)"/></div>`},
		{"meta-refresh", xdiv + `<meta http-equiv="refresh" content="0;url=https://evil.example"/></div>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, []string{"EpisodeOfCare.text.div"}, check(t, c, codec, withNarrative(t, tc.div)))
		})
	}
}

// Narratives a generator or a person would write are still accepted.
func TestNarrativeAccepted(t *testing.T) {
	c, codec := catalog(t)
	for _, tc := range []struct{ name, div string }{
		{"paragraph", xdiv + `<p>Child protection plan</p></div>`},
		{"table", xdiv + `<table class="grid" border="1"><thead><tr><th scope="col">Plan</th></tr></thead>` +
			`<tbody><tr><td colspan="2" rowspan="1" style="color: rgb(0, 0, 0); font-weight: bold">CPP</td></tr></tbody></table></div>`},
		{"links", xdiv + `<a href="https://www.england.nhs.uk/">NHS</a> <a href="mailto:duty@la001.example">duty</a> ` +
			`<a href="#plan">plan</a> <a href="EpisodeOfCare/1">the plan</a> <a name="plan">here</a></div>`},
		{"image-within", xdiv + `<img src="#photo" alt="photo"/></div>`},
		{"formatting", xdiv + `<h1>Plan</h1><ul><li><b>b</b> <i>i</i> <em>e</em> <strong>s</strong> <code>c</code></li></ul>` +
			`<ol><li>one</li></ol><dl><dt>t</dt><dd>d</dd></dl><pre>p</pre><br/><hr/><span lang="en-GB" xml:lang="en-GB" dir="ltr" title="t">x</span></div>`},
		{"entities", xdiv + `<p>A &amp; B &lt;3 &#169; &#x2014; &quot;q&quot;</p></div>`},
		{"comment", xdiv + `<!-- generated --><p>x</p></div>`},
		{"surrounding-whitespace", "\n  " + xdiv + "<p>x</p></div>\n"},
		{"onward-is-text", xdiv + `<p>Review on 1 March; on=call</p></div>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Empty(t, check(t, c, codec, withNarrative(t, tc.div)))
		})
	}
}
