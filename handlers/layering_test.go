package handlers_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHazard_HandlersReadTheStoreAroundTheAudit type-checks the handlers
// package (its non-test files) and fails if any of it calls the store or
// uses anything of package store other than its types: records about a
// patient must come from the registry, whose reads return nothing until the
// access is audited. A handler that read the store itself could show a
// child's record unaudited.
func TestHazard_HandlersReadTheStoreAroundTheAudit(t *testing.T) {
	const storePkg = "cpis/store"
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	require.NoError(t, err)
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		files = append(files, f)
		for _, imp := range f.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			assert.False(t, strings.HasPrefix(path, storePkg+"/"), "%s imports %s: the handlers never reach a backend", name, path)
		}
	}
	require.NotEmpty(t, files)

	exports := exportData(t)
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, os.ErrNotExist
		}
		return os.Open(f)
	})
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	_, err = (&types.Config{Importer: imp}).Check("cpis/handlers", fset, files, info)
	require.NoError(t, err)

	checked := 0
	for id, obj := range info.Uses {
		if obj.Pkg() == nil || obj.Pkg().Path() != storePkg {
			continue
		}
		checked++
		switch o := obj.(type) {
		case *types.TypeName:
			// store.Record and store.Store as types are fine.
		case *types.Var:
			if !o.IsField() {
				t.Errorf("%s: uses store.%s, a value of the store package: the registry maps store errors", fset.Position(id.Pos()), o.Name())
			}
		default:
			t.Errorf("%s: uses store.%s (%T): only the registry calls the store", fset.Position(id.Pos()), obj.Name(), obj)
		}
	}
	for sel, s := range info.Selections {
		if s.Kind() != types.MethodVal && s.Kind() != types.MethodExpr {
			continue
		}
		if fn := s.Obj(); fn.Pkg() != nil && fn.Pkg().Path() == storePkg {
			t.Errorf("%s: calls the store's %s: only the registry calls the store", fset.Position(sel.Pos()), fn.Name())
		}
	}
	assert.NotZero(t, checked, "the handlers still name store types; the check saw none, so it checked nothing")
}

// exportData maps the import path of every dependency of the handlers to
// its compiled export data, as the go command builds it.
func exportData(t *testing.T) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}", ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if path, file, ok := strings.Cut(sc.Text(), "\t"); ok && file != "" {
			m[path] = file
		}
	}
	return m
}
