package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// The seal of a clean shutdown. PRAGMA quick_check reads and parses every
// page of the database, several seconds per gigabyte through modernc's
// SQLite: most of a cold start at national volume. When the store closes
// cleanly (its last connection gone, the write-ahead log copied back and
// deleted) it writes a seal beside the database: the file's size, its
// modification time and a CRC-32C of every chunk of it. The next Open
// takes the seal away before SQLite touches the file and, if the database
// is still byte for byte what was sealed, skips quick_check: the file
// cannot have been damaged since a shutdown that left it that way. A
// missing, stale or mismatched seal (a crash, another tool writing the
// file, a disk error, a truncated or replaced file) runs the full check
// as before. Reading a file's chunks in parallel runs at memory speed
// (hundreds of MB a second a core), far faster than quick_check.
//
// What the seal does not cover it leaves as before: the store identity
// (a missing, emptied or another store's database is refused whatever the
// seal says) and the sample of plans found through the indexes a Flag
// search uses (cheap, run on every start). The index counts (seconds at
// national volume: tens of millions of access-record index entries) run
// at the shutdown, on the file as it is sealed, and the seal says they
// agreed (IndexesCounted); a start on that seal needs not count them
// again, the file being byte for byte the one counted. A seal without it
// (the counts stopped at their time limit, or the check is turned off)
// leaves them to the start, as before. Counts that disagree leave no seal:
// the next start checks the file in full and refuses it.

// sealSuffix names the seal: cpis.db.seal beside cpis.db.
const sealSuffix = ".seal"

// sealChunk is the part of the file each checksum covers.
const sealChunk = 64 << 20

type seal struct {
	Size    int64    `json:"size"`
	ModTime int64    `json:"mod_time_ns"`
	Chunk   int64    `json:"chunk"`
	CRC32C  []uint32 `json:"crc32c"`
	// IndexesCounted: each index held as many entries as the others of
	// its table when the shutdown counted them, on these bytes.
	IndexesCounted bool `json:"indexes_counted,omitempty"`
}

// sealMu serialises reading the database file for its seal with opening
// it in this process: closing any descriptor of a file drops every POSIX
// lock the process holds on it, SQLite's included, so the file is read
// only while no connection of this process has it open (see Open, Close).
var sealMu sync.Mutex

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileSums returns the size of the file at path and the CRC-32C of each
// chunk of it, chunks read on every core at once.
func fileSums(path string, chunk int64) (int64, []uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	size := info.Size()
	sums := make([]uint32, (size+chunk-1)/chunk)
	next := make(chan int)
	errs := make(chan error, len(sums)+1)
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), max(1, len(sums))); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := range next {
				off, end := int64(i)*chunk, min(size, int64(i+1)*chunk)
				var sum uint32
				for off < end {
					n, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
					if n == 0 && err != nil {
						errs <- err
						break
					}
					sum = crc32.Update(sum, castagnoli, buf[:n])
					off += int64(n)
				}
				sums[i] = sum
			}
		}()
	}
	for i := range sums {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("the file shrank while it was read")
		}
		return 0, nil, err
	}
	return size, sums, nil
}

// writeSeal seals the database at path after a clean close: only when its
// write-ahead log is gone, which SQLite does when the last connection of
// any process closes, so no connection can still change the file or hold
// a lock on it. counted says the index counts agreed on the file as it is
// now (see countForSeal). Call it with sealMu held.
func writeSeal(path string, counted bool) error {
	if _, err := os.Lstat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		return nil // another connection still has the database open
	}
	before, err := os.Stat(path)
	if err != nil {
		return err
	}
	size, sums, err := fileSums(path, sealChunk)
	if err != nil {
		return err
	}
	after, err := os.Stat(path)
	if err != nil {
		return err
	}
	if size != after.Size() || !before.ModTime().Equal(after.ModTime()) {
		return nil // written meanwhile: no seal
	}
	b, err := json.Marshal(seal{Size: size, ModTime: after.ModTime().UnixNano(), Chunk: sealChunk, CRC32C: sums, IndexesCounted: counted})
	if err != nil {
		return err
	}
	tmp := path + sealSuffix + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+sealSuffix)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// sealState is what takeSeal found: unsealed says why the database is not
// exactly what a clean shutdown sealed ("" if it is); counted, that the
// shutdown's index counts agreed on those bytes.
type sealState struct {
	unsealed string
	counted  bool
}

// takeSeal removes the seal of the database at path, durably, and says
// whether the database is still exactly what it sealed. It reads the
// database file only if there is a seal to check. Call it with sealMu
// held, before SQLite opens the database.
func takeSeal(path string) (sealState, error) {
	b, err := os.ReadFile(path + sealSuffix)
	if errors.Is(err, os.ErrNotExist) {
		return sealState{unsealed: "no seal of a clean shutdown"}, nil
	}
	if err != nil {
		return sealState{}, fmt.Errorf("store/sqlite: reading the seal: %w", err)
	}
	// Gone before SQLite may write the file: a seal never outlives the
	// state it describes.
	if err := os.Remove(path + sealSuffix); err != nil {
		return sealState{}, fmt.Errorf("store/sqlite: removing the seal: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return sealState{}, fmt.Errorf("store/sqlite: removing the seal: %w", err)
	}
	var sl seal
	if err := json.Unmarshal(b, &sl); err != nil || sl.Chunk <= 0 {
		return sealState{unsealed: "the seal is unreadable"}, nil
	}
	if info, err := os.Lstat(path + "-wal"); err == nil && info.Size() > 0 {
		return sealState{unsealed: "a write-ahead log is waiting to be applied"}, nil
	}
	info, err := os.Stat(path)
	switch {
	case err != nil:
		return sealState{unsealed: "the database file cannot be examined"}, nil
	case info.Size() != sl.Size:
		return sealState{unsealed: fmt.Sprintf("the database file is %d bytes, sealed at %d", info.Size(), sl.Size)}, nil
	case info.ModTime().UnixNano() != sl.ModTime:
		return sealState{unsealed: "the database file was modified after it was sealed"}, nil
	}
	size, sums, err := fileSums(path, sl.Chunk)
	if err != nil {
		return sealState{unsealed: "the database file cannot be read whole: " + err.Error()}, nil
	}
	if size != sl.Size || len(sums) != len(sl.CRC32C) {
		return sealState{unsealed: "the database file changed size while it was read"}, nil
	}
	for i := range sums {
		if sums[i] != sl.CRC32C[i] {
			return sealState{unsealed: fmt.Sprintf("the database file differs from its seal at bytes %d to %d", int64(i)*sl.Chunk, min(size, int64(i+1)*sl.Chunk))}, nil
		}
	}
	return sealState{counted: sl.IndexesCounted}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
