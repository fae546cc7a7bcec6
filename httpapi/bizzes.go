package httpapi

import (
	"net/http"

	"github.com/syncpoint/syncpoint"
)

// bizBody decodes a biz without syncpoint.Biz's UnmarshalJSON, so that the
// strict decoder can refuse unknown fields; it starts from NewBiz's
// defaults, as UnmarshalJSON does.
type bizBody syncpoint.Biz

func (s *Server) handleListBizzes(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, struct {
		Bizzes []syncpoint.Biz `json:"bizzes"`
	}{s.registry.List()})
	return nil
}

func (s *Server) handleGetBiz(w http.ResponseWriter, r *http.Request) error {
	b, err := s.registry.Lookup(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// handlePutBiz creates or replaces a biz: 201 when it is new, 200 when it
// replaced one. The name in the path wins; a different name in the body is
// an error.
func (s *Server) handlePutBiz(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := syncpoint.ValidateBizName(name); err != nil {
		return err
	}
	body, done, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	v := bizBody(syncpoint.NewBiz("", ""))
	err = checkIJSON(body)
	if err == nil {
		err = decodeStrict(body, &v)
	}
	done()
	if err != nil {
		return err
	}
	b := syncpoint.Biz(v)
	if b.Name != "" && b.Name != name {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "name %q in the body differs from %q in the path", b.Name, name)
	}
	b.Name = name
	_, existed := s.registry.Get(name)
	if err := s.registry.Put(r.Context(), b); err != nil {
		return err
	}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	writeJSON(w, status, b)
	return nil
}

func (s *Server) handleDeleteBiz(w http.ResponseWriter, r *http.Request) error {
	if err := s.registry.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
