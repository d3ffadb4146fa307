// Package dumpfile writes a whole store to NDJSON files with a manifest,
// loads such a dump into an empty store, and moves one store into another,
// streaming every way (memory holds one record at a time) and verifying
// counts and a checksum per type.
package dumpfile

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"cpis/store"
)

// Format names the layout of a dump; Load refuses another.
const Format = "cpis-dump/1"

// The files of a dump. Gzip adds ".gz" to the NDJSON files.
const (
	ManifestFile  = "manifest.json"
	ResourcesFile = "resources.ndjson"
	AuditFile     = "audit.ndjson"
)

// ErrNotEmpty: the target store already holds records.
var ErrNotEmpty = errors.New("dumpfile: the target store is not empty")

// ErrVerify: a dump, or what a store holds after a load, does not match
// the manifest.
var ErrVerify = errors.New("dumpfile: verification failed")

// Manifest describes a dump: what is in it and how to check it.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Source names the backend dumped (sqlite or mongodb).
	Source string `json:"source,omitempty"`
	// Files are the NDJSON files, by name.
	Files map[string]FileSum `json:"files"`
	Summary
}

// FileSum is a file's size and SHA-256, as written.
type FileSum struct {
	Lines  int64  `json:"lines"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Summary is what a dump holds: per type, counts and a SHA-256 over the
// type's NDJSON lines in dump order; and the feed's sequence mark. Two
// stores with equal summaries hold the same records, byte for byte.
type Summary struct {
	Types map[string]TypeSum `json:"types"`
	// AuditSeq is the highest feed sequence number the store handed out.
	AuditSeq int64 `json:"audit_seq"`
}

// TypeSum counts one type: records (lines), versions and derived versions
// (for access records, Records only).
type TypeSum struct {
	Records  int64  `json:"records"`
	Versions int64  `json:"versions,omitempty"`
	Derived  int64  `json:"derived,omitempty"`
	SHA256   string `json:"sha256"`
}

// Items is the total of records and access records, for progress.
func (s Summary) Items() int64 {
	var n int64
	for _, t := range s.Types {
		n += t.Records
	}
	return n
}

// Diff lists how other differs from s; empty if it does not.
func (s Summary) Diff(other Summary) []string {
	var out []string
	names := map[string]bool{}
	for n := range s.Types {
		names[n] = true
	}
	for n := range other.Types {
		names[n] = true
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		a, b := s.Types[n], other.Types[n]
		if a != b {
			out = append(out, fmt.Sprintf("%s: expected %d records, %d versions, sha256 %.12s; found %d, %d, %.12s", n, a.Records, a.Versions, a.SHA256, b.Records, b.Versions, b.SHA256))
		}
	}
	if s.AuditSeq != other.AuditSeq {
		out = append(out, fmt.Sprintf("feed sequence mark: expected %d, found %d", s.AuditSeq, other.AuditSeq))
	}
	return out
}

// summer builds a Summary as lines go by.
type summer struct {
	hashes map[string]hash.Hash
	sum    Summary
}

func newSummer() *summer {
	return &summer{hashes: map[string]hash.Hash{}, sum: Summary{Types: map[string]TypeSum{}}}
}

func (s *summer) add(it store.Item, line []byte, typ string) {
	h := s.hashes[typ]
	if h == nil {
		h = sha256.New()
		s.hashes[typ] = h
	}
	h.Write(line)
	t := s.sum.Types[typ]
	t.Records++
	for _, v := range it.Versions {
		t.Versions++
		if v.Derived != nil {
			t.Derived++
		}
	}
	s.sum.Types[typ] = t
}

func (s *summer) done() Summary {
	for typ, h := range s.hashes {
		t := s.sum.Types[typ]
		t.SHA256 = hex.EncodeToString(h.Sum(nil))
		s.sum.Types[typ] = t
	}
	return s.sum
}

// Options tune a dump or load.
type Options struct {
	// Gzip compresses the NDJSON files (Write).
	Gzip bool
	// Progress, if set, is called after every record and access record.
	Progress func()
	// Source names the backend in the manifest (Write).
	Source string
}

// output is one NDJSON file being written: its SHA-256 and size over the
// bytes on disk.
type output struct {
	name  string
	f     *os.File
	hash  hash.Hash
	count *countWriter
	gz    *gzip.Writer
	w     *bufio.Writer
	lines int64
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func create(dir, name string, gz bool) (*output, error) {
	if gz {
		name += ".gz"
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dumpfile: %w", err)
	}
	o := &output{name: name, f: f, hash: sha256.New()}
	o.count = &countWriter{w: io.MultiWriter(f, o.hash)}
	var w io.Writer = o.count
	if gz {
		o.gz, _ = gzip.NewWriterLevel(o.count, gzip.BestSpeed) // the level is valid
		w = o.gz
	}
	o.w = bufio.NewWriterSize(w, 1<<20)
	return o, nil
}

func (o *output) write(line []byte) error {
	o.lines++
	_, err := o.w.Write(line)
	return err
}

func (o *output) close() (FileSum, error) {
	err := o.w.Flush()
	if o.gz != nil && err == nil {
		err = o.gz.Close()
	}
	if err == nil {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileSum{}, fmt.Errorf("dumpfile: writing %s: %w", o.name, err)
	}
	return FileSum{Lines: o.lines, Bytes: o.count.n, SHA256: hex.EncodeToString(o.hash.Sum(nil))}, nil
}

// Write dumps src into dir, which must be new or empty. The manifest is
// written last: a directory without one is not a dump.
func Write(ctx context.Context, dir string, src store.Dumper, opts Options) (*Manifest, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dumpfile: %w", err)
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return nil, fmt.Errorf("dumpfile: %w", err)
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("dumpfile: %s is not empty: a dump goes into a new directory", dir)
	}
	res, err := create(dir, ResourcesFile, opts.Gzip)
	if err != nil {
		return nil, err
	}
	defer res.f.Close()
	aud, err := create(dir, AuditFile, opts.Gzip)
	if err != nil {
		return nil, err
	}
	defer aud.f.Close()
	sum := newSummer()
	var seq int64
	err = src.Dump(ctx, func(it store.Item) error {
		if it.Audit == nil && len(it.Versions) == 0 {
			seq = it.Seq
			return nil
		}
		line, typ, isAudit, err := encode(it)
		if err != nil {
			return err
		}
		sum.add(it, line, typ)
		out := res
		if isAudit {
			out = aud
		}
		if err := out.write(line); err != nil {
			return fmt.Errorf("dumpfile: writing %s: %w", out.name, err)
		}
		if opts.Progress != nil {
			opts.Progress()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := &Manifest{Format: Format, Created: time.Now().UTC(), Source: opts.Source, Files: map[string]FileSum{}, Summary: sum.done()}
	m.AuditSeq = seq
	for _, o := range []*output{res, aud} {
		fs, err := o.close()
		if err != nil {
			return nil, err
		}
		m.Files[o.name] = fs
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "."+ManifestFile)
	if err := writeSynced(tmp, append(b, '\n')); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return nil, fmt.Errorf("dumpfile: %w", err)
	}
	return m, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("dumpfile: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dumpfile: %w", err)
	}
	return nil
}

// ReadManifest reads dir's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("dumpfile: %s is not a complete dump: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrVerify, ManifestFile, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: %s is format %q, not %q", ErrVerify, ManifestFile, m.Format, Format)
	}
	return &m, nil
}

// Verify checks each file of dir against the manifest's size and SHA-256,
// reading it once, before anything is loaded.
func Verify(dir string) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if len(m.Files) != 2 {
		return nil, fmt.Errorf("%w: the manifest lists %d files, not 2", ErrVerify, len(m.Files))
	}
	for name, want := range m.Files {
		if name != filepath.Base(name) || (strings.TrimSuffix(name, ".gz") != ResourcesFile && strings.TrimSuffix(name, ".gz") != AuditFile) {
			return nil, fmt.Errorf("%w: the manifest names an unknown file %q", ErrVerify, name)
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrVerify, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: reading %s: %v", ErrVerify, name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); n != want.Bytes || got != want.SHA256 {
			return nil, fmt.Errorf("%w: %s is %d bytes with SHA-256 %s; the manifest says %d bytes, %s", ErrVerify, name, n, got, want.Bytes, want.SHA256)
		}
	}
	return m, nil
}

// input reads one NDJSON file line by line.
type input struct {
	f  *os.File
	gz *gzip.Reader
	r  *bufio.Reader
}

func openInput(dir string, m *Manifest, base string) (*input, error) {
	name := base
	if _, ok := m.Files[base+".gz"]; ok {
		name = base + ".gz"
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("dumpfile: %w", err)
	}
	in := &input{f: f}
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		if in.gz, err = gzip.NewReader(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%w: %s: %v", ErrVerify, name, err)
		}
		r = in.gz
	}
	in.r = bufio.NewReaderSize(r, 1<<20)
	return in, nil
}

func (in *input) close() { in.f.Close() }

// Load verifies the dump in dir, loads it into dst (refused if dst is not
// empty, unless force), and then verifies what dst holds against the
// manifest by dumping it again (not with force: the target held records
// before, so it cannot equal the dump). It returns the manifest.
func Load(ctx context.Context, dir string, dst store.Store, force bool, opts Options) (*Manifest, error) {
	m, err := Verify(dir)
	if err != nil {
		return nil, err
	}
	if err := checkTarget(ctx, dst, force); err != nil {
		return nil, err
	}
	res, err := openInput(dir, m, ResourcesFile)
	if err != nil {
		return nil, err
	}
	defer res.close()
	aud, err := openInput(dir, m, AuditFile)
	if err != nil {
		return nil, err
	}
	defer aud.close()
	sum := newSummer()
	inputs := []*input{res, aud}
	decoders := []func([]byte) (store.Item, error){decodeRecord, decodeAudit}
	lineNo := 0
	marked := false
	next := func() (store.Item, error) {
		for len(inputs) > 0 {
			line, err := inputs[0].r.ReadBytes('\n')
			if errors.Is(err, io.EOF) && len(line) == 0 {
				inputs, decoders, lineNo = inputs[1:], decoders[1:], 0
				continue
			}
			lineNo++
			if err != nil {
				return store.Item{}, fmt.Errorf("%w: %s line %d: %v", ErrVerify, inputs[0].f.Name(), lineNo, err)
			}
			it, err := decoders[0](line)
			if err != nil {
				return store.Item{}, fmt.Errorf("%w: %s line %d: %v", ErrVerify, filepath.Base(inputs[0].f.Name()), lineNo, err)
			}
			typ := auditType
			if len(it.Versions) > 0 {
				typ = it.Versions[0].Type
			}
			sum.add(it, line, typ)
			if opts.Progress != nil {
				opts.Progress()
			}
			return it, nil
		}
		if !marked {
			marked = true
			return store.Item{Seq: m.AuditSeq}, nil
		}
		return store.Item{}, io.EOF
	}
	if err := dst.(store.Loader).Load(ctx, next); err != nil {
		return nil, err
	}
	read := sum.done()
	read.AuditSeq = m.AuditSeq
	if d := m.Summary.Diff(read); len(d) > 0 {
		return nil, fmt.Errorf("%w: the files do not match the manifest: %s", ErrVerify, strings.Join(d, "; "))
	}
	if force {
		// The target held records before: it cannot equal the dump.
		return m, nil
	}
	return m, check(ctx, dst, m.Summary)
}

// Migrate streams src into dst (refused if dst is not empty, unless force)
// and verifies dst against what was read from src. It returns the summary.
func Migrate(ctx context.Context, src, dst store.Store, force bool, opts Options) (Summary, error) {
	if err := checkTarget(ctx, dst, force); err != nil {
		return Summary{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan store.Item, 256)
	dumped := make(chan error, 1)
	sum := newSummer()
	var seq int64
	go func() {
		defer close(items)
		dumped <- src.(store.Dumper).Dump(ctx, func(it store.Item) error {
			if it.Audit != nil || len(it.Versions) > 0 {
				line, typ, _, err := encode(it)
				if err != nil {
					return err
				}
				sum.add(it, line, typ)
			} else {
				seq = it.Seq
			}
			select {
			case items <- it:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	err := dst.(store.Loader).Load(ctx, func() (store.Item, error) {
		it, ok := <-items
		if !ok {
			return store.Item{}, io.EOF
		}
		if opts.Progress != nil && (it.Audit != nil || len(it.Versions) > 0) {
			opts.Progress()
		}
		return it, nil
	})
	cancel()
	for range items {
	}
	if derr := <-dumped; derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return Summary{}, err
	}
	want := sum.done()
	want.AuditSeq = seq
	if force {
		return want, nil
	}
	return want, check(context.WithoutCancel(ctx), dst, want)
}

func checkTarget(ctx context.Context, dst store.Store, force bool) error {
	l, ok := dst.(store.Loader)
	if !ok {
		return errors.New("dumpfile: the target store cannot load a dump")
	}
	empty, err := l.Empty(ctx)
	if err != nil {
		return err
	}
	if !empty && !force {
		return ErrNotEmpty
	}
	return nil
}

// Summarize dumps s without writing anything, for its summary.
func Summarize(ctx context.Context, s store.Store) (Summary, error) {
	sum := newSummer()
	var seq int64
	err := s.(store.Dumper).Dump(ctx, func(it store.Item) error {
		if it.Audit == nil && len(it.Versions) == 0 {
			seq = it.Seq
			return nil
		}
		line, typ, _, err := encode(it)
		if err == nil {
			sum.add(it, line, typ)
		}
		return err
	})
	if err != nil {
		return Summary{}, err
	}
	out := sum.done()
	out.AuditSeq = seq
	return out, nil
}

// check dumps dst and compares it with want.
func check(ctx context.Context, dst store.Store, want Summary) error {
	got, err := Summarize(ctx, dst)
	if err != nil {
		return fmt.Errorf("dumpfile: verifying the target: %w", err)
	}
	if d := want.Diff(got); len(d) > 0 {
		return fmt.Errorf("%w: the target store does not hold what was loaded: %s", ErrVerify, strings.Join(d, "; "))
	}
	return nil
}
