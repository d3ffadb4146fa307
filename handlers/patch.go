package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
)

// jsonPatchMIME is the media type of an RFC 6902 JSON Patch document.
const jsonPatchMIME = "application/json-patch+json"

// maxPatchOps bounds the operations of one JSON Patch: each is applied and
// checked on its own, and a real change to a plan or an authority is a few.
const maxPatchOps = 100

// patch serves PATCH /{type}/{id} with a JSON Patch (RFC 6902): the patch is
// applied to the current version (the caller's own; another authority's is
// not found, as for a read), and the result is written through the one
// write path as an update of that version: validated like any write (base
// R4, the CP-IS profile, exact keys, no SUBSETTED tag), refused if it would
// move the resource to another local authority (403), and pinned to the
// version the request's If-Match names, else to the version patched, so a
// write in between is a 412, never a lost update.
func (s *Server) patch(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != jsonPatchMIME {
			return fhir.Errorf(fhir.KindUnsupportedMedia, "PATCH takes a JSON Patch document (RFC 6902) with Content-Type %s; "+
				"FHIRPath Patch (a Parameters resource) and JSON Merge Patch are not supported", jsonPatchMIME)
		}
		p := principal(c)
		if err := registry.MayWrite(p, typ); err != nil {
			return err
		}
		match, err := ifMatch(c)
		if err != nil {
			return err
		}
		id, err := idParam(c)
		if err != nil {
			return err
		}
		body, err := s.readBody(c, s.Limits.MaxResourceBytes)
		if err != nil {
			return err
		}
		ops, err := decodePatch(body)
		if err != nil {
			return err
		}
		cur, err := s.reg.Editable(c.Request.Context(), caller(c, false), typ, id)
		if err != nil {
			return err
		}
		if match != nil && *match != cur.Version {
			return fhir.Errorf(fhir.KindPreconditionFailed, "If-Match names version %d, but %s/%s is at version %d; read it again and patch that", *match, typ, id, cur.Version)
		}
		patched, err := s.applyPatch(ops, cur.Body)
		if err != nil {
			return err
		}
		in, err := s.decodeResource(patched, typ)
		if err != nil {
			return err
		}
		if in.ID != id {
			return fhir.At(fhir.KindInvalid, typ+".id", "A patch may not change the resource's id (%s/%s)", typ, id)
		}
		if err := registry.OwnWrite(p, in); err != nil {
			return err
		}
		if match == nil {
			match = &cur.Version
		}
		return s.written(c)(s.apply(c, registry.Change{Op: registry.Put, Type: typ, ID: id, In: in, IfMatch: match}))
	})
}

// decodePatch reads a JSON Patch document: an array of operations, each an
// object with op (add, remove, replace, move, copy or test), path, and the
// value or from its op needs. Every malformed operation is reported (400).
func decodePatch(body []byte) (jsonpatch.Patch, error) {
	if issues := fhir.CheckJSON(body, "patch"); issues != nil {
		return nil, fhir.Invalid(issues)
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fhir.At(fhir.KindInvalid, "patch", "The body must be a JSON Patch document (RFC 6902): an array of operations such as "+
			`[{"op":"replace","path":"/period/end","value":"2026-07-01"}]`)
	}
	if len(raw) == 0 {
		return nil, fhir.At(fhir.KindInvalid, "patch", "The JSON Patch has no operations")
	}
	if len(raw) > maxPatchOps {
		return nil, fhir.At(fhir.KindInvalid, "patch", "A JSON Patch may have at most %d operations", maxPatchOps)
	}
	var errs []*fhir.Error
	bad := func(i int, member, format string, args ...any) {
		errs = append(errs, fhir.As(fhir.At(fhir.KindInvalid, fmt.Sprintf("patch[%d].%s", i, member), format, args...)))
	}
	for i, op := range raw {
		if op == nil {
			bad(i, "op", "Each operation must be a JSON object")
			continue
		}
		var name, path string
		if json.Unmarshal(op["op"], &name) != nil {
			bad(i, "op", "Each operation needs op: add, remove, replace, move, copy or test")
			continue
		}
		if json.Unmarshal(op["path"], &path) != nil || path != "" && path[0] != '/' {
			bad(i, "path", "Each operation needs path, a JSON Pointer such as /period/end")
		}
		switch name {
		case "add", "replace", "test":
			if _, ok := op["value"]; !ok {
				bad(i, "value", "A %s operation needs a value", name)
			}
		case "move", "copy":
			var from string
			if json.Unmarshal(op["from"], &from) != nil || from != "" && from[0] != '/' {
				bad(i, "from", "A %s operation needs from, a JSON Pointer", name)
			}
		case "remove":
		default:
			bad(i, "op", "%q is not a JSON Patch operation: use add, remove, replace, move, copy or test", clip(name))
		}
	}
	if err := fhir.Join(errs...); err != nil {
		return nil, err
	}
	ops, err := jsonpatch.DecodePatch(body)
	if err != nil {
		return nil, fhir.Wrap(fhir.KindInvalid, err, "The JSON Patch document could not be read")
	}
	return ops, nil
}

// applyPatch applies the operations to doc one by one, so that a failure
// names its operation, and so that no operation may grow the resource past
// the single-resource limit (413). A test that fails, or an operation whose
// path is not in the resource, leaves the resource as it is: 422, the patch
// cannot be applied to this version.
func (s *Server) applyPatch(ops jsonpatch.Patch, doc []byte) ([]byte, error) {
	limit := s.Limits.MaxResourceBytes
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices = false // RFC 6902: an index, or "-" to append
	opts.AccumulatedCopySizeLimit = limit
	opts.EscapeHTML = false
	for i, op := range ops {
		out, err := jsonpatch.Patch{op}.ApplyWithOptions(doc, opts)
		var sizeErr *jsonpatch.AccumulatedCopySizeError
		switch {
		case errors.As(err, &sizeErr):
			return nil, fhir.Errorf(fhir.KindTooLarge, "The patched resource would be larger than this server accepts (%d bytes)", limit)
		case errors.Is(err, jsonpatch.ErrTestFailed):
			return nil, fhir.At(fhir.KindUnprocessable, fmt.Sprintf("patch[%d]", i), "The test operation failed: the resource does not hold that value at %s; nothing was changed", clip(pathOf(op)))
		case err != nil:
			return nil, fhir.At(fhir.KindUnprocessable, fmt.Sprintf("patch[%d]", i), "The %s operation cannot be applied to the current version: %s is not in the resource (or not where it can go); nothing was changed", op.Kind(), clip(pathOf(op)))
		}
		if int64(len(out)) > limit {
			return nil, fhir.Errorf(fhir.KindTooLarge, "The patched resource would be larger than this server accepts (%d bytes)", limit)
		}
		doc = out
	}
	return doc, nil
}

func pathOf(op jsonpatch.Operation) string {
	p, _ := op.Path()
	return p
}
