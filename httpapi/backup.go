package httpapi

import (
	"io"
	"net/http"

	"github.com/syncpoint/syncpoint"
)

// handleBackup streams an online backup of the store as a tar archive. An
// error before the first byte is answered as JSON; after it, the
// connection is cut, and the client sees the archive end early.
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) error {
	if s.backup == nil {
		return syncpoint.Errorf(syncpoint.CodeNotFound, "this store has no online backup; back up its database with the database's own tools")
	}
	out := &startedWriter{w: w}
	err := s.backup(r.Context(), out)
	if err == nil {
		return nil
	}
	if !out.started {
		return err
	}
	s.logger.Error("httpapi: backup failed while it was sent", "err", err)
	panic(http.ErrAbortHandler)
}

// startedWriter sends the archive's headers with its first byte.
type startedWriter struct {
	w       http.ResponseWriter
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/x-tar")
		s.w.WriteHeader(http.StatusOK)
	}
	return s.w.Write(p)
}

var _ io.Writer = (*startedWriter)(nil)
