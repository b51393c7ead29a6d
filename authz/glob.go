package authz

import (
	"fmt"
	"strings"
)

// matcher is a compiled pattern: '*' matches any run of characters
// (including '/' and '.', so "n1/*" names every agent of n1 and "admin.*"
// every capability under admin), '?' exactly one. Patterns without
// wildcards, and with only a trailing '*', are compared directly because
// they are most of a real policy and sit on the call path.
type matcher struct {
	pattern string
	kind    uint8 // matchAll, matchExact, matchPrefix, matchGlob
	lit     string
}

const (
	matchAll = iota
	matchExact
	matchPrefix
	matchGlob
)

// maxPattern bounds a pattern's length; agent ids are at most 256 bytes.
const maxPattern = 256

func compilePattern(p string) (matcher, error) {
	if p == "" {
		return matcher{}, fmt.Errorf("pattern must not be empty")
	}
	if len(p) > maxPattern {
		return matcher{}, fmt.Errorf("pattern is %d bytes, over %d", len(p), maxPattern)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/*?:", r)) {
			return matcher{}, fmt.Errorf("pattern %q: character %q is not allowed (letters, digits, . _ - / : and the wildcards * ?)", p, r)
		}
	}
	m := matcher{pattern: p}
	switch i := strings.IndexAny(p, "*?"); {
	case p == "*":
		m.kind = matchAll
	case i < 0:
		m.kind, m.lit = matchExact, p
	case i == len(p)-1 && p[i] == '*':
		m.kind, m.lit = matchPrefix, p[:i]
	default:
		m.kind = matchGlob
	}
	return m, nil
}

func (m *matcher) match(s string) bool {
	switch m.kind {
	case matchAll:
		return true
	case matchExact:
		return s == m.lit
	case matchPrefix:
		return strings.HasPrefix(s, m.lit)
	}
	return globMatch(m.pattern, s)
}

// globMatch is the classic iterative wildcard match with one backtrack
// point: linear in practice, never exponential.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
