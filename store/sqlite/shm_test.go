package sqlite

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const envSHMDir = "CPIS_TEST_UNWRITABLE_SHM_DIR"

// TestHazard_UnwritableSHMKillsTheProcess: SQLite maps the -shm file into
// memory, and a -shm this process cannot write ends it with SIGBUS. Open
// refuses such a database with an error instead. Root can write any file,
// so as root the check runs in a copy of this test binary as nobody.
func TestHazard_UnwritableSHMKillsTheProcess(t *testing.T) {
	if dir := os.Getenv(envSHMDir); dir != "" {
		_, err := Open(dir, Options{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), FileName+"-shm is not writable")
		return
	}
	dir, err := os.MkdirTemp("", "cpis-shm-")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	putPlan(t, s, "p1")
	require.NoError(t, s.Close())
	shm := filepath.Join(dir, FileName+"-shm")
	require.NoError(t, os.WriteFile(shm, make([]byte, 32768), 0o400))
	require.NoError(t, os.Chmod(shm, 0o400))

	if os.Geteuid() != 0 {
		_, err := Open(dir, Options{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), FileName+"-shm is not writable")
		return
	}
	const nobody = 65534
	require.NoError(t, os.Chmod(dir, 0o700))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range append(entries, nil) {
		p := dir
		if e != nil {
			p = filepath.Join(dir, e.Name())
		}
		require.NoError(t, os.Chown(p, nobody, nobody))
	}
	self, err := os.Executable()
	require.NoError(t, err)
	bin := filepath.Join(dir, "sqlite.test")
	in, err := os.Open(self)
	require.NoError(t, err)
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	in.Close()
	require.NoError(t, err)
	require.NoError(t, out.Close())
	require.NoError(t, os.Chown(bin, nobody, nobody))

	cmd := exec.Command(bin, "-test.run", "^TestHazard_UnwritableSHMKillsTheProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envSHMDir+"="+dir, "HOME="+dir, "TMPDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	b, err := cmd.CombinedOutput()
	assert.NoError(t, err, "the check as nobody: %s", b)
}
