package fhir

import "io"

// CompactReader reads JSON with every run of whitespace between tokens
// collapsed to one space; strings pass through whole. The document means
// exactly what it meant (JSON whitespace between tokens is insignificant,
// and one space still separates whatever several did), but
// encoding/json's Decoder, which rescans the whitespace it has buffered
// each time it reads more, no longer takes time that grows with the square
// of a body that is mostly whitespace.
func CompactReader(r io.Reader) io.Reader { return &compactReader{r: r} }

type compactReader struct {
	r        io.Reader
	inString bool
	escaped  bool
	space    bool // the last byte passed on was whitespace outside a string
}

func (c *compactReader) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		w := 0
		for _, b := range p[:n] {
			switch {
			case c.inString:
				switch {
				case c.escaped:
					c.escaped = false
				case b == '\\':
					c.escaped = true
				case b == '"':
					c.inString = false
				}
			case b == ' ' || b == '\t' || b == '\n' || b == '\r':
				if c.space {
					continue
				}
				c.space = true
				p[w] = ' '
				w++
				continue
			case b == '"':
				c.inString = true
			}
			c.space = false
			p[w] = b
			w++
		}
		if w > 0 || err != nil || n == 0 {
			return w, err
		}
	}
}
