package policy

import "strings"

// ParamNameReadings spells a query parameter name as the most lenient
// readers do, in two ways. Both are percent-decoded with '+' read as a
// space, three times over (for servers that decode twice), cut at the
// first NUL (PHP reads a name as a C string), without the spaces, '?',
// '[' and ']' it starts with (PHP, URLSearchParams and php -S drop a
// leading '?'; Rack drops brackets there) or the spaces it ends with, in
// lower case, with ' ', '.' and '-' read as '_'. cut then ends at the
// first '[' or ']' (the array syntax of PHP, qs and Rack); joined reads
// every '[' as '_' (PHP's unmatched '[').
func ParamNameReadings(name string) (cut, joined string) {
	for range 3 {
		d := decodeLenient(name)
		if d == name {
			break
		}
		name = d
	}
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " ?[]")
	name = strings.TrimRight(name, " \t")
	joined = paramSpelling(strings.ReplaceAll(name, "[", "_"))
	if i := strings.IndexAny(name, "[]"); i >= 0 {
		name = name[:i]
	}
	return paramSpelling(name), joined
}

// paramSpelling is name in lower case with ' ', '.' and '-' read as '_'.
func paramSpelling(name string) string {
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
