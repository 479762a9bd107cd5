package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

type segmentKind uint8

const (
	segLiteral segmentKind = iota // matches itself
	segCapture                    // {name}: one non-empty segment, captured
	segStar                       // *: one non-empty segment
	segRest                       // **: the rest of the path, possibly empty
)

type segment struct {
	kind segmentKind
	text string // the literal, or the capture name
}

// pattern is a compiled route path.
type pattern struct {
	segs     []segment
	project  int  // index in segs of the capture named by Route.Project, -1 if none
	compiled bool // false for a Route not built by Parse: it never matches
}

// compilePattern compiles path. It returns every problem found, each a
// message without the field name.
func compilePattern(path string) (pattern, []string) {
	pt := pattern{project: -1}
	switch {
	case path == "":
		return pt, []string{"is required"}
	case path[0] != '/':
		return pt, []string{`must start with "/"`}
	case path == "/":
		pt.compiled = true
		return pt, nil
	}
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	raw := strings.Split(path[1:], "/")
	captures := make(map[string]bool)
	reportedEmpty, reportedRest := false, false
	for i, s := range raw {
		switch {
		case s == "":
			if !reportedEmpty {
				add(`must not contain empty segments (repeated or trailing "/")`)
				reportedEmpty = true
			}
		case s == "**":
			if i != len(raw)-1 && !reportedRest {
				add(`"**" is only allowed as the last segment`)
				reportedRest = true
			}
			pt.segs = append(pt.segs, segment{kind: segRest})
		case s == "*":
			pt.segs = append(pt.segs, segment{kind: segStar})
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			switch {
			case name == "":
				add("empty capture name")
			case !validCaptureName(name):
				add("invalid capture name %q (use letters, digits and \"_\")", name)
			case captures[name]:
				add("duplicate capture name %q", name)
			}
			captures[name] = true
			pt.segs = append(pt.segs, segment{kind: segCapture, text: name})
		default:
			if msg := literalProblem(s); msg != "" {
				add("segment %q: %s", s, msg)
			}
			pt.segs = append(pt.segs, segment{kind: segLiteral, text: s})
		}
	}
	pt.compiled = len(problems) == 0
	return pt, problems
}

// literalProblem explains why s cannot be a literal segment, or returns "".
func literalProblem(s string) string {
	switch {
	case s == "." || s == "..":
		return "dot segments never match a normalised path"
	case strings.ContainsAny(s, "*{}"):
		return `"*" and "{name}" must be a whole segment`
	case strings.ContainsAny(s, "?#"):
		return `"?" and "#" are not part of a path`
	case strings.Contains(s, "%"):
		return "patterns match decoded paths: write the character itself, not a percent escape"
	case strings.Contains(s, `\`):
		return "backslashes never match a normalised path"
	case !utf8.ValidString(s):
		return "invalid UTF-8"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "control characters never match a normalised path"
		}
	}
	return ""
}

// equalFoldASCII reports whether a and b are equal with ASCII letters
// compared without case (and nothing else folded, unlike strings.EqualFold).
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasUpperASCII reports whether s holds an ASCII upper-case letter.
func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// isolated returns the pattern of the paths a project route isolates: its
// segments up to the project capture, then "**".
func (pt *pattern) isolated() pattern {
	segs := make([]segment, 0, pt.project+2)
	segs = append(segs, pt.segs[:pt.project+1]...)
	segs = append(segs, segment{kind: segRest})
	return pattern{segs: segs, project: pt.project, compiled: true}
}

// String returns the pattern as written in a policy file.
func (pt *pattern) String() string {
	var b strings.Builder
	for _, s := range pt.segs {
		b.WriteByte('/')
		switch s.kind {
		case segLiteral:
			b.WriteString(s.text)
		case segCapture:
			b.WriteString("{" + s.text + "}")
		case segStar:
			b.WriteString("*")
		case segRest:
			b.WriteString("**")
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// overlaps reports whether some path matches both a and b. Literals are
// compared without ASCII case, so that a case-insensitive back end's view
// counts too.
func overlaps(a, b *pattern) bool {
	for i := 0; ; i++ {
		aEnd, bEnd := i == len(a.segs), i == len(b.segs)
		switch {
		case aEnd && bEnd:
			return true
		case !aEnd && a.segs[i].kind == segRest, !bEnd && b.segs[i].kind == segRest:
			return true
		case aEnd || bEnd:
			return false
		}
		sa, sb := a.segs[i], b.segs[i]
		if sa.kind == segLiteral && sb.kind == segLiteral && !equalFoldASCII(sa.text, sb.text) {
			return false
		}
	}
}

func validCaptureName(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlphanumeric(c) && c != '_' {
			return false
		}
	}
	return name != ""
}

// captureIndex returns the index in pt.segs of the capture called name, or -1.
func (pt *pattern) captureIndex(name string) int {
	for i, s := range pt.segs {
		if s.kind == segCapture && s.text == name {
			return i
		}
	}
	return -1
}

// match reports whether the normalised path matches, and the value of the
// project capture. One trailing slash on path is ignored. With fold,
// literals are compared with ASCII case folded, as a case-insensitive
// router would. It does not allocate.
func (pt *pattern) match(path string, fold bool) (bool, string) {
	if !pt.compiled || path == "" || path[0] != '/' {
		return false, ""
	}
	rest := path[1:]
	if n := len(rest); n > 0 && rest[n-1] == '/' {
		rest = rest[:n-1]
	}
	more := rest != "" // whether a segment, possibly empty, remains
	project := ""
	for i := range pt.segs {
		s := &pt.segs[i]
		if s.kind == segRest {
			return true, project
		}
		if !more {
			return false, ""
		}
		var seg string
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			seg, rest, more = rest, "", false
		}
		if seg == "" {
			return false, ""
		}
		switch s.kind {
		case segLiteral:
			if seg != s.text && !(fold && equalFoldASCII(seg, s.text)) {
				return false, ""
			}
		case segCapture:
			if i == pt.project {
				project = seg
			}
		}
	}
	if more {
		return false, ""
	}
	return true, project
}
