package fhir

// ValidNHSNumber reports whether s is a 10-digit NHS number whose last digit
// is the Modulus 11 check digit of the first nine. 0000000000 passes the
// check but is no one's NHS number, so it is not valid.
func ValidNHSNumber(s string) bool {
	if len(s) != 10 || s == "0000000000" {
		return false
	}
	sum := 0
	for i := 0; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	switch check {
	case 11:
		check = 0
	case 10:
		return false
	}
	return int(s[9]-'0') == check
}

// NHSNumberCheckDigit returns the check digit for the first nine digits of
// an NHS number, or -1 if those nine digits cannot start a valid number.
func NHSNumberCheckDigit(nine string) int {
	if len(nine) != 9 || nine == "000000000" {
		return -1
	}
	sum := 0
	for i := 0; i < 9; i++ {
		c := nine[i]
		if c < '0' || c > '9' {
			return -1
		}
		sum += int(c-'0') * (10 - i)
	}
	switch check := 11 - sum%11; check {
	case 11:
		return 0
	case 10:
		return -1
	default:
		return check
	}
}

// ValidODSCode reports whether s has the shape of an ODS organisation code:
// 3 to 10 upper-case letters and digits.
func ValidODSCode(s string) bool {
	if len(s) < 3 || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidID reports whether s is a FHIR logical id: 1 to 64 of A-Z, a-z, 0-9,
// '-' and '.'.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
