package syncpoint

import "time"

// Device is a client installation: a stable id chosen by the client, the
// user from its token, and what it last said about itself.
type Device struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	Platform   string    `json:"platform,omitempty"`
	AppVersion string    `json:"app_version,omitempty"`
	LastSeen   time.Time `json:"last_seen"`
}
