package httpapi

import (
	"net/http"

	"github.com/syncpoint/syncpoint"
)

// bizBody decodes a biz without syncpoint.Biz's UnmarshalJSON, so that the
// strict decoder can refuse unknown fields; it starts from NewBiz's
// defaults, as UnmarshalJSON does.
type bizBody syncpoint.Biz

// bizInput is the body of PUT /v1/bizzes/{name}: a biz whose webhook says
// whether its secret was given at all.
type bizInput struct {
	bizBody
	Webhook *webhookInput `json:"webhook"`
}

// webhookInput is a webhook as PUT takes it. An absent secret keeps the
// stored one, so that a biz read with GET can be sent back changed without
// knowing the secret; "" removes it. secret_set, which GET shows, is taken
// and ignored for the same reason.
type webhookInput struct {
	ValidateURL string             `json:"validate_url"`
	NotifyURL   string             `json:"notify_url"`
	Secret      *string            `json:"secret"`
	SecretSet   *bool              `json:"secret_set"`
	Timeout     syncpoint.Duration `json:"timeout"`
}

// bizView is a biz as the API shows it: never its webhook's secret, only
// whether one is set.
type bizView struct {
	syncpoint.Biz
	Webhook *webhookView `json:"webhook,omitempty"`
}

type webhookView struct {
	ValidateURL string             `json:"validate_url,omitempty"`
	NotifyURL   string             `json:"notify_url,omitempty"`
	SecretSet   bool               `json:"secret_set"`
	Timeout     syncpoint.Duration `json:"timeout,omitempty"`
}

func viewOf(b syncpoint.Biz) bizView {
	v := bizView{Biz: b}
	v.Biz.Webhook = nil
	if w := b.Webhook; w != nil {
		v.Webhook = &webhookView{ValidateURL: w.ValidateURL, NotifyURL: w.NotifyURL, SecretSet: w.Secret != "", Timeout: w.Timeout}
	}
	return v
}

func (s *Server) handleListBizzes(w http.ResponseWriter, r *http.Request) error {
	bizzes := s.registry.List()
	views := make([]bizView, len(bizzes))
	for i, b := range bizzes {
		views[i] = viewOf(b)
	}
	writeJSON(w, http.StatusOK, struct {
		Bizzes []bizView `json:"bizzes"`
	}{views})
	return nil
}

func (s *Server) handleGetBiz(w http.ResponseWriter, r *http.Request) error {
	b, err := s.registry.Lookup(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewOf(b))
	return nil
}

// handlePutBiz creates or replaces a biz: 201 when it is new, 200 when it
// replaced one. The name in the path wins; a different name in the body is
// an error.
func (s *Server) handlePutBiz(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := syncpoint.ValidateBizName(name); err != nil {
		return syncpoint.WithField(err, "name")
	}
	body, done, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	in := bizInput{bizBody: bizBody(syncpoint.NewBiz("", ""))}
	err = checkIJSON(body)
	if err == nil {
		err = decodeStrict(body, &in)
	}
	done()
	if err != nil {
		return err
	}
	b := syncpoint.Biz(in.bizBody)
	if b.Name != "" && b.Name != name {
		return syncpoint.FieldErrorf(syncpoint.CodeInvalid, "name", "name %q in the body differs from %q in the path", b.Name, name)
	}
	b.Name = name
	old, existed := s.registry.Get(name)
	b.Webhook = nil
	if wi := in.Webhook; wi != nil {
		b.Webhook = &syncpoint.Webhook{ValidateURL: wi.ValidateURL, NotifyURL: wi.NotifyURL, Timeout: wi.Timeout}
		switch {
		case wi.Secret != nil:
			b.Webhook.Secret = *wi.Secret
		case existed && old.Webhook != nil:
			b.Webhook.Secret = old.Webhook.Secret
		}
	}
	if err := s.registry.Put(r.Context(), b); err != nil {
		return err
	}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	writeJSON(w, status, viewOf(b))
	return nil
}

func (s *Server) handleDeleteBiz(w http.ResponseWriter, r *http.Request) error {
	if err := s.registry.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
