package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrStoreIdentity: the database is missing, empty or another store than
// the one the data directory's marker names. A server refuses to start on
// it until an operator accepts the database as the store (cpis store init
// --force): a deployment that has held records must never come up empty by
// accident, answering "no flags" for every child.
var ErrStoreIdentity = errors.New("store: the database is not the store this server has held")

// MarkerFile is the file in the data directory naming the store the
// directory's server has used. It lives outside the database on purpose:
// deleting or replacing the database leaves it behind.
const MarkerFile = "store-identity"

// NewStoreID makes a random store identity.
func NewStoreID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// ReadMarker returns the store identity named in dir's marker, "" if there
// is no marker. A marker that is not a store identity is an error: it is not
// to be overwritten silently.
func ReadMarker(dir string) (string, error) {
	path := filepath.Join(dir, MarkerFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: reading the store marker %s: %w", path, err)
	}
	id := strings.TrimSpace(string(b))
	if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
		return "", fmt.Errorf("store: %w: the store marker %s does not hold a store identity", ErrStoreIdentity, path)
	}
	return id, nil
}

// WriteMarker records id as the store of dir: written to a temporary file,
// synced, renamed into place and the directory synced, so the marker is
// either the old one or the new one, whole.
func WriteMarker(dir, id string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: writing the store marker: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+MarkerFile+"-*")
	if err != nil {
		return fmt.Errorf("store: writing the store marker: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, MarkerFile))
	}
	if err == nil {
		if d, derr := os.Open(dir); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("store: writing the store marker: %w", err)
	}
	return nil
}

// CheckIdentity decides whether a database may be used as dir's store.
// marker is the identity in dir's marker ("" if none), dbID the one inside
// the database ("" if it has none: it is new, or was emptied). With reset,
// the database is accepted whatever it is. It returns the error to refuse
// with, or nil; the caller then writes the marker if it differs from dbID.
func CheckIdentity(dir, marker, dbID, what string, reset bool) error {
	switch {
	case reset || marker == "" || marker == dbID:
		return nil
	case dbID == "":
		return fmt.Errorf("%w: %s has held store %s, but %s is missing or empty; refusing to start with no records. If a new empty store is intended, run `cpis store init --force`",
			ErrStoreIdentity, dir, marker, what)
	default:
		return fmt.Errorf("%w: %s has held store %s, but %s is store %s; refusing to start on another store's records. If this database is intended, run `cpis store init --force`",
			ErrStoreIdentity, dir, marker, what, dbID)
	}
}
