package policy

import "strings"

// CanonicalParamName spells a query parameter name as the most lenient reader
// would: percent-decoded and '+' read as a space, three times over (for
// servers that decode twice), then in lower case, without leading spaces or
// trailing spaces, cut at the first NUL and the first '[' (PHP's and qs's array
// syntax), with ' ', '.' and '-' read as '_'.
func CanonicalParamName(name string) string {
	for range 3 {
		d := decodeLenient(name)
		if d == name {
			break
		}
		name = d
	}
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i] // PHP reads the name as a C string
	}
	name = strings.TrimLeft(name, " ")
	name = strings.TrimRight(name, " \t")
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		switch c {
		case ' ', '.', '-':
			b[i] = '_'
		}
	}
	return string(b)
}

// decodeLenient percent-decodes s and reads '+' as a space, keeping an
// invalid escape as it is.
func decodeLenient(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			hi, _ := unhex(s[i+1])
			lo, _ := unhex(s[i+2])
			b = append(b, hi<<4|lo)
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
