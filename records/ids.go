package records

// Limits on what a device uploads.
const (
	MaxWriteIDLen = 128
	MaxIDLen      = 128
	maxFields     = 1024 // names in Record.Fields
	maxFieldLen   = 1024 // bytes in one field name
)

// ValidID reports whether id is a record id a device may choose: a UUID
// (8-4-4-4-12 hex digits), a ULID (26 Crockford base32 characters) or a
// MongoDB ObjectId (24 hex digits), in either case. Fixed formats keep ids
// made offline on different devices from colliding.
func ValidID(id string) bool {
	switch len(id) {
	case 36:
		for i := 0; i < len(id); i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if id[i] != '-' {
					return false
				}
			} else if !isHex(id[i]) {
				return false
			}
		}
		return true
	case 26:
		if id[0] > '7' { // 26 base32 digits hold 130 bits; a ULID is 128
			return false
		}
		for i := 0; i < len(id); i++ {
			if !isCrockford(id[i]) {
				return false
			}
		}
		return true
	case 24:
		for i := 0; i < len(id); i++ {
			if !isHex(id[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isCrockford(c byte) bool {
	switch {
	case '0' <= c && c <= '9':
		return true
	case 'a' <= c && c <= 'z':
		c -= 'a' - 'A'
	case 'A' <= c && c <= 'Z':
	default:
		return false
	}
	return c != 'I' && c != 'L' && c != 'O' && c != 'U'
}

// validWriteID reports whether a write_id is 1-128 printable ASCII
// characters; it becomes part of store keys, so nothing else is allowed.
func validWriteID(id string) bool {
	if id == "" || len(id) > MaxWriteIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}
